//! The Argo Workflows backend of `serve`: repositories with `backend = "argo"` have
//! their runs rendered to a `Workflow` and created on the cluster (the orchestrator
//! calls [`ArgoBackend::submit`]); a reconciler on kube-runtime's watcher
//! ([`ArgoWatch`]) follows every workflow labelled with a run id and writes the run's
//! and its jobs' states back to the store, where the status reporter, the API and
//! `cascade dag status` read them as they read local runs.
//!
//! The cluster is the server's kubeconfig (`$KUBECONFIG`, `~/.kube/config`) or its
//! service account; the namespace and images come from `[argo]` in `cascade.toml`.

use crate::error::chain;
use crate::store_thread::StoreThread;
use cascade_argo::cluster::{self, Client, RUN_LABEL, RunProgress, WatchEvent};
use cascade_argo::manifest::Workflow;
use cascade_plan::{RunStatus, TaskState};
use cascade_store::{ExternalTask, Orchestration};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The backend's name in the store (`dag_runs.backend`).
pub const BACKEND: &str = "argo";

/// The cluster connection, made on first use and shared by the orchestrator and the
/// watcher.
#[derive(Default)]
pub struct ArgoBackend {
    client: OnceCell<Client>,
}

impl std::fmt::Debug for ArgoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgoBackend")
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl ArgoBackend {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The client; an error says why none could be made (no kubeconfig, bad context).
    pub async fn client(&self) -> Result<Client, ArgoError> {
        Ok(self
            .client
            .get_or_try_init(cluster::client)
            .await
            .cloned()?)
    }

    /// Creates the workflow in `namespace`; returns its name.
    pub async fn submit(
        &self,
        namespace: &str,
        manifest: &cascade_argo::Manifest,
    ) -> Result<String, ArgoError> {
        let client = self.client().await?;
        match cluster::submit(&client, namespace, manifest).await {
            Ok(name) => Ok(name),
            // Created before a crash, by this same run: its name is fixed.
            Err(e) if e.already_exists() => match manifest {
                cascade_argo::Manifest::Workflow(w) => {
                    Ok(w.metadata.name.clone().unwrap_or_default())
                }
                cascade_argo::Manifest::CronWorkflow(_) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }
}

/// Why a run cannot go to Argo; `error::chain` gives the run's error text.
#[derive(Debug, thiserror::Error)]
pub enum ArgoError {
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error(transparent)]
    Render(#[from] cascade_argo::RenderError),
    #[error("a one-shot render gave a CronWorkflow")]
    NotAWorkflow,
}

/// (Argo task name, job id) pairs, in plan order.
pub type JobNames = Vec<(String, String)>;

/// Renders a run as a `Workflow` labelled with its run id, with `[argo]`'s namespace
/// and images, the commit checked out for every job, and no completion callback of its
/// own (the reporter sends callbacks for every backend alike). Also returns which Argo
/// task is which job, in plan order. The error says why the pipeline cannot run there.
pub fn render(
    pipeline: &cascade_spec::Pipeline,
    plan: &cascade_plan::Plan,
    config: &cascade_spec::config::AdminConfig,
    checkout: cascade_argo::Checkout,
    run_id: &str,
    name: &str,
) -> Result<(Box<Workflow>, JobNames), ArgoError> {
    let settings = &config.argo;
    let options = cascade_argo::RenderOptions {
        default_image: settings.default_image.clone(),
        service_account: settings.service_account.clone(),
        namespace: Some(settings.namespace.clone()),
        callback_url: None,
        checkout: Some(checkout),
        one_shot: true,
        ..cascade_argo::RenderOptions::default()
    };
    let mut workflow = match cascade_argo::render(pipeline, plan, config, &options) {
        Ok(cascade_argo::Manifest::Workflow(w)) => w,
        Ok(cascade_argo::Manifest::CronWorkflow(_)) => {
            return Err(ArgoError::NotAWorkflow);
        }
        Err(e) => return Err(e.into()),
    };
    label(&mut workflow, run_id, name);
    let tasks = plan
        .jobs
        .iter()
        .map(|j| {
            (
                cascade_argo::render::sanitize(j.id.as_str()),
                j.id.to_string(),
            )
        })
        .collect();
    Ok((workflow, tasks))
}

/// Names a rendered workflow after its run, labels it with the run, and names its
/// pipeline.
fn label(workflow: &mut Workflow, run_id: &str, pipeline: &str) {
    // A fixed name from the run id: creating the same run twice (the event handled
    // again after a crash) is refused by the server instead of running twice.
    let prefix = workflow.metadata.generate_name.take().unwrap_or_default();
    workflow.metadata.name = Some(format!("{prefix}{run_id}"));
    workflow
        .metadata
        .labels
        .get_or_insert_default()
        .insert(RUN_LABEL.to_owned(), run_id.to_owned());
    workflow
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("cascade.dev/pipeline".to_owned(), pipeline.to_owned());
}

/// The reconciler: follows the labelled workflows of one namespace.
pub struct ArgoWatch {
    pub store: Orchestration,
    pub backend: Arc<ArgoBackend>,
    pub namespace: String,
    /// What was last written per run (only changes are written).
    seen: HashMap<String, RunProgress>,
    /// Each open run's job names, read from its definition once.
    names: HashMap<String, JobNames>,
    /// Runs whose workflow appeared in the current listing.
    listed: Vec<String>,
}

impl std::fmt::Debug for ArgoWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgoWatch")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl ArgoWatch {
    pub fn new(store: Orchestration, backend: Arc<ArgoBackend>, namespace: String) -> Self {
        Self {
            store,
            backend,
            namespace,
            seen: HashMap::new(),
            names: HashMap::new(),
            listed: Vec::new(),
        }
    }

    /// Follows workflows until `shutdown`. Without a cluster it tries again every few
    /// seconds; the watch itself retries with kube-runtime's backoff. Its store writes
    /// (every [`ArgoWatch::apply`]) run on a thread of its own.
    pub async fn run(self, shutdown: CancellationToken) {
        let client = loop {
            match self.backend.client().await {
                Ok(client) => break client,
                Err(error) => {
                    tracing::warn!(error = %chain(&error), "no Kubernetes client for the argo backend; trying again in 5 s");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        };
        let namespace = self.namespace.clone();
        let watch = match StoreThread::start("cascade-argo-watch", self) {
            Ok(watch) => watch,
            Err(error) => {
                tracing::error!(%error, "the Argo watch cannot start");
                return;
            }
        };
        // Runs whose workflow was asked to terminate.
        let mut stopped = std::collections::HashSet::new();
        let events = cluster::run_workflows(&client, &namespace);
        futures::pin_mut!(events);
        let mut stops = tokio::time::interval(Duration::from_millis(500));
        stops.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = events.next() => next,
                _ = stops.tick() => {
                    Self::stop_cancelled(&watch, &mut stopped, &client).await;
                    continue;
                }
            };
            match next {
                Some(Ok(event)) => {
                    if watch.run(move |w| w.apply(event)).await.is_none() {
                        tracing::error!(namespace, "the Argo watch's store thread stopped");
                        return;
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %chain(&error), namespace, "watching Argo workflows");
                }
                None => return,
            }
        }
    }

    /// Terminates the workflows of runs asked to stop (`POST /runs/{id}/cancel` set them
    /// `cancelling`); their end comes back through the watch. Asked once per run and
    /// process (the patch is idempotent, so a restart asking again does no harm).
    async fn stop_cancelled(
        watch: &StoreThread<Self>,
        stopped: &mut std::collections::HashSet<String>,
        client: &Client,
    ) {
        let cancelling = match watch.call(|w| w.store.external_cancelling(BACKEND)).await {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "cannot list Argo runs to stop");
                return;
            }
        };
        for (run_id, reference) in cancelling {
            if stopped.contains(&run_id) {
                continue;
            }
            let Some((namespace, name)) = reference.split_once('/') else {
                continue;
            };
            match cluster::terminate(client, namespace, name).await {
                Ok(()) => {
                    tracing::info!(
                        run = run_id,
                        workflow = reference,
                        "Argo workflow terminated"
                    );
                    stopped.insert(run_id);
                }
                Err(error) => {
                    tracing::warn!(run = run_id, error = %chain(&error), "cannot terminate an Argo workflow; trying again");
                }
            }
        }
    }

    /// One watch event.
    pub fn apply(&mut self, event: WatchEvent<Workflow>) {
        match event {
            WatchEvent::Init => self.listed.clear(),
            WatchEvent::InitApply(w) => {
                if let Some(run) = run_of(&w) {
                    self.listed.push(run.to_owned());
                }
                self.observe(&w);
            }
            WatchEvent::Apply(w) => self.observe(&w),
            WatchEvent::InitDone => self.sweep(),
            WatchEvent::Delete(w) => {
                if let Some(run) = run_of(&w) {
                    let run = run.to_owned();
                    self.gone(&run);
                }
            }
        }
    }

    /// Writes a workflow's state to its run, if it changed.
    fn observe(&mut self, workflow: &Workflow) {
        let Some(run_id) = run_of(workflow) else {
            return;
        };
        let jobs = match self.jobs(run_id) {
            Ok(Some(jobs)) => jobs,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(run = run_id, %error, "cannot read an Argo run's definition");
                return;
            }
        };
        let status = workflow.status.clone().unwrap_or_default();
        let progress = cluster::run_progress(&status, &jobs);
        if self.seen.get(run_id) == Some(&progress) {
            return;
        }
        let tasks: Vec<ExternalTask<'_>> = progress
            .jobs
            .iter()
            .map(|(job, state, message)| ExternalTask {
                task_id: job,
                status: *state,
                error: message.as_deref().filter(|_| {
                    matches!(
                        state,
                        cascade_plan::TaskState::Failed | cascade_plan::TaskState::Cancelled
                    )
                }),
            })
            .collect();
        let error = progress
            .message
            .as_deref()
            .or((progress.status == RunStatus::Failed).then_some("the workflow failed"));
        match self
            .store
            .external_progress(run_id, progress.status, error, &tasks)
        {
            Ok(_) => {
                tracing::debug!(
                    run = run_id,
                    status = progress.status.as_str(),
                    "argo run progressed"
                );
                if progress.status.is_final() {
                    self.seen.remove(run_id);
                    self.names.remove(run_id);
                } else {
                    self.seen.insert(run_id.to_owned(), progress);
                }
            }
            Err(error) => {
                tracing::warn!(run = run_id, %error, "cannot record an Argo run's progress");
            }
        }
    }

    /// The (Argo task, job id) pairs of a run, from its definition (read once); `None`
    /// for a run this server does not know (another server's, or one deleted here).
    fn jobs(&mut self, run_id: &str) -> Result<Option<JobNames>, cascade_store::StoreError> {
        if let Some(names) = self.names.get(run_id) {
            return Ok(Some(names.clone()));
        }
        let Some(definition) = self.store.run_definition(run_id)? else {
            return Ok(None);
        };
        let names: JobNames = definition["argo"]["tasks"]
            .as_array()
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        self.names.insert(run_id.to_owned(), names.clone());
        Ok(Some(names))
    }

    /// After a full listing: a run created on the cluster whose workflow is no longer
    /// there was deleted while this server was not watching.
    fn sweep(&mut self) {
        let open = match self.store.external_runs(BACKEND) {
            Ok(open) => open,
            Err(error) => {
                tracing::warn!(%error, "cannot list open Argo runs");
                return;
            }
        };
        let prefix = format!("{}/", self.namespace);
        for run in open {
            let here = run
                .external_ref
                .as_deref()
                .is_some_and(|r| r.starts_with(&prefix));
            if here && !self.listed.contains(&run.run_id) {
                self.gone(&run.run_id);
            }
        }
    }

    /// The run's workflow was deleted before it ended.
    fn gone(&mut self, run_id: &str) {
        self.seen.remove(run_id);
        let jobs = self.jobs(run_id).ok().flatten().unwrap_or_default();
        self.names.remove(run_id);
        let current = self.store.run_tasks(run_id).unwrap_or_default();
        let tasks: Vec<ExternalTask<'_>> = jobs
            .iter()
            .map(|(_, job)| {
                let status = current
                    .iter()
                    .find(|(t, _, _)| t == job)
                    .map_or(TaskState::Pending, |(_, s, _)| *s);
                ExternalTask {
                    task_id: job,
                    status: if status.is_final() {
                        status
                    } else {
                        TaskState::Cancelled
                    },
                    error: None,
                }
            })
            .collect();
        if let Err(error) = self.store.external_progress(
            run_id,
            RunStatus::Cancelled,
            Some("the Argo workflow was deleted before it ended"),
            &tasks,
        ) {
            tracing::warn!(run = run_id, %error, "cannot record a deleted Argo run");
        }
    }
}

fn run_of(workflow: &Workflow) -> Option<&str> {
    workflow
        .metadata
        .labels
        .as_ref()?
        .get(RUN_LABEL)
        .map(String::as_str)
}
