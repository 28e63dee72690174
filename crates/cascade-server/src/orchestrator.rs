//! The orchestrator: routes each stored event to the pipelines it starts (DESIGN §1, §4).
//!
//! It takes events from the SQLite event log in order (the inbox put them there), and
//! for each:
//! - a push, tag or pull request of a registered repository: reads the pipeline file at
//!   the trusted revision (a pull request from a fork: its base, and no secrets),
//!   matches `on:`, and queues a run with the event as its trigger; a config error
//!   (invalid file, unknown runner or secret) becomes a failed run, a path filter that
//!   leaves nothing to do a skipped one, so the status reporter tells the forge;
//! - a `repository_dispatch`: every registered pipeline listening to its type, routed
//!   once per (task id, event type, pipeline) and retry count, unless that route's
//!   circuit breaker is open;
//! - a `workflow_dispatch` or a cron tick: the named pipeline.
//!
//! What a run came from is kept (`run_origins`) for the status reporter, retries and
//! callbacks (`reporter.rs`). The orchestrator only routes: it never runs a task.

use crate::intake::Intake;
use crate::pool::PoolHandle;
use cascade_plan::{RunStatus, TaskState};
use cascade_spec::Scope;
use cascade_spec::config::{AdminConfig, Repository};
use cascade_store::{EventRow, Orchestration, Origin, Submission};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A pull request, as the orchestrator needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    /// `opened`, `synchronize`, `reopened`, `closed`, …
    pub action: String,
    pub head_sha: String,
    pub base_sha: String,
    pub base_ref: String,
    pub head_ref: String,
    pub from_fork: bool,
}

/// The normalised event stored in the event log, whatever its source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incoming {
    /// `push`, `tag`, `pull_request`, `repository_dispatch`, `workflow_dispatch`,
    /// `schedule`, `ping`.
    pub kind: String,
    /// The repository's full name (`owner/name`), as registered in `cascade.toml`.
    #[serde(default)]
    pub repo: Option<String>,
    /// The commit the event is about.
    #[serde(default)]
    pub sha: Option<String>,
    /// The commit before a push (for changed paths).
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub pull_request: Option<PullRequest>,
    /// Paths the change touched, when the event lists them.
    #[serde(default)]
    pub changed_paths: Option<Vec<String>>,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub client_payload: Option<serde_json::Value>,
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    /// The pipeline file to run (`workflow_dispatch`, `schedule`); the repository's own
    /// when unset.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// What `event.*` reads in the pipeline: the forge's payload, or the dispatch.
    #[serde(default)]
    pub raw: serde_json::Value,
    /// The scopes the sender of a dispatch may act in (its token's); empty: any. Only
    /// repositories of these scopes are started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl Incoming {
    /// A `repository_dispatch` with its client payload (`task_id`, `retry_count` set).
    pub fn dispatch(event_type: &str, client_payload: serde_json::Value) -> Self {
        Self {
            kind: "repository_dispatch".to_owned(),
            event_type: Some(event_type.to_owned()),
            raw: serde_json::json!({"action": event_type, "event_type": event_type, "client_payload": client_payload}),
            client_payload: Some(client_payload),
            ..Self::default()
        }
    }

    /// The event as `cascade-git` matches `on:` against it (push, tag, pull request).
    pub fn forge_event(&self) -> Option<cascade_git::delivery::ForgeEvent> {
        use cascade_git::delivery::{
            EventKind, ForgeEvent, PrAction, PullRequest as Pr, Repository,
        };
        let kind = match self.kind.as_str() {
            "push" => EventKind::Push {
                branch: self.branch.clone()?,
            },
            "tag" => EventKind::Tag {
                name: self.tag.clone()?,
            },
            "pull_request" => {
                let pr = self.pull_request.as_ref()?;
                EventKind::PullRequest(Pr {
                    action: PrAction::Other(pr.action.clone()),
                    merged: false,
                    number: pr.number,
                    title: String::new(),
                    head_ref: pr.head_ref.clone(),
                    head_sha: pr.head_sha.clone(),
                    head_clone_url: None,
                    base_ref: pr.base_ref.clone(),
                    base_sha: (!pr.base_sha.is_empty()).then(|| pr.base_sha.clone()),
                    from_fork: pr.from_fork,
                })
            }
            _ => return None,
        };
        Some(ForgeEvent {
            kind,
            repository: Repository {
                full_name: self.repo.clone().unwrap_or_default(),
                ..Repository::default()
            },
            sha: self.sha.clone(),
            before: self.before.clone(),
            changed_files: self.changed_paths.clone(),
            sender: None,
        })
    }

    fn task_id(&self) -> Option<String> {
        self.client_payload
            .as_ref()
            .and_then(|p| p.get("task_id"))
            .and_then(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .or_else(|| Some(t.to_string()))
            })
    }

    fn retry_count(&self) -> i64 {
        self.client_payload
            .as_ref()
            .and_then(|p| p.get("retry_count"))
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    }

    fn event_name(&self) -> &str {
        match self.kind.as_str() {
            "tag" => "push",
            other => other,
        }
    }
}

/// A pipeline file as read, and the commit it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub text: String,
    pub sha: String,
}

/// Reads pipeline files and changed paths from registered repositories.
pub trait PipelineSource: Send + Sync {
    /// The file at `path` in revision `rev` (a sha or a branch), `None` if it is not there.
    fn read(&self, repo: &Repository, rev: &str, path: &str) -> Result<Option<Fetched>, String>;
    /// Paths changed between two revisions.
    fn changed(&self, repo: &Repository, base: &str, head: &str) -> Result<Vec<String>, String>;
}

/// What handling an event came to (the event log's status and note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Done(String),
    Skipped(String),
    Failed(String),
}

/// The orchestrator's state: its store connection and what it submits through.
pub struct Orchestrator {
    pub store: Orchestration,
    pub intake: Intake,
    pub pool: Option<PoolHandle>,
    pub config: Arc<AdminConfig>,
    pub source: Arc<dyn PipelineSource>,
    /// Secret names available to runs (env and secrets file); an unknown one is a
    /// config error before anything runs.
    pub secret_names: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Where repositories with `backend = "argo"` run.
    pub argo: Arc<crate::argo::ArgoBackend>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator").finish_non_exhaustive()
    }
}

/// One pipeline to start, and why.
struct Start<'a> {
    repo_name: &'a str,
    repo: &'a Repository,
    path: String,
    text: String,
    /// The commit the jobs check out.
    sha: String,
    incoming: &'a Incoming,
    /// The event that starts it.
    event: &'a EventRow,
    /// Secrets are withheld from pull requests from forks.
    secrets: bool,
    route: Option<(String, String, i64)>,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Orchestrator {
    /// Handles events as they come until `shutdown`.
    pub async fn run(mut self, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
        loop {
            let taken = tokio::task::block_in_place(|| self.store.take(16));
            match taken {
                Ok(events) if !events.is_empty() => {
                    let mut outcomes = Vec::with_capacity(events.len());
                    for event in events {
                        let handled = self.handle(&event).await;
                        let (status, note) = match handled {
                            Handled::Done(n) => ("done", n),
                            Handled::Skipped(n) => ("skipped", n),
                            Handled::Failed(n) => ("failed", n),
                        };
                        tracing::info!(
                            event = event.event_id,
                            kind = event.kind,
                            status,
                            note,
                            "event handled"
                        );
                        outcomes.push((event.event_id, status, note));
                    }
                    let outcomes: Vec<(i64, &str, &str)> = outcomes
                        .iter()
                        .map(|(id, status, note)| (*id, *status, note.as_str()))
                        .collect();
                    if let Err(e) = tokio::task::block_in_place(|| self.store.settle_all(&outcomes))
                    {
                        tracing::warn!(error = %e, "cannot record events' outcomes");
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the event log"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Routes one event.
    pub async fn handle(&mut self, event: &EventRow) -> Handled {
        let incoming: Incoming = match serde_json::from_value(event.payload.clone()) {
            Ok(i) => i,
            Err(e) => return Handled::Failed(format!("not a normalised event: {e}")),
        };
        match incoming.kind.as_str() {
            "ping" => Handled::Done("pong".to_owned()),
            "push" | "tag" | "pull_request" => self.forge_event(event, &incoming).await,
            "repository_dispatch" => self.dispatch(event, &incoming).await,
            "workflow_dispatch" | "schedule" => self.named(event, &incoming).await,
            other => Handled::Skipped(format!("`{other}` events start nothing")),
        }
    }

    /// The registered name of the event's repository.
    fn repo(&self, incoming: &Incoming) -> Result<String, Handled> {
        let name = incoming.repo.as_deref().unwrap_or_default();
        if self.config.repositories.contains_key(name) {
            Ok(name.to_owned())
        } else {
            Err(Handled::Skipped(format!(
                "repository `{name}` is not registered in cascade.toml ([repositories.\"{name}\"])"
            )))
        }
    }

    async fn forge_event(&mut self, event: &EventRow, incoming: &Incoming) -> Handled {
        let config = Arc::clone(&self.config);
        let repo_name = match self.repo(incoming) {
            Ok(r) => r,
            Err(h) => return h,
        };
        let Some(repo) = config.repositories.get(&repo_name) else {
            return Handled::Skipped(format!("repository `{repo_name}` is not registered"));
        };
        let Some(sha) = incoming.sha.clone() else {
            return Handled::Skipped("the event names no commit".to_owned());
        };
        let pr = incoming.pull_request.as_ref();
        // The pipeline file comes from a revision the repository's owners control.
        let (trusted, secrets) = match pr {
            // GitLab does not send the base commit: its branch will do.
            Some(pr) if pr.from_fork && pr.base_sha.is_empty() => (pr.base_ref.clone(), false),
            Some(pr) if pr.from_fork => (pr.base_sha.clone(), false),
            _ => (sha.clone(), true),
        };
        let path = repo.pipeline.clone();
        let source = Arc::clone(&self.source);
        let read = tokio::task::block_in_place(|| source.read(repo, &trusted, &path));
        let text = match read {
            Ok(Some(fetched)) => fetched.text,
            Ok(None) => return Handled::Skipped(format!("no {path} at {trusted}")),
            Err(e) => return Handled::Failed(format!("cannot read {path} at {trusted}: {e}")),
        };
        let mut incoming = incoming.clone();
        if incoming.changed_paths.is_none() {
            let (base, head) = match pr {
                Some(pr) if pr.base_sha.is_empty() => {
                    (Some(pr.base_ref.clone()), pr.head_sha.clone())
                }
                Some(pr) => (Some(pr.base_sha.clone()), pr.head_sha.clone()),
                None => (incoming.before.clone(), sha.clone()),
            };
            if let Some(base) = base.filter(|b| !b.is_empty() && b.chars().any(|c| c != '0')) {
                let changed = tokio::task::block_in_place(|| source.changed(repo, &base, &head));
                incoming.changed_paths = changed.ok();
            }
        }
        self.start(Start {
            repo_name: &repo_name,
            repo,
            path,
            text,
            sha,
            incoming: &incoming,
            event,
            secrets,
            route: None,
        })
        .await
    }

    async fn dispatch(&mut self, event: &EventRow, incoming: &Incoming) -> Handled {
        let config = Arc::clone(&self.config);
        let event_type = incoming.event_type.clone().unwrap_or_default();
        let task_id = incoming.task_id().unwrap_or_default();
        let retry_count = incoming.retry_count();
        let mut started = Vec::new();
        let mut problems = Vec::new();
        // A dispatch sent to one repository (a forge's `repository_dispatch`) stays there.
        let only = incoming.repo.as_deref();
        for (repo_name, repo) in &config.repositories {
            if only.is_some_and(|r| r != repo_name) {
                continue;
            }
            // A dispatch starts only what its sender's token may act on.
            let scope = repo_scope(repo_name).to_string();
            if !incoming.scopes.is_empty() && !incoming.scopes.contains(&scope) {
                continue;
            }
            let source = Arc::clone(&self.source);
            let read = tokio::task::block_in_place(|| {
                source.read(repo, &repo.default_branch, &repo.pipeline)
            });
            let Fetched { text, sha } = match read {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) => {
                    problems.push(format!("{repo_name}: {e}"));
                    continue;
                }
            };
            let pipeline = match cascade_spec::parse_pipeline(&repo.pipeline, &text) {
                Ok(p) => p,
                Err(errors) => {
                    problems.push(format!(
                        "{repo_name}/{}: invalid: {}",
                        repo.pipeline,
                        errors
                            .diagnostics
                            .first()
                            .map_or("", |d| d.message.as_str())
                    ));
                    continue;
                }
            };
            let listens = pipeline
                .on
                .repository_dispatch
                .is_some_and(|d| d.types.is_empty() || d.types.contains(&event_type));
            if !listens {
                continue;
            }
            let pipeline = format!("{repo_name}/{}", repo.pipeline);
            let route = format!("{event_type} → {pipeline}");
            if let Some(why) = self.breaker_refuses(&route) {
                problems.push(why);
                continue;
            }
            let claimed = tokio::task::block_in_place(|| {
                self.store
                    .claim_route(&task_id, &event_type, &pipeline, retry_count)
            });
            match claimed {
                Ok(true) => {}
                Ok(false) => {
                    started.push(format!(
                        "{pipeline} was already started for task {task_id} (retry {retry_count})"
                    ));
                    continue;
                }
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            }
            let handled = self
                .start(Start {
                    repo_name,
                    repo,
                    path: repo.pipeline.clone(),
                    text,
                    sha,
                    incoming,
                    event,
                    secrets: true,
                    route: Some((task_id.clone(), event_type.clone(), retry_count)),
                })
                .await;
            match handled {
                Handled::Done(n) => started.push(n),
                Handled::Skipped(n) | Handled::Failed(n) => problems.push(n),
            }
        }
        match (started.is_empty(), problems.is_empty()) {
            (true, true) => {
                Handled::Skipped(format!("no registered pipeline listens to `{event_type}`"))
            }
            (true, false) => Handled::Failed(problems.join("; ")),
            (false, _) => Handled::Done(started.join("; ")),
        }
    }

    /// `Some(reason)` while the route's breaker is open; after the cool-down one event
    /// may try (half-open).
    fn breaker_refuses(&self, route: &str) -> Option<String> {
        let (failures, opened) = self.store.breaker(route).ok()?;
        let opened = opened?;
        let cooldown =
            i64::try_from(self.config.orchestrator.cooldown().as_millis()).unwrap_or(i64::MAX);
        (now_ms() < opened.saturating_add(cooldown)).then(|| {
            format!("circuit open for {route} after {failures} consecutive failures; retry after the cool-down")
        })
    }

    async fn named(&mut self, event: &EventRow, incoming: &Incoming) -> Handled {
        let config = Arc::clone(&self.config);
        let repo_name = match self.repo(incoming) {
            Ok(r) => r,
            Err(h) => return h,
        };
        let Some(repo) = config.repositories.get(&repo_name) else {
            return Handled::Skipped(format!("repository `{repo_name}` is not registered"));
        };
        let path = incoming
            .pipeline
            .clone()
            .unwrap_or_else(|| repo.pipeline.clone());
        let rev = incoming
            .sha
            .clone()
            .or_else(|| incoming.branch.clone())
            .unwrap_or_else(|| repo.default_branch.clone());
        let source = Arc::clone(&self.source);
        let Fetched { text, sha } =
            match tokio::task::block_in_place(|| source.read(repo, &rev, &path)) {
                Ok(Some(f)) => f,
                Ok(None) => return Handled::Skipped(format!("no {path} at {rev}")),
                Err(e) => return Handled::Failed(format!("cannot read {path} at {rev}: {e}")),
            };
        self.start(Start {
            repo_name: &repo_name,
            repo,
            path,
            text,
            sha,
            incoming,
            event,
            secrets: true,
            route: None,
        })
        .await
    }

    /// Where a run comes from: what the reporter needs to tell its forge and its
    /// dispatcher.
    fn origin(&self, s: &Start<'_>, run_id: &str, name: &str) -> Origin {
        let status_target = s.incoming.sha.as_ref().map(|sha| {
            serde_json::json!({
                "forge": s.repo.forge,
                "api_url": s.repo.api_url,
                "repo": s.repo_name,
                "project_id": s.repo.project_id,
                "token_secret": s.repo.token_secret,
                "sha": sha,
            })
            .to_string()
        });
        let callback_url = self.callback(s);
        Origin {
            run_id: run_id.to_owned(),
            event_id: Some(s.event.event_id),
            pipeline: name.to_owned(),
            status_target,
            task_id: s.route.as_ref().map(|r| r.0.clone()),
            event_type: s.route.as_ref().map(|r| r.1.clone()),
            retry_count: s.route.as_ref().map_or(0, |r| r.2),
            callback_url,
        }
    }

    /// Where a run's completion callback goes: only ever a URL from cascade.toml. A
    /// dispatch may pick one of `[callbacks]` by name (`client_payload.callback`); else
    /// the repository's `callback`, else `[orchestrator] callback_url`. A URL in a
    /// payload is never called (that would let anyone make the server send requests
    /// anywhere).
    fn callback(&self, s: &Start<'_>) -> Option<String> {
        let payload = s.incoming.client_payload.as_ref();
        if payload.is_some_and(|p| p.get("callback_url").is_some()) {
            tracing::warn!(
                repo = s.repo_name,
                "ignoring `callback_url` in a dispatch payload: callbacks are named in cascade.toml's [callbacks] and picked with `callback`"
            );
        }
        if let Some(name) = payload
            .and_then(|p| p.get("callback"))
            .and_then(serde_json::Value::as_str)
        {
            let url = self.config.callbacks.get(name).cloned();
            if url.is_none() {
                tracing::warn!(
                    repo = s.repo_name,
                    callback = name,
                    "a dispatch names a callback that cascade.toml's [callbacks] does not have; none is sent"
                );
            }
            return url;
        }
        s.repo
            .callback
            .as_ref()
            .and_then(|name| self.config.callbacks.get(name).cloned())
            .or_else(|| self.config.orchestrator.callback_url.clone())
    }

    /// Checks, matches and queues one pipeline; config errors become failed runs.
    async fn start(&mut self, s: Start<'_>) -> Handled {
        let name = format!("{}/{}", s.repo_name, s.path);
        let run_id = run_id_for(s.event, &name);
        // The same event handled again (after a crash before its outcome was recorded)
        // finds its run: nothing starts twice.
        match tokio::task::block_in_place(|| self.store.run_backend(&run_id)) {
            Ok(None) => {}
            Ok(Some(existing))
                if existing.backend.is_some()
                    && existing.external_ref.is_none()
                    && existing.status == RunStatus::Queued =>
            {
                tracing::info!(
                    run = run_id,
                    "an Argo run recorded but maybe not created; creating it again"
                );
            }
            Ok(Some(existing)) => {
                return Handled::Done(format!(
                    "run {run_id} of {name} exists already ({})",
                    existing.status
                ));
            }
            Err(e) => return Handled::Failed(format!("cannot look up run {run_id}: {e}")),
        }
        let scope = repo_scope(s.repo_name);
        let origin = self.origin(&s, &run_id, &name);
        let trigger = cascade_plan::Trigger {
            event_name: s.incoming.event_name().to_owned(),
            payload: s.incoming.raw.clone(),
            inputs: s.incoming.inputs.clone(),
            changed_paths: s.incoming.changed_paths.clone(),
        };
        let checked = self.check(&s, &trigger);
        let definition = serde_json::json!({
            "pipeline": s.text,
            "trigger": {
                "event_name": trigger.event_name,
                "payload": trigger.payload,
                "inputs": trigger.inputs,
                "changed_paths": trigger.changed_paths,
            },
            "secrets": s.secrets,
            "repository": s.repo_name,
            "checkout": {"url": s.repo.url, "sha": s.sha},
        });
        let planned = match checked {
            Check::Run(planned) => planned,
            Check::Skip(reason) => {
                if reason.reported {
                    let kind = &s.incoming.kind;
                    self.ended(
                        &run_id,
                        &name,
                        &origin,
                        kind,
                        RunStatus::Skipped,
                        &reason.text,
                    );
                }
                return Handled::Skipped(reason.text);
            }
            Check::ConfigError(error) => {
                let kind = &s.incoming.kind;
                self.ended(&run_id, &name, &origin, kind, RunStatus::Failed, &error);
                return Handled::Failed(format!("{name}: {error}"));
            }
        };
        if s.repo.backend == cascade_spec::config::Backend::Argo {
            return self
                .start_on_argo(&s, &name, &run_id, &origin, *planned, &definition)
                .await;
        }
        let submission = Submission {
            dag_id: name.clone(),
            run_id: run_id.clone(),
            definition,
            scope: scope.clone(),
            target_node: None,
            priority: 1,
            trigger: s.incoming.event_name().to_owned(),
        };
        // The origin first: a run is never left without one for the reporter.
        if let Err(e) = tokio::task::block_in_place(|| self.store.add_origin(&origin)) {
            return Handled::Failed(format!("cannot record the origin of a run: {e}"));
        }
        match self.intake.submit(submission).await {
            Ok(enqueued) => {
                if let Some(pool) = &self.pool {
                    pool.notify(&enqueued.worker_id, &scope.to_string());
                }
                if let Some((task, event_type, _)) = &s.route {
                    let _ = tokio::task::block_in_place(|| {
                        self.store
                            .set_route(task, event_type, &name, Some(&run_id), "running")
                    });
                }
                Handled::Done(format!("started run {run_id} of {name}"))
            }
            Err(e) => Handled::Failed(format!("cannot queue {name}: {e}")),
        }
    }

    /// Whether a pipeline runs for this event; config errors say why it cannot.
    fn check(&self, s: &Start<'_>, trigger: &cascade_plan::Trigger) -> Check {
        let pipeline = match cascade_spec::parse_pipeline(&s.path, &s.text) {
            Ok(p) => p,
            Err(errors) => {
                let first = errors.diagnostics.first();
                let at = first.map(|d| errors.line_column(d));
                return Check::ConfigError(format!(
                    "invalid {}: {}{}",
                    s.path,
                    first.map_or("", |d| d.message.as_str()),
                    at.map_or(String::new(), |a| format!(
                        " (line {}, column {})",
                        a.line, a.column
                    ))
                ));
            }
        };
        if let Some(skip) = Self::not_triggered(&pipeline, s.incoming) {
            return Check::Skip(skip);
        }
        let plan = match cascade_plan::plan(&pipeline, trigger, &[]) {
            Ok(p) => p,
            Err(e) => return Check::ConfigError(e.to_string()),
        };
        for job in &plan.jobs {
            if let Some(runner) = &job.runner
                && let Err(known) = self.config.runner(runner)
            {
                return Check::ConfigError(format!(
                    "job `{}`: unknown runner `{runner}` (cascade.toml has {known})",
                    job.id
                ));
            }
            // Secrets are granted per repository in cascade.toml, on either backend.
            if s.secrets
                && let Err(why) = self.config.check_grants(
                    job.secrets.iter().map(String::as_str),
                    cascade_spec::config::Grantee {
                        repository: Some(s.repo_name),
                        scope: &repo_scope(s.repo_name).to_string(),
                    },
                )
            {
                return Check::ConfigError(format!("job `{}`: {why}", job.id));
            }
            // On Argo, secrets are the cluster's (mapped in `[secrets]`; rendering checks).
            if s.secrets && s.repo.backend == cascade_spec::config::Backend::Local {
                for secret in &job.secrets {
                    if !(self.secret_names)(secret) {
                        return Check::ConfigError(format!(
                            "job `{}`: unknown secret `{secret}` (not in the server's environment or secrets file)",
                            job.id
                        ));
                    }
                }
            }
        }
        if plan.jobs.iter().all(|j| j.skip.is_some()) && !plan.jobs.is_empty() {
            return Check::Skip(Skip {
                text: "no job's paths changed".to_owned(),
                reported: true,
            });
        }
        Check::Run(Box::new(Planned { pipeline, plan }))
    }

    /// Renders the run as an Argo `Workflow` labelled with its run id, records it, and
    /// creates it on the cluster; the Argo watcher follows it from there. A pipeline
    /// that cannot run on Argo, or a cluster that refuses it, ends the run `failed`
    /// saying why.
    async fn start_on_argo(
        &mut self,
        s: &Start<'_>,
        name: &str,
        run_id: &str,
        origin: &Origin,
        planned: Planned,
        definition: &serde_json::Value,
    ) -> Handled {
        let Planned { pipeline, mut plan } = planned;
        if !s.secrets {
            // A pull request from a fork: its jobs get no secret, as on local workers.
            for job in &mut plan.jobs {
                job.secrets.clear();
            }
        }
        let settings = &self.config.argo;
        let checkout = cascade_argo::Checkout {
            repo: s.repo.url.clone(),
            revision: s.sha.clone(),
        };
        let (workflow, tasks) =
            match crate::argo::render(&pipeline, &plan, &self.config, checkout, run_id, name) {
                Ok(rendered) => rendered,
                Err(why) => {
                    self.ended(
                        run_id,
                        name,
                        origin,
                        &s.incoming.kind,
                        RunStatus::Failed,
                        &why,
                    );
                    return Handled::Failed(format!("{name}: {why}"));
                }
            };
        let mut definition = definition.clone();
        definition["argo"] = serde_json::json!({
            "namespace": settings.namespace,
            "tasks": tasks,
        });
        let jobs: Vec<String> = tasks.into_iter().map(|(_, job)| job).collect();
        let recorded = tokio::task::block_in_place(|| {
            self.store.add_origin(origin)?;
            self.store.external_run(
                run_id,
                name,
                s.incoming.event_name(),
                crate::argo::BACKEND,
                &definition,
                &jobs,
            )
        });
        if let Err(e) = recorded {
            return Handled::Failed(format!("cannot record run {run_id} of {name}: {e}"));
        }
        if let Some((task, event_type, _)) = &s.route {
            let _ = tokio::task::block_in_place(|| {
                self.store
                    .set_route(task, event_type, name, Some(run_id), "running")
            });
        }
        let namespace = settings.namespace.clone();
        let manifest = cascade_argo::Manifest::Workflow(workflow);
        match self.argo.submit(&namespace, &manifest).await {
            Ok(created) => {
                let reference = format!("{namespace}/{created}");
                if let Err(e) =
                    tokio::task::block_in_place(|| self.store.set_external_ref(run_id, &reference))
                {
                    tracing::warn!(run = run_id, error = %e, "cannot record where an Argo run is");
                }
                Handled::Done(format!(
                    "started run {run_id} of {name} as Argo workflow {reference}"
                ))
            }
            Err(e) => {
                let why = format!("cannot create the Argo workflow in `{namespace}`: {e}");
                // Every job says why, so none stays pending on the forge.
                let tasks: Vec<cascade_store::ExternalTask<'_>> = jobs
                    .iter()
                    .map(|job| cascade_store::ExternalTask {
                        task_id: job,
                        status: TaskState::Failed,
                        error: Some(&why),
                    })
                    .collect();
                let _ = tokio::task::block_in_place(|| {
                    self.store
                        .external_progress(run_id, RunStatus::Failed, Some(&why), &tasks)
                });
                Handled::Failed(format!("{name}: {why}"))
            }
        }
    }

    /// Why `on:` does not start the pipeline for this event, if it does not. A skip that
    /// only the path filters cause is reported (the forge shows it skipped); others not.
    fn not_triggered(pipeline: &cascade_spec::Pipeline, incoming: &Incoming) -> Option<Skip> {
        use cascade_git::filter::{Verdict, evaluate};
        let quiet = |text: String| {
            Some(Skip {
                text,
                reported: false,
            })
        };
        if incoming.kind == "workflow_dispatch" {
            return pipeline.on.workflow_dispatch.is_none().then(|| Skip {
                text: "`on.workflow_dispatch` is not set".to_owned(),
                reported: false,
            });
        }
        let event = incoming.forge_event()?;
        let changed = incoming.changed_paths.as_deref();
        match evaluate(&pipeline.on, &event, changed) {
            Ok(Verdict::Run) => None,
            Ok(Verdict::Skip(why)) => {
                let paths_only = changed.is_some()
                    && matches!(evaluate(&pipeline.on, &event, None), Ok(Verdict::Run));
                Some(Skip {
                    text: why,
                    reported: paths_only,
                })
            }
            Err(e) => quiet(e.to_string()),
        }
    }

    /// Records a run that ended before it started (skipped, or a config error), so the
    /// reporter sends its status like any other.
    fn ended(
        &mut self,
        run_id: &str,
        name: &str,
        origin: &Origin,
        trigger: &str,
        status: cascade_plan::RunStatus,
        why: &str,
    ) {
        let result = tokio::task::block_in_place(|| {
            self.store.ended_run(run_id, name, trigger, status, why)?;
            self.store.add_origin(origin)
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, run = run_id, "cannot record a run that did not start");
        }
    }
}

/// Why a pipeline does not run; `reported` ones get a commit status (`skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub text: String,
    pub reported: bool,
}

/// A pipeline that runs, and its plan.
struct Planned {
    pipeline: cascade_spec::Pipeline,
    plan: cascade_plan::Plan,
}

enum Check {
    Run(Box<Planned>),
    Skip(Skip),
    ConfigError(String),
}

/// The run an event starts for a pipeline: the same every time that event is handled.
/// Its time part is when the event arrived (run ids sort by time); the rest is a stable
/// hash (FNV-1a) of the event id and the pipeline.
fn run_id_for(event: &EventRow, pipeline: &str) -> String {
    let millis = event
        .received_at
        .parse::<jiff::Timestamp>()
        .map_or_else(|_| now_ms(), jiff::Timestamp::as_millisecond);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in event
        .event_id
        .to_le_bytes()
        .iter()
        .chain(pipeline.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    cascade_plan::RunId::generate(u64::try_from(millis).unwrap_or(0), hash).to_string()
}

/// The scope a registered repository's runs belong to (`acme/app` → `project:acme-app`).
pub fn repo_scope(name: &str) -> Scope {
    Scope::Project(slug(name))
}

/// A scope id from a repository name (`acme/app` → `acme-app`).
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "repo".to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_store::{NewEvent, Queue};
    use cascade_test::git;

    /// An event handled again (the server died before recording its outcome) finds
    /// the run it started the first time instead of starting another.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_same_event_handled_twice_starts_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("app");
        std::fs::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        std::fs::write(
            src.join("ci.yaml"),
            "name: app\non: { push: { branches: [main] } }\njobs:\n  build: { run: make }\n",
        )
        .unwrap();
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", "c"]);
        let sha = git(&src, &["rev-parse", "HEAD"]);
        let config = AdminConfig::parse(&format!(
            "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"file://{}\"\n",
            src.display()
        ))
        .unwrap();
        let db = dir.path().join("cascade.db");
        let mut store = Orchestration::open(&db).unwrap();
        let incoming = Incoming {
            kind: "push".into(),
            repo: Some("acme/app".into()),
            sha: Some(sha),
            branch: Some("main".into()),
            ..Incoming::default()
        };
        store
            .record(&[NewEvent {
                source: "github".into(),
                delivery_id: "d-1".into(),
                kind: "push".into(),
                repo: Some("acme/app".into()),
                task_id: None,
                event_type: None,
                payload: serde_json::to_value(&incoming).unwrap(),
            }])
            .unwrap();
        let event = store.take(1).unwrap().remove(0);
        let mut orchestrator = Orchestrator {
            store,
            intake: Intake::start(Queue::open(&db).unwrap()),
            pool: None,
            config: Arc::new(config),
            source: Arc::new(crate::source::GitSource {
                repos: cascade_git::clone::Repos::new(dir.path().join("repos")),
            }),
            secret_names: Arc::new(|_| false),
            argo: crate::argo::ArgoBackend::new(),
        };
        let Handled::Done(first) = orchestrator.handle(&event).await else {
            panic!("the push starts its pipeline");
        };
        let Handled::Done(second) = orchestrator.handle(&event).await else {
            panic!("handling it again is not an error");
        };
        assert!(first.starts_with("started run "), "{first}");
        let run = run_id_for(&event, "acme/app/ci.yaml");
        assert!(first.contains(&run), "{first}");
        assert_eq!(
            second,
            format!("run {run} of acme/app/ci.yaml exists already (queued)")
        );
        let reader = cascade_store::Reader::open(&db).unwrap();
        let runs: i64 = reader.counts().unwrap().runs.iter().map(|(_, n)| n).sum();
        assert_eq!(runs, 1);
    }
}
