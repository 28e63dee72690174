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
