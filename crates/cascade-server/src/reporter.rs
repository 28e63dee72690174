//! The reporter: a reconciler over the runs the orchestrator started (`run_origins`).
//! Every `tick` it compares each run's state with what was last told, and:
//! - posts commit statuses to the forge: `pending` while a job waits or runs, then
//!   `success` / `failure` / `error` per job (one context per job; a skipped job is a
//!   `success` saying "skipped", so required checks never stay pending), only on change;
//! - when a dispatch-started run ends: updates its route's circuit breaker, starts it
//!   again (`retry_count` + 1) while it failed and retries are left, and otherwise sends
//!   the completion callback — whatever the outcome;
//! - marks the origin reported once everything about the end was done.

use crate::error::chain;
use crate::inbox::Inbox;
use crate::incoming::{Dispatch, Incoming};
use crate::store_thread::StoreThread;
use cascade_plan::{RunStatus, TaskState};
use cascade_spec::config::{AdminConfig, Forge};
use cascade_store::{Orchestration, OriginState};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sends one commit status; `Err` to try again on the next tick.
pub type StatusSender = Arc<
    dyn Fn(StatusPost) -> futures::future::BoxFuture<'static, Result<(), ReportError>>
        + Send
        + Sync,
>;

/// Where a run's commit statuses go, by name: kept with its origin
/// (`run_origins.status_target`, as JSON) by the orchestrator, read back by the reporter,
/// which resolves it to a `cascade_git::StatusTarget` (with the token) only to send. It
/// names the token's secret, never the token. Rows written before this type had the same
/// fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRoute {
    pub forge: Forge,
    /// The forge's API base (the repository's `api_url`); `None`: no statuses are sent.
    pub api_url: Option<String>,
    /// The registered repository (`owner/name`).
    pub repo: String,
    /// GitLab's numeric project id; GitLab's statuses go to it (else to `repo`).
    pub project_id: Option<String>,
    /// The secret (by name) holding the API token.
    pub token_secret: Option<String>,
    /// The commit the run built.
    pub sha: String,
}

impl StatusRoute {
    /// The text stored in `run_origins.status_target`.
    pub fn stored(&self) -> String {
        // Strings only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored target read back.
    pub fn read(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The repository as `forge`'s status API names it: GitLab's project id when known.
    pub fn api_repo(&self) -> &str {
        match (self.forge, &self.project_id) {
            (Forge::GitLab, Some(id)) => id,
            _ => &self.repo,
        }
    }
}

/// One commit status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPost {
    /// Where it goes: the run origin's target.
    pub target: StatusRoute,
    pub context: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    pub description: String,
}

/// The reporter's state.
pub struct Reporter {
    pub store: StoreThread<Orchestration>,
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
                tracing::warn!(error = %chain(&e), "reporter pass failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// One pass over every run not yet reported.
    pub async fn reconcile(&mut self) -> Result<(), ReportError> {
        let pending = self.store.call(|s| s.pending_origins()).await?;
        for state in pending {
            let statuses_sent = self.post_statuses(&state).await;
            if !state.status.is_final() || !statuses_sent {
                continue;
            }
            if let Err(e) = self.settle(&state).await {
                tracing::warn!(
                    run = state.origin.run_id,
                    error = %chain(&e),
                    "cannot settle a run's end; trying again"
                );
                continue;
            }
            let run_id = state.origin.run_id.clone();
            self.store.call(move |s| s.origin_done(&run_id)).await?;
        }
        Ok(())
    }

    /// Posts what changed; `true` when everything wanted was sent.
    async fn post_statuses(&mut self, state: &OriginState) -> bool {
        let Some(stored) = state.origin.status_target.as_deref() else {
            return true;
        };
        let target = match StatusRoute::read(stored) {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(
                    run = state.origin.run_id,
                    error = %e,
                    "a run's status target cannot be read; no commit status is sent"
                );
                return true;
            }
        };
        let Some(send) = self.statuses.clone() else {
            return true;
        };
        let mut all = true;
        for (context, status, description) in desired_statuses(state) {
            let run_id = state.origin.run_id.clone();
            let last = {
                let (run_id, context) = (run_id.clone(), context.clone());
                self.store
                    .call(move |s| s.reported_status(&run_id, &context))
                    .await
                    .ok()
                    .flatten()
            };
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
                    tracing::warn!(run = run_id, context, error = %chain(&e), "commit status not sent");
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
                    let (run_id, context) = (run_id.clone(), context.clone());
                    let _ = self
                        .store
                        .call(move |s| {
                            s.set_reported_status(&run_id, &context, &status, &description)
                        })
                        .await;
                }
                Err(e) => {
                    tracing::warn!(run = run_id, context, error = %chain(&e), "commit status not sent");
                    all = false;
                }
            }
        }
        all
    }

    /// The end of a run: breaker, retry or callback.
    async fn settle(&mut self, state: &OriginState) -> Result<(), ReportError> {
        let origin = &state.origin;
        let succeeded = matches!(state.status, RunStatus::Succeeded | RunStatus::Skipped);
        if let (Some(task_id), Some(event_type)) = (&origin.task_id, &origin.event_type) {
            let route = format!("{event_type} → {}", origin.pipeline);
            let key = route.clone();
            let (failures, _) = self.store.call(move |s| s.breaker(&key)).await?;
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
            self.store
                .call(move |s| s.set_breaker(&route, failures, opened))
                .await?;
            let limit = i64::from(self.config.orchestrator.retry_limit);
            if !succeeded && origin.retry_count < limit {
                self.retry(state, task_id, event_type).await?;
                let (task, event, pipeline) =
                    (task_id.clone(), event_type.clone(), origin.pipeline.clone());
                let _ = self
                    .store
                    .call(move |s| s.set_route(&task, &event, &pipeline, None, "retrying"))
                    .await;
                return Ok(());
            }
            let (task, event, pipeline) =
                (task_id.clone(), event_type.clone(), origin.pipeline.clone());
            let word = if succeeded {
                RunStatus::Succeeded.as_str()
            } else {
                RunStatus::Failed.as_str()
            };
            let _ = self
                .store
                .call(move |s| s.set_route(&task, &event, &pipeline, None, word))
                .await;
        }
        callback(&self.http.clone(), state).await
    }

    /// Dispatches the same event again with `retry_count` + 1.
    async fn retry(
        &mut self,
        state: &OriginState,
        task_id: &str,
        event_type: &str,
    ) -> Result<(), ReportError> {
        let origin = &state.origin;
        let event = match origin.event_id {
            Some(id) => self.store.call(move |s| s.event(id)).await?,
            None => None,
        };
        let original = event.and_then(|e| Incoming::read(&e).ok());
        let mut client_payload = original
            .as_ref()
            .and_then(Incoming::client_payload)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"task_id": task_id}));
        let retry_count = origin.retry_count + 1;
        if let Some(map) = client_payload.as_object_mut() {
            map.insert("retry_count".to_owned(), retry_count.into());
        }
        // A retry acts in the scopes the first dispatch was limited to, no more.
        let scopes = original
            .as_ref()
            .map(|i| i.scopes().to_vec())
            .unwrap_or_default();
        let retry = Incoming::Dispatch(Dispatch {
            event_type: event_type.to_owned(),
            client_payload,
            scopes,
        });
        tracing::info!(
            task_id,
            event_type,
            retry_count,
            "retrying a failed dispatch"
        );
        self.inbox
            .accept(retry.stored())
            .await
            .map(|_| ())
            .map_err(ReportError::Inbox)
    }
}

/// Sends the completion callback, if the run has one (a few tries with backoff).
async fn callback(http: &reqwest::Client, state: &OriginState) -> Result<(), ReportError> {
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
    let mut last = None;
    for _ in 0..4 {
        match http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                last = Some(ReportError::CallbackAnswered {
                    url: url.clone(),
                    status: r.status().as_u16(),
                });
            }
            Err(source) => {
                last = Some(ReportError::Callback {
                    url: url.clone(),
                    source,
                });
            }
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(last.unwrap_or(ReportError::CallbackAnswered {
        url: url.clone(),
        status: 0,
    }))
}

/// Why a status, a callback or a reporter pass did not get through (tried again on the
/// next tick).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] cascade_store::StoreError),
    #[error(transparent)]
    Status(#[from] cascade_git::StatusError),
    #[error(transparent)]
    Forge(#[from] cascade_git::error::UnknownForge),
    #[error("the token secret `{0}` is not in the secrets file or the environment")]
    NoToken(String),
    #[error("callback to {url} answered {status}")]
    CallbackAnswered { url: String, status: u16 },
    #[error("callback to {url} failed")]
    Callback {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot dispatch the retry")]
    Inbox(#[source] crate::inbox::InboxError),
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

    /// Targets as the orchestrator wrote them before `StatusRoute` was a type (a
    /// `json!` object with every key, `null` where unset) read as they meant.
    #[test]
    fn old_status_targets_read_and_new_ones_round_trip() {
        let old = r#"{"forge":"gitlab","api_url":"https://gitlab.example/api/v4","repo":"acme/app","project_id":"42","token_secret":"GL_TOKEN","sha":"abc"}"#;
        let target = StatusRoute::read(old).unwrap();
        assert_eq!(
            target,
            StatusRoute {
                forge: Forge::GitLab,
                api_url: Some("https://gitlab.example/api/v4".into()),
                repo: "acme/app".into(),
                project_id: Some("42".into()),
                token_secret: Some("GL_TOKEN".into()),
                sha: "abc".into(),
            }
        );
        assert_eq!(target.api_repo(), "42");
        assert_eq!(StatusRoute::read(&target.stored()).unwrap(), target);
        let none = r#"{"forge":"github","api_url":null,"repo":"acme/app","project_id":null,"token_secret":null,"sha":"abc"}"#;
        let github = StatusRoute::read(none).unwrap();
        assert_eq!(
            (github.api_url.as_deref(), github.api_repo()),
            (None, "acme/app")
        );
        // A target naming no commit is refused, not read as an empty sha.
        assert!(StatusRoute::read(r#"{"forge":"github","repo":"acme/app"}"#).is_err());
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
