//! Reading runs back: the list, one run with its tasks, and logs.

use crate::db;
use crate::error::StoreError;
use crate::ledger::WorkerState;
use crate::queue::QueueState;
use crate::status;
use cascade_plan::{RunStatus, TaskState};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;

/// One row of `cascade runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub dag_id: String,
    pub source: Option<String>,
    pub trigger: String,
    /// A `running` local run whose `cascade run` process is gone reads as `failed`, with
    /// the reason in `error`.
    pub status: RunStatus,
    pub passed: i64,
    pub failed: i64,
    pub skipped: i64,
    pub created_at: String,
    pub duration_ms: Option<i64>,
    /// The worker and node that ran it (server runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Why it failed before any task ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One worker process, as it last recorded itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerRow {
    pub worker_id: String,
    pub scope: String,
    pub node_id: Option<String>,
    pub pid: i64,
    /// `idle`, `busy`, `stopped`, or `dead` (its process is gone without saying so).
    pub status: String,
    pub started_at: String,
    /// The last sign of life (RFC 3339).
    pub heartbeat: String,
    pub runs_done: i64,
    pub current_runs: i64,
}

/// Filters of `cascade dag list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagFilter {
    /// Status of the latest run.
    pub status: Option<RunStatus>,
    /// `project:proj-a`, `global`, …
    pub scope: Option<String>,
    /// The node that owns it (ran its latest run, or is its target).
    pub node: Option<String>,
}

/// One task of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    pub task_id: String,
    pub label: Option<String>,
    pub status: TaskState,
    pub attempt: i64,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub output: Option<serde_json::Value>,
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRow {
    /// Its place in the run's log (increasing): `logs_after` takes it to follow a run.
    pub seq: i64,
    pub task_id: String,
    pub stream: String,
    pub line: String,
    /// When it was written (RFC 3339).
    pub ts: String,
    /// The attempt of the task it was written in, from 1 (`None` in runs stored before
    /// attempts were kept with the lines).
    pub attempt: Option<u32>,
}

/// One submitted DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DagRow {
    pub dag_id: String,
    pub scope: String,
    pub target_node: Option<String>,
    pub priority: cascade_spec::dag::Priority,
    pub created_at: String,
    /// Status of its latest run.
    pub status: Option<RunStatus>,
    /// The node that ran its latest run, else the node it targets.
    pub owner_node: Option<String>,
}

/// Read access to a store.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: db::open(path)?,
        })
    }

    /// The scope a DAG belongs to (`project:web`, `global`), if it was submitted here.
    pub fn dag_scope(&self, dag_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT CASE WHEN scope_id IS NULL THEN scope_type ELSE scope_type || ':' || scope_id END
                 FROM dag_definitions WHERE dag_id = ?1",
            )?
            .query_row([dag_id], |r| r.get(0))
            .optional()?)
    }

    /// The scope of a run's DAG; `None` for a run with no DAG definition here (a run
    /// recorded by `cascade run`). [`StoreError::NoRun`] when there is no such run.
    pub fn run_scope(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> = self
            .conn
            .prepare_cached(
                "SELECT CASE WHEN d.dag_id IS NULL THEN NULL
                        WHEN d.scope_id IS NULL THEN d.scope_type ELSE d.scope_type || ':' || d.scope_id END
                 FROM dag_runs r LEFT JOIN dag_definitions d ON d.dag_id = r.dag_id WHERE r.run_id = ?1",
            )?
            .query_row([run_id], |r| r.get(0))
            .optional()?;
        found.ok_or_else(|| StoreError::NoRun(run_id.to_owned()))
    }

    /// Submitted DAGs, newest first.
    pub fn dags(&self, limit: usize) -> Result<Vec<DagRow>, StoreError> {
        self.dags_where(&DagFilter::default(), limit)
    }

    /// Submitted DAGs matching `filter`, newest first.
    pub fn dags_where(&self, filter: &DagFilter, limit: usize) -> Result<Vec<DagRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT dag_id, scope_type, scope_id, target_node, priority, created_at, status, owner_node FROM (
               SELECT d.dag_id, d.scope_type, d.scope_id, d.target_node, d.priority, d.created_at,
                 r.status, coalesce(r.node_id, d.target_node) AS owner_node,
                 CASE WHEN d.scope_id IS NULL THEN d.scope_type ELSE d.scope_type || ':' || d.scope_id END AS scope
               FROM dag_definitions d
               LEFT JOIN dag_runs r ON r.run_id = (SELECT run_id FROM dag_runs x WHERE x.dag_id = d.dag_id ORDER BY x.created_at DESC, x.run_id DESC LIMIT 1))
             WHERE (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR scope = ?3) AND (?4 IS NULL OR owner_node = ?4)
             ORDER BY created_at DESC, dag_id LIMIT ?1",
        )?;
        let rows = stmt.query_map(
            params![
                i64::try_from(limit).unwrap_or(i64::MAX),
                filter.status.map(RunStatus::as_str),
                filter.scope,
                filter.node
            ],
            dag_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stored events, oldest first: the last `limit`, or one dispatch chain's.
    pub fn events(
        &self,
        task_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::events::EventRow>, StoreError> {
        crate::events::events(&self.conn, task_id, limit)
    }

    /// Whether an event (source, delivery id) was stored.
    pub fn seen(&self, source: &str, delivery_id: &str) -> Result<bool, StoreError> {
        crate::events::seen(&self.conn, source, delivery_id)
    }

    /// Every worker that ever recorded itself, by id.
    pub fn workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT worker_id, scope, node_id, pid, status, started_at, heartbeat_ms, runs_done, current_runs
             FROM workers ORDER BY worker_id",
        )?;
        let rows = stmt.query_map([], worker_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One worker and the runs it ran, newest first.
    pub fn worker(&self, worker_id: &str) -> Result<(WorkerRow, Vec<RunRow>), StoreError> {
        let worker = self
            .conn
            .prepare_cached(
                "SELECT worker_id, scope, node_id, pid, status, started_at, heartbeat_ms, runs_done, current_runs
                 FROM workers WHERE worker_id = ?1",
            )?
            .query_row([worker_id], worker_row)
            .optional()?
            .ok_or_else(|| StoreError::NoWorker(worker_id.to_owned()))?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "{RUN_COLUMNS} WHERE worker_id = ?1 ORDER BY created_at DESC, run_id DESC LIMIT 20"
        ))?;
        let runs = stmt
            .query_map([worker_id], run_row)?
            .collect::<Result<_, _>>()?;
        Ok((worker, runs))
    }

    /// One DAG: its row, its definition (as last submitted) and its runs, newest first.
    pub fn dag(
        &self,
        dag_id: &str,
    ) -> Result<(DagRow, serde_json::Value, Vec<RunRow>), StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT d.dag_id, d.scope_type, d.scope_id, d.target_node, d.priority, d.created_at,
                   r.status, coalesce(r.node_id, d.target_node), d.tasks
                 FROM dag_definitions d
                 LEFT JOIN dag_runs r ON r.run_id = (SELECT run_id FROM dag_runs x WHERE x.dag_id = d.dag_id ORDER BY x.created_at DESC, x.run_id DESC LIMIT 1)
                 WHERE d.dag_id = ?1",
            )?
            .query_row([dag_id], |r| Ok((dag_row(r)?, r.get::<_, String>(8)?)))
            .optional()?;
        let Some((row, tasks)) = row else {
            return Err(StoreError::NoDag(dag_id.to_owned()));
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "{RUN_COLUMNS} WHERE dag_id = ?1 ORDER BY created_at DESC, run_id DESC LIMIT 20"
        ))?;
        let runs = stmt
            .query_map([dag_id], run_row)?
            .collect::<Result<_, _>>()?;
        Ok((
            row,
            serde_json::from_str(&tasks).unwrap_or(serde_json::Value::Null),
            runs,
        ))
    }

    /// Most recent first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{RUN_COLUMNS} ORDER BY created_at DESC, run_id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], run_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A run by id; `last` means the most recent one.
    pub fn run(&self, id: &str) -> Result<RunRow, StoreError> {
        let sql = RUN_COLUMNS;
        let row = if id == "last" {
            self.conn
                .prepare_cached(&format!(
                    "{sql} ORDER BY created_at DESC, run_id DESC LIMIT 1"
                ))?
                .query_row([], run_row)
                .optional()?
        } else {
            self.conn
                .prepare_cached(&format!("{sql} WHERE run_id = ?1"))?
                .query_row([id], run_row)
                .optional()?
        };
        row.ok_or_else(|| StoreError::NoRun(id.to_owned()))
    }

    pub fn tasks(&self, run_id: &str) -> Result<Vec<TaskRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT task_id, label, status, attempt, exit_code, duration_ms, error, output FROM task_executions WHERE run_id = ?1 ORDER BY position",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            let output: Option<String> = r.get(7)?;
            Ok(TaskRow {
                task_id: r.get(0)?,
                label: r.get(1)?,
                status: status::task_state(r, 2)?,
                attempt: r.get(3)?,
                exit_code: r.get(4)?,
                duration_ms: r.get(5)?,
                error: r.get(6)?,
                output: output.and_then(|o| serde_json::from_str(&o).ok()),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Logs of a run, of one job (all its copies) or one task when given.
    pub fn logs(&self, run_id: &str, job: Option<&str>) -> Result<Vec<LogRow>, StoreError> {
        self.logs_after(run_id, job, 0)
    }

    /// The log lines after `seq` (a [`LogRow::seq`] already seen; 0 for all): what
    /// `cascade logs --follow` reads each time it looks again.
    pub fn logs_after(
        &self,
        run_id: &str,
        job: Option<&str>,
        seq: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, task_id, stream, line, ts, attempt FROM task_logs WHERE run_id = ?1
             AND (?2 IS NULL OR task_id = ?2 OR task_id LIKE ?2 || '[%') AND seq > ?3 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![run_id, job, seq], |r| {
            Ok(LogRow {
                seq: r.get(0)?,
                task_id: r.get(1)?,
                stream: r.get(2)?,
                line: r.get(3)?,
                ts: r.get(4)?,
                attempt: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What `/metrics` shows from the store: runs by status, tasks by state, and runs
    /// queued (not yet claimed) per worker. Whole-table counts: a scrape reads every
    /// task row once.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let grouped = |sql: &str, params: &[&str]| -> Result<Vec<(String, i64)>, StoreError> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok(Counts {
            runs: grouped("SELECT status, count(*) FROM dag_runs GROUP BY status", &[])?,
            tasks: grouped(
                "SELECT status, count(*) FROM task_executions GROUP BY status",
                &[],
            )?,
            queued: grouped(
                "SELECT worker_id, count(*) FROM worker_queue WHERE status = ?1 GROUP BY worker_id",
                &[QueueState::Queued.as_str()],
            )?,
        })
    }

    /// The database file this reader reads (`None` for an in-memory database).
    pub fn path(&self) -> Option<&Path> {
        self.conn.path().map(Path::new)
    }
}

/// Counts from [`Reader::counts`], each a list of (label, count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub runs: Vec<(String, i64)>,
    pub tasks: Vec<(String, i64)>,
    /// Runs waiting to be claimed, by worker id.
    pub queued: Vec<(String, i64)>,
}

/// A DAG from its first eight columns: id, scope kind, scope id, target node, priority,
/// created, latest status, owner node.
fn dag_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DagRow> {
    let kind: String = r.get(1)?;
    let id: Option<String> = r.get(2)?;
    Ok(DagRow {
        dag_id: r.get(0)?,
        scope: id.map_or_else(|| kind.clone(), |id| format!("{kind}:{id}")),
        target_node: r.get(3)?,
        priority: cascade_spec::dag::Priority::from_rank(r.get(4)?),
        created_at: r.get(5)?,
        status: status::run_status_opt(r, 6)?,
        owner_node: r.get(7)?,
    })
}

const RUN_COLUMNS: &str = "SELECT run_id, dag_id, source, trigger, status, passed, failed, skipped, created_at, duration_ms, pid, worker_id, node_id, error FROM dag_runs";

fn worker_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkerRow> {
    let mut status: String = r.get(4)?;
    let pid: i64 = r.get(3)?;
    if status != WorkerState::Stopped.as_str() && !alive(pid) {
        "dead".clone_into(&mut status);
    }
    let heartbeat: i64 = r.get(6)?;
    Ok(WorkerRow {
        worker_id: r.get(0)?,
        scope: r.get(1)?,
        node_id: r.get(2)?,
        pid,
        status,
        started_at: r.get(5)?,
        heartbeat: jiff::Timestamp::from_millisecond(heartbeat)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        runs_done: r.get(7)?,
        current_runs: r.get(8)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let mut status = status::run_status(r, 4)?;
    let pid: Option<i64> = r.get(10)?;
    let mut error: Option<String> = r.get(13)?;
    // Runs started by a local `cascade run` carry its pid; a server's runs do not. One
    // whose process is gone ended without saying so: it failed, and why is told.
    if let Some(pid) = pid.filter(|p| status == RunStatus::Running && !alive(*p)) {
        status = RunStatus::Failed;
        error.get_or_insert_with(|| {
            format!("interrupted: its `cascade run` process (pid {pid}) ended before the run did")
        });
    }
    Ok(RunRow {
        run_id: r.get(0)?,
        dag_id: r.get(1)?,
        source: r.get(2)?,
        trigger: r.get(3)?,
        status,
        passed: r.get(5)?,
        failed: r.get(6)?,
        skipped: r.get(7)?,
        created_at: r.get(8)?,
        duration_ms: r.get(9)?,
        worker_id: r.get(11)?,
        node_id: r.get(12)?,
        error,
    })
}

/// Whether a process still exists (signal 0 probes without sending).
fn alive(pid: i64) -> bool {
    i32::try_from(pid)
        .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{RunMeta, Writer};
    use cascade_plan::{Event, EventKind, RunId, RunOutcome, Stream, TaskId, TaskState};

    fn event(run: &RunId, kind: EventKind) -> Event {
        Event {
            run_id: run.clone(),
            ts: jiff::Timestamp::now(),
            kind,
        }
    }

    #[test]
    fn a_run_written_through_events_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cascade.db");
        let run = RunId::generate(1, 2);
        let writer = Writer::start(
            &db,
            &RunMeta {
                run_id: run.clone(),
                dag_id: "demo".into(),
                source: Some("ci.yaml".into()),
                trigger: "manual".into(),
            },
        )
        .unwrap();
        let task = TaskId::parse("lint[0]").unwrap();
        writer.record(&event(
            &run,
            EventKind::TaskPending {
                task: task.clone(),
                label: Some("a".into()),
            },
        ));
        writer.record(&event(
            &run,
            EventKind::TaskStarted {
                task: task.clone(),
                attempt: 1,
            },
        ));
        writer.record(&event(
            &run,
            EventKind::TaskLog {
                task: task.clone(),
                stream: Stream::Stdout,
                line: "hello".into(),
            },
        ));
        writer.record(&event(
            &run,
            EventKind::TaskFinished {
                task: task.clone(),
                state: TaskState::Succeeded,
                attempt: 1,
                exit_code: Some(0),
                duration_ms: 5,
                error: None,
            },
        ));
        writer.outputs(&run, "lint[0]", &serde_json::json!({"x": "1"}));
        writer.record(&event(
            &run,
            EventKind::RunFinished {
                outcome: RunOutcome::Succeeded,
                passed: 1,
                failed: 0,
                skipped: 0,
                duration_ms: 9,
            },
        ));
        writer.close().unwrap();

        let reader = Reader::open(&db).unwrap();
        let runs = reader.runs(10).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Succeeded);
        assert_eq!(reader.run("last").unwrap().run_id, run.as_str());
        let tasks = reader.tasks(run.as_str()).unwrap();
        assert_eq!(tasks[0].status, TaskState::Succeeded);
        assert_eq!(tasks[0].output, Some(serde_json::json!({"x": "1"})));
        let logs = reader.logs(run.as_str(), Some("lint")).unwrap();
        assert_eq!(
            logs,
            vec![LogRow {
                seq: 1,
                task_id: "lint[0]".into(),
                stream: "stdout".into(),
                line: "hello".into(),
                ts: logs[0].ts.clone(),
                attempt: Some(1),
            }]
        );
        assert!(
            logs[0].ts.parse::<jiff::Timestamp>().is_ok(),
            "{}",
            logs[0].ts
        );
        assert!(reader.logs_after(run.as_str(), None, 1).unwrap().is_empty());
        assert!(reader.logs(run.as_str(), Some("other")).unwrap().is_empty());
        assert!(matches!(reader.run("nope"), Err(StoreError::NoRun(_))));
    }

    #[test]
    fn a_run_whose_process_died_reads_as_failed_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cascade.db");
        let conn = db::open(&db).unwrap();
        // pid 0x7fffffff does not exist.
        conn.execute("INSERT INTO dag_runs (run_id, dag_id, trigger, status, pid, created_at) VALUES ('r', 'd', 'manual', 'running', 2147483647, 'now')", []).unwrap();
        let reader = Reader::open(&db).unwrap();
        let run = reader.run("r").unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(
            run.error.as_deref(),
            Some(
                "interrupted: its `cascade run` process (pid 2147483647) ended before the run did"
            )
        );
    }
}
