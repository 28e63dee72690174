//! The durable DAG queue of the server tier: submissions (group-committed), per-worker
//! claims with leases, fencing, and optimistic locking on runs.
//!
//! A submission is acknowledged only after its transaction committed (`synchronous=FULL`),
//! so a `202 Accepted` survives a crash. Many waiting submissions share one
//! `BEGIN IMMEDIATE … COMMIT` (one fsync). A claim bumps the row's `lease_epoch`; a worker
//! may renew or finish only with the epoch it claimed and before its lease ran out, so a
//! worker whose lease was taken over cannot commit (fencing).

use crate::db;
use crate::error::StoreError;
use crate::status;
use cascade_plan::{RunOutcome, RunStatus};
use cascade_spec::Scope;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

/// One DAG to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub dag_id: String,
    pub run_id: String,
    /// The submitted DAG (or pipeline and inputs) as JSON.
    pub definition: serde_json::Value,
    pub scope: Scope,
    pub target_node: Option<String>,
    /// Higher runs first.
    pub priority: cascade_spec::dag::Priority,
    pub trigger: String,
    /// Where it came from, shown as the run's `source` (`acme/app@<sha>` for a pipeline
    /// submitted at a commit of a registered repository); `None` otherwise.
    pub source: Option<String>,
}

/// What a committed submission got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub run_id: String,
    pub worker_id: String,
}

/// A claimed run: the right to work on it until `until_ms`, with fencing `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    pub worker_id: String,
    pub epoch: i64,
    pub until_ms: i64,
}

/// A claimed run and what its worker needs to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub lease: Lease,
    pub dag_id: String,
    /// The submission (DAG JSON or `{"pipeline", "inputs"}`) as committed.
    pub definition: String,
    /// Whether an earlier worker held it (its lease ran out or was released).
    pub reclaimed: bool,
    /// Its earlier worker's lease ran out while it held the run (the worker died or hung,
    /// rather than handing the run back): what it was running is a failed attempt.
    pub abandoned: bool,
    /// Tasks that were running when the run was abandoned, with the attempts they have
    /// used (the last one now recorded as failed); filled in by the claim.
    pub died_in: Vec<(String, u32)>,
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// It was still queued: it is now `cancelled` and will not run.
    Dequeued,
    /// A worker runs it: it is now `cancelling`; the worker stops it and records `cancelled`.
    Requested,
    /// It had already ended with this status.
    AlreadyEnded(RunStatus),
}

/// The queue, over one connection.
#[derive(Debug)]
pub struct Queue {
    conn: Connection,
    /// The writer's checkpointer (see [`Queue::open_writer`]); `None` for other queues,
    /// whose commits checkpoint as SQLite does by default.
    checkpointer: Option<crate::Checkpointer>,
    /// Applied to definitions and event payloads before they are written.
    mask: Option<crate::Mask>,
}

/// A row's state in `worker_queue`: `queued` (waiting for its worker), `leased` (a
/// worker holds it) or `done` (it ended, or was cancelled before it started). The
/// queue's own words, not a run's status: a `cancelling` run is still `leased`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueState {
    Queued,
    Leased,
    Done,
}

impl QueueState {
    const ALL: [QueueState; 3] = [QueueState::Queued, QueueState::Leased, QueueState::Done];

    /// The word in `worker_queue.status`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Leased => "leased",
            QueueState::Done => "done",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The condition of the partial index `worker_queue_open` (migration 003) on `column`,
/// written into every statement that looks for open rows: SQLite uses a partial index
/// only when the query's WHERE contains its condition. It is spliced as text, not bound:
/// SQLite would match a parameter against the index's `'done'` only by preparing the
/// statement again at every bind, undoing `prepare_cached`.
fn open_rows(column: &str) -> String {
    format!(
        "{column} != {}",
        status::sql_literal(QueueState::Done.as_str())
    )
}

/// Runs waiting per worker: queued or leased.
static DEPTH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT worker_id, count(*) FROM worker_queue WHERE {} GROUP BY worker_id ORDER BY worker_id",
        open_rows("status")
    )
});

/// Workers with runs to take on a node (`?1` node, `?2` now, `?3` queued, `?4` leased).
static WAITING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT worker_id, max(scope), count(*) FROM worker_queue
         WHERE {} AND (status = ?3 OR (status = ?4 AND lease_until < ?2))
           AND (target_node IS NULL OR target_node IS ?1)
         GROUP BY worker_id ORDER BY worker_id",
        open_rows("status")
    )
});

/// The next run a worker may take (`?1` worker, `?2` now, `?3` node, `?4` leased, `?5`
/// queued).
static NEXT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT w.run_id, w.lease_epoch, r.dag_id, coalesce(r.definition, d.tasks), w.status = ?4
         FROM worker_queue w JOIN dag_runs r USING (run_id) LEFT JOIN dag_definitions d ON d.dag_id = r.dag_id
         WHERE w.worker_id = ?1 AND {} AND (w.status = ?5 OR (w.status = ?4 AND w.lease_until < ?2))
           AND (w.target_node IS NULL OR w.target_node IS ?3)
         ORDER BY w.priority DESC, w.created_at, w.run_id LIMIT 1",
        open_rows("w.status")
    )
});

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Queue {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: db::open(path)?,
            checkpointer: None,
            mask: None,
        })
    }

    /// The queue of the process's acknowledging writer (the intake thread), whose
    /// commits callers wait for: it polls for the write lock every few tens of
    /// microseconds instead of SQLite's 1, 2, 5, 10 ms back-off (see
    /// [`db::poll_for_write_lock`]), and its commits never run a WAL checkpoint: a
    /// [`crate::Checkpointer`] of its own does, off this path. Still `synchronous=FULL`:
    /// a commit is on disk when it returns.
    pub fn open_writer(path: &Path) -> Result<Self, StoreError> {
        let conn = db::open(path)?;
        db::poll_for_write_lock(&conn)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Self {
            conn,
            checkpointer: Some(crate::Checkpointer::start(path)?),
            mask: None,
        })
    }

    /// From now on, every submission's definition and every event's payload is masked
    /// with `mask` before it is written.
    pub fn mask_with(&mut self, mask: crate::Mask) {
        self.mask = Some(mask);
    }

    /// Tells the checkpointer, if any, that the WAL grew.
    fn wrote(&self) {
        if let Some(c) = &self.checkpointer {
            c.nudge();
        }
    }

    /// Queues one submission; returns after its commit.
    pub fn submit(&mut self, submission: &Submission) -> Result<Enqueued, StoreError> {
        self.submit_batch(std::slice::from_ref(submission))
            .pop()
            .unwrap_or(Err(StoreError::WriterGone))
    }

    /// Queues many submissions in one transaction (group commit). Each gets its own
    /// result: a conflict fails that submission only.
    pub fn submit_batch(
        &mut self,
        submissions: &[Submission],
    ) -> Vec<Result<Enqueued, StoreError>> {
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => return batch_failed(submissions.len(), e),
        };
        let mut results = Vec::with_capacity(submissions.len());
        for s in submissions {
            // A savepoint per submission, so one conflict does not undo the others (a
            // dropped savepoint rolls back).
            let masked;
            let s = match &self.mask {
                Some(mask) => {
                    masked = Submission {
                        definition: mask.json(&s.definition),
                        ..s.clone()
                    };
                    &masked
                }
                None => s,
            };
            let result = tx.savepoint().map_err(StoreError::Query).and_then(|sp| {
                let enqueued = insert(&sp, s)?;
                sp.commit()?;
                Ok(enqueued)
            });
            results.push(result);
        }
        if let Err(e) = tx.commit() {
            return batch_failed(submissions.len(), e);
        }
        self.wrote();
        results
    }

    /// Stores many events in one transaction (group commit, as submissions); a
    /// delivery seen before is recognised, not stored twice.
    pub fn record_events(
        &mut self,
        events: &[crate::events::NewEvent],
    ) -> Result<Vec<crate::events::Recorded>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recorded = events
            .iter()
            .map(|e| match &self.mask {
                Some(mask) => crate::events::record_in(
                    &tx,
                    &crate::events::NewEvent {
                        payload: mask.json(&e.payload),
                        ..e.clone()
                    },
                ),
                None => crate::events::record_in(&tx, e),
            })
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        self.wrote();
        Ok(recorded)
    }

    /// Stores an event body for a NATS claim check.
    pub fn put_body(&mut self, body_id: &str, body: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO event_bodies (body_id, body, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![body_id, body, jiff::Timestamp::now().to_string()])?;
        self.wrote();
        Ok(())
    }

    /// Claims the next run for `worker_id` on `node` (runs aimed at another node are
    /// left alone): the highest priority, oldest queued row, or one whose lease ran out
    /// (its worker died). `None` when there is nothing to do.
    pub fn claim(
        &mut self,
        worker_id: &str,
        node: Option<&str>,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let claimed = claim_in(&tx, worker_id, node, now_ms, lease)?;
        tx.commit()?;
        Ok(claimed)
    }

    /// Extends a lease; fails if it ran out or was taken over.
    pub fn renew(
        &mut self,
        lease: &mut Lease,
        now_ms: i64,
        extend: Duration,
    ) -> Result<(), StoreError> {
        let until_ms = now_ms.saturating_add(millis(extend));
        let changed = self.conn.execute(
            "UPDATE worker_queue SET lease_until = ?3
             WHERE run_id = ?1 AND lease_epoch = ?2 AND status = ?5 AND lease_until >= ?4",
            params![
                lease.run_id,
                lease.epoch,
                until_ms,
                now_ms,
                QueueState::Leased.as_str()
            ],
        )?;
        if changed == 1 {
            lease.until_ms = until_ms;
            Ok(())
        } else {
            Err(StoreError::Fenced(lease.run_id.clone()))
        }
    }

    /// Marks a leased run done with its final status, if the lease still holds.
    pub fn finish(
        &mut self,
        lease: &Lease,
        now_ms: i64,
        outcome: RunOutcome,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE worker_queue SET status = ?4, lease_until = NULL
             WHERE run_id = ?1 AND lease_epoch = ?2 AND status = ?5 AND lease_until >= ?3",
            params![
                lease.run_id,
                lease.epoch,
                now_ms,
                QueueState::Done.as_str(),
                QueueState::Leased.as_str()
            ],
        )?;
        if changed != 1 {
            return Err(StoreError::Fenced(lease.run_id.clone()));
        }
        tx.execute(
            "UPDATE dag_runs SET status = ?2, version = version + 1, finished_at = ?3 WHERE run_id = ?1",
            params![
                lease.run_id,
                outcome.as_str(),
                jiff::Timestamp::now().to_string()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Sets a run's status if its version is still `expected` (optimistic locking);
    /// returns whether this update won.
    pub fn set_run_status(
        &mut self,
        run_id: &str,
        expected: i64,
        status: RunStatus,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE dag_runs SET status = ?3, version = version + 1 WHERE run_id = ?1 AND version = ?2",
            params![run_id, expected, status.as_str()],
        )?;
        Ok(changed == 1)
    }

    /// A run's status and version.
    pub fn run_status(&self, run_id: &str) -> Result<(RunStatus, i64), StoreError> {
        self.conn
            .query_row(
                "SELECT status, version FROM dag_runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((status::run_status(r, 0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoRun(run_id.to_owned()))
    }

    /// Cancels a run: at once if it is still queued, through its worker if one runs it.
    pub fn cancel(&mut self, run_id: &str) -> Result<Cancelled, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(RunStatus, Option<String>, Option<String>)> = tx
            .query_row(
                "SELECT r.status, w.status, r.backend FROM dag_runs r LEFT JOIN worker_queue w USING (run_id) WHERE r.run_id = ?1",
                [run_id],
                |r| Ok((status::run_status(r, 0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((run_status, queue_status, backend)) = row else {
            return Err(StoreError::NoRun(run_id.to_owned()));
        };
        let now = jiff::Timestamp::now().to_string();
        let request = |tx: &rusqlite::Transaction<'_>| {
            tx.execute(
                "UPDATE dag_runs SET status = ?2, version = version + 1 WHERE run_id = ?1",
                params![run_id, RunStatus::Cancelling.as_str()],
            )
        };
        let result = match queue_status.as_deref().map(QueueState::parse) {
            Some(Some(QueueState::Queued)) => {
                tx.execute(
                    "UPDATE worker_queue SET status = ?2, lease_until = NULL WHERE run_id = ?1",
                    params![run_id, QueueState::Done.as_str()],
                )?;
                tx.execute(
                    "UPDATE dag_runs SET status = ?3, version = version + 1, finished_at = ?2 WHERE run_id = ?1",
                    params![run_id, now, RunStatus::Cancelled.as_str()],
                )?;
                Cancelled::Dequeued
            }
            Some(Some(QueueState::Leased)) if run_status != RunStatus::Cancelling => {
                request(&tx)?;
                Cancelled::Requested
            }
            Some(Some(QueueState::Leased)) => Cancelled::Requested,
            // On another backend (Argo): its watcher stops it there and records the end.
            None if backend.is_some()
                && matches!(run_status, RunStatus::Queued | RunStatus::Running) =>
            {
                request(&tx)?;
                Cancelled::Requested
            }
            None if backend.is_some() && run_status == RunStatus::Cancelling => {
                Cancelled::Requested
            }
            _ => Cancelled::AlreadyEnded(run_status),
        };
        tx.commit()?;
        Ok(result)
    }

    /// How many runs wait for each worker (queued or leased).
    pub fn depth(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&DEPTH)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Workers with runs waiting for them on `node` (queued, or leased by a worker whose
    /// lease ran out), with their scope and how many: what the pool must start.
    pub fn waiting(&self, node: Option<&str>, now_ms: i64) -> Result<Vec<Waiting>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&WAITING)?;
        let rows = stmt.query_map(
            params![
                node,
                now_ms,
                QueueState::Queued.as_str(),
                QueueState::Leased.as_str()
            ],
            |r| {
                Ok(Waiting {
                    worker_id: r.get(0)?,
                    scope: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    runs: r.get(2)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Runs waiting for one worker (see [`Queue::waiting`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub worker_id: String,
    /// The scope the worker serves (`project:proj-a`).
    pub scope: String,
    pub runs: i64,
}

/// One claim inside an open write transaction (shared by [`Queue`] and the ledger).
pub(crate) fn claim_in(
    tx: &Connection,
    worker_id: &str,
    node: Option<&str>,
    now_ms: i64,
    lease: Duration,
) -> Result<Option<Claimed>, StoreError> {
    let row: Option<(String, i64, String, Option<String>, bool)> = tx
        .prepare_cached(&NEXT)?
        .query_row(
            params![
                worker_id,
                now_ms,
                node,
                QueueState::Leased.as_str(),
                QueueState::Queued.as_str()
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((run_id, epoch, dag_id, definition, expired)) = row else {
        return Ok(None);
    };
    let until_ms = now_ms.saturating_add(millis(lease));
    tx.prepare_cached(
        "UPDATE worker_queue SET status = ?4, lease_until = ?2, lease_epoch = ?3 WHERE run_id = ?1",
    )?
    .execute(params![
        run_id,
        until_ms,
        epoch + 1,
        QueueState::Leased.as_str()
    ])?;
    // A cancel asked for while no worker held it is kept: the new holder sees it.
    tx.prepare_cached(
        "UPDATE dag_runs SET status = CASE status WHEN ?5 THEN status ELSE ?6 END,
           version = version + 1, worker_id = ?2, node_id = ?3,
           started_at = coalesce(started_at, ?4) WHERE run_id = ?1",
    )?
    .execute(params![
        run_id,
        worker_id,
        node,
        jiff::Timestamp::now().to_string(),
        RunStatus::Cancelling.as_str(),
        RunStatus::Running.as_str()
    ])?;
    Ok(Some(Claimed {
        lease: Lease {
            run_id,
            worker_id: worker_id.to_owned(),
            epoch: epoch + 1,
            until_ms,
        },
        dag_id,
        definition: definition.unwrap_or_default(),
        reclaimed: expired || epoch > 0,
        abandoned: expired,
        died_in: Vec::new(),
    }))
}

fn batch_failed(n: usize, e: rusqlite::Error) -> Vec<Result<Enqueued, StoreError>> {
    let e = std::sync::Arc::new(e);
    (0..n)
        .map(|_| Err(StoreError::Batch(std::sync::Arc::clone(&e))))
        .collect()
}

fn insert(tx: &Connection, s: &Submission) -> Result<Enqueued, StoreError> {
    let worker_id = s.scope.worker_id().to_string();
    // One worker, one node: a second target node for the same scope is a conflict.
    if let Some(node) = &s.target_node {
        let other: Option<String> = tx
            .query_row(
                "SELECT target_node FROM dag_definitions
                 WHERE scope_type = ?1 AND scope_id IS ?2 AND target_node IS NOT NULL AND target_node != ?3 LIMIT 1",
                params![s.scope.kind(), s.scope.id(), node],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(other) = other {
            return Err(StoreError::TargetConflict {
                worker_id,
                existing: other,
                requested: node.clone(),
            });
        }
    }
    let now = jiff::Timestamp::now().to_string();
    let definition = s.definition.to_string();
    tx.prepare_cached(
        "INSERT INTO dag_definitions (dag_id, tasks, scope_type, scope_id, target_node, priority, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (dag_id) DO UPDATE SET tasks = excluded.tasks, scope_type = excluded.scope_type,
           scope_id = excluded.scope_id, target_node = excluded.target_node, priority = excluded.priority",
    )?
    .execute(params![s.dag_id, definition, s.scope.kind(), s.scope.id(), s.target_node, s.priority.rank(), now])?;
    tx.prepare_cached(
        "INSERT INTO dag_runs (run_id, dag_id, trigger, status, definition, created_at, source) VALUES (?1, ?2, ?3, ?6, ?4, ?5, ?7)",
    )?
    .execute(params![s.run_id, s.dag_id, s.trigger, definition, now, RunStatus::Queued.as_str(), s.source])?;
    tx.prepare_cached(
        "INSERT INTO worker_queue (run_id, worker_id, status, priority, scope, target_node, created_at)
         VALUES (?1, ?2, ?7, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![s.run_id, worker_id, s.priority.rank(), s.scope.to_string(), s.target_node, now, QueueState::Queued.as_str()])?;
    Ok(Enqueued {
        run_id: s.run_id.clone(),
        worker_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(
        dag: &str,
        run: &str,
        scope: &str,
        node: Option<&str>,
        priority: i64,
    ) -> Submission {
        Submission {
            dag_id: dag.into(),
            run_id: run.into(),
            definition: serde_json::json!({"tasks": [{"id": "a", "run": "true"}]}),
            scope: Scope::parse(scope).unwrap(),
            target_node: node.map(Into::into),
            priority: cascade_spec::dag::Priority::from_rank(priority),
            trigger: "api".into(),
            source: None,
        }
    }

    fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&dir.path().join("q.db")).unwrap();
        (dir, q)
    }

    #[test]
    fn definitions_and_event_payloads_are_masked_before_they_are_written() {
        let (dir, mut q) = queue();
        let mut s = submission("d", "r1", "global", None, 1);
        s.definition = serde_json::json!({"tasks": [{"id": "a", "run": "echo", "env": {"K": "tok-s3cr3t-value"}}]});
        // Before a mask is set, a value is written as it came.
        q.submit(&s).unwrap();
        q.mask_with(crate::Mask::new(|t| t.replace("tok-s3cr3t-value", "***")));
        s.run_id = "r2".into();
        s.dag_id = "d2".into();
        q.submit(&s).unwrap();
        let event = crate::NewEvent {
            source: "dispatch".into(),
            delivery_id: "1:x:0".into(),
            kind: "repository_dispatch".into(),
            repo: None,
            task_id: Some("1".into()),
            event_type: Some("x".into()),
            payload: serde_json::json!({"client_payload": {"token": "tok-s3cr3t-value"}}),
        };
        q.record_events(&[event]).unwrap();
        let reader = crate::Reader::open(&dir.path().join("q.db")).unwrap();
        let (_, definition, _) = reader.dag("d2").unwrap();
        assert_eq!(definition["tasks"][0]["env"]["K"], "***");
        let (_, unmasked, _) = reader.dag("d").unwrap();
        assert_eq!(unmasked["tasks"][0]["env"]["K"], "tok-s3cr3t-value");
        let events = reader.events(Some("1"), 10).unwrap();
        assert_eq!(events[0].payload["client_payload"]["token"], "***");
        let raw: String = q
            .conn
            .query_row(
                "SELECT definition FROM dag_runs WHERE run_id = 'r2'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!raw.contains("tok-s3cr3t-value"), "{raw}");
    }

    #[test]
    fn the_writer_waits_for_the_lock_briefly_and_never_checkpoints_in_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let writer = Queue::open_writer(&path).unwrap();
        let auto: i64 = writer
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0);
        // Another connection holds the write lock for 30 ms: the writer gets it soon
        // after, rather than failing.
        let other = db::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            other.execute_batch("COMMIT").unwrap();
        });
        let mut writer = writer;
        writer
            .put_body("b", b"body")
            .expect("the lock was waited for");
        holder.join().unwrap();
    }

    #[test]
    fn a_committed_submission_survives_reopening_and_is_claimed_once() {
        let (dir, mut q) = queue();
        let e = q
            .submit(&submission("proj-a-nightly", "r1", "project:a", None, 1))
            .unwrap();
        assert_eq!(e.worker_id, "worker-project-a");
        drop(q);
        let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
        let lease = q
            .claim("worker-project-a", None, 1_000, Duration::from_secs(30))
            .unwrap()
            .unwrap()
            .lease;
        assert_eq!((lease.run_id.as_str(), lease.epoch), ("r1", 1));
        assert_eq!(
            q.claim("worker-project-a", None, 1_001, Duration::from_secs(30))
                .unwrap(),
            None
        );
        assert_eq!(
            q.claim("worker-project-b", None, 1_001, Duration::from_secs(30))
                .unwrap(),
            None,
            "other scopes see nothing"
        );
        q.finish(&lease, 2_000, RunOutcome::Succeeded).unwrap();
        assert_eq!(q.run_status("r1").unwrap().0, RunStatus::Succeeded);
        assert_eq!(q.depth().unwrap(), vec![]);
    }

    #[test]
    fn an_expired_lease_is_reclaimed_and_the_old_worker_is_fenced() {
        let (_dir, mut q) = queue();
        q.submit(&submission("d", "r1", "global", None, 1)).unwrap();
        let mut old = q
            .claim("worker-global", None, 1_000, Duration::from_millis(100))
            .unwrap()
            .unwrap()
            .lease;
        // Still held: nobody else gets it.
        assert_eq!(
            q.claim("worker-global", None, 1_050, Duration::from_millis(100))
                .unwrap(),
            None
        );
        // The holder died; past its lease another claim takes over with a new epoch.
        let new = q
            .claim("worker-global", None, 1_200, Duration::from_secs(30))
            .unwrap()
            .unwrap();
        assert!(new.reclaimed);
        assert_eq!(new.definition, r#"{"tasks":[{"id":"a","run":"true"}]}"#);
        let new = new.lease;
        assert_eq!(new.epoch, old.epoch + 1);
        assert!(matches!(
            q.renew(&mut old, 1_201, Duration::from_secs(30)),
            Err(StoreError::Fenced(_))
        ));
        assert!(matches!(
            q.finish(&old, 1_202, RunOutcome::Succeeded),
            Err(StoreError::Fenced(_))
        ));
        q.finish(&new, 1_300, RunOutcome::Succeeded).unwrap();
    }

    #[test]
    fn a_lease_that_ran_out_cannot_commit_even_if_nobody_took_it() {
        let (_dir, mut q) = queue();
        q.submit(&submission("d", "r1", "global", None, 1)).unwrap();
        let mut lease = q
            .claim("worker-global", None, 1_000, Duration::from_millis(100))
            .unwrap()
            .unwrap()
            .lease;
        q.renew(&mut lease, 1_050, Duration::from_millis(100))
            .unwrap();
        assert_eq!(lease.until_ms, 1_150);
        assert!(matches!(
            q.finish(&lease, 1_151, RunOutcome::Succeeded),
            Err(StoreError::Fenced(_))
        ));
    }

    #[test]
    fn a_run_aimed_at_a_node_is_claimed_only_there() {
        let (_dir, mut q) = queue();
        q.submit(&submission("d", "r1", "global", Some("node-2"), 1))
            .unwrap();
        assert_eq!(
            q.waiting(Some("node-1"), 0).unwrap(),
            vec![],
            "node-1 has nothing to start"
        );
        assert_eq!(
            q.claim("worker-global", Some("node-1"), 1, Duration::from_secs(1))
                .unwrap(),
            None
        );
        assert_eq!(
            q.waiting(Some("node-2"), 0).unwrap(),
            vec![Waiting {
                worker_id: "worker-global".into(),
                scope: "global".into(),
                runs: 1
            }]
        );
        let claimed = q
            .claim("worker-global", Some("node-2"), 1, Duration::from_secs(1))
            .unwrap()
            .unwrap();
        assert!(!claimed.reclaimed);
        assert_eq!(claimed.dag_id, "d");
    }

    #[test]
    fn cancelling_a_queued_run_dequeues_it_and_a_leased_one_asks_its_worker() {
        let (_dir, mut q) = queue();
        q.submit(&submission("d", "r1", "global", None, 1)).unwrap();
        q.submit(&submission("d", "r2", "global", None, 0)).unwrap();
        let lease = q
            .claim("worker-global", None, 1, Duration::from_mins(1))
            .unwrap()
            .unwrap()
            .lease;
        assert_eq!(lease.run_id, "r1");
        assert_eq!(q.cancel("r2").unwrap(), Cancelled::Dequeued);
        assert_eq!(q.run_status("r2").unwrap().0, RunStatus::Cancelled);
        assert_eq!(
            q.claim("worker-global", None, 2, Duration::from_mins(1))
                .unwrap(),
            None,
            "a cancelled run is never claimed"
        );
        let (_, before) = q.run_status("r1").unwrap();
        assert_eq!(q.cancel("r1").unwrap(), Cancelled::Requested);
        assert_eq!(
            q.run_status("r1").unwrap(),
            (RunStatus::Cancelling, before + 1)
        );
        q.finish(&lease, 3, RunOutcome::Cancelled).unwrap();
        assert_eq!(
            q.cancel("r1").unwrap(),
            Cancelled::AlreadyEnded(RunStatus::Cancelled)
        );
        assert!(matches!(q.cancel("nope"), Err(StoreError::NoRun(_))));
    }

    /// The statements that look for open queue rows name the partial index's condition,
    /// spliced from [`QueueState::Done`], and SQLite takes it: a bound word there, or a
    /// condition written differently, would have it scan every row ever queued.
    #[test]
    fn open_queue_rows_are_found_through_their_index() {
        let (_dir, q) = queue();
        for query in [&*DEPTH, &*WAITING, &*NEXT] {
            let plan = crate::db::query_plan(&q.conn, query);
            assert!(
                plan.iter()
                    .any(|step| step.contains("INDEX worker_queue_open")),
                "{query}: {plan:?}"
            );
        }
    }

    #[test]
    fn higher_priority_runs_first() {
        let (_dir, mut q) = queue();
        q.submit(&submission("low", "r1", "global", None, 0))
            .unwrap();
        q.submit(&submission("high", "r2", "global", None, 2))
            .unwrap();
        assert_eq!(
            q.claim("worker-global", None, 1, Duration::from_secs(1))
                .unwrap()
                .unwrap()
                .lease
                .run_id,
            "r2"
        );
    }

    #[test]
    fn the_same_worker_on_another_node_is_a_conflict_and_only_that_submission_fails() {
        let (_dir, mut q) = queue();
        q.submit(&submission(
            "proj-a-1",
            "r1",
            "project:a",
            Some("node-1"),
            1,
        ))
        .unwrap();
        let results = q.submit_batch(&[
            submission("proj-a-2", "r2", "project:a", Some("node-2"), 1),
            submission("proj-b-1", "r3", "project:b", Some("node-2"), 1),
        ]);
        match &results[0] {
            Err(StoreError::TargetConflict {
                worker_id,
                existing,
                requested,
            }) => {
                assert_eq!(
                    (worker_id.as_str(), existing.as_str(), requested.as_str()),
                    ("worker-project-a", "node-1", "node-2")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(results[1].as_ref().unwrap().worker_id, "worker-project-b");
        assert!(
            matches!(q.run_status("r2"), Err(StoreError::NoRun(_))),
            "the conflicting run was not stored"
        );
        assert_eq!(q.run_status("r3").unwrap().0, RunStatus::Queued);
    }

    #[test]
    fn fifty_concurrent_updates_with_one_version_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let mut q = Queue::open(&path).unwrap();
        q.submit(&submission("d", "r1", "global", None, 1)).unwrap();
        let (_, version) = q.run_status("r1").unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
        let threads: Vec<_> = (0..50)
            .map(|i| {
                let path = path.clone();
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let mut q = Queue::open(&path).unwrap();
                    barrier.wait();
                    let status = RunStatus::ALL[i % RunStatus::ALL.len()];
                    q.set_run_status("r1", version, status).unwrap()
                })
            })
            .collect();
        let wins = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(q.run_status("r1").unwrap().1, version + 1);
    }
}
