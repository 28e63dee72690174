//! The reporter: a reconciler over the runs the orchestrator started (`run_origins`).
//! Every `tick` it compares each run's state with what was last told, and:
//! - posts commit statuses to the forge: `pending` while a job waits or runs, then
//!   `success` / `failure` / `error` per job (one context per job; a skipped job is a
//!   `success` saying "skipped", so required checks never stay pending), only on change;
//! - when a dispatch-started run ends: updates its route's circuit breaker, starts it
//!   again (`retry_count` + 1) while it failed and retries are left, and otherwise sends
//!   the completion callback — whatever the outcome;
//! - marks the origin reported once everything about the end was done.

use crate::inbox::Inbox;
use crate::orchestrator::Incoming;
use cascade_plan::{RunStatus, TaskState};
use cascade_spec::config::AdminConfig;
use cascade_store::{NewEvent, Orchestration, OriginState};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sends one commit status; `Err` to try again on the next tick.
pub type StatusSender = Arc<
    dyn Fn(StatusPost) -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync,
>;

/// One commit status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPost {
    /// The run origin's `status_target` (forge, API base, repository, sha, token secret).
    pub target: serde_json::Value,
    pub context: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    pub description: String,
}

/// The reporter's state.
pub struct Reporter {
    pub store: Orchestration,
    pub inbox: Inbox,
    pub config: Arc<AdminConfig>,
    pub http: reqwest::Client,
    pub statuses: Option<StatusSender>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").finish_non_exhaustive()
    }
}

/// The commit statuses a run calls for now: one per job (its copies together), or one
/// for the whole pipeline while no task is known (queued, or ended before starting).
pub fn desired_statuses(state: &OriginState) -> Vec<(String, String, String)> {
    let base = format!("cascade/{}", state.origin.pipeline);
    if state.tasks.is_empty() {
        let why = state.error.as_deref();
        let (status, description) = match state.status {
            RunStatus::Succeeded => ("success", "passed".to_owned()),
            RunStatus::Skipped => (
                "success",
                why.map_or_else(
                    || RunStatus::Skipped.to_string(),
                    |w| format!("{}: {w}", RunStatus::Skipped),
                ),
            ),
            RunStatus::Failed => (
                "failure",
                why.unwrap_or(RunStatus::Failed.as_str()).to_owned(),
            ),
            RunStatus::Cancelled => ("error", RunStatus::Cancelled.to_string()),
            RunStatus::Queued | RunStatus::Running | RunStatus::Cancelling => {
                ("pending", RunStatus::Queued.to_string())
            }
        };
        return vec![(base, status.to_owned(), description)];
    }
    let mut jobs: indexmap::IndexMap<String, Vec<(TaskState, Option<&str>)>> =
        indexmap::IndexMap::new();
    for (task, status, error) in &state.tasks {
        let job = task.split('[').next().unwrap_or(task).to_owned();
        jobs.entry(job)
            .or_default()
            .push((*status, error.as_deref()));
    }
    jobs.into_iter()
        .map(|(job, copies)| {
            let (state, description) = job_status(&copies);
            (format!("{base}/{job}"), state.to_owned(), description)
        })
        .collect()
}

/// The forge's word and the description for a job from its copies' states.
fn job_status(copies: &[(TaskState, Option<&str>)]) -> (&'static str, String) {
    let failed = copies.iter().find(|(s, _)| *s == TaskState::Failed);
    if let Some((_, error)) = failed {
        return (
            "failure",
            error.unwrap_or(TaskState::Failed.as_str()).to_owned(),
        );
    }
    if copies.iter().any(|(s, _)| *s == TaskState::Cancelled) {
        return ("error", TaskState::Cancelled.to_string());
    }
    if copies.iter().any(|(s, _)| !s.is_final()) {
        let running = copies.iter().any(|(s, _)| *s == TaskState::Running);
        return (
            "pending",
            if running {
                TaskState::Running.as_str()
            } else {
                "waiting"
            }
            .to_owned(),
        );
    }
    if copies.iter().all(|(s, _)| *s == TaskState::Skipped) {
        return ("success", TaskState::Skipped.to_string());
    }
    ("success", "passed".to_owned())
}

impl Reporter {
    /// Reconciles until `shutdown`.
    pub async fn run(mut self, tick: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = e, "reporter pass failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// One pass over every run not yet reported.
    pub async fn reconcile(&mut self) -> Result<(), String> {
        let pending = tokio::task::block_in_place(|| self.store.pending_origins())
            .map_err(|e| e.to_string())?;
        for state in pending {
            let statuses_sent = self.post_statuses(&state).await;
            if !state.status.is_final() || !statuses_sent {
                continue;
            }
            if let Err(e) = self.settle(&state).await {
                tracing::warn!(
                    run = state.origin.run_id,
                    error = e,
                    "cannot settle a run's end; trying again"
                );
                continue;
            }
            let run_id = state.origin.run_id.clone();
            tokio::task::block_in_place(|| self.store.origin_done(&run_id))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Posts what changed; `true` when everything wanted was sent.
    async fn post_statuses(&mut self, state: &OriginState) -> bool {
        let Some(target) = state
            .origin
            .status_target
            .as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        else {
            return true;
        };
        let Some(send) = self.statuses.clone() else {
            return true;
        };
        let mut all = true;
        for (context, status, description) in desired_statuses(state) {
            let run_id = state.origin.run_id.clone();
            let last =
                tokio::task::block_in_place(|| self.store.reported_status(&run_id, &context))
                    .ok()
                    .flatten();
            if last.as_ref() == Some(&(status.clone(), description.clone())) {
                continue;
            }
            // Every context starts `pending`, even when the run ended before the reporter
            // first looked: the forge sees the check start, then end.
            if last.is_none() && status != "pending" {
                let post = StatusPost {
                    target: target.clone(),
                    context: context.clone(),
                    state: "pending".to_owned(),
                    description: "queued".to_owned(),
                };
                if let Err(e) = send(post).await {
                    tracing::warn!(run = run_id, context, error = e, "commit status not sent");
                    all = false;
                    continue;
                }
            }
            let post = StatusPost {
                target: target.clone(),
                context: context.clone(),
                state: status.clone(),
                description: description.clone(),
            };
            match send(post).await {
                Ok(()) => {
                    let _ = tokio::task::block_in_place(|| {
                        self.store
                            .set_reported_status(&run_id, &context, &status, &description)
                    });
                }
                Err(e) => {
                    tracing::warn!(run = run_id, context, error = e, "commit status not sent");
                    all = false;
                }
            }
        }
        all
    }

    /// The end of a run: breaker, retry or callback.
    async fn settle(&mut self, state: &OriginState) -> Result<(), String> {
        let origin = &state.origin;
        let succeeded = matches!(state.status, RunStatus::Succeeded | RunStatus::Skipped);
        if let (Some(task_id), Some(event_type)) = (&origin.task_id, &origin.event_type) {
            let route = format!("{event_type} → {}", origin.pipeline);
            let (failures, _) = tokio::task::block_in_place(|| self.store.breaker(&route))
                .map_err(|e| e.to_string())?;
            let (failures, opened) = if succeeded {
                (0, None)
            } else {
                let failures = failures + 1;
                let threshold = i64::from(self.config.orchestrator.breaker_failures.max(1));
                (
                    failures,
                    (failures >= threshold).then(|| jiff::Timestamp::now().as_millisecond()),
                )
            };
            tokio::task::block_in_place(|| self.store.set_breaker(&route, failures, opened))
                .map_err(|e| e.to_string())?;
            let limit = i64::from(self.config.orchestrator.retry_limit);
            if !succeeded && origin.retry_count < limit {
                self.retry(state, task_id, event_type).await?;
                let _ = tokio::task::block_in_place(|| {
                    self.store
                        .set_route(task_id, event_type, &origin.pipeline, None, "retrying")
                });
                return Ok(());
            }
            let _ = tokio::task::block_in_place(|| {
                self.store.set_route(
                    task_id,
                    event_type,
                    &origin.pipeline,
                    None,
                    if succeeded {
                        RunStatus::Succeeded.as_str()
                    } else {
                        RunStatus::Failed.as_str()
                    },
                )
            });
        }
        callback(&self.http.clone(), state).await
    }

    /// Dispatches the same event again with `retry_count` + 1.
    async fn retry(
        &mut self,
        state: &OriginState,
        task_id: &str,
        event_type: &str,
    ) -> Result<(), String> {
        let origin = &state.origin;
        let event = match origin.event_id {
            Some(id) => {
                tokio::task::block_in_place(|| self.store.event(id)).map_err(|e| e.to_string())?
            }
            None => None,
        };
        let mut client_payload = event
            .and_then(|e| serde_json::from_value::<Incoming>(e.payload).ok())
            .and_then(|i| i.client_payload)
            .unwrap_or_else(|| serde_json::json!({"task_id": task_id}));
        let retry_count = origin.retry_count + 1;
        if let Some(map) = client_payload.as_object_mut() {
            map.insert("retry_count".to_owned(), retry_count.into());
        }
        let incoming = Incoming::dispatch(event_type, client_payload);
        tracing::info!(
            task_id,
            event_type,
            retry_count,
            "retrying a failed dispatch"
        );
        self.inbox
            .accept(NewEvent {
                source: "dispatch".to_owned(),
                delivery_id: format!("{task_id}:{event_type}:{retry_count}"),
                kind: "repository_dispatch".to_owned(),
                repo: None,
                task_id: Some(task_id.to_owned()),
                event_type: Some(event_type.to_owned()),
                payload: serde_json::to_value(incoming).unwrap_or_default(),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Sends the completion callback, if the run has one (a few tries with backoff).
async fn callback(http: &reqwest::Client, state: &OriginState) -> Result<(), String> {
    let Some(url) = &state.origin.callback_url else {
        return Ok(());
    };
    let error = state.tasks.iter().find_map(|(task, status, error)| {
        (*status == TaskState::Failed).then(|| {
            format!(
                "{task}: {}",
                error.as_deref().unwrap_or(TaskState::Failed.as_str())
            )
        })
    });
    let body = serde_json::json!({
        "run_id": state.origin.run_id,
        "pipeline": state.origin.pipeline,
        "status": state.status,
        "task_id": state.origin.task_id,
        "event_type": state.origin.event_type,
        "retry_count": state.origin.retry_count,
        "error": error,
    });
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    for _ in 0..4 {
        match http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("callback to {url} answered {}", r.status()),
            Err(e) => last = format!("callback to {url} failed: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_store::Origin;

    fn state(status: &str, tasks: &[(&str, &str)]) -> OriginState {
        let status = RunStatus::parse(status).unwrap();
        OriginState {
            origin: Origin {
                run_id: "r".into(),
                pipeline: "acme/app/ci.yaml".into(),
                ..Origin::default()
            },
            status,
            error: None,
            tasks: tasks
                .iter()
                .map(|(t, s)| ((*t).to_owned(), TaskState::parse(s).unwrap(), None))
                .collect(),
        }
    }

    #[test]
    fn one_status_per_job_and_skipped_jobs_are_successes_that_say_so() {
        let s = state(
            "running",
            &[
                ("lint[0]", "succeeded"),
                ("lint[1]", "running"),
                ("docs", "skipped"),
                ("test", "failed"),
            ],
        );
        assert_eq!(
            desired_statuses(&s),
            vec![
                (
                    "cascade/acme/app/ci.yaml/lint".into(),
                    "pending".into(),
                    "running".into()
                ),
                (
                    "cascade/acme/app/ci.yaml/docs".into(),
                    "success".into(),
                    "skipped".into()
                ),
                (
                    "cascade/acme/app/ci.yaml/test".into(),
                    "failure".into(),
                    "failed".into()
                ),
            ]
        );
    }

    #[test]
    fn a_run_without_tasks_has_one_status_for_the_pipeline() {
        assert_eq!(
            desired_statuses(&state("skipped", &[])),
            vec![(
                "cascade/acme/app/ci.yaml".into(),
                "success".into(),
                "skipped".into()
            )]
        );
        assert_eq!(desired_statuses(&state("queued", &[]))[0].1, "pending");
        let mut config_error = state("failed", &[]);
        config_error.error = Some("job `a`: unknown runner `huge` (cascade.toml has small)".into());
        assert_eq!(
            desired_statuses(&config_error)[0],
            (
                "cascade/acme/app/ci.yaml".into(),
                "failure".into(),
                "job `a`: unknown runner `huge` (cascade.toml has small)".into()
            )
        );
    }
}
