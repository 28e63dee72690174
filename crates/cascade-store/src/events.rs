//! The event log of the `GitOps` loop: webhook deliveries, dispatches and cron ticks, each
//! stored once per (source, delivery id), then taken by the orchestrator in order. Also
//! what the orchestrator keeps about what it started: run origins, dispatch routes,
//! circuit breakers, commit statuses reported, and cron ticks fired.

use crate::error::StoreError;
use crate::status;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use std::path::Path;
use std::sync::LazyLock;

/// An event to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `github`, `gitea`, `gitlab`, `dispatch`, `cron`.
    pub source: String,
    /// Unique per source: the forge's delivery id, a dispatch's id, a cron tick.
    pub delivery_id: String,
    /// `push`, `tag`, `pull_request`, `repository_dispatch`, `workflow_dispatch`,
    /// `schedule`, `ping`.
    pub kind: String,
    pub repo: Option<String>,
    pub task_id: Option<String>,
    pub event_type: Option<String>,
    pub payload: serde_json::Value,
}

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New(i64),
    /// The same (source, delivery id) was stored before, as this event.
    Duplicate(i64),
}

impl Recorded {
    pub fn event_id(self) -> i64 {
        match self {
            Recorded::New(id) | Recorded::Duplicate(id) => id,
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub event_id: i64,
    pub source: String,
    pub delivery_id: String,
    pub kind: String,
    pub repo: Option<String>,
    pub task_id: Option<String>,
    pub event_type: Option<String>,
    pub payload: serde_json::Value,
    /// One of the [`EventStatus`] words: `queued`, `processing`, `done`, `skipped`,
    /// `failed`, `dead`.
    pub status: String,
    pub attempts: i64,
    pub note: Option<String>,
    pub received_at: String,
}

/// An event's state in the log (`events.status`): the log's own words, not a run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Stored, waiting for the orchestrator.
    Queued,
    /// Taken by the orchestrator, not settled yet (queued again if it crashes).
    Processing,
    /// Handled: it started runs, or needed none (a ping).
    Done,
    /// Nothing to do for it (no pipeline listens, an unregistered repository).
    Skipped,
    /// Handling it failed.
    Failed,
    /// Given up on after too many attempts.
    Dead,
}

impl EventStatus {
    /// The word in `events.status`, what [`Orchestration::settle`] is given.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Queued => "queued",
            EventStatus::Processing => "processing",
            EventStatus::Done => "done",
            EventStatus::Skipped => "skipped",
            EventStatus::Failed => "failed",
            EventStatus::Dead => "dead",
        }
    }
}

/// Whether a run's end was told to where it came from (`run_origins.outcome_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutcomeState {
    /// Not yet: the reporter still has to.
    Pending,
    /// Commit statuses, callback and retry done.
    Reported,
}

impl OutcomeState {
    fn as_str(self) -> &'static str {
        match self {
            OutcomeState::Pending => "pending",
            OutcomeState::Reported => "reported",
        }
    }
}

/// Stores one event inside an open write transaction.
pub(crate) fn record_in(tx: &Connection, event: &NewEvent) -> Result<Recorded, StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO events (source, delivery_id, kind, repo, task_id, event_type, payload, status, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?8)
             ON CONFLICT (source, delivery_id) DO NOTHING",
        )?
        .execute(params![
            event.source,
            event.delivery_id,
            event.kind,
            event.repo,
            event.task_id,
            event.event_type,
            event.payload.to_string(),
            jiff::Timestamp::now().to_string(),
            EventStatus::Queued.as_str()
        ])?;
    if inserted == 1 {
        return Ok(Recorded::New(tx.last_insert_rowid()));
    }
    let id = tx
        .prepare_cached("SELECT event_id FROM events WHERE source = ?1 AND delivery_id = ?2")?
        .query_row(params![event.source, event.delivery_id], |r| r.get(0))?;
    Ok(Recorded::Duplicate(id))
}

/// The condition of the partial index `events_open` (migration 004), written out in
/// every query for open events: SQLite uses a partial index only when the query's WHERE
/// contains its condition, and `status` equal to the queued word alone does not count.
/// Without it, taking events scanned the whole table (every event ever stored) inside
/// the orchestrator's write transaction, holding the write lock the intake's
/// acknowledged commits wait for, longer as the log grew. The words are spliced as text,
/// not bound: SQLite would match parameters against the index's words only by preparing
/// the statement again at every bind, undoing `prepare_cached`.
static OPEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "status IN {}",
        status::sql_list([
            EventStatus::Queued.as_str(),
            EventStatus::Processing.as_str()
        ])
    )
});

const EVENT_COLUMNS: &str = "SELECT event_id, source, delivery_id, kind, repo, task_id, event_type, payload, status, attempts, note, received_at FROM events";

/// Events a crash left taken queue again (`?1` queued, `?2` processing).
static REQUEUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE events SET status = ?1 WHERE {} AND status = ?2",
        *OPEN
    )
});

/// The oldest queued events (`?1` how many, `?2` queued).
static NEXT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{EVENT_COLUMNS} WHERE {} AND status = ?2 ORDER BY event_id LIMIT ?1",
        *OPEN
    )
});

/// Runs whose end is still to be told, with their status now. The condition of the
/// partial index `run_origins_pending` spliced as text, as [`OPEN`].
static PENDING_ORIGINS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT o.run_id, o.event_id, o.pipeline, o.status_target, o.task_id, o.event_type, o.retry_count, o.callback_url, r.status, r.error
         FROM run_origins o JOIN dag_runs r USING (run_id) WHERE o.outcome_state = {}",
        status::sql_literal(OutcomeState::Pending.as_str())
    )
});

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let payload: String = r.get(7)?;
    Ok(EventRow {
        event_id: r.get(0)?,
        source: r.get(1)?,
        delivery_id: r.get(2)?,
        kind: r.get(3)?,
        repo: r.get(4)?,
        task_id: r.get(5)?,
        event_type: r.get(6)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        status: r.get(8)?,
        attempts: r.get(9)?,
        note: r.get(10)?,
        received_at: r.get(11)?,
    })
}

/// Where a run came from (see `run_origins`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub run_id: String,
    pub event_id: Option<i64>,
    pub pipeline: String,
    /// JSON the status reporter understands (forge, API base, repo, sha).
    pub status_target: Option<String>,
    pub task_id: Option<String>,
    pub event_type: Option<String>,
    pub retry_count: i64,
    pub callback_url: Option<String>,
}

/// A run whose origin has not been told its end, with how it ended (if it did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginState {
    pub origin: Origin,
    /// The run's status now.
    pub status: cascade_plan::RunStatus,
    /// Why it failed or was skipped before any task ran.
    pub error: Option<String>,
    /// Every task's (id, state, error), in plan order.
    pub tasks: Vec<(String, cascade_plan::TaskState, Option<String>)>,
}

/// The orchestrator's connection.
#[derive(Debug)]
pub struct Orchestration {
    pub(crate) conn: Connection,
}

impl Orchestration {
    /// Opens the store; events left `processing` by a crash are queued again.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::db::open(path)?;
        conn.execute(
            &REQUEUE,
            params![
                EventStatus::Queued.as_str(),
                EventStatus::Processing.as_str()
            ],
        )?;
        Ok(Self { conn })
    }

    /// Like [`Orchestration::open`], for bookkeeping that may be redone: commits are
    /// not synced one by one (`synchronous=NORMAL`; in WAL mode they survive a crash of
    /// the process, and only a power loss can undo the last ones, which then happen
    /// again: an event handled twice is caught by routes and delivery ids). Never for
    /// what acknowledges an event to its sender.
    pub fn open_relaxed(path: &Path) -> Result<Self, StoreError> {
        let this = Self::open(path)?;
        this.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(this)
    }

    /// Records how handling each event ended, in one transaction.
    pub fn settle_all(&mut self, outcomes: &[(i64, &str, &str)]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (event_id, status, note) in outcomes {
            tx.prepare_cached("UPDATE events SET status = ?2, note = ?3 WHERE event_id = ?1")?
                .execute(params![event_id, status, note])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores events (one transaction); duplicates are recognised, not stored twice.
    pub fn record(&mut self, events: &[NewEvent]) -> Result<Vec<Recorded>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recorded = events
            .iter()
            .map(|e| record_in(&tx, e))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(recorded)
    }

    /// Takes the oldest queued events (marked `processing`, attempts counted).
    pub fn take(&mut self, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<EventRow> = tx
            .prepare_cached(&NEXT)?
            .query_map(
                params![
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    EventStatus::Queued.as_str()
                ],
                event_row,
            )?
            .collect::<Result<_, _>>()?;
        for row in &rows {
            tx.prepare_cached(
                "UPDATE events SET status = ?2, attempts = attempts + 1 WHERE event_id = ?1",
            )?
            .execute(params![row.event_id, EventStatus::Processing.as_str()])?;
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Records how handling an event ended: `done`, `skipped`, `failed`, `dead`, or
    /// `queued` to try again (an [`EventStatus`] word).
    pub fn settle(&mut self, event_id: i64, status: &str, note: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE events SET status = ?2, note = ?3 WHERE event_id = ?1")?
            .execute(params![event_id, status, note])?;
        Ok(())
    }

    /// Remembers where a run came from.
    pub fn add_origin(&mut self, origin: &Origin) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO run_origins (run_id, event_id, pipeline, status_target, task_id, event_type, retry_count, callback_url)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                origin.run_id,
                origin.event_id,
                origin.pipeline,
                origin.status_target,
                origin.task_id,
                origin.event_type,
                origin.retry_count,
                origin.callback_url
            ])?;
        Ok(())
    }

    /// Records a run that ended before it started: `skipped` (nothing to do) or
    /// `failed` (a config error, in `error`).
    pub fn ended_run(
        &mut self,
        run_id: &str,
        dag_id: &str,
        trigger: &str,
        status: cascade_plan::RunStatus,
        error: &str,
    ) -> Result<(), StoreError> {
        let now = jiff::Timestamp::now().to_string();
        self.conn
            .prepare_cached(
                "INSERT INTO dag_runs (run_id, dag_id, trigger, status, error, created_at, finished_at, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)",
            )?
            .execute(params![run_id, dag_id, trigger, status.as_str(), error, now])?;
        Ok(())
    }

    /// Runs with an origin not yet told of their end, and their task states now.
    pub fn pending_origins(&self) -> Result<Vec<OriginState>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&PENDING_ORIGINS)?;
        let rows: Vec<(Origin, cascade_plan::RunStatus, Option<String>)> = stmt
            .query_map([], |r| {
                Ok((
                    Origin {
                        run_id: r.get(0)?,
                        event_id: r.get(1)?,
                        pipeline: r.get(2)?,
                        status_target: r.get(3)?,
                        task_id: r.get(4)?,
                        event_type: r.get(5)?,
                        retry_count: r.get(6)?,
                        callback_url: r.get(7)?,
                    },
                    crate::status::run_status(r, 8)?,
                    r.get(9)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (origin, status, error) in rows {
            let tasks = self.run_tasks(&origin.run_id)?;
            out.push(OriginState {
                origin,
                status,
                error,
                tasks,
            });
        }
        Ok(out)
    }

    /// The run's end was reported (statuses, callback, retry decided).
    pub fn origin_done(&mut self, run_id: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE run_origins SET outcome_state = ?2 WHERE run_id = ?1")?
            .execute(params![run_id, OutcomeState::Reported.as_str()])?;
        Ok(())
    }

    /// Claims a dispatch route for this retry: `false` if (task, event type, pipeline)
    /// was already routed at this retry count or later (idempotency). A route's status
    /// is its run's word (`running`, then how the run ended) or `retrying`.
    pub fn claim_route(
        &mut self,
        task_id: &str,
        event_type: &str,
        pipeline: &str,
        retry_count: i64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "INSERT INTO routes (task_id, event_type, pipeline, retry_count, status, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?6, ?5)
                 ON CONFLICT (task_id, event_type, pipeline) DO UPDATE
                   SET retry_count = excluded.retry_count, status = excluded.status, updated_at = excluded.updated_at
                   WHERE routes.retry_count < excluded.retry_count",
            )?
            .execute(params![
                task_id,
                event_type,
                pipeline,
                retry_count,
                jiff::Timestamp::now().to_string(),
                cascade_plan::RunStatus::Running.as_str()
            ])?;
        Ok(changed == 1)
    }

    /// Records a route's run or outcome.
    pub fn set_route(
        &mut self,
        task_id: &str,
        event_type: &str,
        pipeline: &str,
        run_id: Option<&str>,
        status: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE routes SET run_id = coalesce(?4, run_id), status = ?5, updated_at = ?6
                 WHERE task_id = ?1 AND event_type = ?2 AND pipeline = ?3",
            )?
            .execute(params![
                task_id,
                event_type,
                pipeline,
                run_id,
                status,
                jiff::Timestamp::now().to_string()
            ])?;
        Ok(())
    }

    /// A route's breaker: consecutive failures and when it opened.
    pub fn breaker(&self, route: &str) -> Result<(i64, Option<i64>), StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT failures, opened_at_ms FROM breakers WHERE route = ?1")?
            .query_row([route], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, None)))
    }

    /// Sets a route's breaker.
    pub fn set_breaker(
        &mut self,
        route: &str,
        failures: i64,
        opened_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO breakers (route, failures, opened_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (route) DO UPDATE SET failures = excluded.failures, opened_at_ms = excluded.opened_at_ms",
            )?
            .execute(params![route, failures, opened_at_ms])?;
        Ok(())
    }

    /// The commit status last reported for (run, context).
    pub fn reported_status(
        &self,
        run_id: &str,
        context: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT state, description FROM commit_statuses WHERE run_id = ?1 AND context = ?2",
            )?
            .query_row(params![run_id, context], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Remembers a commit status as reported.
    pub fn set_reported_status(
        &mut self,
        run_id: &str,
        context: &str,
        state: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO commit_statuses (run_id, context, state, description, reported_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                run_id,
                context,
                state,
                description,
                jiff::Timestamp::now().to_string()
            ])?;
        Ok(())
    }

    /// Records a cron tick as fired; `false` if it had been (by this or an earlier
    /// process).
    pub fn fire_tick(&mut self, schedule_key: &str, tick: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "INSERT INTO cron_ticks (schedule_key, tick, fired_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?
            .execute(params![schedule_key, tick, jiff::Timestamp::now().to_string()])?;
        Ok(changed == 1)
    }

    /// Forgets a tick whose event could not be queued, so it is fired again.
    pub fn unfire_tick(&mut self, schedule_key: &str, tick: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM cron_ticks WHERE schedule_key = ?1 AND tick = ?2")?
            .execute(params![schedule_key, tick])?;
        Ok(())
    }

    /// The last tick fired for a schedule.
    pub fn last_tick(&self, schedule_key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT max(tick) FROM cron_ticks WHERE schedule_key = ?1")?
            .query_row([schedule_key], |r| r.get(0))?)
    }

    /// Stores a body too large for a message (claim check); returns its id.
    pub fn put_body(&mut self, body_id: &str, body: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO event_bodies (body_id, body, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![body_id, body, jiff::Timestamp::now().to_string()])?;
        Ok(())
    }

    /// A body stored by [`Orchestration::put_body`].
    pub fn body(&self, body_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT body FROM event_bodies WHERE body_id = ?1")?
            .query_row([body_id], |r| r.get(0))
            .optional()?)
    }

    /// One stored event.
    pub fn event(&self, event_id: i64) -> Result<Option<EventRow>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!("{EVENT_COLUMNS} WHERE event_id = ?1"))?
            .query_row([event_id], event_row)
            .optional()?)
    }

    /// Whether (source, delivery id) was stored.
    pub fn seen(&self, source: &str, delivery_id: &str) -> Result<bool, StoreError> {
        seen(&self.conn, source, delivery_id)
    }
}

/// Whether an event (source, delivery id) was stored.
pub(crate) fn seen(conn: &Connection, source: &str, delivery_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM events WHERE source = ?1 AND delivery_id = ?2")?
        .query_row(params![source, delivery_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Events, newest last: all, or one dispatch chain's (`task_id`).
pub fn events(
    conn: &Connection,
    task_id: Option<&str>,
    limit: usize,
) -> Result<Vec<EventRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM ({EVENT_COLUMNS} WHERE ?1 IS NULL OR task_id = ?1 ORDER BY event_id DESC LIMIT ?2) ORDER BY event_id"
    ))?;
    let rows = stmt.query_map(
        params![task_id, i64::try_from(limit).unwrap_or(i64::MAX)],
        event_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(delivery: &str) -> NewEvent {
        NewEvent {
            source: "github".into(),
            delivery_id: delivery.into(),
            kind: "push".into(),
            repo: Some("o/r".into()),
            task_id: Some("t1".into()),
            event_type: None,
            payload: serde_json::json!({"ref": "refs/heads/main"}),
        }
    }

    #[test]
    fn a_delivery_is_stored_once_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut o = Orchestration::open(&path).unwrap();
        let first = o.record(&[event("d1"), event("d1"), event("d2")]).unwrap();
        assert!(matches!(first[0], Recorded::New(_)));
        assert_eq!(first[1], Recorded::Duplicate(first[0].event_id()));
        assert!(o.seen("github", "d1").unwrap());
        assert!(!o.seen("gitea", "d1").unwrap());
        let taken = o.take(10).unwrap();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].attempts, 0, "as read, before the count moved");
        assert!(o.take(10).unwrap().is_empty());
        // A crash while processing: reopening queues them again.
        drop(o);
        let mut o = Orchestration::open(&path).unwrap();
        let again = o.take(10).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].attempts, 1);
        o.settle(again[0].event_id, "done", "started run r1")
            .unwrap();
        let conn = crate::db::open(&path).unwrap();
        let chain = events(&conn, Some("t1"), 10).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].status, "done");
        assert_eq!(chain[0].note.as_deref(), Some("started run r1"));
    }

    #[test]
    fn open_events_and_unreported_origins_are_found_through_their_index_not_by_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let o = Orchestration::open(&dir.path().join("c.db")).unwrap();
        for (query, index) in [
            (&*NEXT, "events_open"),
            (&*REQUEUE, "events_open"),
            (&*PENDING_ORIGINS, "run_origins_pending"),
        ] {
            let plan = crate::db::query_plan(&o.conn, query);
            assert!(
                plan.iter()
                    .any(|step| step.contains(&format!("INDEX {index}"))),
                "{query}: {plan:?}"
            );
        }
    }

    #[test]
    fn routes_are_idempotent_per_retry_and_ticks_fire_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Orchestration::open(&dir.path().join("c.db")).unwrap();
        assert!(o.claim_route("t", "agent:complete", "build", 0).unwrap());
        assert!(!o.claim_route("t", "agent:complete", "build", 0).unwrap());
        assert!(o.claim_route("t", "agent:complete", "build", 1).unwrap());
        assert!(!o.claim_route("t", "agent:complete", "build", 1).unwrap());
        assert!(o.claim_route("t", "agent:complete", "other", 0).unwrap());
        assert!(
            o.fire_tick("repo/ci.yaml#0", "2026-01-01T03:00:00Z")
                .unwrap()
        );
        assert!(
            !o.fire_tick("repo/ci.yaml#0", "2026-01-01T03:00:00Z")
                .unwrap()
        );
        assert_eq!(
            o.last_tick("repo/ci.yaml#0").unwrap().as_deref(),
            Some("2026-01-01T03:00:00Z")
        );
        assert_eq!(o.breaker("r").unwrap(), (0, None));
        o.set_breaker("r", 3, Some(5)).unwrap();
        assert_eq!(o.breaker("r").unwrap(), (3, Some(5)));
    }
}
