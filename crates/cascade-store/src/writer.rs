//! The event writer: a thread that stores a run's events with group commit. It gathers
//! every event waiting at that moment into one transaction, so a burst of 500 task events
//! costs a handful of fsyncs, and never slows the engine (the engine only queues).

use crate::db;
use crate::error::StoreError;
use cascade_plan::{Event, EventKind, RunId, RunStatus, TaskState};
use rusqlite::{Connection, TransactionBehavior, params};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// What is known of a run before it starts.
#[derive(Debug, Clone)]
pub struct RunMeta {
    pub run_id: RunId,
    /// Pipeline name (or DAG id).
    pub dag_id: String,
    /// The file it came from.
    pub source: Option<String>,
    /// The trigger's event name.
    pub trigger: String,
}

enum Message {
    Event(Box<Event>),
    Outputs(RunId, String, String),
}

/// Stores events as they come; a [`cascade_engine`-style] subscriber.
#[derive(Debug)]
pub struct Writer {
    tx: Option<mpsc::Sender<Message>>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

const MAX_BATCH: usize = 8192;
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

impl Writer {
    /// Records the run (durably, before anything runs) and starts the writer thread.
    pub fn start(path: &Path, meta: &RunMeta) -> Result<Self, StoreError> {
        let conn = db::open(path)?;
        conn.execute(
            "INSERT INTO dag_runs (run_id, dag_id, source, trigger, status, pid, created_at, started_at)
             VALUES (?1, ?2, ?3, ?4, ?7, ?5, ?6, ?6)",
            params![meta.run_id.as_str(), meta.dag_id, meta.source, meta.trigger, std::process::id(), jiff::Timestamp::now().to_string(), RunStatus::Running.as_str()],
        )?;
        let (tx, rx) = mpsc::channel();
        let run_id = meta.run_id.clone();
        let thread = std::thread::Builder::new()
            .name("cascade-store".to_owned())
            .spawn(move || write_loop(conn, &run_id, &rx))
            .map_err(|source| StoreError::Dir {
                path: "writer thread".to_owned(),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues one event; never blocks.
    pub fn record(&self, event: &Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Event(Box::new(event.clone())));
        }
    }

    /// Queues a task's outputs (JSON).
    pub fn outputs(&self, run_id: &RunId, task: &str, outputs: &serde_json::Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Outputs(
                run_id.clone(),
                task.to_owned(),
                outputs.to_string(),
            ));
        }
    }

    /// Writes everything queued and stops the thread.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.tx.take();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| StoreError::WriterGone)?,
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(
    mut conn: Connection,
    run_id: &RunId,
    rx: &mpsc::Receiver<Message>,
) -> Result<(), StoreError> {
    let mut seq: i64 = conn.query_row(
        "SELECT coalesce(max(seq), 0) FROM task_logs WHERE run_id = ?1",
        [run_id.as_str()],
        |r| r.get(0),
    )?;
    let mut position: i64 = 0;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Linger a moment so a burst becomes one transaction (one fsync) rather than
        // one per event; the engine never waits for this thread.
        // Sleeping (rather than waiting on the channel) costs one wake-up per batch
        // instead of one per event.
        std::thread::sleep(LINGER);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for message in batch {
            match message {
                Message::Event(e) => apply(&tx, &e, &mut seq, &mut position, Attempts::FromEvent)?,
                Message::Outputs(run, task, json) => {
                    tx.execute(
                        "UPDATE task_executions SET output = ?3 WHERE run_id = ?1 AND task_id = ?2",
                        params![run.as_str(), task, json],
                    )?;
                }
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// How a task's `attempt` column is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempts {
    /// As the engine numbers them (one process runs the whole run).
    FromEvent,
    /// Every start counts: a run taken over from a dead worker keeps counting, so a task
    /// re-run after a crash shows as retried.
    Count,
}

/// Stores one event of a run inside an open transaction.
pub(crate) fn apply(
    tx: &rusqlite::Transaction<'_>,
    event: &Event,
    seq: &mut i64,
    position: &mut i64,
    attempts: Attempts,
) -> Result<(), StoreError> {
    let run = event.run_id.as_str();
    let ts = event.ts.to_string();
    match &event.kind {
        EventKind::RunStarted { .. }
        | EventKind::ResourceAcquired { .. }
        | EventKind::ResourceReleased { .. } => {}
        EventKind::TaskPending { task, label } => {
            *position += 1;
            tx.prepare_cached("INSERT OR IGNORE INTO task_executions (run_id, task_id, position, label, status) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![run, task.to_string(), *position, label, TaskState::Pending.as_str()])?;
        }
        EventKind::TaskStarted { task, .. } if attempts == Attempts::Count => {
            tx.prepare_cached("UPDATE task_executions SET status = ?4, attempt = attempt + 1, started_at = coalesce(started_at, ?3) WHERE run_id = ?1 AND task_id = ?2")?
                .execute(params![run, task.to_string(), ts, TaskState::Running.as_str()])?;
        }
        EventKind::TaskRetrying { .. } if attempts == Attempts::Count => {}
        EventKind::TaskStarted { task, attempt } => {
            tx.prepare_cached("UPDATE task_executions SET status = ?5, attempt = ?3, started_at = coalesce(started_at, ?4) WHERE run_id = ?1 AND task_id = ?2")?
                .execute(params![run, task.to_string(), attempt, ts, TaskState::Running.as_str()])?;
        }
        EventKind::TaskLog { task, stream, line } => {
            *seq += 1;
            let stream = match stream {
                cascade_plan::Stream::Stdout => "stdout",
                cascade_plan::Stream::Stderr => "stderr",
            };
            // The line belongs to the attempt its task is in now (the start came first).
            tx.prepare_cached("INSERT INTO task_logs (run_id, seq, task_id, stream, line, ts, attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, (SELECT attempt FROM task_executions WHERE run_id = ?1 AND task_id = ?3))")?
                .execute(params![run, *seq, task.to_string(), stream, line, ts])?;
        }
        EventKind::TaskRetrying { task, attempt, .. } => {
            tx.prepare_cached(
                "UPDATE task_executions SET attempt = ?3 WHERE run_id = ?1 AND task_id = ?2",
            )?
            .execute(params![run, task.to_string(), attempt])?;
        }
        EventKind::TaskFinished {
            task,
            state,
            attempt,
            exit_code,
            duration_ms,
            error,
        } => {
            tx.prepare_cached(
                "UPDATE task_executions SET status = ?3, attempt = max(attempt, ?4), exit_code = ?5, error = ?6, finished_at = ?7, duration_ms = ?8 WHERE run_id = ?1 AND task_id = ?2",
            )?
            .execute(params![run, task.to_string(), state.as_str(), attempt, exit_code, error, ts, i64::try_from(*duration_ms).unwrap_or(i64::MAX)])?;
        }
        EventKind::TaskSkipped { task, reason } => {
            tx.prepare_cached("UPDATE task_executions SET status = ?5, error = ?3, finished_at = ?4 WHERE run_id = ?1 AND task_id = ?2")?
                .execute(params![run, task.to_string(), reason, ts, TaskState::Skipped.as_str()])?;
        }
        EventKind::RunFinished {
            outcome,
            passed,
            failed,
            skipped,
            duration_ms,
        } => {
            tx.prepare_cached(
                "UPDATE dag_runs SET status = ?2, passed = ?3, failed = ?4, skipped = ?5, finished_at = ?6, duration_ms = ?7, version = version + 1 WHERE run_id = ?1",
            )?
            .execute(params![run, outcome.as_str(), count(*passed), count(*failed), count(*skipped), ts, i64::try_from(*duration_ms).unwrap_or(i64::MAX)])?;
        }
    }
    Ok(())
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
