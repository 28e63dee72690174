//! The orchestrator: routes each stored event to the pipelines it starts (DESIGN §1, §4).
//!
//! It takes events from the SQLite event log in order (the inbox put them there), reads
//! each back as the [`Incoming`] it was stored as, and for each:
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

use crate::incoming::Incoming;
use crate::intake::Intake;
use crate::pool::PoolHandle;
use crate::source::{SourceError, changed_paths, read_pipeline};
use crate::store_thread::StoreThread;
use cascade_git::delivery::{Delivery, EventKind};
use cascade_plan::{RunStatus, TaskState};
use cascade_spec::Scope;
use cascade_spec::config::{AdminConfig, Repository};
use cascade_store::{EventRow, Orchestration, Origin, Submission};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A pipeline file as read, and the commit it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub text: String,
    pub sha: String,
}

/// Reads pipeline files and changed paths from registered repositories.
pub trait PipelineSource: Send + Sync {
    /// The file at `path` in revision `rev` (a sha or a branch), `None` if it is not there.
    fn read(
        &self,
        repo: &Repository,
        rev: &str,
        path: &str,
    ) -> Result<Option<Fetched>, SourceError>;
    /// Paths changed between two revisions.
    fn changed(
        &self,
        repo: &Repository,
        base: &str,
        head: &str,
    ) -> Result<Vec<String>, SourceError>;
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
    pub store: StoreThread<Orchestration>,
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
    /// Paths the change touched: the event's list, else git's answer, when known.
    changed_paths: Option<Vec<String>>,
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
            let taken = self.store.call(|s| s.take(16)).await;
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
                    let settled = self.store.call(move |s| {
                        let outcomes: Vec<(i64, &str, &str)> = outcomes
                            .iter()
                            .map(|(id, status, note)| (*id, *status, note.as_str()))
                            .collect();
                        s.settle_all(&outcomes)
                    });
                    if let Err(e) = settled.await {
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
        let incoming = match Incoming::read(event) {
            Ok(i) => i,
            Err(e) => return Handled::Failed(format!("{e}: {}", e.0)),
        };
        match &incoming {
            Incoming::Forge(delivery) => match &delivery.event.kind {
                EventKind::Ping => Handled::Done("pong".to_owned()),
                EventKind::Push { .. } | EventKind::Tag { .. } | EventKind::PullRequest(_) => {
                    self.forge_event(event, &incoming, delivery).await
                }
                EventKind::RepositoryDispatch { .. } => self.dispatch(event, &incoming).await,
                EventKind::WorkflowDispatch { .. } => self.named(event, &incoming).await,
                EventKind::Ignored { reason } => Handled::Skipped(reason.clone()),
            },
            Incoming::Dispatch(_) => self.dispatch(event, &incoming).await,
            Incoming::Schedule(_) => self.named(event, &incoming).await,
        }
    }

    /// The registered name of the event's repository.
    fn repo(&self, incoming: &Incoming) -> Result<String, Handled> {
        let name = incoming.repo().unwrap_or_default();
        if self.config.repositories.contains_key(name) {
            Ok(name.to_owned())
        } else {
            Err(Handled::Skipped(format!(
                "repository `{name}` is not registered in cascade.toml ([repositories.\"{name}\"])"
            )))
        }
    }

    async fn forge_event(
        &mut self,
        event: &EventRow,
        incoming: &Incoming,
        delivery: &Delivery,
    ) -> Handled {
        let config = Arc::clone(&self.config);
        let repo_name = match self.repo(incoming) {
            Ok(r) => r,
            Err(h) => return h,
        };
        let Some(repo) = config.repositories.get(&repo_name) else {
            return Handled::Skipped(format!("repository `{repo_name}` is not registered"));
        };
        let forge_event = &delivery.event;
        let Some(sha) = forge_event.sha.clone() else {
            return Handled::Skipped("the event names no commit".to_owned());
        };
        // The pipeline file comes from a revision the repository's owners control: a
        // fork's pull request reads the base's (its commit, or, from GitLab, which does
        // not send it, its branch), and gets no secrets.
        let trusted = match forge_event.config_rev() {
            Some(cascade_git::GitRev::Sha(rev)) => rev,
            Some(cascade_git::GitRev::Ref(full)) => full
                .strip_prefix("refs/heads/")
                .map_or(full.clone(), str::to_owned),
            None => sha.clone(),
        };
        let secrets = forge_event.secrets_allowed();
        let path = repo.pipeline.clone();
        let source = Arc::clone(&self.source);
        let read = read_pipeline(&source, repo, &trusted, &path).await;
        let text = match read {
            Ok(Some(fetched)) => fetched.text,
            Ok(None) => return Handled::Skipped(format!("no {path} at {trusted}")),
            Err(e) => return Handled::Failed(format!("cannot read {path} at {trusted}: {e}")),
        };
        let mut paths = forge_event.changed_files.clone();
        if paths.is_none() {
            let (base, head) = match &forge_event.kind {
                EventKind::PullRequest(pr) => (
                    Some(pr.base_sha.clone().unwrap_or_else(|| pr.base_ref.clone())),
                    pr.head_sha.clone(),
                ),
                _ => (forge_event.before.clone(), sha.clone()),
            };
            if let Some(base) = base.filter(|b| !b.is_empty() && b.chars().any(|c| c != '0')) {
                let changed = changed_paths(&source, repo, base, head).await;
                paths = changed.ok();
            }
        }
        self.start(Start {
            repo_name: &repo_name,
            repo,
            path,
            text,
            sha,
            incoming,
            changed_paths: paths,
            event,
            secrets,
            route: None,
        })
        .await
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one dispatch's steps in order: rules, idempotency, breakers, start"
    )]
    async fn dispatch(&mut self, event: &EventRow, incoming: &Incoming) -> Handled {
        let config = Arc::clone(&self.config);
        let event_type = incoming.event_type().unwrap_or_default().to_owned();
        let task_id = incoming.task_id().unwrap_or_default();
        let retry_count = incoming.retry_count();
        let mut started = Vec::new();
        let mut problems = Vec::new();
        // A dispatch sent to one repository (a forge's `repository_dispatch`) stays there.
        let only = incoming.repo();
        for (repo_name, repo) in &config.repositories {
            if only.is_some_and(|r| r != repo_name) {
                continue;
            }
            // A dispatch starts only what its sender's token may act on.
            let scope = repo_scope(repo_name).to_string();
            let scopes = incoming.scopes();
            if !scopes.is_empty() && !scopes.contains(&scope) {
                continue;
            }
            let source = Arc::clone(&self.source);
            let read = read_pipeline(&source, repo, &repo.default_branch, &repo.pipeline).await;
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
            if let Some(why) = self.breaker_refuses(&route).await {
                problems.push(why);
                continue;
            }
            let claimed = {
                let (task_id, event_type, pipeline) =
                    (task_id.clone(), event_type.clone(), pipeline.clone());
                self.store
                    .call(move |s| s.claim_route(&task_id, &event_type, &pipeline, retry_count))
                    .await
            };
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
                    changed_paths: None,
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
    async fn breaker_refuses(&self, route: &str) -> Option<String> {
        let key = route.to_owned();
        let (failures, opened) = self.store.call(move |s| s.breaker(&key)).await.ok()?;
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
        let (path, rev) = match incoming {
            Incoming::Schedule(tick) => (tick.pipeline.clone(), repo.default_branch.clone()),
            Incoming::Forge(delivery) => {
                // A `workflow_dispatch`: its commit when the forge names one, else its ref.
                let rev = delivery.event.sha.clone().or_else(|| {
                    delivery.event.git_ref().map(|r| {
                        r.strip_prefix("refs/heads/")
                            .map_or(r.clone(), str::to_owned)
                    })
                });
                (
                    repo.pipeline.clone(),
                    rev.unwrap_or_else(|| repo.default_branch.clone()),
                )
            }
            Incoming::Dispatch(_) => (repo.pipeline.clone(), repo.default_branch.clone()),
        };
        let source = Arc::clone(&self.source);
        let Fetched { text, sha } = match read_pipeline(&source, repo, &rev, &path).await {
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
            changed_paths: None,
            event,
            secrets: true,
            route: None,
        })
        .await
    }

    /// Where a run comes from: what the reporter needs to tell its forge and its
    /// dispatcher.
    fn origin(&self, s: &Start<'_>, run_id: &str, name: &str) -> Origin {
        let status_target = s.incoming.sha().map(|sha| {
            crate::reporter::StatusRoute {
                forge: s.repo.forge,
                api_url: s.repo.api_url.clone(),
                repo: s.repo_name.to_owned(),
                project_id: s.repo.project_id.clone(),
                token_secret: s.repo.token_secret.clone(),
                sha: sha.to_owned(),
            }
            .stored()
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
        let payload = s.incoming.client_payload();
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
    #[expect(
        clippy::too_many_lines,
        reason = "one sequence: look up, check, record the origin, then queue on either backend"
    )]
    async fn start(&mut self, s: Start<'_>) -> Handled {
        let name = format!("{}/{}", s.repo_name, s.path);
        let run_id = run_id_for(s.event, &name);
        // The same event handled again (after a crash before its outcome was recorded)
        // finds its run: nothing starts twice.
        let id = run_id.clone();
        match self.store.call(move |s| s.run_backend(&id)).await {
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
            payload: s.incoming.payload(),
            inputs: s.incoming.inputs(),
            changed_paths: s.changed_paths.clone(),
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
                    self.ended(
                        &run_id,
                        &name,
                        &origin,
                        s.incoming.event_name(),
                        RunStatus::Skipped,
                        &reason.text,
                    )
                    .await;
                }
                return Handled::Skipped(reason.text);
            }
            Check::ConfigError(error) => {
                self.ended(
                    &run_id,
                    &name,
                    &origin,
                    s.incoming.event_name(),
                    RunStatus::Failed,
                    &error,
                )
                .await;
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
            priority: cascade_spec::dag::Priority::Normal,
            trigger: s.incoming.event_name().to_owned(),
            source: None,
        };
        // The origin first: a run is never left without one for the reporter.
        let recorded = origin.clone();
        if let Err(e) = self.store.call(move |s| s.add_origin(&recorded)).await {
            return Handled::Failed(format!("cannot record the origin of a run: {e}"));
        }
        match self.intake.submit(submission).await {
            Ok(enqueued) => {
                if let Some(pool) = &self.pool {
                    pool.notify(&enqueued.worker_id, &scope.to_string());
                }
                self.route_running(&s, &name, &run_id).await;
                Handled::Done(format!("started run {run_id} of {name}"))
            }
            Err(e) => Handled::Failed(format!("cannot queue {name}: {e}")),
        }
    }

    /// A dispatch's route is running `run_id` (nothing for other events).
    async fn route_running(&self, s: &Start<'_>, name: &str, run_id: &str) {
        if let Some((task, event_type, _)) = &s.route {
            let (task, event_type) = (task.clone(), event_type.clone());
            let (name, run_id) = (name.to_owned(), run_id.to_owned());
            let _ = self
                .store
                .call(move |s| s.set_route(&task, &event_type, &name, Some(&run_id), "running"))
                .await;
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
        if let Some(skip) = Self::not_triggered(&pipeline, s.incoming, s.changed_paths.as_deref()) {
            return Check::Skip(skip);
        }
        let plan = match cascade_plan::plan(&pipeline, trigger, &[]) {
            Ok(p) => p,
            Err(e) => return Check::ConfigError(e.to_string()),
        };
        for job in &plan.jobs {
            if let Some(runner) = &job.runner
                && let Err(unknown) = self.config.runner(runner)
            {
                return Check::ConfigError(format!("job `{}`: {unknown}", job.id));
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
                Err(e) => {
                    let why = crate::error::chain(&e);
                    self.ended(
                        run_id,
                        name,
                        origin,
                        s.incoming.event_name(),
                        RunStatus::Failed,
                        &why,
                    )
                    .await;
                    return Handled::Failed(format!("{name}: {why}"));
                }
            };
        let mut definition = definition.clone();
        definition["argo"] = serde_json::json!({
            "namespace": settings.namespace,
            "tasks": tasks,
        });
        let jobs: Vec<String> = tasks.into_iter().map(|(_, job)| job).collect();
        let recorded = {
            let (origin, id, name) = (origin.clone(), run_id.to_owned(), name.to_owned());
            let (trigger, jobs) = (s.incoming.event_name().to_owned(), jobs.clone());
            self.store
                .call(move |s| {
                    s.add_origin(&origin)?;
                    s.external_run(
                        &id,
                        &name,
                        &trigger,
                        crate::argo::BACKEND,
                        &definition,
                        &jobs,
                    )
                })
                .await
        };
        if let Err(e) = recorded {
            return Handled::Failed(format!("cannot record run {run_id} of {name}: {e}"));
        }
        self.route_running(s, name, run_id).await;
        let namespace = settings.namespace.clone();
        let manifest = cascade_argo::Manifest::Workflow(workflow);
        match self.argo.submit(&namespace, &manifest).await {
            Ok(created) => {
                let reference = format!("{namespace}/{created}");
                let (id, at) = (run_id.to_owned(), reference.clone());
                if let Err(e) = self.store.call(move |s| s.set_external_ref(&id, &at)).await {
                    tracing::warn!(run = run_id, error = %e, "cannot record where an Argo run is");
                }
                Handled::Done(format!(
                    "started run {run_id} of {name} as Argo workflow {reference}"
                ))
            }
            Err(e) => {
                let why = format!(
                    "cannot create the Argo workflow in `{namespace}`: {}",
                    crate::error::chain(&e)
                );
                // Every job says why, so none stays pending on the forge.
                let (id, error) = (run_id.to_owned(), why.clone());
                let _ = self
                    .store
                    .call(move |s| {
                        let tasks: Vec<cascade_store::ExternalTask<'_>> = jobs
                            .iter()
                            .map(|job| cascade_store::ExternalTask {
                                task_id: job,
                                status: TaskState::Failed,
                                error: Some(&error),
                            })
                            .collect();
                        s.external_progress(&id, RunStatus::Failed, Some(&error), &tasks)
                    })
                    .await;
                Handled::Failed(format!("{name}: {why}"))
            }
        }
    }

    /// Why `on:` does not start the pipeline for this event, if it does not. A skip that
    /// only the path filters cause is reported (the forge shows it skipped); others not.
    fn not_triggered(
        pipeline: &cascade_spec::Pipeline,
        incoming: &Incoming,
        changed: Option<&[String]>,
    ) -> Option<Skip> {
        use cascade_git::filter::{Verdict, evaluate};
        let quiet = |text: String| {
            Some(Skip {
                text,
                reported: false,
            })
        };
        let event = incoming.forge_event()?;
        match &event.kind {
            EventKind::WorkflowDispatch { .. } => {
                return pipeline.on.workflow_dispatch.is_none().then(|| Skip {
                    text: "`on.workflow_dispatch` is not set".to_owned(),
                    reported: false,
                });
            }
            EventKind::Push { .. } | EventKind::Tag { .. } | EventKind::PullRequest(_) => {}
            // Dispatches are matched to `on.repository_dispatch` when routed.
            _ => return None,
        }
        match evaluate(&pipeline.on, event, changed) {
            Ok(Verdict::Run) => None,
            Ok(Verdict::Skip(why)) => {
                let paths_only = changed.is_some()
                    && matches!(evaluate(&pipeline.on, event, None), Ok(Verdict::Run));
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
    async fn ended(
        &mut self,
        run_id: &str,
        name: &str,
        origin: &Origin,
        trigger: &str,
        status: cascade_plan::RunStatus,
        why: &str,
    ) {
        let (id, name, trigger) = (run_id.to_owned(), name.to_owned(), trigger.to_owned());
        let (status, why, origin) = (status, why.to_owned(), origin.clone());
        let result = self
            .store
            .call(move |s| {
                s.ended_run(&id, &name, &trigger, status, &why)?;
                s.add_origin(&origin)
            })
            .await;
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
    use cascade_git::delivery::{ForgeEvent, PrAction, Repository};
    use cascade_store::Queue;
    use cascade_test::git;

    /// `stored` recorded in the orchestrator's event log and taken back, as the loop
    /// takes it.
    async fn queued(orchestrator: &Orchestrator, stored: cascade_store::NewEvent) -> EventRow {
        orchestrator
            .store
            .call(move |s| s.record(&[stored]))
            .await
            .unwrap();
        orchestrator
            .store
            .call(|s| s.take(1))
            .await
            .unwrap()
            .remove(0)
    }

    /// A repository in `dir/app` with `ci.yaml` committed on `main`, and the
    /// orchestrator of a server that registers it as `acme/app`.
    fn orchestrator(dir: &std::path::Path, pipeline: &str) -> (Orchestrator, String) {
        let src = dir.join("app");
        std::fs::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        std::fs::write(src.join("ci.yaml"), pipeline).unwrap();
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", "c"]);
        let sha = git(&src, &["rev-parse", "HEAD"]);
        let config = AdminConfig::parse(&format!(
            "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"file://{}\"\n",
            src.display()
        ))
        .unwrap();
        let db = dir.join("cascade.db");
        let orchestrator = Orchestrator {
            store: StoreThread::start("test-orchestrator", Orchestration::open(&db).unwrap())
                .unwrap(),
            intake: Intake::start(Queue::open(&db).unwrap()),
            pool: None,
            config: Arc::new(config),
            source: Arc::new(crate::source::GitSource {
                repos: cascade_git::clone::Repos::new(dir.join("repos")),
            }),
            secret_names: Arc::new(|_| false),
            argo: crate::argo::ArgoBackend::new(),
        };
        (orchestrator, sha)
    }

    /// An event handled again (the server died before recording its outcome) finds
    /// the run it started the first time instead of starting another.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_same_event_handled_twice_starts_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let (mut orchestrator, sha) = orchestrator(
            dir.path(),
            "name: app\non: { push: { branches: [main] } }\njobs:\n  build: { run: make }\n",
        );
        let incoming = Incoming::Forge(Delivery {
            forge: cascade_spec::config::Forge::GitHub,
            delivery_id: "d-1".into(),
            event: ForgeEvent {
                kind: EventKind::Push {
                    branch: "main".into(),
                },
                repository: Repository {
                    full_name: "acme/app".into(),
                    ..Repository::default()
                },
                sha: Some(sha),
                before: None,
                changed_files: None,
                sender: None,
            },
        });
        let stored = incoming.stored();
        let event = queued(&orchestrator, stored).await;
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
        let reader = cascade_store::Reader::open(&dir.path().join("cascade.db")).unwrap();
        let runs: i64 = reader.counts().unwrap().runs.iter().map(|(_, n)| n).sum();
        assert_eq!(runs, 1);
    }

    /// A push queued by a server of the version before `Incoming` (a flat object with a
    /// `kind`) and handled after the upgrade starts its pipeline all the same.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_push_queued_in_the_old_shape_is_handled_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let (mut orchestrator, sha) = orchestrator(
            dir.path(),
            "name: app\non: { push: { branches: [main] } }\njobs:\n  build: { run: make }\n",
        );
        let old = serde_json::json!({
            "kind": "push", "repo": "acme/app", "sha": sha, "before": null, "branch": "main",
            "tag": null, "pull_request": null, "changed_paths": ["ci.yaml"], "event_type": null,
            "client_payload": null, "inputs": {}, "pipeline": null,
            "raw": {"forge": "github", "delivery": "old-1", "kind": "push", "ref": "refs/heads/main",
                    "ref_name": "main", "sha": sha, "repository": {"full_name": "acme/app"}},
        });
        let stored = cascade_store::NewEvent {
            source: "github".into(),
            delivery_id: "old-1".into(),
            kind: "push".into(),
            repo: Some("acme/app".into()),
            task_id: None,
            event_type: None,
            payload: old,
        };
        let event = queued(&orchestrator, stored).await;
        let handled = orchestrator.handle(&event).await;
        assert!(
            matches!(&handled, Handled::Done(n) if n.starts_with("started run ")),
            "{handled:?}"
        );
        let reader = cascade_store::Reader::open(&dir.path().join("cascade.db")).unwrap();
        let (_, definition, _) = reader.dag("acme/app/ci.yaml").unwrap();
        assert_eq!(definition["trigger"]["event_name"], "push");
        assert_eq!(
            definition["trigger"]["changed_paths"],
            serde_json::json!(["ci.yaml"])
        );
        assert_eq!(definition["trigger"]["payload"]["ref"], "refs/heads/main");
    }

    /// GitHub's published delivery of a merged pull request, signed, through the
    /// gateway's function, the event log and the orchestrator: the pull request arrives
    /// whole (action, `merged`, title), and its run's `event.*` says so.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_real_merged_pull_request_reaches_the_orchestrator_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut orchestrator, sha) = orchestrator(
            dir.path(),
            "name: app\non: { pull_request: { types: [closed] } }\njobs:\n  release: { run: make }\n",
        );
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/webhooks/github/pull_request.closed.merged.woodpecker.json"
        );
        let mut body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Pointed at this repository and commit; everything else as GitHub sent it.
        body["repository"]["full_name"] = "acme/app".into();
        body["pull_request"]["head"]["sha"] = sha.clone().into();
        body["pull_request"]["base"]["sha"] = sha.clone().into();
        let body = body.to_string();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-github-event", "pull_request".parse().unwrap());
        headers.insert("x-github-delivery", "pr-1".parse().unwrap());
        let signature = cascade_git::signature::sign(body.as_bytes(), b"s3cret");
        headers.insert(
            "x-hub-signature-256",
            format!("sha256={signature}").parse().unwrap(),
        );
        let secrets = crate::hooks::HookSecrets {
            server: Some(b"s3cret".to_vec()),
            repos: std::collections::HashMap::new(),
        };
        let stored = crate::hooks::verified_event(
            cascade_spec::config::Forge::GitHub,
            &headers,
            body.as_bytes(),
            &secrets,
        )
        .unwrap();
        assert_eq!(
            (stored.kind.as_str(), stored.repo.as_deref()),
            ("pull_request", Some("acme/app"))
        );
        let event = queued(&orchestrator, stored).await;
        let incoming = Incoming::read(&event).unwrap();
        let Some(EventKind::PullRequest(pr)) = incoming.forge_event().map(|e| &e.kind) else {
            panic!("a pull request: {incoming:?}");
        };
        assert_eq!(
            (&pr.action, pr.merged, pr.title.as_str(), pr.number),
            (&PrAction::Closed, true, "Change file", 62)
        );
        assert_eq!(pr.head_sha, sha);
        assert!(!pr.from_fork);
        // Exactly what the forge's delivery normalises to: nothing lost on the way.
        let delivered = Delivery::authenticate(
            cascade_spec::config::Forge::GitHub,
            &[
                ("X-GitHub-Event", "pull_request"),
                ("X-GitHub-Delivery", "pr-1"),
                ("X-Hub-Signature-256", &format!("sha256={signature}")),
            ],
            body.as_bytes(),
            b"s3cret",
        )
        .unwrap();
        assert_eq!(incoming, Incoming::Forge(delivered));
        let handled = orchestrator.handle(&event).await;
        assert!(
            matches!(&handled, Handled::Done(n) if n.starts_with("started run ")),
            "{handled:?}"
        );
        let reader = cascade_store::Reader::open(&dir.path().join("cascade.db")).unwrap();
        let (_, definition, _) = reader.dag("acme/app/ci.yaml").unwrap();
        let trigger = &definition["trigger"];
        assert_eq!(trigger["event_name"], "pull_request");
        assert_eq!(trigger["payload"]["pull_request"]["merged"], true);
        assert_eq!(trigger["payload"]["pull_request"]["title"], "Change file");
        assert_eq!(trigger["payload"]["action"], "closed");
    }
}
