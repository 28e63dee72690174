//! Talking to a cluster with kube-rs: create a rendered manifest, check it with a strict
//! server-side dry-run, and follow a Workflow's status with kube-runtime's watcher.

use crate::manifest::{CronWorkflow, Workflow, WorkflowStatus};
use crate::render::Manifest;
use cascade_plan::{RunStatus, TaskState};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use std::collections::BTreeMap;

/// Why a cluster call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot configure a Kubernetes client (kubeconfig or in-cluster)")]
    Config(#[source] kube::Error),
    #[error("the API server refused the {kind}")]
    Refused {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("watching workflow `{name}` failed")]
    Watch {
        name: String,
        #[source]
        source: watcher::Error,
    },
    #[error("workflow `{0}` was deleted while being watched")]
    Deleted(String),
    #[error("cannot read config map `{name}` in namespace `{namespace}`")]
    ConfigMap {
        name: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "config map `{name}` has no key `{key}` (expected the admin config as cascade.toml text)"
    )]
    ConfigKey { name: String, key: &'static str },
    #[error("config map `{name}`, key `cascade.toml`: {source}")]
    BadConfig {
        name: String,
        #[source]
        source: cascade_spec::config::ConfigError,
    },
}

impl ClusterError {
    /// The server already has an object of that name (HTTP 409 on create).
    pub fn already_exists(&self) -> bool {
        matches!(self, ClusterError::Refused { source: kube::Error::Api(status), .. } if status.code == 409)
    }
}

/// The key of the admin config inside its `ConfigMap`.
pub const CONFIG_KEY: &str = "cascade.toml";

/// Reads the admin config (runner aliases, secret mappings) from a `ConfigMap`, the
/// cluster's counterpart of the local `cascade.toml`.
pub async fn load_config(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<cascade_spec::config::AdminConfig, ClusterError> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    let map = api
        .get(name)
        .await
        .map_err(|source| ClusterError::ConfigMap {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            source,
        })?;
    let text = map
        .data
        .and_then(|mut d| d.remove(CONFIG_KEY))
        .ok_or_else(|| ClusterError::ConfigKey {
            name: name.to_owned(),
            key: CONFIG_KEY,
        })?;
    cascade_spec::config::AdminConfig::parse(&text).map_err(|source| ClusterError::BadConfig {
        name: name.to_owned(),
        source,
    })
}

/// A client from `$KUBECONFIG`/`~/.kube/config`, or the in-cluster service account.
pub async fn client() -> Result<kube::Client, ClusterError> {
    kube::Client::try_default()
        .await
        .map_err(ClusterError::Config)
}

/// Creates the manifest; returns the name the server gave it.
pub async fn submit(
    client: &kube::Client,
    namespace: &str,
    manifest: &Manifest,
) -> Result<String, ClusterError> {
    let params = PostParams {
        field_manager: Some("cascade".to_owned()),
        ..PostParams::default()
    };
    match manifest {
        Manifest::Workflow(w) => {
            let api: Api<Workflow> = Api::namespaced(client.clone(), namespace);
            let created = api
                .create(&params, w)
                .await
                .map_err(|source| ClusterError::Refused {
                    kind: "Workflow",
                    source,
                })?;
            Ok(created.metadata.name.unwrap_or_default())
        }
        Manifest::CronWorkflow(c) => {
            let api: Api<CronWorkflow> = Api::namespaced(client.clone(), namespace);
            let created = api
                .create(&params, c)
                .await
                .map_err(|source| ClusterError::Refused {
                    kind: "CronWorkflow",
                    source,
                })?;
            Ok(created.metadata.name.unwrap_or_default())
        }
    }
}

/// A strict server-side apply dry-run: the server checks the CRD schema, its CEL rules
/// and unknown fields (`Api::create` alone does not reject unknown fields).
pub async fn dry_run(
    client: &kube::Client,
    namespace: &str,
    manifest: &Manifest,
    name: &str,
) -> Result<(), ClusterError> {
    let params = PatchParams::apply("cascade").dry_run().validation_strict();
    let mut json = manifest.to_json();
    // Apply needs a fixed name; generateName is for create only.
    if let Some(meta) = json
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        meta.remove("generateName");
        meta.insert("name".to_owned(), name.into());
    }
    let result = match manifest {
        Manifest::Workflow(_) => Api::<Workflow>::namespaced(client.clone(), namespace)
            .patch(name, &params, &Patch::Apply(&json))
            .await
            .map(|_| ()),
        Manifest::CronWorkflow(_) => Api::<CronWorkflow>::namespaced(client.clone(), namespace)
            .patch(name, &params, &Patch::Apply(&json))
            .await
            .map(|_| ()),
    };
    result.map_err(|source| ClusterError::Refused {
        kind: "dry-run",
        source,
    })
}

/// Stops a workflow the way `argo terminate` does (`spec.shutdown: Terminate`): running
/// pods are killed, nothing more starts, and the exit handler still runs. Idempotent.
pub async fn terminate(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(), ClusterError> {
    let api: Api<Workflow> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"spec": {"shutdown": "Terminate"}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|source| ClusterError::Refused {
            kind: "termination of the Workflow",
            source,
        })
}

/// Whether a workflow phase is final.
pub fn is_final(phase: &str) -> bool {
    RunStatus::from_argo_phase(phase).is_final()
}

/// What changed in a watched workflow.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The workflow's phase changed.
    Phase {
        phase: String,
        message: Option<String>,
    },
    /// A task (DAG node) moved to a new state.
    Task {
        name: String,
        state: TaskState,
        message: Option<String>,
    },
}

/// Follows a workflow until its phase is final, calling `on_progress` for each change
/// (only on changes). Returns how the run ended (`succeeded` or `failed`).
pub async fn watch(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    mut on_progress: impl FnMut(&Progress),
) -> Result<RunStatus, ClusterError> {
    let api: Api<Workflow> = Api::namespaced(client.clone(), namespace);
    let stream = watcher::watch_object(api, name);
    futures::pin_mut!(stream);
    let mut phase = String::new();
    let mut tasks: BTreeMap<String, TaskState> = BTreeMap::new();
    while let Some(object) = stream
        .try_next()
        .await
        .map_err(|source| ClusterError::Watch {
            name: name.to_owned(),
            source,
        })?
    {
        let Some(workflow) = object else {
            return Err(ClusterError::Deleted(name.to_owned()));
        };
        let status = workflow.status.unwrap_or_default();
        for update in changes(&status, &mut phase, &mut tasks) {
            on_progress(&update);
        }
        let status = RunStatus::from_argo_phase(&phase);
        if status.is_final() {
            return Ok(status);
        }
    }
    Err(ClusterError::Deleted(name.to_owned()))
}

/// The changes between what was seen and a new status (pure, for tests).
pub fn changes(
    status: &WorkflowStatus,
    phase: &mut String,
    tasks: &mut BTreeMap<String, TaskState>,
) -> Vec<Progress> {
    let mut out = Vec::new();
    let new_phase = status.phase.clone().unwrap_or_else(|| "Pending".to_owned());
    if new_phase != *phase {
        phase.clone_from(&new_phase);
        out.push(Progress::Phase {
            phase: new_phase,
            message: status.message.clone(),
        });
    }
    // DAG tasks are the nodes of type Pod, Skipped, TaskGroup (fan-out) or Retry; the
    // DAG node itself is the workflow.
    let mut nodes: Vec<_> = status
        .nodes
        .values()
        .filter(|n| n.node_type.as_deref() != Some("DAG"))
        .collect();
    nodes.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    for node in nodes {
        let state = TaskState::from_argo_phase(node.phase.as_deref().unwrap_or("Pending"));
        if tasks.get(&node.display_name) != Some(&state) {
            tasks.insert(node.display_name.clone(), state);
            out.push(Progress::Task {
                name: node.display_name.clone(),
                state,
                message: node.message.clone(),
            });
        }
    }
    out
}

/// The label that ties a `Workflow` to the Cascade run it carries out.
pub const RUN_LABEL: &str = "cascade.dev/run-id";

pub use kube::Client;
pub use kube::runtime::watcher::Event as WatchEvent;

/// Every workflow carrying [`RUN_LABEL`] in `namespace`, as kube-runtime's watcher sees
/// them: a full list first (after every restart of the watch), then each change;
/// errors are retried with the default backoff.
pub fn run_workflows(
    client: &kube::Client,
    namespace: &str,
) -> impl futures::Stream<Item = Result<WatchEvent<Workflow>, watcher::Error>> + Send + use<> {
    use kube::runtime::WatchStreamExt;
    let api: Api<Workflow> = Api::namespaced(client.clone(), namespace);
    watcher(api, watcher::Config::default().labels(RUN_LABEL)).default_backoff()
}

/// A run as its workflow shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunProgress {
    /// The run's status: `queued`, `running`, `succeeded` or `failed`.
    pub status: RunStatus,
    /// Argo's message, when the workflow did not succeed.
    pub message: Option<String>,
    /// Each job (by its id in ci.yaml), in the plan's order: its state and Argo's message.
    pub jobs: Vec<(String, TaskState, Option<String>)>,
}

/// Maps a workflow's status to the run's jobs (pure, for tests). `jobs` pairs each Argo
/// task name with its job id, in the plan's order. A job's state is the node named after
/// its task (a pod, or the retry or fan-out group around its copies); a job with no node
/// is waiting, or skipped once the workflow ended without reaching it.
pub fn run_progress(status: &WorkflowStatus, jobs: &[(String, String)]) -> RunProgress {
    let phase = status.phase.as_deref().unwrap_or("");
    let run = RunStatus::from_argo_phase(phase);
    let ended = run.is_final();
    let mut by_name: BTreeMap<&str, &crate::manifest::NodeStatus> = BTreeMap::new();
    for node in status.nodes.values() {
        let job_level = matches!(
            node.node_type.as_deref(),
            Some("Pod" | "Retry" | "TaskGroup" | "Skipped" | "Suspend" | "Container")
        );
        if job_level {
            by_name.entry(node.display_name.as_str()).or_insert(node);
        }
    }
    let jobs = jobs
        .iter()
        .map(|(task, job)| match by_name.get(task.as_str()) {
            Some(node) => {
                let mut state =
                    TaskState::from_argo_phase(node.phase.as_deref().unwrap_or("Pending"));
                if ended && !state.is_final() {
                    state = TaskState::Cancelled;
                }
                (job.clone(), state, node.message.clone())
            }
            None if ended => (job.clone(), TaskState::Skipped, None),
            None => (job.clone(), TaskState::Pending, None),
        })
        .collect();
    RunProgress {
        status: run,
        message: (ended && run != RunStatus::Succeeded)
            .then(|| status.message.clone())
            .flatten(),
        jobs,
    }
}

/// Drains a stream helper so `StreamExt` stays used when features change.
#[doc(hidden)]
pub async fn count<S: futures::Stream + Unpin>(s: S) -> usize {
    s.count().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::NodeStatus;

    fn node(name: &str, kind: &str, phase: &str) -> NodeStatus {
        NodeStatus {
            display_name: name.to_owned(),
            phase: Some(phase.to_owned()),
            node_type: Some(kind.to_owned()),
            message: (phase == "Failed").then(|| "exit code 1".to_owned()),
        }
    }

    fn status(phase: &str, nodes: &[NodeStatus]) -> WorkflowStatus {
        WorkflowStatus {
            phase: Some(phase.to_owned()),
            message: (phase == "Failed").then(|| "child failed".to_owned()),
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("wf-{i}"), n.clone()))
                .collect(),
        }
    }

    fn jobs() -> Vec<(String, String)> {
        [
            ("build", "build"),
            ("unit-test", "unit_test"),
            ("deploy", "deploy"),
        ]
        .iter()
        .map(|(t, j)| ((*t).to_owned(), (*j).to_owned()))
        .collect()
    }

    #[test]
    fn jobs_take_the_state_of_the_node_named_after_their_task() {
        let s = status(
            "Running",
            &[
                node("wf", "DAG", "Running"),
                // A retried job: the retry node is the job, its pods are attempts.
                node("build", "Retry", "Succeeded"),
                node("build(0)", "Pod", "Failed"),
                node("build(1)", "Pod", "Succeeded"),
                // A fan-out: the group is the job.
                node("unit-test", "TaskGroup", "Running"),
                node("unit-test(0:linux)", "Pod", "Succeeded"),
            ],
        );
        let p = run_progress(&s, &jobs());
        assert_eq!(p.status, RunStatus::Running);
        assert_eq!(p.message, None);
        assert_eq!(
            p.jobs,
            vec![
                ("build".to_owned(), TaskState::Succeeded, None),
                ("unit_test".to_owned(), TaskState::Running, None),
                ("deploy".to_owned(), TaskState::Pending, None),
            ]
        );
    }

    #[test]
    fn an_ended_workflow_leaves_no_job_waiting() {
        let s = status(
            "Failed",
            &[
                node("build", "Pod", "Failed"),
                node("unit-test", "Pod", "Running"),
            ],
        );
        let p = run_progress(&s, &jobs());
        assert_eq!(p.status, RunStatus::Failed);
        assert_eq!(p.message.as_deref(), Some("child failed"));
        assert_eq!(
            p.jobs,
            vec![
                (
                    "build".to_owned(),
                    TaskState::Failed,
                    Some("exit code 1".to_owned())
                ),
                ("unit_test".to_owned(), TaskState::Cancelled, None),
                ("deploy".to_owned(), TaskState::Skipped, None),
            ]
        );
        assert_eq!(
            run_progress(&status("Succeeded", &[]), &[]).status,
            RunStatus::Succeeded
        );
        assert_eq!(
            run_progress(&WorkflowStatus::default(), &[]).status,
            RunStatus::Queued
        );
    }
}
