//! Runs carried out by another backend (Argo Workflows): the orchestrator records one
//! before handing it over, and the backend's watcher writes back what it sees. The run
//! and its tasks live in the same tables as local runs, so the API, `cascade dag
//! status` and the status reporter read them the same way.

use crate::error::StoreError;
use crate::events::Orchestration;
use crate::status;
use cascade_plan::{RunStatus, TaskState};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use std::sync::LazyLock;

/// A run on another backend that has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRun {
    pub run_id: String,
    /// Where it is (`namespace/name`), once the backend accepted it.
    pub external_ref: Option<String>,
    /// What the run's definition says about it (the job names on the backend).
    pub definition: serde_json::Value,
}

/// Where a run is, whichever backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlace {
    pub status: RunStatus,
    /// `None`: this server's workers.
    pub backend: Option<String>,
    pub external_ref: Option<String>,
}

/// A task's state as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTask<'a> {
    pub task_id: &'a str,
    pub status: TaskState,
    pub error: Option<&'a str>,
}

/// Runs on a backend that have not ended (`?1`: the backend).
static OPEN_RUNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT run_id, external_ref, definition FROM dag_runs
         WHERE backend = ?1 AND status NOT IN {}",
        status::runs_ended()
    )
});

impl Orchestration {
    /// Records a run handed to `backend`, `queued`, with its tasks `pending` in plan
    /// order (so the reporter shows every job waiting from the start).
    pub fn external_run(
        &mut self,
        run_id: &str,
        dag_id: &str,
        trigger: &str,
        backend: &str,
        definition: &serde_json::Value,
        tasks: &[String],
    ) -> Result<(), StoreError> {
        let now = jiff::Timestamp::now().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Recorded again when the same event is handled again before the backend took
        // the run (a crash in between): the first record stands.
        tx.prepare_cached(
            "INSERT INTO dag_runs (run_id, dag_id, trigger, status, created_at, backend, definition)
             VALUES (?1, ?2, ?3, ?7, ?4, ?5, ?6) ON CONFLICT (run_id) DO NOTHING",
        )?
        .execute(params![
            run_id,
            dag_id,
            trigger,
            now,
            backend,
            definition.to_string(),
            RunStatus::Queued.as_str()
        ])?;
        for (position, task) in tasks.iter().enumerate() {
            tx.prepare_cached(
                "INSERT INTO task_executions (run_id, task_id, position, status) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (run_id, task_id) DO NOTHING",
            )?
            .execute(params![
                run_id,
                task,
                i64::try_from(position).unwrap_or(i64::MAX),
                TaskState::Pending.as_str()
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The backend accepted the run: where it is now.
    pub fn set_external_ref(&mut self, run_id: &str, reference: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE dag_runs SET external_ref = ?2 WHERE run_id = ?1")?
            .execute(params![run_id, reference])?;
        Ok(())
    }

    /// Writes what the backend reports: the run's status (and why, when it did not
    /// succeed) and its tasks'. A run that already ended is left alone; returns whether
    /// anything was written.
    pub fn external_progress(
        &mut self,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
        tasks: &[ExternalTask<'_>],
    ) -> Result<bool, StoreError> {
        let now = jiff::Timestamp::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(RunStatus, String)> = tx
            .prepare_cached("SELECT status, created_at FROM dag_runs WHERE run_id = ?1")?
            .query_row([run_id], |r| Ok((status::run_status(r, 0)?, r.get(1)?)))
            .optional()?;
        let Some((current, created)) = current else {
            return Ok(false);
        };
        if current.is_final() {
            return Ok(false);
        }
        // A cancel was asked for: the run stays `cancelling` until the backend stops it,
        // and an end other than success is the cancel's.
        let status = match (current, status) {
            (RunStatus::Cancelling, RunStatus::Succeeded) => RunStatus::Succeeded,
            (RunStatus::Cancelling, s) if s.is_final() => RunStatus::Cancelled,
            (RunStatus::Cancelling, _) => RunStatus::Cancelling,
            (_, s) => s,
        };
        for (position, task) in tasks.iter().enumerate() {
            let started = (task.status != TaskState::Pending).then(|| now.to_string());
            let finished = task.status.is_final().then(|| now.to_string());
            tx.prepare_cached(
                "INSERT INTO task_executions (run_id, task_id, position, status, error, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (run_id, task_id) DO UPDATE SET
                   status = excluded.status,
                   error = coalesce(excluded.error, task_executions.error),
                   started_at = coalesce(task_executions.started_at, excluded.started_at),
                   finished_at = coalesce(task_executions.finished_at, excluded.finished_at)",
            )?
            .execute(params![
                run_id,
                task.task_id,
                i64::try_from(position).unwrap_or(i64::MAX),
                task.status.as_str(),
                task.error,
                started,
                finished
            ])?;
        }
        let count = |s: TaskState| {
            i64::try_from(tasks.iter().filter(|t| t.status == s).count()).unwrap_or(i64::MAX)
        };
        if status.is_final() {
            let duration = created
                .parse::<jiff::Timestamp>()
                .map_or(0, |c| (now.as_millisecond() - c.as_millisecond()).max(0));
            tx.prepare_cached(
                "UPDATE dag_runs SET status = ?2, error = ?3, passed = ?4, failed = ?5, skipped = ?6,
                   started_at = coalesce(started_at, ?7), finished_at = ?7, duration_ms = ?8, version = version + 1
                 WHERE run_id = ?1",
            )?
            .execute(params![
                run_id,
                status.as_str(),
                error,
                count(TaskState::Succeeded),
                count(TaskState::Failed),
                count(TaskState::Skipped),
                now.to_string(),
                duration
            ])?;
        } else {
            let started = (status == RunStatus::Running).then(|| now.to_string());
            tx.prepare_cached(
                "UPDATE dag_runs SET status = ?2, started_at = coalesce(started_at, ?3) WHERE run_id = ?1",
            )?
            .execute(params![run_id, status.as_str(), started])?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Runs on `backend` that have not ended.
    pub fn external_runs(&self, backend: &str) -> Result<Vec<ExternalRun>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&OPEN_RUNS)?;
        let rows = stmt
            .query_map([backend], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .map(|(run_id, external_ref, definition)| ExternalRun {
                run_id,
                external_ref,
                definition: definition
                    .and_then(|d| serde_json::from_str(&d).ok())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// A run's status and backend (`None` if there is no such run).
    pub fn run_backend(&self, run_id: &str) -> Result<Option<RunPlace>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT status, backend, external_ref FROM dag_runs WHERE run_id = ?1")?
            .query_row([run_id], |r| {
                Ok(RunPlace {
                    status: status::run_status(r, 0)?,
                    backend: r.get(1)?,
                    external_ref: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// A run's tasks: (id, state, error), in plan order.
    pub fn run_tasks(
        &self,
        run_id: &str,
    ) -> Result<Vec<(String, TaskState, Option<String>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT task_id, status, error FROM task_executions WHERE run_id = ?1 ORDER BY position",
        )?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok((r.get(0)?, status::task_state(r, 1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Runs on `backend` asked to stop (`cancelling`), and where they are.
    pub fn external_cancelling(&self, backend: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT run_id, external_ref FROM dag_runs
             WHERE backend = ?1 AND status = ?2 AND external_ref IS NOT NULL",
        )?;
        let rows = stmt
            .query_map(params![backend, RunStatus::Cancelling.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The definition of one run (`None` if there is no such run).
    pub fn run_definition(&self, run_id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT definition FROM dag_runs WHERE run_id = ?1")?
            .query_row([run_id], |r| r.get(0))
            .optional()?;
        Ok(text
            .flatten()
            .map(|d| serde_json::from_str(&d).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Cancelled, Queue};

    fn store() -> (tempfile::TempDir, Orchestration) {
        let dir = tempfile::tempdir().unwrap();
        let store = Orchestration::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    fn task(task_id: &str, status: TaskState) -> ExternalTask<'_> {
        ExternalTask {
            task_id,
            status,
            error: None,
        }
    }

    #[test]
    fn a_run_on_another_backend_moves_through_its_states_and_stays_ended() {
        let (_dir, mut store) = store();
        let definition = serde_json::json!({"argo": {"tasks": [["build", "build"]]}});
        store
            .external_run(
                "r1",
                "acme/app/ci.yaml",
                "push",
                "argo",
                &definition,
                &["build".to_owned(), "test".to_owned()],
            )
            .unwrap();
        let open = store.external_runs("argo").unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].definition, definition);
        assert_eq!(open[0].external_ref, None);
        store.set_external_ref("r1", "ci/app-x7k2p").unwrap();
        assert!(
            store
                .external_progress(
                    "r1",
                    RunStatus::Running,
                    None,
                    &[
                        task("build", TaskState::Running),
                        task("test", TaskState::Pending)
                    ]
                )
                .unwrap()
        );
        assert!(
            store
                .external_progress(
                    "r1",
                    RunStatus::Failed,
                    Some("child failed"),
                    &[
                        ExternalTask {
                            task_id: "build",
                            status: TaskState::Failed,
                            error: Some("exit code 1")
                        },
                        task("test", TaskState::Skipped)
                    ]
                )
                .unwrap()
        );
        // Ended: later reports change nothing.
        assert!(
            !store
                .external_progress(
                    "r1",
                    RunStatus::Running,
                    None,
                    &[task("build", TaskState::Running)]
                )
                .unwrap()
        );
        assert!(store.external_runs("argo").unwrap().is_empty());
        let (status, error, failed, skipped, reference): (
            String,
            Option<String>,
            i64,
            i64,
            String,
        ) = store
            .conn
            .query_row(
                "SELECT status, error, failed, skipped, external_ref FROM dag_runs WHERE run_id = 'r1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (status.as_str(), error.as_deref(), failed, skipped),
            ("failed", Some("child failed"), 1, 1)
        );
        assert_eq!(reference, "ci/app-x7k2p");
        let tasks = store.run_tasks("r1").unwrap();
        assert_eq!(
            tasks,
            vec![
                (
                    "build".to_owned(),
                    TaskState::Failed,
                    Some("exit code 1".to_owned())
                ),
                ("test".to_owned(), TaskState::Skipped, None),
            ]
        );
        assert_eq!(
            store.run_definition("r1").unwrap(),
            Some(definition.clone())
        );
        assert_eq!(store.run_definition("nope").unwrap(), None);
        assert!(
            !store
                .external_progress("nope", RunStatus::Running, None, &[])
                .unwrap()
        );
    }

    #[test]
    fn a_cancelled_run_on_another_backend_stays_cancelling_until_the_backend_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut store = Orchestration::open(&path).unwrap();
        let mut queue = Queue::open(&path).unwrap();
        for run in ["r1", "r2"] {
            store
                .external_run(
                    run,
                    "d",
                    "push",
                    "argo",
                    &serde_json::json!({}),
                    &["build".to_owned()],
                )
                .unwrap();
            store.set_external_ref(run, &format!("ci/{run}")).unwrap();
        }
        store
            .external_progress(
                "r1",
                RunStatus::Running,
                None,
                &[task("build", TaskState::Running)],
            )
            .unwrap();
        assert_eq!(queue.cancel("r1").unwrap(), Cancelled::Requested);
        assert_eq!(queue.cancel("r1").unwrap(), Cancelled::Requested);
        assert_eq!(
            store.external_cancelling("argo").unwrap(),
            vec![("r1".to_owned(), "ci/r1".to_owned())]
        );
        // Still running on the backend: still cancelling here.
        store
            .external_progress(
                "r1",
                RunStatus::Running,
                None,
                &[task("build", TaskState::Running)],
            )
            .unwrap();
        assert_eq!(queue.run_status("r1").unwrap().0, RunStatus::Cancelling);
        store
            .external_progress(
                "r1",
                RunStatus::Failed,
                Some("Stopped with strategy 'Terminate'"),
                &[task("build", TaskState::Failed)],
            )
            .unwrap();
        assert_eq!(queue.run_status("r1").unwrap().0, RunStatus::Cancelled);
        assert_eq!(
            queue.cancel("r1").unwrap(),
            Cancelled::AlreadyEnded(RunStatus::Cancelled)
        );
        // A run that succeeded before the stop took effect keeps its success.
        queue.cancel("r2").unwrap();
        store
            .external_progress(
                "r2",
                RunStatus::Succeeded,
                None,
                &[task("build", TaskState::Succeeded)],
            )
            .unwrap();
        assert_eq!(queue.run_status("r2").unwrap().0, RunStatus::Succeeded);
    }
}
