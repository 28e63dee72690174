//! Opening the database: pragmas and migrations.
//!
//! WAL with `synchronous=FULL`: an acknowledged write is on disk. Writes are grouped
//! into one `BEGIN IMMEDIATE … COMMIT` per batch (see `writer.rs`), so durability costs one
//! fsync per batch, not per event.

use crate::error::StoreError;
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use std::path::Path;
use std::time::Duration;

/// Every migration, in order. Never edit one that shipped: add a new one.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../migrations/001_runs.sql")),
        M::up(include_str!("../migrations/002_queue.sql")),
        M::up(include_str!("../migrations/003_workers.sql")),
        M::up(include_str!("../migrations/004_events.sql")),
        M::up(include_str!("../migrations/005_external.sql")),
        M::up(include_str!("../migrations/006_tokens.sql")),
        M::up(include_str!("../migrations/007_log_attempts.sql")),
        M::up(include_str!("../migrations/008_vocabulary.sql")),
    ])
}

/// Waits for the write lock by polling: every 20 µs for the first 2 ms, then every
/// 250 µs, giving up after about 5 s (as `busy_timeout` would). SQLite's own handler
/// sleeps 1, 2, 5, 10, 15, 20, 25, … ms between tries, so a writer that finds the lock
/// taken by a transaction of 100 µs (the orchestrator taking or settling events) sleeps
/// a whole millisecond or more: measured on the intake, 526 such sleeps for 1,147
/// webhooks on one connection, 2.1 s of 5 s. For the connection whose commits callers
/// wait for; others keep the back-off, which also makes them yield to this one.
pub fn poll_for_write_lock(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_handler(Some(poll_once))?;
    Ok(())
}

/// One try of [`poll_for_write_lock`]: `false` gives up (`SQLITE_BUSY`).
fn poll_once(tries: i32) -> bool {
    const FINE_TRIES: i32 = 100;
    const COARSE_TRIES: i32 = 20_000;
    if tries < FINE_TRIES {
        std::thread::sleep(Duration::from_micros(20));
        true
    } else if tries < FINE_TRIES + COARSE_TRIES {
        std::thread::sleep(Duration::from_micros(250));
        true
    } else {
        false
    }
}

/// Opens (and creates or migrates) the database at `path`.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrations()
        .to_latest(&mut conn)
        .map_err(StoreError::Migrate)?;
    Ok(conn)
}

/// The steps of SQLite's plan for `sql` (`EXPLAIN QUERY PLAN`), its parameters all
/// NULL: the plan of the statements these tests check does not depend on the values.
#[cfg(test)]
pub(crate) fn query_plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
    stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
    }

    #[test]
    fn a_database_of_the_first_version_is_migrated_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            Migrations::new(vec![M::up(include_str!("../migrations/001_runs.sql"))])
                .to_latest(&mut conn)
                .unwrap();
            conn.execute("INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at) VALUES ('old', 'd', 'manual', 'succeeded', 'then')", []).unwrap();
        }
        let conn = open(&path).unwrap();
        let status: String = conn
            .query_row(
                "SELECT status FROM dag_runs WHERE run_id = 'old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(status, "succeeded");
        let queued: i64 = conn
            .query_row("SELECT count(*) FROM worker_queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(queued, 0);
    }

    #[test]
    fn a_database_of_the_sixth_version_with_completed_runs_reads_succeeded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        {
            // The schema as the previous version left it, and the words it wrote: a
            // server run and its task `completed`, a local one `succeeded`.
            let mut conn = Connection::open(&path).unwrap();
            let previous: Vec<M<'static>> = [
                include_str!("../migrations/001_runs.sql"),
                include_str!("../migrations/002_queue.sql"),
                include_str!("../migrations/003_workers.sql"),
                include_str!("../migrations/004_events.sql"),
                include_str!("../migrations/005_external.sql"),
                include_str!("../migrations/006_tokens.sql"),
            ]
            .into_iter()
            .map(M::up)
            .collect();
            Migrations::new(previous).to_latest(&mut conn).unwrap();
            conn.execute_batch(
                "INSERT INTO dag_definitions (dag_id, tasks, scope_type, created_at) VALUES ('d', '{\"tasks\": []}', 'global', 'then');
                 INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at, finished_at) VALUES ('server', 'd', 'api', 'completed', '2026-01-01T00:00:00Z', 'then');
                 INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at) VALUES ('local', 'ci.yaml', 'manual', 'succeeded', '2026-01-01T00:00:01Z');
                 INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at) VALUES ('broken', 'd', 'api', 'failed', '2026-01-01T00:00:02Z');
                 INSERT INTO task_executions (run_id, task_id, status) VALUES ('server', 'build', 'completed');
                 INSERT INTO task_executions (run_id, task_id, status) VALUES ('server', 'test', 'skipped');
                 INSERT INTO worker_queue (run_id, worker_id, status, created_at) VALUES ('server', 'worker-global', 'done', 'then');",
            )
            .unwrap();
        }
        let reader = crate::Reader::open(&path).unwrap();
        let status = |id: &str| reader.run(id).unwrap().status;
        assert_eq!(status("server"), cascade_plan::RunStatus::Succeeded);
        assert_eq!(status("local"), cascade_plan::RunStatus::Succeeded);
        assert_eq!(status("broken"), cascade_plan::RunStatus::Failed);
        let tasks: Vec<_> = reader
            .tasks("server")
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.status))
            .collect();
        assert_eq!(
            tasks,
            [
                ("build".to_owned(), cascade_plan::TaskState::Succeeded),
                ("test".to_owned(), cascade_plan::TaskState::Skipped)
            ]
        );
        // Rewritten in the file, not only read leniently.
        let conn = Connection::open(&path).unwrap();
        let old: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM dag_runs WHERE status = 'completed') + (SELECT count(*) FROM task_executions WHERE status = 'completed')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0);
        let done: String = conn
            .query_row(
                "SELECT status FROM worker_queue WHERE run_id = 'server'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(done, "done", "the queue's own words are left alone");
    }

    #[test]
    fn a_run_queued_by_the_second_version_is_still_claimed_after_migrating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            Migrations::new(vec![
                M::up(include_str!("../migrations/001_runs.sql")),
                M::up(include_str!("../migrations/002_queue.sql")),
            ])
            .to_latest(&mut conn)
            .unwrap();
            conn.execute_batch(
                "INSERT INTO dag_definitions (dag_id, tasks, scope_type, created_at) VALUES ('d', '{\"tasks\": []}', 'global', 'then');
                 INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at) VALUES ('r', 'd', 'api', 'queued', 'then');
                 INSERT INTO worker_queue (run_id, worker_id, status, created_at) VALUES ('r', 'worker-global', 'queued', 'then');",
            )
            .unwrap();
        }
        let mut queue = crate::Queue::open(&path).unwrap();
        let claimed = queue
            .claim("worker-global", None, 1, Duration::from_secs(1))
            .unwrap()
            .unwrap();
        assert_eq!(claimed.lease.run_id, "r");
        assert_eq!(
            claimed.definition, "{\"tasks\": []}",
            "the definition comes from dag_definitions when the run has none"
        );
    }

    #[test]
    fn opening_twice_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/cascade.db");
        let conn = open(&path).unwrap();
        conn.execute("INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at) VALUES ('r', 'd', 'manual', 'running', 'now')", []).unwrap();
        drop(conn);
        let conn = open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM dag_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
