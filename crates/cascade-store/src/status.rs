//! Run statuses and task states in rows: written as their words
//! ([`RunStatus::as_str`]), read back into the types. A word this version does not know
//! fails the read with the column it was in, rather than passing through as text.

use cascade_plan::{RunStatus, TaskState};
use rusqlite::Row;
use rusqlite::types::{FromSqlError, Type};

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
