//! Run statuses and task states in rows: written as their words
//! ([`RunStatus::as_str`]), read back into the types. A word this version does not know
//! fails the read with the column it was in, rather than passing through as text.
//!
//! No statement spells a word of `dag_runs.status` or `task_executions.status` itself:
//! it binds `RunStatus::X.as_str()` / `TaskState::X.as_str()` as a parameter, or, for an
//! `IN` list, splices a list built here from the types (once per statement, in a
//! `LazyLock`, so `prepare_cached` finds the same text every time). A test below reads
//! the crate's source to keep it so.

use cascade_plan::{RunStatus, TaskState};
use rusqlite::Row;
use rusqlite::types::{FromSqlError, Type};

/// `word` as an SQL string literal: `'word'` (a quote in it doubled, as SQL escapes
/// one). For the words of the types and of the store's own small vocabularies only,
/// never for data.
pub(crate) fn sql_literal(word: &str) -> String {
    format!("'{}'", word.replace('\'', "''"))
}

/// `words` as an SQL list for `IN`: `('a', 'b')`.
pub(crate) fn sql_list<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    let words: Vec<String> = words.into_iter().map(sql_literal).collect();
    format!("({})", words.join(", "))
}

/// The statuses of runs that ended, as an SQL list: `('succeeded', 'failed', …)`.
pub(crate) fn runs_ended() -> String {
    sql_list(
        RunStatus::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str()),
    )
}

/// The statuses of runs that have not ended, as an SQL list: `('queued', 'running',
/// 'cancelling')`.
pub(crate) fn runs_live() -> String {
    sql_list(
        RunStatus::ALL
            .iter()
            .filter(|s| !s.is_final())
            .map(|s| s.as_str()),
    )
}

/// The states of tasks that have not ended, as an SQL list: `('pending', 'running')`.
pub(crate) fn tasks_live() -> String {
    sql_list(
        TaskState::ALL
            .iter()
            .filter(|s| !s.is_final())
            .map(|s| s.as_str()),
    )
}

/// The error of a status column holding something that is not one of the words.
#[derive(Debug, thiserror::Error)]
#[error("expected {expected}; found `{found}`")]
pub struct UnknownWord {
    expected: String,
    found: String,
}

fn word<T>(
    row: &Row<'_>,
    idx: usize,
    read: fn(&str) -> Option<T>,
    words: fn() -> String,
) -> rusqlite::Result<T> {
    let text = row.get_ref(idx)?.as_str().map_err(|e| match e {
        FromSqlError::InvalidType => rusqlite::Error::InvalidColumnType(
            idx,
            row.as_ref().column_name(idx).unwrap_or("?").to_owned(),
            Type::Null,
        ),
        other => rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(other)),
    })?;
    read(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            Box::new(UnknownWord {
                expected: words(),
                found: text.to_owned(),
            }),
        )
    })
}

/// Column `idx` as a run status (the words of earlier versions read too).
pub(crate) fn run_status(row: &Row<'_>, idx: usize) -> rusqlite::Result<RunStatus> {
    word(row, idx, RunStatus::read, RunStatus::words)
}

/// Column `idx` as a run status, `NULL` as `None`.
pub(crate) fn run_status_opt(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<RunStatus>> {
    if row.get_ref(idx)? == rusqlite::types::ValueRef::Null {
        return Ok(None);
    }
    run_status(row, idx).map(Some)
}

/// Column `idx` as a task state (the words of earlier versions read too).
pub(crate) fn task_state(row: &Row<'_>, idx: usize) -> rusqlite::Result<TaskState> {
    word(row, idx, TaskState::read, TaskState::words)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source file of the crate (a test below checks none is missing).
    const SOURCES: &[(&str, &str)] = &[
        ("checkpoint.rs", include_str!("checkpoint.rs")),
        ("db.rs", include_str!("db.rs")),
        ("error.rs", include_str!("error.rs")),
        ("events.rs", include_str!("events.rs")),
        ("external.rs", include_str!("external.rs")),
        ("ledger.rs", include_str!("ledger.rs")),
        ("lib.rs", include_str!("lib.rs")),
        ("mask.rs", include_str!("mask.rs")),
        ("queue.rs", include_str!("queue.rs")),
        ("runs.rs", include_str!("runs.rs")),
        ("status.rs", include_str!("status.rs")),
        ("tokens.rs", include_str!("tokens.rs")),
        ("writer.rs", include_str!("writer.rs")),
    ];

    /// The run and task words, and `completed`, the word of earlier versions
    /// (migration 008).
    fn words() -> Vec<&'static str> {
        RunStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(TaskState::ALL.iter().map(|s| s.as_str()))
            .chain(["completed"])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The run and task words spelled as SQL literals (`'failed'`) in `source` before
    /// its test module, as `line: 'word'`. Comment lines are not statements (they may
    /// show one), and the tests insert rows as older versions wrote them.
    fn spelled(source: &str) -> Vec<String> {
        let code = source
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(source);
        let words = words();
        code.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim_start().starts_with("//"))
            .flat_map(|(n, line)| {
                words
                    .iter()
                    .filter(move |w| line.contains(&format!("'{w}'")))
                    .map(move |w| format!("{}: '{w}'", n + 1))
            })
            .collect()
    }

    /// No statement of the store spells a run status or task state: each comes from
    /// [`RunStatus`] / [`TaskState`], bound or spliced from the lists above. A source
    /// scan is the check because nothing else sees it: SQL is text the compiler does not
    /// read, and a statement with `'failed'` in it behaves the same as one binding
    /// `RunStatus::Failed` until the day a word changes (as `completed` became
    /// `succeeded`), when it silently keeps writing or matching the old word; the
    /// behaviour tests catch that only for the statements they happen to drive, and a
    /// crash-recovery or Argo path may not be one of them. Reading the text catches it
    /// the day the literal is written.
    #[test]
    fn no_statement_spells_a_run_or_task_word() {
        let found: Vec<String> = SOURCES
            .iter()
            .flat_map(|(file, source)| {
                spelled(source)
                    .into_iter()
                    .map(move |hit| format!("src/{file}:{hit}"))
            })
            .collect();
        assert!(
            found.is_empty(),
            "status words spelled in SQL; bind `RunStatus::X.as_str()` / \
             `TaskState::X.as_str()` or use a list of status.rs instead:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_scan_finds_a_spelled_word_in_code_only() {
        let source = "let a = \"UPDATE dag_runs SET status = 'failed' WHERE x\";\n\
                      /// shows `status = 'running'`\n\
                      let b = \"SELECT 'idle', 'completed'\";\n\
                      #[cfg(test)]\n\
                      fn helper() -> &str { \"'pending'\" }\n\
                      #[cfg(test)]\n\
                      mod tests { const C: &str = \"INSERT ... 'queued'\"; }\n";
        assert_eq!(
            spelled(source),
            ["1: 'failed'", "3: 'completed'", "5: 'pending'"]
        );
    }

    #[test]
    fn the_scan_reads_every_source_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|path| path.extension().is_some_and(|x| x == "rs"))
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let listed: Vec<&str> = SOURCES.iter().map(|(file, _)| *file).collect();
        assert_eq!(files, listed, "add the new file to SOURCES");
    }

    #[test]
    fn the_lists_hold_the_words_of_the_types() {
        assert_eq!(
            runs_ended(),
            "('succeeded', 'failed', 'cancelled', 'skipped')"
        );
        assert_eq!(runs_live(), "('queued', 'running', 'cancelling')");
        assert_eq!(tasks_live(), "('pending', 'running')");
        assert_eq!(sql_literal("it's"), "'it''s'");
    }
}
