//! `cascade worker run`: one process per scope, which claims that scope's queued runs
//! and runs them with the engine.
//!
//! - It holds an exclusive lock on `DATA/workers/<id>.lock` for its whole life, so a
//!   second worker with the same id refuses to start.
//! - Its database work goes through the [`Ledger`] thread: claims and lease renewals,
//!   and every event of its runs, group-committed and fenced. A run whose lease was lost
//!   (or that was cancelled through the API) is stopped.
//! - Started by `serve`, it is given `--parent-pid`: its stdin is then the pool's wake-up
//!   pipe (a line means "new work"), and end of file means the parent is gone. The
//!   kernel's parent-death signal is a second guard. Either way the worker kills its
//!   tasks, gives its unfinished runs back to the queue, and exits.
//! - Without a parent it looks for work every `poll` (runs queued straight into the data
//!   dir by `cascade dag submit --data-dir`).
//! - Every job runs in the engine's bubblewrap sandbox, from an empty environment (the
//!   job's own variables, its granted secrets, [`WorkerOptions::job_env`] and a minimal
//!   `PATH`, `HOME`, locale): never the server's environment, data dir, config or secrets
//!   file. As root, jobs run as `[sandbox] user` (default `nobody`), and their workspace
//!   is given to that user. Without `bwrap` the worker refuses to start.

use crate::error::chain;
use crate::store_thread::blocking;
use cascade_engine::{Bus, Secrets, Subscriber};
use cascade_plan::{Event, RunId, Trigger};
use cascade_spec::Scope;
use cascade_spec::config::AdminConfig;
use cascade_store::{Claimed, Ledger, LedgerConfig};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub id: String,
    pub scope: Scope,
    pub data_dir: PathBuf,
    pub node_id: Option<String>,
    /// Set by `serve`: stdin is the wake-up pipe and the parent's death stops the worker.
    pub parent_pid: Option<u32>,
    pub lease: Duration,
    /// Runs at once.
    pub concurrency: usize,
    /// How often to look for work without being woken.
    pub poll: Duration,
    pub config: AdminConfig,
    /// Secrets from a file; names not in it are looked up in the environment.
    pub secrets: Secrets,
    pub kill_grace: Duration,
    /// Publish every run's events to this broker, and obey its control commands.
    pub telemetry: Option<crate::telemetry::Broker>,
    /// The only variables of the worker's world a job gets (`CASCADE_SERVER`, so a job
    /// can call `cascade dispatch`): everything else of its environment stays out.
    pub job_env: Vec<(OsString, OsString)>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "worker `{id}` is already running{holder} (it holds {path}); stop it, or start this one with another --id"
    )]
    Locked {
        id: String,
        path: String,
        holder: String,
    },
    #[error("cannot use the lock file {path}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("worker id `{id}` does not belong to scope `{scope}` (its worker id is `{expected}`)")]
    IdMismatch {
        id: String,
        scope: String,
        expected: String,
    },
    #[error("cannot open the store in {path}")]
    Store {
        path: String,
        #[source]
        source: cascade_store::StoreError,
    },
    #[error("the parent process {0} is already gone")]
    Orphaned(u32),
    #[error("cannot isolate jobs")]
    Sandbox(#[source] cascade_engine::EngineError),
}

/// The sandbox every job of the server tier runs in, from the admin config; an error
/// (no `bwrap`, an unknown `[sandbox] user`) means no job may run.
pub fn sandbox(config: &AdminConfig) -> Result<cascade_engine::Sandbox, WorkerError> {
    cascade_engine::Sandbox::configured(&config.sandbox, std::env::var_os("PATH").as_deref(), true)
        .map_err(WorkerError::Sandbox)
}

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// Asked to stop (signal, or the pool closed its pipe).
    Stopped,
    /// Its parent died.
    ParentGone,
}

/// The exclusive lock on `DATA/workers/<id>.lock`, held while the worker lives.
#[derive(Debug)]
pub struct WorkerLock {
    _file: File,
}

/// Takes the worker's lock, or says who holds it.
pub fn lock(data_dir: &Path, id: &str) -> Result<WorkerLock, WorkerError> {
    let dir = data_dir.join("workers");
    let path = dir.join(format!("{id}.lock"));
    let io = |source| WorkerError::Lock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(WorkerError::Locked {
                id: id.to_owned(),
                path: path.display().to_string(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" as pid {pid}")
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(WorkerLock { _file: file })
}

/// Cancel tokens of the runs in progress, by run id (the ledger's signals reach them here).
type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// Runs the worker until it is stopped or its parent dies.
pub async fn run(
    options: WorkerOptions,
    shutdown: CancellationToken,
) -> Result<WorkerExit, WorkerError> {
    let expected = options.scope.worker_id();
    if expected.as_str() != options.id {
        return Err(WorkerError::IdMismatch {
            id: options.id.clone(),
            scope: options.scope.to_string(),
            expected: expected.as_str().to_owned(),
        });
    }
    let sandbox = Arc::new(sandbox(&options.config)?);
    let _lock = lock(&options.data_dir, &options.id)?;
    let parent_gone = CancellationToken::new();
    if let Some(parent) = options.parent_pid {
        watch_parent(parent, &parent_gone)?;
    }
    let running: Running = Arc::default();
    let signalled = Arc::clone(&running);
    let db = options.data_dir.join("cascade.db");
    let ledger = Ledger::start(
        &db,
        LedgerConfig {
            worker_id: options.id.clone(),
            scope: options.scope.to_string(),
            node_id: options.node_id.clone(),
            lease: options.lease,
        },
        move |run, signal| {
            if let Some(token) = signalled.lock().ok().and_then(|r| r.get(run).cloned()) {
                tracing::info!(run, ?signal, "stopping run");
                token.cancel();
            }
        },
    )
    .map_err(|source| WorkerError::Store {
        path: db.display().to_string(),
        source,
    })?;
    let ledger = Arc::new(ledger);
    let wake = Arc::new(tokio::sync::Notify::new());
    if options.parent_pid.is_some() {
        read_wakeups(Arc::clone(&wake), parent_gone.clone());
    }
    tracing::info!(worker = options.id, scope = %options.scope, pid = std::process::id(), "worker started");
    let link = crate::telemetry::Link::for_worker(options.telemetry.as_ref(), &options).await;
    let options = Arc::new(options);
    let mut runs = JoinSet::new();
    let exit = loop {
        let free = options.concurrency.saturating_sub(runs.len());
        if free > 0 {
            match ledger.claim(free).await {
                Ok(claimed) => {
                    for c in claimed {
                        let token = CancellationToken::new();
                        if let Ok(mut r) = running.lock() {
                            r.insert(c.lease.run_id.clone(), token.clone());
                        }
                        let span = tracing::info_span!("run", run_id = %c.lease.run_id, dag_id = %c.dag_id);
                        runs.spawn(tracing::Instrument::instrument(
                            run_claimed(
                                c,
                                Arc::clone(&ledger),
                                Arc::clone(&options),
                                Arc::clone(&sandbox),
                                Arc::clone(&running),
                                token,
                                link.clone(),
                            ),
                            span,
                        ));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claim failed; trying again"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break WorkerExit::Stopped,
            () = parent_gone.cancelled() => break WorkerExit::ParentGone,
            () = wake.notified() => {}
            Some(_) = runs.join_next(), if !runs.is_empty() => {}
            () = tokio::time::sleep(options.poll) => {}
        }
    };
    // Unfinished runs go back to the queue first (fenced: nothing more of them is
    // written), then their processes are killed.
    match ledger.release().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(runs = n, "gave unfinished runs back to the queue"),
        Err(e) => tracing::warn!(error = %e, "could not give runs back; their leases will run out"),
    }
    cascade_engine::process::kill_all();
    runs.shutdown().await;
    if let Ok(ledger) = Arc::try_unwrap(ledger) {
        ledger.close();
    }
    if let Some(link) = link {
        link.close().await;
    }
    tracing::info!(worker = options.id, ?exit, "worker stopped");
    Ok(exit)
}

/// The parent's death stops the worker: the kernel sends SIGTERM (Linux), and the pipe on
/// stdin closes (every platform). A parent already gone is an error.
fn watch_parent(parent: u32, parent_gone: &CancellationToken) -> Result<(), WorkerError> {
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    }
    // Checked after arming the signal: a parent that died before is caught here.
    if std::os::unix::process::parent_id() != parent {
        return Err(WorkerError::Orphaned(parent));
    }
    let gone = parent_gone.clone();
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            gone.cancel();
        }
    });
    Ok(())
}

/// Each line on stdin wakes the claim loop; end of file means the parent is gone.
fn read_wakeups(wake: Arc<tokio::sync::Notify>, parent_gone: CancellationToken) {
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    parent_gone.cancel();
                    return;
                }
                Ok(_) => wake.notify_one(),
            }
        }
    });
}

/// Forwards a run's events to the ledger.
struct LedgerSink(Arc<Ledger>);

impl Subscriber for LedgerSink {
    fn on_event(&self, event: &Event) {
        self.0.record(event);
    }
}

async fn run_claimed(
    claimed: Claimed,
    ledger: Arc<Ledger>,
    options: Arc<WorkerOptions>,
    sandbox: Arc<cascade_engine::Sandbox>,
    running: Running,
    cancel: CancellationToken,
    link: Option<Arc<crate::telemetry::Link>>,
) {
    let run = claimed.lease.run_id.clone();
    let run_dir = options.data_dir.join("runs").join(&run);
    let prepared =
        prepare(&claimed, &options).and_then(|p| retry_after_death(&claimed, &p.0).map(|()| p));
    match prepared {
        Err(reason) => ledger.fail(&run, &chain(&reason)),
        Ok((plan, mut secrets, run_id)) => {
            // Read once here for the checkout and the job token (prepare has its own
            // strict read, which says why a stored submission is not JSON).
            let definition: serde_json::Value =
                serde_json::from_str(&claimed.definition).unwrap_or(serde_json::Value::Null);
            let mut base_env = options.job_env.clone();
            if let Some(token) = job_token(&claimed, &definition, &options) {
                // The job token is a credential: masked in its run's logs and events.
                secrets.mask_also("job token", &token);
                base_env.push(("CASCADE_TOKEN".into(), token.into()));
            }
            let workspace = run_dir.join("workspace");
            // A fetch and a chown of the tree: off the async threads.
            let fetching = (definition.clone(), Arc::clone(&options), workspace.clone());
            let checked_out = blocking(move || checkout(&fetching.0, &fetching.1, &fetching.2));
            let checkout = match checked_out.await.unwrap_or(Err(Unrunnable::Interrupted)) {
                Ok(c) => c,
                Err(reason) => {
                    ledger.fail(&run, &chain(&reason));
                    finish(&ledger, &run, &running, &run_dir).await;
                    return;
                }
            };
            let owning = (Arc::clone(&sandbox), workspace.clone(), checkout.clone());
            let isolated = blocking(move || isolate(&owning.0, &owning.1, owning.2.as_ref()));
            let sandbox = match isolated.await.unwrap_or(Err(Unrunnable::Interrupted)) {
                Ok(s) => s,
                Err(reason) => {
                    ledger.fail(&run, &chain(&reason));
                    if let Some((repos, repo)) = &checkout {
                        let _ = repos.remove_worktree(repo, &workspace);
                    }
                    finish(&ledger, &run, &running, &run_dir).await;
                    return;
                }
            };
            let slots = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let engine_options = cascade_engine::Options {
                run_id,
                workspace: workspace.clone(),
                run_dir: run_dir.clone(),
                capacity: cascade_engine::capacity(&options.config, slots),
                grace: options.kill_grace,
                containers: false,
                // Never the worker's own environment: it is the server's (webhook
                // secret, tokens, cloud credentials).
                base_env,
                env_policy: cascade_engine::EnvPolicy::Clean,
                sandbox: Some(sandbox),
                config: options.config.clone(),
                control: None,
                attempts_used: claimed.died_in.iter().cloned().collect(),
                // Workers run tasks cold, as on Argo (a worktree per run).
                warm_python: false,
            };
            let bus = Bus::new().with(Arc::new(LedgerSink(Arc::clone(&ledger))));
            let (bus, engine_options, attached) = match &link {
                Some(link) => {
                    let (bus, commands, attached) =
                        link.attach(&engine_options.run_id, &secrets, bus);
                    let control = Some(commands);
                    (
                        bus,
                        cascade_engine::Options {
                            control,
                            ..engine_options
                        },
                        Some(attached),
                    )
                }
                None => (bus, engine_options, None),
            };
            let ran = cascade_engine::run(&plan, &secrets, engine_options, bus, cancel).await;
            if let (Some(link), Some(attached)) = (&link, attached) {
                link.finish(attached).await;
            }
            match ran {
                Ok(summary) => {
                    for task in summary.tasks.iter().filter(|t| !t.outputs.is_empty()) {
                        ledger.outputs(
                            &run,
                            &task.id.to_string(),
                            &serde_json::Value::Object(task.outputs.clone()),
                        );
                    }
                }
                Err(e) => ledger.fail(&run, &chain(&e)),
            }
            if let Some((repos, repo)) = checkout {
                let _ = repos.remove_worktree(&repo, &workspace);
            }
        }
    }
    finish(&ledger, &run, &running, &run_dir).await;
}

/// The run's job token (`CASCADE_TOKEN`, see `auth.rs`), so a job can dispatch the next
/// step of its chain. Only runs the orchestrator started from a registered repository
/// (never a fork's pull request) chain on: a run submitted through the API would
/// otherwise turn its submitter's scoped token into one whose dispatches reach every
/// repository.
fn job_token(
    claimed: &Claimed,
    definition: &serde_json::Value,
    options: &WorkerOptions,
) -> Option<String> {
    let chains = definition.get("repository").is_some()
        && definition.get("secrets") != Some(&serde_json::Value::Bool(false));
    chains
        .then(|| crate::auth::JobKey::load(&options.data_dir))
        .flatten()
        .map(|key| key.token(&claimed.lease.run_id))
}

/// Waits for the run's end to be recorded, then forgets it and its scratch directory
/// (logs and outputs are in the database).
async fn finish(ledger: &Ledger, run: &str, running: &Running, run_dir: &Path) {
    match ledger.finish(run).await {
        Ok(()) => tracing::debug!(run, "run recorded"),
        Err(e) => tracing::warn!(run, error = %e, "run not recorded"),
    }
    if let Ok(mut r) = running.lock() {
        r.remove(run);
    }
    let _ = std::fs::remove_dir_all(run_dir);
}

/// The run's sandbox: the worker's, plus the checkout's repository (read-only: a
/// worktree's `.git` names it) and the worktree's own git directory (read-write: the
/// index). When jobs run as another user, their workspace and git directory are theirs.
fn isolate(
    sandbox: &cascade_engine::Sandbox,
    workspace: &Path,
    checkout: Option<&(cascade_git::clone::Repos, PathBuf)>,
) -> Result<Arc<cascade_engine::Sandbox>, Unrunnable> {
    let mut sandbox = sandbox.clone();
    let mut owned = vec![workspace.to_owned()];
    if let Some((_, repo)) = checkout {
        sandbox.binds.push(cascade_engine::sandbox::Bind {
            path: repo.clone(),
            writable: false,
        });
        if let Some(gitdir) = worktree_gitdir(workspace) {
            sandbox.binds.push(cascade_engine::sandbox::Bind {
                path: gitdir.clone(),
                writable: true,
            });
            owned.push(gitdir);
        }
    }
    if let Some(ids) = sandbox.user() {
        for path in &owned {
            chown_tree(path, ids).map_err(|source| Unrunnable::Chown {
                path: path.clone(),
                uid: ids.uid,
                source,
            })?;
        }
    }
    Ok(Arc::new(sandbox))
}

/// Where a worktree's git directory is: the `gitdir:` line of its `.git` file.
fn worktree_gitdir(workspace: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(workspace.join(".git")).ok()?;
    let path = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
    path.is_absolute().then_some(path)
}

/// `chown -R` without following links.
fn chown_tree(path: &Path, ids: cascade_engine::sandbox::Ids) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), ids)?;
        }
    }
    Ok(())
}

/// A run started by a repository's event works in a checkout of the commit its
/// pipeline was read at (a worktree of the clone cache); others in an empty directory.
fn checkout(
    value: &serde_json::Value,
    options: &WorkerOptions,
    workspace: &Path,
) -> Result<Option<(cascade_git::clone::Repos, PathBuf)>, Unrunnable> {
    let (Some(url), Some(sha)) = (
        value["checkout"]["url"].as_str(),
        value["checkout"]["sha"].as_str(),
    ) else {
        std::fs::create_dir_all(workspace).map_err(Unrunnable::Workspace)?;
        return Ok(None);
    };
    if let Some(parent) = workspace.parent() {
        std::fs::create_dir_all(parent).map_err(Unrunnable::RunDir)?;
    }
    let repos = cascade_git::clone::Repos::new(options.data_dir.join("repos"));
    let repo = repos.fetch(url, sha).map_err(|source| Unrunnable::Fetch {
        sha: sha.to_owned(),
        source,
    })?;
    repos
        .worktree(&repo, sha, workspace)
        .map_err(|source| Unrunnable::Checkout {
            sha: sha.to_owned(),
            source,
        })?;
    Ok(Some((repos, repo)))
}

/// Why a claimed run cannot run: its error, with its causes (`error::chain`).
#[derive(Debug, thiserror::Error)]
pub enum Unrunnable {
    #[error("invalid run id `{0}`")]
    RunId(String),
    #[error("the stored submission is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("invalid pipeline: {}", first_problem(.0))]
    Pipeline(cascade_spec::SpecErrors),
    #[error("invalid DAG: {}", first_problem(.0))]
    Dag(cascade_spec::SpecErrors),
    #[error(transparent)]
    Plan(#[from] cascade_plan::PlanError),
    #[error(
        "secrets are not given to pull requests from forks (the pipeline declares {})",
        .0.join(", ")
    )]
    Withheld(Vec<String>),
    #[error(transparent)]
    Ungranted(#[from] cascade_spec::config::UngrantedSecrets),
    #[error(transparent)]
    Secrets(cascade_engine::EngineError),
    #[error(
        "task `{task}` was running when its worker died (attempt {attempt}), and its retry policy allows no other attempt"
    )]
    NoRetry { task: String, attempt: u32 },
    #[error("cannot make the workspace")]
    Workspace(#[source] std::io::Error),
    #[error("cannot make the run directory")]
    RunDir(#[source] std::io::Error),
    #[error("cannot fetch {sha}")]
    Fetch {
        sha: String,
        #[source]
        source: cascade_git::CloneError,
    },
    #[error("cannot check out {sha}")]
    Checkout {
        sha: String,
        #[source]
        source: cascade_git::CloneError,
    },
    /// The thread preparing the run's directory panicked.
    #[error("preparing the run's workspace stopped before it ended")]
    Interrupted,
    #[error("cannot give {} to uid {uid}", path.display())]
    Chown {
        path: PathBuf,
        uid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// The plan, secrets and run id of a claimed submission, or why it cannot run.
fn prepare(
    claimed: &Claimed,
    options: &WorkerOptions,
) -> Result<(cascade_plan::Plan, Secrets, RunId), Unrunnable> {
    let run_id = RunId::parse(&claimed.lease.run_id)
        .ok_or_else(|| Unrunnable::RunId(claimed.lease.run_id.clone()))?;
    let value: serde_json::Value =
        serde_json::from_str(&claimed.definition).map_err(Unrunnable::NotJson)?;
    let (pipeline, trigger) = if let Some(text) = value.get("pipeline").and_then(|p| p.as_str()) {
        let pipeline =
            cascade_spec::parse_pipeline("pipeline", text).map_err(Unrunnable::Pipeline)?;
        let mut trigger = Trigger {
            event_name: "workflow_dispatch".to_owned(),
            ..Trigger::manual()
        };
        // Set by the orchestrator: the event that started it.
        if let Some(t) = value.get("trigger") {
            if let Some(name) = t.get("event_name").and_then(|n| n.as_str()) {
                name.clone_into(&mut trigger.event_name);
            }
            if let Some(payload) = t.get("payload") {
                trigger.payload = payload.clone();
            }
            trigger.changed_paths = t.get("changed_paths").and_then(|c| {
                c.as_array().map(|list| {
                    list.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
            });
        }
        let inputs = value
            .get("inputs")
            .or_else(|| value.get("trigger").and_then(|t| t.get("inputs")));
        if let Some(inputs) = inputs.and_then(|i| i.as_object()) {
            for (k, v) in inputs {
                if let Some(v) = v.as_str() {
                    trigger.inputs.insert(k.clone(), v.to_owned());
                }
            }
        }
        (pipeline, trigger)
    } else {
        let dag = cascade_spec::parse_dag(&claimed.dag_id, &claimed.definition)
            .map_err(Unrunnable::Dag)?;
        (
            dag.pipeline,
            Trigger {
                event_name: "api".to_owned(),
                ..Trigger::manual()
            },
        )
    };
    let plan = cascade_plan::plan(&pipeline, &trigger, &[])?;
    let declared: Vec<&str> = plan
        .jobs
        .iter()
        .flat_map(|j| j.secrets.iter().map(String::as_str))
        .collect();
    // A pull request from a fork runs without secrets.
    let withheld = value.get("secrets") == Some(&serde_json::Value::Bool(false));
    if withheld && !declared.is_empty() {
        return Err(Unrunnable::Withheld(
            declared.iter().map(|&name| name.to_owned()).collect(),
        ));
    }
    // Set by the orchestrator only: an API submission with other fields is refused.
    let repository = value.get("repository").and_then(|r| r.as_str());
    options.config.check_grants(
        declared.iter().copied(),
        cascade_spec::config::Grantee {
            repository,
            scope: &options.scope.to_string(),
        },
    )?;
    let mut secrets = options.secrets.clone();
    secrets
        .resolve(declared, &|name| std::env::var(name).ok())
        .map_err(Unrunnable::Secrets)?;
    Ok((plan, secrets, run_id))
}

/// A run whose worker died under some tasks goes on only if each of those may have
/// another attempt (its `retry`, as for a failed exit; a policy limited to some exit
/// codes does not cover a death); otherwise the run fails here, without running again.
fn retry_after_death(claimed: &Claimed, plan: &cascade_plan::Plan) -> Result<(), Unrunnable> {
    for (task, used) in &claimed.died_in {
        let job = cascade_plan::TaskId::parse(task).map(|t| t.job);
        let retry = plan
            .jobs
            .iter()
            .find(|j| Some(&j.id) == job.as_ref())
            .and_then(|j| j.retry.as_ref());
        let allowed = retry.is_some_and(|r| *used <= r.limit && r.on_exit_codes.is_empty());
        if !allowed {
            return Err(Unrunnable::NoRetry {
                task: task.clone(),
                attempt: *used,
            });
        }
    }
    Ok(())
}

fn first_problem(errors: &cascade_spec::SpecErrors) -> String {
    errors
        .diagnostics
        .first()
        .map_or_else(String::new, |d| d.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_id_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), "worker-global").unwrap();
        let err = lock(dir.path(), "worker-global").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("worker `worker-global` is already running as pid")
                && message.contains("another --id"),
            "{message}"
        );
        lock(dir.path(), "worker-project-a").unwrap();
        drop(held);
        lock(dir.path(), "worker-global").unwrap();
    }
}
