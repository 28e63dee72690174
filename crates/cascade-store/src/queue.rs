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
use cascade_spec::Scope;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
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
    pub priority: i64,
    pub trigger: String,
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

/// The queue, over one connection.
#[derive(Debug)]
pub struct Queue {
    conn: Connection,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Queue {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: db::open(path)?,
        })
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
        results
    }

    /// Claims the next run for `worker_id`: the highest priority, oldest queued row, or one
    /// whose lease ran out (its worker died). `None` when there is nothing to do.
    pub fn claim(
        &mut self,
        worker_id: &str,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT run_id, lease_epoch FROM worker_queue
                 WHERE worker_id = ?1 AND (status = 'queued' OR (status = 'leased' AND lease_until < ?2))
                 ORDER BY priority DESC, created_at, run_id LIMIT 1",
                params![worker_id, now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((run_id, epoch)) = row else {
            return Ok(None);
        };
        let until_ms = now_ms.saturating_add(millis(lease));
        tx.execute(
            "UPDATE worker_queue SET status = 'leased', lease_until = ?2, lease_epoch = ?3 WHERE run_id = ?1",
            params![run_id, until_ms, epoch + 1],
        )?;
        tx.execute(
            "UPDATE dag_runs SET status = 'running', version = version + 1 WHERE run_id = ?1",
            [&run_id],
        )?;
        tx.commit()?;
        Ok(Some(Lease {
            run_id,
            worker_id: worker_id.to_owned(),
            epoch: epoch + 1,
            until_ms,
        }))
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
             WHERE run_id = ?1 AND lease_epoch = ?2 AND status = 'leased' AND lease_until >= ?4",
            params![lease.run_id, lease.epoch, until_ms, now_ms],
        )?;
        if changed == 1 {
            lease.until_ms = until_ms;
            Ok(())
        } else {
            Err(StoreError::Fenced(lease.run_id.clone()))
        }
    }

    /// Marks a leased run done with its final status, if the lease still holds.
    pub fn finish(&mut self, lease: &Lease, now_ms: i64, status: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE worker_queue SET status = 'done', lease_until = NULL
             WHERE run_id = ?1 AND lease_epoch = ?2 AND status = 'leased' AND lease_until >= ?3",
            params![lease.run_id, lease.epoch, now_ms],
        )?;
        if changed != 1 {
            return Err(StoreError::Fenced(lease.run_id.clone()));
        }
        tx.execute(
            "UPDATE dag_runs SET status = ?2, version = version + 1, finished_at = ?3 WHERE run_id = ?1",
            params![lease.run_id, status, jiff::Timestamp::now().to_string()],
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
        status: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE dag_runs SET status = ?3, version = version + 1 WHERE run_id = ?1 AND version = ?2",
            params![run_id, expected, status],
        )?;
        Ok(changed == 1)
    }

    /// A run's status and version.
    pub fn run_status(&self, run_id: &str) -> Result<(String, i64), StoreError> {
        self.conn
            .query_row(
                "SELECT status, version FROM dag_runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoRun(run_id.to_owned()))
    }

    /// How many runs wait for each worker (queued or leased).
    pub fn depth(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT worker_id, count(*) FROM worker_queue WHERE status != 'done' GROUP BY worker_id ORDER BY worker_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
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
    tx.execute(
        "INSERT INTO dag_definitions (dag_id, tasks, scope_type, scope_id, target_node, priority, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (dag_id) DO UPDATE SET tasks = excluded.tasks, scope_type = excluded.scope_type,
           scope_id = excluded.scope_id, target_node = excluded.target_node, priority = excluded.priority",
        params![s.dag_id, s.definition.to_string(), s.scope.kind(), s.scope.id(), s.target_node, s.priority, now],
    )?;
    tx.execute(
        "INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at) VALUES (?1, ?2, ?3, 'queued', ?4)",
        params![s.run_id, s.dag_id, s.trigger, now],
    )?;
    tx.execute(
        "INSERT INTO worker_queue (run_id, worker_id, status, priority, created_at) VALUES (?1, ?2, 'queued', ?3, ?4)",
        params![s.run_id, worker_id, s.priority, now],
    )?;
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
            priority,
            trigger: "api".into(),
        }
    }

    fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&dir.path().join("q.db")).unwrap();
        (dir, q)
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
            .claim("worker-project-a", 1_000, Duration::from_secs(30))
            .unwrap()
            .unwrap();
        assert_eq!((lease.run_id.as_str(), lease.epoch), ("r1", 1));
        assert_eq!(
            q.claim("worker-project-a", 1_001, Duration::from_secs(30))
                .unwrap(),
            None
        );
        assert_eq!(
            q.claim("worker-project-b", 1_001, Duration::from_secs(30))
                .unwrap(),
            None,
            "other scopes see nothing"
        );
        q.finish(&lease, 2_000, "completed").unwrap();
        assert_eq!(q.run_status("r1").unwrap().0, "completed");
        assert_eq!(q.depth().unwrap(), vec![]);
    }

    #[test]
    fn an_expired_lease_is_reclaimed_and_the_old_worker_is_fenced() {
        let (_dir, mut q) = queue();
        q.submit(&submission("d", "r1", "global", None, 1)).unwrap();
        let mut old = q
            .claim("worker-global", 1_000, Duration::from_millis(100))
            .unwrap()
            .unwrap();
        // Still held: nobody else gets it.
        assert_eq!(
            q.claim("worker-global", 1_050, Duration::from_millis(100))
                .unwrap(),
            None
        );
        // The holder died; past its lease another claim takes over with a new epoch.
        let new = q
            .claim("worker-global", 1_200, Duration::from_secs(30))
            .unwrap()
            .unwrap();
        assert_eq!(new.epoch, old.epoch + 1);
        assert!(matches!(
            q.renew(&mut old, 1_201, Duration::from_secs(30)),
            Err(StoreError::Fenced(_))
        ));
        assert!(matches!(
            q.finish(&old, 1_202, "completed"),
            Err(StoreError::Fenced(_))
        ));
        q.finish(&new, 1_300, "completed").unwrap();
    }

    #[test]
    fn a_lease_that_ran_out_cannot_commit_even_if_nobody_took_it() {
        let (_dir, mut q) = queue();
        q.submit(&submission("d", "r1", "global", None, 1)).unwrap();
        let mut lease = q
            .claim("worker-global", 1_000, Duration::from_millis(100))
            .unwrap()
            .unwrap();
        q.renew(&mut lease, 1_050, Duration::from_millis(100))
            .unwrap();
        assert_eq!(lease.until_ms, 1_150);
        assert!(matches!(
            q.finish(&lease, 1_151, "completed"),
            Err(StoreError::Fenced(_))
        ));
    }

    #[test]
    fn higher_priority_runs_first() {
        let (_dir, mut q) = queue();
        q.submit(&submission("low", "r1", "global", None, 0))
            .unwrap();
        q.submit(&submission("high", "r2", "global", None, 2))
            .unwrap();
        assert_eq!(
            q.claim("worker-global", 1, Duration::from_secs(1))
                .unwrap()
                .unwrap()
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
        assert_eq!(q.run_status("r3").unwrap().0, "queued");
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
                    q.set_run_status("r1", version, &format!("status-{i}"))
                        .unwrap()
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
