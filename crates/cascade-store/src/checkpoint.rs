//! WAL checkpoints off the acknowledging writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that pushes the WAL past 1000
//! pages, on the connection that made it: for the intake that is a commit whose callers
//! wait while the WAL is copied into the database file and both are fsynced (measured:
//! 4–30 ms, once every few hundred webhooks, so the p99). The writer's connection has
//! `wal_autocheckpoint=0` and this thread, on a connection of its own, runs a `PASSIVE`
//! checkpoint after commits, at most once per [`INTERVAL`]. A passive checkpoint takes no
//! write lock, so commits go on while it copies; it only copies frames that are already
//! durable in the WAL, so nothing here changes what a `202` means.

use crate::error::StoreError;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

/// The shortest time between two checkpoints: commits meanwhile are copied together,
/// with one fsync of the database file.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// Checkpoints the WAL of one database on a thread of its own; the thread ends when
/// this is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    nudge: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to `path`.
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::db::open(path)?;
        // This connection never writes; set anyway so it never checkpoints twice.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (nudge, nudged) = sync_channel(1);
        std::thread::Builder::new()
            .name("cascade-checkpoint".to_owned())
            .spawn(move || run(&conn, &nudged))
            .map_err(StoreError::Thread)?;
        Ok(Self { nudge })
    }

    /// Says the WAL has grown; never waits.
    pub fn nudge(&self) {
        // Full means a checkpoint is already due.
        let _ = self.nudge.try_send(());
    }
}

fn run(conn: &rusqlite::Connection, nudged: &Receiver<()>) {
    while nudged.recv().is_ok() {
        std::thread::sleep(INTERVAL);
        // A nudge sent while sleeping is covered by this checkpoint; if the writer is
        // gone, this last checkpoint runs and the next `recv` ends the thread.
        let _ = nudged.try_recv();
        // A checkpoint that fails (busy with another checkpointer, an IO error) leaves
        // the frames in the WAL, where they are durable; the next nudge tries again.
        let _ = checkpoint(conn);
    }
}

/// One passive checkpoint: (frames in the WAL, frames copied to the database).
pub(crate) fn checkpoint(conn: &rusqlite::Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writers_commits_are_copied_into_the_database_by_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut queue = crate::Queue::open_writer(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for n in 0..300 {
            let event = crate::NewEvent {
                source: "github".into(),
                delivery_id: format!("d{n}"),
                kind: "push".into(),
                repo: None,
                task_id: None,
                event_type: None,
                payload: serde_json::json!({"padding": "x".repeat(8000)}),
            };
            queue.record_events(&[event]).unwrap();
        }
        // Only a checkpoint writes to the database file; the queue stays open, so this
        // is not the checkpoint SQLite runs when the last connection closes.
        let grown = (0..200).any(|_| {
            std::thread::sleep(INTERVAL / 4);
            std::fs::metadata(&path).unwrap().len() > before + 2_000_000
        });
        assert!(grown, "the events reached the database file");
    }
}
