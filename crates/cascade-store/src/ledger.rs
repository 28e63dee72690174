//! The worker's ledger: the one thread that owns a worker process's database connection.
//! It claims runs, renews their leases and records their events, group-committed:
//! everything waiting at one moment goes into one `BEGIN IMMEDIATE … COMMIT` (one fsync),
//! so many runs at once cost no more fsyncs than one.
//!
//! Every batch is fenced per run: a run's events are written only while this worker still
//! holds the lease it claimed (the same epoch, not expired). A run whose lease was lost is
//! signalled ([`Signal::Fenced`]) so the worker stops it, and nothing more of it is written.
//! Each write also moves the run's `version` on with a compare-and-set (optimistic
//! locking); a version changed by somebody else since the last batch means another writer
//! (a cancel request through the API) touched the run, and is signalled
//! ([`Signal::Cancel`]) when it asked for a cancel.

use crate::db;
use crate::error::StoreError;
use crate::queue::{Claimed, QueueState, claim_in};
use crate::writer::{Attempts, apply};
use cascade_plan::{Event, EventKind, RunStatus, TaskState};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Who the ledger works for.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub worker_id: String,
    /// The scope served (`project:proj-a`).
    pub scope: String,
    /// The node this worker runs on; runs aimed at other nodes are never claimed.
    pub node_id: Option<String>,
    /// How long a claim holds without renewal. Renewed every third of it.
    pub lease: Duration,
}

/// Something the worker must act on, about one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A cancel was requested (`POST /api/v1/runs/{id}/cancel`).
    Cancel,
    /// The lease was lost: another worker may run it now; stop without recording more.
    Fenced,
}

/// A worker's state as it records itself (`workers.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerState {
    /// Running, holding no run.
    Idle,
    /// Running runs.
    Busy,
    /// It stopped and said so.
    Stopped,
}

impl WorkerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// The error of an attempt whose worker died under it.
pub const DIED: &str = "the worker running it died (its lease ran out); this attempt failed";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
type OnSignal = Box<dyn Fn(&str, Signal) + Send>;

enum Request {
    Claim {
        max: usize,
        reply: Reply<Vec<Claimed>>,
    },
    Event(Box<Event>),
    Outputs {
        run_id: String,
        task: String,
        json: String,
    },
    /// The run could not start (bad definition, unknown secret or runner).
    Fail {
        run_id: String,
        error: String,
    },
    /// Answers once the run's end is committed (or `Fenced` if it could not be).
    Finish {
        run_id: String,
        reply: Reply<()>,
    },
    /// Gives every held, unfinished run back to the queue (the worker is stopping).
    Release {
        reply: Reply<usize>,
    },
}

/// The handle the worker's async code uses; the thread stops when it is dropped.
#[derive(Debug)]
pub struct Ledger {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

/// What the ledger knows of a run it holds.
#[derive(Debug)]
struct Held {
    epoch: i64,
    version: i64,
    seq: i64,
    position: i64,
    fenced: bool,
    cancel_signalled: bool,
    finished: bool,
}

/// A run cancelled before it ran: its tasks that had not ended end `cancelled` (`?2`).
static CANCEL_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE task_executions SET status = ?2 WHERE run_id = ?1 AND status IN {}",
        crate::status::tasks_live()
    )
});

const MAX_BATCH: usize = 8192;
/// A burst of events becomes one transaction rather than one each.
const LINGER: Duration = Duration::from_millis(2);

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Ledger {
    /// Opens the database, records this worker as started, and starts the thread.
    /// `on_signal` is called from the ledger thread (keep it short: cancel a token).
    pub fn start(
        path: &Path,
        config: LedgerConfig,
        on_signal: impl Fn(&str, Signal) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let conn = db::open(path)?;
        conn.execute(
            "INSERT INTO workers (worker_id, scope, node_id, pid, status, started_at, heartbeat_ms)
             VALUES (?1, ?2, ?3, ?4, ?7, ?5, ?6)
             ON CONFLICT (worker_id) DO UPDATE SET scope = excluded.scope, node_id = excluded.node_id,
               pid = excluded.pid, status = excluded.status, started_at = excluded.started_at,
               heartbeat_ms = excluded.heartbeat_ms, current_runs = 0",
            params![
                config.worker_id,
                config.scope,
                config.node_id,
                std::process::id(),
                jiff::Timestamp::now().to_string(),
                now_ms(),
                WorkerState::Idle.as_str()
            ],
        )?;
        let (tx, rx) = mpsc::channel();
        let on_signal: OnSignal = Box::new(on_signal);
        let thread = std::thread::Builder::new()
            .name("cascade-ledger".to_owned())
            .spawn(move || {
                let mut thread = LedgerThread {
                    conn,
                    config,
                    held: HashMap::new(),
                    on_signal,
                };
                thread.run(&rx);
            })
            .map_err(|source| StoreError::Dir {
                path: "ledger thread".to_owned(),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(request)
            .map_err(|_| StoreError::WriterGone)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply))?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Claims up to `max` runs (committed before this returns).
    pub async fn claim(&self, max: usize) -> Result<Vec<Claimed>, StoreError> {
        self.ask(|reply| Request::Claim { max, reply }).await
    }

    /// Queues one event of a held run; never blocks.
    pub fn record(&self, event: &Event) {
        let _ = self.send(Request::Event(Box::new(event.clone())));
    }

    /// Queues a task's outputs (JSON).
    pub fn outputs(&self, run_id: &str, task: &str, outputs: &serde_json::Value) {
        let _ = self.send(Request::Outputs {
            run_id: run_id.to_owned(),
            task: task.to_owned(),
            json: outputs.to_string(),
        });
    }

    /// Records that a held run failed before any task ran.
    pub fn fail(&self, run_id: &str, error: &str) {
        let _ = self.send(Request::Fail {
            run_id: run_id.to_owned(),
            error: error.to_owned(),
        });
    }

    /// Waits until the run's end is committed; `Fenced` if the lease was lost first.
    pub async fn finish(&self, run_id: &str) -> Result<(), StoreError> {
        let run_id = run_id.to_owned();
        self.ask(|reply| Request::Finish { run_id, reply }).await
    }

    /// Gives every held run that has not ended back to the queue, at once claimable by
    /// the next worker; returns how many.
    pub async fn release(&self) -> Result<usize, StoreError> {
        self.ask(|reply| Request::Release { reply }).await
    }

    /// Writes what is queued, marks the worker stopped, and ends the thread.
    pub fn close(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct LedgerThread {
    conn: Connection,
    config: LedgerConfig,
    held: HashMap<String, Held>,
    on_signal: OnSignal,
}

/// Replies are sent after the commit (an answer means "on disk").
enum Answer {
    Claimed(Reply<Vec<Claimed>>, Vec<Claimed>),
    Finished(Reply<()>, Result<(), StoreError>),
    Released(Reply<usize>, usize),
}

impl LedgerThread {
    fn run(&mut self, rx: &mpsc::Receiver<Request>) {
        let renew_every = (self.config.lease / 3).max(Duration::from_millis(50));
        let mut next_renew = Instant::now() + renew_every;
        loop {
            let wait = next_renew.saturating_duration_since(Instant::now());
            let mut batch = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    if matches!(first, Request::Event(_)) {
                        std::thread::sleep(LINGER);
                    }
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let renew = Instant::now() >= next_renew;
            if renew {
                next_renew = Instant::now() + renew_every;
            }
            self.batch(batch, renew);
        }
        let _ = self.conn.execute(
            "UPDATE workers SET status = ?4, current_runs = 0, heartbeat_ms = ?3
             WHERE worker_id = ?1 AND pid = ?2",
            params![
                self.config.worker_id,
                std::process::id(),
                now_ms(),
                WorkerState::Stopped.as_str()
            ],
        );
    }

    fn batch(&mut self, batch: Vec<Request>, renew: bool) {
        let mut answers = Vec::new();
        let mut signals = Vec::new();
        let mut claimed_now = Vec::new();
        let failed = self
            .write(batch, renew, &mut answers, &mut signals, &mut claimed_now)
            .err()
            .map(std::sync::Arc::new);
        if let Some(e) = &failed {
            // Nothing of this batch is on disk: its claims are void.
            for run in &claimed_now {
                self.held.remove(run);
            }
            for answer in answers {
                let error = || StoreError::Batch(std::sync::Arc::clone(e));
                match answer {
                    Answer::Claimed(reply, _) => drop(reply.send(Err(error()))),
                    Answer::Finished(reply, _) => drop(reply.send(Err(error()))),
                    Answer::Released(reply, _) => drop(reply.send(Err(error()))),
                }
            }
            return;
        }
        // Signals first: whoever waits on an answer sees what the batch found.
        for (run, signal) in signals {
            (self.on_signal)(&run, signal);
        }
        for answer in answers {
            match answer {
                Answer::Claimed(reply, claimed) => drop(reply.send(Ok(claimed))),
                Answer::Finished(reply, result) => drop(reply.send(result)),
                Answer::Released(reply, n) => drop(reply.send(Ok(n))),
            }
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one transaction: renewals, then each request kind in order, then versions"
    )]
    fn write(
        &mut self,
        batch: Vec<Request>,
        renew: bool,
        answers: &mut Vec<Answer>,
        signals: &mut Vec<(String, Signal)>,
        claimed_now: &mut Vec<String>,
    ) -> Result<(), rusqlite::Error> {
        let now = now_ms();
        let LedgerThread {
            conn, config, held, ..
        } = self;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut checked: HashMap<String, bool> = HashMap::new();
        if renew {
            let runs: Vec<String> = held
                .iter()
                .filter(|(_, h)| !h.finished && !h.fenced)
                .map(|(run, _)| run.clone())
                .collect();
            for run in runs {
                if check(&tx, held, &run, now, signals)? {
                    let lease = i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX);
                    tx.prepare_cached(
                        "UPDATE worker_queue SET lease_until = ?3 WHERE run_id = ?1 AND lease_epoch = ?2",
                    )?
                    .execute(params![run, held[&run].epoch, now.saturating_add(lease)])?;
                    checked.insert(run, true);
                }
            }
        }
        let mut touched: Vec<String> = Vec::new();
        for request in batch {
            match request {
                Request::Claim { max, reply } => {
                    // A wake-up may be a cancel request: look at what is held first.
                    let runs: Vec<String> = held
                        .iter()
                        .filter(|(_, h)| !h.finished && !h.fenced)
                        .map(|(run, _)| run.clone())
                        .collect();
                    for run in runs {
                        usable(&tx, held, &run, now, &mut checked, signals)?;
                    }
                    let claimed = claim(&tx, held, config, max, now)?;
                    for c in &claimed {
                        checked.insert(c.lease.run_id.clone(), true);
                        claimed_now.push(c.lease.run_id.clone());
                    }
                    answers.push(Answer::Claimed(reply, claimed));
                }
                Request::Event(event) => {
                    let run = event.run_id.as_str().to_owned();
                    if !usable(&tx, held, &run, now, &mut checked, signals)? {
                        continue;
                    }
                    let Some(held) = held.get_mut(&run) else {
                        continue;
                    };
                    if let EventKind::RunFinished {
                        outcome,
                        passed,
                        failed,
                        skipped,
                        duration_ms,
                    } = &event.kind
                    {
                        let status = outcome.as_str();
                        tx.prepare_cached(
                            "UPDATE dag_runs SET status = ?2, passed = ?3, failed = ?4, skipped = ?5, finished_at = ?6, duration_ms = ?7 WHERE run_id = ?1",
                        )?
                        .execute(params![run, status, count(*passed), count(*failed), count(*skipped), event.ts.to_string(), i64::try_from(*duration_ms).unwrap_or(i64::MAX)])?;
                        end(&tx, &run, &config.worker_id)?;
                        held.finished = true;
                    } else {
                        apply(
                            &tx,
                            &event,
                            &mut held.seq,
                            &mut held.position,
                            Attempts::Count,
                        )
                        .map_err(into_sqlite)?;
                    }
                    touched.push(run);
                }
                Request::Outputs { run_id, task, json } => {
                    if usable(&tx, held, &run_id, now, &mut checked, signals)? {
                        tx.prepare_cached(
                            "UPDATE task_executions SET output = ?3 WHERE run_id = ?1 AND task_id = ?2",
                        )?
                        .execute(params![run_id, task, json])?;
                        touched.push(run_id);
                    }
                }
                Request::Fail { run_id, error } => {
                    if usable(&tx, held, &run_id, now, &mut checked, signals)? {
                        tx.prepare_cached(
                            "UPDATE dag_runs SET status = ?4, error = ?2, finished_at = ?3 WHERE run_id = ?1",
                        )?
                        .execute(params![
                            run_id,
                            error,
                            jiff::Timestamp::now().to_string(),
                            RunStatus::Failed.as_str()
                        ])?;
                        end(&tx, &run_id, &config.worker_id)?;
                        if let Some(h) = held.get_mut(&run_id) {
                            h.finished = true;
                        }
                        touched.push(run_id);
                    }
                }
                Request::Finish { run_id, reply } => {
                    let result = match held.remove(&run_id) {
                        Some(h) if h.finished && !h.fenced => Ok(()),
                        _ => Err(StoreError::Fenced(run_id)),
                    };
                    answers.push(Answer::Finished(reply, result));
                }
                Request::Release { reply } => {
                    let mut released = 0;
                    for (run, h) in held.iter_mut() {
                        if h.finished || h.fenced {
                            continue;
                        }
                        released += tx
                            .prepare_cached(
                                "UPDATE worker_queue SET status = ?3, lease_until = NULL
                                 WHERE run_id = ?1 AND lease_epoch = ?2 AND status = ?4",
                            )?
                            .execute(params![
                                run,
                                h.epoch,
                                QueueState::Queued.as_str(),
                                QueueState::Leased.as_str()
                            ])?;
                        tx.prepare_cached(
                            "UPDATE dag_runs SET status = CASE status WHEN ?2 THEN status ELSE ?3 END,
                               version = version + 1 WHERE run_id = ?1",
                        )?
                        .execute(params![
                            run,
                            RunStatus::Cancelling.as_str(),
                            RunStatus::Queued.as_str()
                        ])?;
                        h.fenced = true;
                    }
                    answers.push(Answer::Released(reply, released));
                }
            }
        }
        touched.sort();
        touched.dedup();
        for run in touched {
            if let Some(h) = held.get_mut(&run) {
                // Compare-and-set: moves on only from the version this worker last saw.
                let moved = tx
                    .prepare_cached(
                        "UPDATE dag_runs SET version = version + 1 WHERE run_id = ?1 AND version = ?2",
                    )?
                    .execute(params![run, h.version])?;
                if moved == 1 {
                    h.version += 1;
                }
            }
        }
        let busy = held.values().filter(|h| !h.finished).count();
        tx.prepare_cached(
            "UPDATE workers SET status = ?2, current_runs = ?3, heartbeat_ms = ?4 WHERE worker_id = ?1",
        )?
        .execute(params![
            config.worker_id,
            if busy > 0 {
                WorkerState::Busy
            } else {
                WorkerState::Idle
            }
            .as_str(),
            count(busy),
            now
        ])?;
        tx.commit()
    }
}

fn claim(
    tx: &Connection,
    held: &mut HashMap<String, Held>,
    config: &LedgerConfig,
    max: usize,
    now: i64,
) -> Result<Vec<Claimed>, rusqlite::Error> {
    let mut claimed = Vec::new();
    while claimed.len() < max {
        let Some(mut c) = claim_in(
            tx,
            &config.worker_id,
            config.node_id.as_deref(),
            now,
            config.lease,
        )
        .map_err(into_sqlite)?
        else {
            break;
        };
        let run_id = c.lease.run_id.clone();
        let run = run_id.as_str();
        let status = tx
            .prepare_cached("SELECT status FROM dag_runs WHERE run_id = ?1")?
            .query_row([run], |r| crate::status::run_status(r, 0))?;
        if status == RunStatus::Cancelling {
            // Cancelled while nobody held it: it ends here, without running.
            tx.prepare_cached(
                "UPDATE dag_runs SET status = ?3, version = version + 1, finished_at = ?2 WHERE run_id = ?1",
            )?
            .execute(params![
                run,
                jiff::Timestamp::now().to_string(),
                RunStatus::Cancelled.as_str()
            ])?;
            tx.prepare_cached(&CANCEL_TASKS)?
                .execute(params![run, TaskState::Cancelled.as_str()])?;
            end(tx, run, &config.worker_id)?;
            continue;
        }
        if c.abandoned {
            // Its worker died with these running: each such attempt failed. Whether the
            // task gets another is its retry policy's call, made by the new holder.
            c.died_in = tx
                .prepare_cached(
                    "SELECT task_id, attempt FROM task_executions WHERE run_id = ?1 AND status = ?2 ORDER BY position",
                )?
                .query_map(params![run, TaskState::Running.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            tx.prepare_cached(
                "UPDATE task_executions SET status = ?4, error = ?2, finished_at = ?3 WHERE run_id = ?1 AND status = ?5",
            )?
            .execute(params![
                run,
                DIED,
                jiff::Timestamp::now().to_string(),
                TaskState::Failed.as_str(),
                TaskState::Running.as_str()
            ])?;
        } else if c.reclaimed {
            // Handed back by a worker that stopped (and killed its tasks): they start again.
            tx.prepare_cached(
                "UPDATE task_executions SET status = ?2 WHERE run_id = ?1 AND status = ?3",
            )?
            .execute(params![
                run,
                TaskState::Pending.as_str(),
                TaskState::Running.as_str()
            ])?;
        }
        let (version, seq, position): (i64, i64, i64) = tx
            .prepare_cached(
                "SELECT version,
                       (SELECT coalesce(max(seq), 0) FROM task_logs WHERE run_id = ?1),
                       (SELECT coalesce(max(position), 0) FROM task_executions WHERE run_id = ?1)
                     FROM dag_runs WHERE run_id = ?1",
            )?
            .query_row([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        held.insert(
            run.to_owned(),
            Held {
                epoch: c.lease.epoch,
                version,
                seq,
                position,
                fenced: false,
                cancel_signalled: false,
                finished: false,
            },
        );
        claimed.push(c);
    }
    Ok(claimed)
}

/// Whether a run's records may be written in this batch (checked once per batch).
fn usable(
    tx: &Connection,
    held: &mut HashMap<String, Held>,
    run: &str,
    now: i64,
    checked: &mut HashMap<String, bool>,
    signals: &mut Vec<(String, Signal)>,
) -> Result<bool, rusqlite::Error> {
    if let Some(ok) = checked.get(run) {
        return Ok(*ok);
    }
    let ok = check(tx, held, run, now, signals)?;
    checked.insert(run.to_owned(), ok);
    Ok(ok)
}

/// Checks the fence (same epoch, still leased, not expired) and notices changes made by
/// others (the version moved); returns whether the run may still be written.
fn check(
    tx: &Connection,
    held: &mut HashMap<String, Held>,
    run: &str,
    now: i64,
    signals: &mut Vec<(String, Signal)>,
) -> Result<bool, rusqlite::Error> {
    let Some(h) = held.get_mut(run) else {
        return Ok(false);
    };
    if h.fenced {
        return Ok(false);
    }
    let row: Option<(i64, String, Option<i64>, RunStatus, i64)> = tx
        .prepare_cached(
            "SELECT w.lease_epoch, w.status, w.lease_until, r.status, r.version
             FROM worker_queue w JOIN dag_runs r USING (run_id) WHERE w.run_id = ?1",
        )?
        .query_row([run], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                crate::status::run_status(r, 3)?,
                r.get(4)?,
            ))
        })
        .optional()?;
    let holds = row.as_ref().is_some_and(|(epoch, status, until, _, _)| {
        *epoch == h.epoch
            && if h.finished {
                // Its end is committed; what remains to write (outputs) belongs to it.
                QueueState::parse(status) == Some(QueueState::Done)
            } else {
                QueueState::parse(status) == Some(QueueState::Leased)
                    && until.is_some_and(|u| u >= now)
            }
    });
    if !holds {
        h.fenced = true;
        signals.push((run.to_owned(), Signal::Fenced));
        return Ok(false);
    }
    if let Some((_, _, _, status, version)) = row
        && version != h.version
    {
        h.version = version;
        if status == RunStatus::Cancelling && !h.cancel_signalled {
            h.cancel_signalled = true;
            signals.push((run.to_owned(), Signal::Cancel));
        }
    }
    Ok(true)
}

/// The queue row of an ended run, and the worker's count.
fn end(tx: &Connection, run: &str, worker_id: &str) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("UPDATE worker_queue SET status = ?2, lease_until = NULL WHERE run_id = ?1")?
        .execute(params![run, QueueState::Done.as_str()])?;
    tx.prepare_cached("UPDATE workers SET runs_done = runs_done + 1 WHERE worker_id = ?1")?
        .execute([worker_id])?;
    Ok(())
}

fn into_sqlite(e: StoreError) -> rusqlite::Error {
    match e {
        StoreError::Query(e) => e,
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Queue, Submission};
    use cascade_plan::{RunId, RunOutcome, TaskId};
    use std::sync::{Arc, Mutex};

    type Signals = Arc<Mutex<Vec<(String, Signal)>>>;

    /// The ledger configuration of the global scope's worker (a 30 s lease).
    fn global_worker() -> LedgerConfig {
        LedgerConfig {
            worker_id: "worker-global".into(),
            scope: "global".into(),
            node_id: None,
            lease: Duration::from_secs(30),
        }
    }

    fn setup(runs: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, Ledger, Signals) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cascade.db");
        let mut q = Queue::open(&db).unwrap();
        for run in runs {
            q.submit(&Submission {
                dag_id: "d".into(),
                run_id: (*run).into(),
                definition: serde_json::json!({"tasks": [{"id": "a", "run": "true"}]}),
                scope: cascade_spec::Scope::Global,
                target_node: None,
                priority: cascade_spec::dag::Priority::Normal,
                trigger: "api".into(),
                source: None,
            })
            .unwrap();
        }
        let signals: Signals = Arc::default();
        let sink = Arc::clone(&signals);
        let ledger = Ledger::start(&db, global_worker(), move |run, signal| {
            sink.lock().unwrap().push((run.to_owned(), signal));
        })
        .unwrap();
        (dir, db, ledger, signals)
    }

    fn event(run: &str, kind: EventKind) -> Event {
        Event {
            run_id: RunId::parse(run).unwrap(),
            ts: jiff::Timestamp::now(),
            kind,
        }
    }

    fn task_events(run: &str) -> Vec<Event> {
        let task = TaskId::parse("a").unwrap();
        vec![
            event(
                run,
                EventKind::TaskPending {
                    task: task.clone(),
                    label: None,
                },
            ),
            event(
                run,
                EventKind::TaskStarted {
                    task: task.clone(),
                    attempt: 1,
                },
            ),
            event(
                run,
                EventKind::TaskFinished {
                    task,
                    state: TaskState::Succeeded,
                    attempt: 1,
                    exit_code: Some(0),
                    duration_ms: 1,
                    error: None,
                },
            ),
            event(
                run,
                EventKind::RunFinished {
                    outcome: RunOutcome::Succeeded,
                    passed: 1,
                    failed: 0,
                    skipped: 0,
                    duration_ms: 2,
                },
            ),
        ]
    }

    /// The run's status, its queue row's state and its tasks' highest attempt, as
    /// stored. The run's word must be one [`RunStatus::parse`] takes: a current word,
    /// not one of an earlier version (which only `read` accepts).
    fn status(db: &Path, run: &str) -> (RunStatus, String, i64) {
        let conn = db::open(db).unwrap();
        let (word, queue, attempt): (String, String, i64) = conn.query_row(
            "SELECT r.status, w.status, (SELECT coalesce(max(attempt), 0) FROM task_executions t WHERE t.run_id = r.run_id)
             FROM dag_runs r JOIN worker_queue w USING (run_id) WHERE r.run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
        let status = RunStatus::parse(&word)
            .unwrap_or_else(|| panic!("run {run} stored `{word}`, not a run status"));
        (status, queue, attempt)
    }

    /// The run's task states as stored, in plan order, each a word [`TaskState::parse`]
    /// takes.
    fn task_states(db: &Path, run: &str) -> Vec<TaskState> {
        let conn = db::open(db).unwrap();
        let words: Vec<String> = conn
            .prepare("SELECT status FROM task_executions WHERE run_id = ?1 ORDER BY position")
            .unwrap()
            .query_map([run], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        words
            .iter()
            .map(|w| {
                TaskState::parse(w).unwrap_or_else(|| panic!("run {run} stored task state `{w}`"))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_claimed_run_is_recorded_and_finished() {
        let (_dir, db, ledger, signals) = setup(&["1-a", "1-b"]);
        assert_eq!(status(&db, "1-a"), (RunStatus::Queued, "queued".into(), 0));
        let claimed = ledger.claim(4).await.unwrap();
        assert_eq!(claimed.len(), 2, "both runs claimed in one go");
        assert_eq!(status(&db, "1-a"), (RunStatus::Running, "leased".into(), 0));
        let events = task_events("1-a");
        ledger.record(&events[0]);
        ledger.record(&events[1]);
        // A claim is answered after the batch that holds the events before it.
        assert!(ledger.claim(1).await.unwrap().is_empty());
        assert_eq!(task_states(&db, "1-a"), [TaskState::Running]);
        for e in &events[2..] {
            ledger.record(e);
        }
        ledger.finish("1-a").await.unwrap();
        assert_eq!(status(&db, "1-a"), (RunStatus::Succeeded, "done".into(), 1));
        assert_eq!(task_states(&db, "1-a"), [TaskState::Succeeded]);
        assert_eq!(status(&db, "1-b").0, RunStatus::Running);
        assert!(signals.lock().unwrap().is_empty());
        ledger.close();
        let conn = db::open(&db).unwrap();
        let (state, done): (String, i64) = conn
            .query_row(
                "SELECT status, runs_done FROM workers WHERE worker_id = 'worker-global'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((state.as_str(), done), ("stopped", 1));
    }

    #[tokio::test]
    async fn a_run_taken_over_by_another_worker_is_fenced_and_nothing_more_is_written() {
        let (_dir, db, ledger, signals) = setup(&["1-a"]);
        ledger.claim(1).await.unwrap();
        // Another worker took it over (its claim bumped the epoch).
        db::open(&db)
            .unwrap()
            .execute(
                "UPDATE worker_queue SET lease_epoch = lease_epoch + 1 WHERE run_id = '1-a'",
                [],
            )
            .unwrap();
        for e in task_events("1-a") {
            ledger.record(&e);
        }
        assert!(matches!(
            ledger.finish("1-a").await,
            Err(StoreError::Fenced(_))
        ));
        assert_eq!(
            status(&db, "1-a"),
            (RunStatus::Running, "leased".into(), 0),
            "no event of the fenced worker was written"
        );
        assert_eq!(
            signals.lock().unwrap().as_slice(),
            &[("1-a".to_owned(), Signal::Fenced)]
        );
    }

    #[tokio::test]
    async fn a_cancel_through_the_queue_is_noticed_by_its_version_and_signalled() {
        let (_dir, db, ledger, signals) = setup(&["1-a"]);
        ledger.claim(1).await.unwrap();
        Queue::open(&db).unwrap().cancel("1-a").unwrap();
        let mut events = task_events("1-a");
        events.truncate(2);
        for e in &events {
            ledger.record(e);
        }
        // A claim is answered after the batch that holds the events before it.
        assert!(ledger.claim(1).await.unwrap().is_empty());
        assert_eq!(
            signals.lock().unwrap().as_slice(),
            &[("1-a".to_owned(), Signal::Cancel)]
        );
        assert_eq!(
            status(&db, "1-a"),
            (RunStatus::Cancelling, "leased".into(), 1)
        );
        assert_eq!(task_states(&db, "1-a"), [TaskState::Running]);
        // The worker stops the run and records its end.
        let task = TaskId::parse("a").unwrap();
        ledger.record(&event(
            "1-a",
            EventKind::TaskFinished {
                task,
                state: TaskState::Cancelled,
                attempt: 1,
                exit_code: None,
                duration_ms: 1,
                error: Some("cancelled".into()),
            },
        ));
        ledger.record(&event(
            "1-a",
            EventKind::RunFinished {
                outcome: RunOutcome::Cancelled,
                passed: 0,
                failed: 0,
                skipped: 0,
                duration_ms: 2,
            },
        ));
        ledger.finish("1-a").await.unwrap();
        assert_eq!(status(&db, "1-a"), (RunStatus::Cancelled, "done".into(), 1));
        assert_eq!(task_states(&db, "1-a"), [TaskState::Cancelled]);
    }

    #[tokio::test]
    async fn a_run_cancelled_while_handed_back_ends_cancelled_at_its_next_claim() {
        let (_dir, db, ledger, _signals) = setup(&["1-a"]);
        ledger.claim(1).await.unwrap();
        let events = task_events("1-a");
        ledger.record(&events[0]);
        ledger.record(&events[1]);
        Queue::open(&db).unwrap().cancel("1-a").unwrap();
        assert_eq!(ledger.release().await.unwrap(), 1);
        ledger.close();
        assert_eq!(
            status(&db, "1-a"),
            (RunStatus::Cancelling, "queued".into(), 1),
            "handed back, the cancel is kept"
        );
        let second = Ledger::start(&db, global_worker(), |_, _| {}).unwrap();
        assert!(
            second.claim(1).await.unwrap().is_empty(),
            "a cancelled run is not handed out"
        );
        assert_eq!(status(&db, "1-a"), (RunStatus::Cancelled, "done".into(), 1));
        assert_eq!(task_states(&db, "1-a"), [TaskState::Cancelled]);
    }

    #[tokio::test]
    async fn a_run_whose_worker_died_records_its_running_task_as_a_failed_attempt() {
        let (_dir, db, ledger, _signals) = setup(&["1-a"]);
        let first = ledger.claim(1).await.unwrap();
        assert!(!first[0].abandoned && first[0].died_in.is_empty());
        let events = task_events("1-a");
        ledger.record(&events[0]);
        ledger.record(&events[1]);
        // The worker dies: nothing is released, and its lease runs out.
        ledger.close();
        Connection::open(&db)
            .unwrap()
            .execute("UPDATE worker_queue SET lease_until = 0", [])
            .unwrap();
        let second = Ledger::start(&db, global_worker(), |_, _| {}).unwrap();
        let claimed = second.claim(1).await.unwrap();
        assert!(claimed[0].reclaimed && claimed[0].abandoned);
        assert_eq!(claimed[0].died_in, [("a".to_owned(), 1)]);
        let error: String = Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT error FROM task_executions WHERE run_id = '1-a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(task_states(&db, "1-a"), [TaskState::Failed]);
        assert_eq!(error, DIED);
    }

    #[tokio::test]
    async fn released_runs_go_back_to_the_queue_and_a_reclaim_counts_attempts_on() {
        let (_dir, db, ledger, _signals) = setup(&["1-a"]);
        ledger.claim(1).await.unwrap();
        let events = task_events("1-a");
        ledger.record(&events[0]);
        ledger.record(&events[1]);
        assert_eq!(ledger.release().await.unwrap(), 1);
        ledger.close();
        assert_eq!(status(&db, "1-a"), (RunStatus::Queued, "queued".into(), 1));
        let second = Ledger::start(&db, global_worker(), |_, _| {}).unwrap();
        let claimed = second.claim(1).await.unwrap();
        assert!(claimed[0].reclaimed && !claimed[0].abandoned);
        assert_eq!(
            task_states(&db, "1-a"),
            [TaskState::Pending],
            "handed back by a worker that stopped: its task starts again"
        );
        for e in task_events("1-a") {
            second.record(&e);
        }
        second.finish("1-a").await.unwrap();
        assert_eq!(
            status(&db, "1-a"),
            (RunStatus::Succeeded, "done".into(), 2),
            "the task ran twice: attempt 2"
        );
    }
}
