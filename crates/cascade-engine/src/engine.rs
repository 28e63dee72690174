//! The dispatcher: runs a [`Plan`] on this machine.
//!
//! One loop owns all run state. A job is *expanded* once all its needs are final: its
//! fan-out becomes tasks (a dynamic `for_each` is evaluated now), each task's `if:` is
//! evaluated, and runnable tasks join a FIFO queue. Tasks start while the resource
//! manager has room; each runs in its own tokio task and reports back. When the last task
//! of a job ends, the job's result and fan-in outputs are fixed and its dependents may
//! expand. Nothing here blocks the loop: processes, sleeps and pipes are async.

use crate::bus::Bus;
use crate::control::{Command, Commands};
use crate::error::{EngineError, NotAList, OutputsError};
use crate::mask::Masker;
use crate::process::{self, Exit, Launch, LineSink};
use crate::resources::{Capacity, Resources, Weight};
use crate::sandbox::Sandbox;
use crate::secrets::Secrets;
use cascade_plan::context::{JobOutcome, Scope};
use cascade_plan::{
    Event, EventKind, FanOut, JobResult, Plan, RunId, RunOutcome, TaskId, TaskState,
};
use cascade_spec::config::{AdminConfig, memory_bytes};
use cascade_spec::expr::Root;
use cascade_spec::model::OutputSource;
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub run_id: RunId,
    /// Working directory of every job.
    pub workspace: PathBuf,
    /// Scratch directory of this run (output files).
    pub run_dir: PathBuf,
    pub capacity: Capacity,
    /// Time between SIGTERM and SIGKILL when a task is stopped.
    pub grace: Duration,
    /// Run jobs that have an `image:` in podman.
    pub containers: bool,
    /// The environment jobs inherit (secrets are removed from it); with
    /// [`EnvPolicy::Clean`], only the variables granted to every job.
    pub base_env: Vec<(OsString, OsString)>,
    /// What of `base_env` a job gets.
    pub env_policy: EnvPolicy,
    /// Run every job (but those in podman) in this sandbox; see [`crate::sandbox`].
    /// Without one, daemons a job leaves behind are stopped by [`crate::reaper`].
    pub sandbox: Option<Arc<Sandbox>>,
    pub config: AdminConfig,
    /// Commands obeyed while the run goes (pause, resume, cancel, limit); see
    /// [`crate::control`].
    pub control: Option<Commands>,
    /// Attempts tasks (by task id, `job` or `job[3]`) already used in an earlier life of
    /// this run (a worker that died under them): their numbering and retry budget go on
    /// from there.
    pub attempts_used: std::collections::HashMap<String, u32>,
    /// Start Python tasks (`python3 -m cascade.runner`) outside podman and the sandbox
    /// as forks of a warm runner per module ([`crate::warm`]) instead of a fresh
    /// interpreter each.
    pub warm_python: bool,
}

/// Where a job's environment comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvPolicy {
    /// All of `base_env` but secrets (`cascade run`: the job sees what its user sees).
    Inherit,
    /// Nothing but `base_env` (what the server grants every job, e.g. `CASCADE_SERVER`),
    /// plus a minimal `PATH`, `HOME`, `LANG` and `LC_ALL` (jobs run by the server: they
    /// must never see the server's own environment).
    Clean,
}

/// `PATH` of a clean environment outside the sandbox.
const MINIMAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The final state of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSummary {
    pub id: TaskId,
    pub label: Option<String>,
    pub state: TaskState,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub error: Option<String>,
    pub outputs: serde_json::Map<String, Value>,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub outcome: RunOutcome,
    /// Jobs by result: succeeded with no failed task.
    pub passed: usize,
    /// Jobs with a failed task, including those allowed to fail.
    pub failed: usize,
    /// Of `failed`, jobs whose `continue_on_error` kept the run green (their result is
    /// `success` to expressions, as in GitHub Actions).
    pub allowed: usize,
    /// Jobs cancelled, running or never started: not failures.
    pub cancelled: usize,
    pub skipped: usize,
    pub tasks: Vec<TaskSummary>,
    pub jobs: IndexMap<String, JobResult>,
    /// Each job's outputs as its dependents saw them (`needs.X.outputs`): a fanned-out
    /// job's are the lists of its copies' values; a job that never finished has none.
    pub outputs: IndexMap<String, serde_json::Map<String, Value>>,
    pub duration: Duration,
}

/// The caller's capacity from the admin config and a slot count.
pub fn capacity(config: &AdminConfig, slots: usize) -> Capacity {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cpu = config
        .engine
        .cpu
        .unwrap_or(f64::from(u32::try_from(cpus).unwrap_or(1)));
    let memory = config
        .engine
        .memory
        .as_deref()
        .and_then(memory_bytes)
        .unwrap_or(u64::from(u32::MAX) * 1024 * 1024);
    Capacity {
        slots: u32::try_from(slots).unwrap_or(u32::MAX),
        cpu_milli: millis(cpu),
        memory_mib: u32::try_from(memory / (1024 * 1024)).unwrap_or(u32::MAX),
    }
}

fn millis(cpu: f64) -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to the u32 range first"
    )]
    let m = (cpu * 1000.0).clamp(0.0, f64::from(u32::MAX)) as u32;
    m
}

/// What a fan-out copy runs with.
#[derive(Debug, Clone)]
enum Fan {
    None,
    Matrix(IndexMap<String, String>),
    Item(Value),
}

#[derive(Debug)]
struct TaskRt {
    summary: TaskSummary,
    fan: Fan,
}

#[derive(Debug, Default)]
struct JobRt {
    /// Needs not final yet.
    remaining: usize,
    dependents: Vec<usize>,
    tasks: Vec<TaskRt>,
    expanded: bool,
    finals: usize,
    outcome: Option<JobOutcome>,
    /// A job this one depends on (directly or not) failed.
    failed_upstream: bool,
}

/// What a running task reports when it ends.
struct Report {
    job: usize,
    task: usize,
    state: TaskState,
    attempts: u32,
    exit: Exit,
    duration: Duration,
    error: Option<String>,
    outputs: serde_json::Map<String, Value>,
}

/// Everything a task future needs, shared.
struct Shared {
    run_id: RunId,
    bus: Bus,
    masker: Masker,
    options: Options,
}

/// Runs the plan to the end. `cancel` stops it: running tasks are killed, then only
/// jobs whose `if:` allows it (`always()`, `cancelled()`) still run.
pub async fn run(
    plan: &Plan,
    secrets: &Secrets,
    options: Options,
    bus: Bus,
    cancel: CancellationToken,
) -> Result<Summary, EngineError> {
    let weights = check_runners(plan, &options.config)?;
    // Held to the end: dropping it removes the output files, however the run ends.
    let _run_dir =
        crate::outputs::RunDir::create(&options.run_dir).map_err(|source| EngineError::RunDir {
            path: options.run_dir.display().to_string(),
            source,
        })?;
    if options.sandbox.is_some() || options.env_policy == EnvPolicy::Clean {
        prepare_home(&options)?;
    }
    if options.sandbox.is_none() {
        crate::reaper::adopt_orphans();
    }
    let mut dispatcher = Dispatcher::new(plan, secrets, options, bus, weights);
    dispatcher.run(cancel).await;
    // No task runs any more: their warm runners end with the run.
    dispatcher.warm.shutdown().await;
    Ok(dispatcher.summary())
}

/// The jobs' `HOME` (mounted at [`crate::sandbox::HOME`] in the sandbox) and the run
/// directory, owned by the user jobs run as when that is not us.
fn prepare_home(options: &Options) -> Result<(), EngineError> {
    use std::os::unix::fs::PermissionsExt as _;
    let home = home_dir(options);
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| EngineError::RunDir { path, source }
    };
    std::fs::create_dir_all(&home).map_err(io(&home))?;
    if let Some(ids) = options.sandbox.as_ref().and_then(|s| s.user()) {
        for dir in [&options.run_dir, &home] {
            std::os::unix::fs::chown(dir, Some(ids.uid), Some(ids.gid)).map_err(io(dir))?;
        }
        // bwrap enters the workspace below it without capabilities, so it must be
        // searchable; listing it stays the job user's (its files are 0600).
        std::fs::set_permissions(&options.run_dir, std::fs::Permissions::from_mode(0o711))
            .map_err(io(&options.run_dir))?;
    }
    Ok(())
}

fn home_dir(options: &Options) -> PathBuf {
    options.run_dir.join("home")
}

/// The weight of each job: its runner alias's CPU and memory, each overridden by its own
/// `resources:`; a field neither gives weighs nothing. An unknown runner alias is an error
/// before anything runs. A weight above the capacity is not an error: the job runs alone
/// ([`Resources::clamp`]).
fn check_runners(plan: &Plan, config: &AdminConfig) -> Result<Vec<Weight>, EngineError> {
    plan.jobs
        .iter()
        .map(|job| {
            config
                .job_resources(job.runner.as_deref(), job.resources.as_ref())
                .map(|r| Weight {
                    cpu_milli: r.cpu_milli.unwrap_or(0),
                    memory_mib: u32::try_from(
                        r.memory.as_deref().and_then(memory_bytes).unwrap_or(0) / (1024 * 1024),
                    )
                    .unwrap_or(u32::MAX),
                })
                .map_err(|unknown| EngineError::UnknownRunner {
                    job: job.id.to_string(),
                    runner: unknown.name.clone(),
                    known: unknown.known(),
                })
        })
        .collect()
}

struct Dispatcher<'p> {
    plan: &'p Plan,
    secrets: &'p Secrets,
    shared: Arc<Shared>,
    jobs: Vec<JobRt>,
    weights: Vec<Weight>,
    resources: Resources,
    queue: VecDeque<(usize, usize)>,
    running: JoinSet<Report>,
    cancelled: bool,
    /// A `pause` command holds new starts until `resume`.
    paused: bool,
    /// Where commands come from, while the sender is there.
    control: Option<tokio::sync::mpsc::Receiver<Command>>,
    kill: CancellationToken,
    started: Instant,
    /// Names of every secret, removed from the inherited environment.
    secret_names: Vec<String>,
    programs: std::cell::RefCell<std::collections::HashMap<String, OsString>>,
    /// Which task each running tokio task serves.
    owners: std::collections::HashMap<tokio::task::Id, (usize, usize)>,
    /// The warm Python runners of this run.
    warm: Arc<crate::warm::Pool>,
}

impl<'p> Dispatcher<'p> {
    fn new(
        plan: &'p Plan,
        secrets: &'p Secrets,
        options: Options,
        bus: Bus,
        weights: Vec<Weight>,
    ) -> Self {
        let mut jobs: Vec<JobRt> = plan.jobs.iter().map(|_| JobRt::default()).collect();
        for (index, job) in plan.jobs.iter().enumerate() {
            jobs[index].remaining = job.needs.len();
            for &need in &job.needs {
                jobs[need].dependents.push(index);
            }
        }
        let control = options.control.as_ref().and_then(Commands::take);
        let mut secret_names: Vec<String> = secrets.names().map(str::to_owned).collect();
        secret_names.extend(plan.jobs.iter().flat_map(|j| j.secrets.iter().cloned()));
        Self {
            plan,
            secrets,
            resources: Resources::new(options.capacity),
            shared: Arc::new(Shared {
                run_id: options.run_id.clone(),
                bus,
                masker: secrets.masker(),
                options,
            }),
            jobs,
            weights,
            queue: VecDeque::new(),
            running: JoinSet::new(),
            cancelled: false,
            paused: false,
            control,
            kill: CancellationToken::new(),
            started: Instant::now(),
            secret_names,
            programs: std::cell::RefCell::default(),
            owners: std::collections::HashMap::new(),
            warm: Arc::new(crate::warm::Pool::new()),
        }
    }

    fn emit(&self, kind: EventKind) {
        self.shared.bus.emit(&Event {
            run_id: self.shared.run_id.clone(),
            ts: jiff::Timestamp::now(),
            kind,
        });
    }

    async fn run(&mut self, cancel: CancellationToken) {
        self.emit(EventKind::RunStarted {
            pipeline: self.plan.name.clone(),
            jobs: self.plan.jobs.len(),
            parallelism: self.resources.capacity().slots as usize,
        });
        let roots: Vec<usize> = (0..self.jobs.len())
            .filter(|&j| self.jobs[j].remaining == 0)
            .collect();
        for job in roots {
            self.expand(job);
        }
        loop {
            self.take_commands();
            self.start_ready();
            if self.running.is_empty() && self.queue.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = self.running.join_next_with_id() => match joined {
                    Ok((id, report)) => {
                        self.owners.remove(&id);
                        self.finish(report);
                    }
                    // A task's supervisor panicked: the task failed; never leave it Running.
                    Err(e) => {
                        if let Some((job, task)) = self.owners.remove(&e.id()) {
                            self.finish(Report { job, task, state: TaskState::Failed, attempts: 1, exit: Exit::SpawnFailed(e.to_string()), duration: Duration::ZERO, error: Some(format!("internal error: {e}")), outputs: serde_json::Map::new() });
                        }
                    }
                },
                () = cancel.cancelled(), if !self.cancelled => self.cancel(),
                command = recv(self.control.as_mut()), if self.control.is_some() => match command {
                    Some(command) => self.obey(command),
                    None => self.control_gone(),
                },
            }
        }
        // Jobs never reached (only possible after cancellation) end as cancelled.
        for job in 0..self.jobs.len() {
            if !self.jobs[job].expanded {
                self.expand(job);
            }
        }
    }

    /// Applies every command already waiting (so one sent before the run holds from the
    /// first task).
    fn take_commands(&mut self) {
        loop {
            let Some(rx) = self.control.as_mut() else {
                return;
            };
            match rx.try_recv() {
                Ok(command) => self.obey(command),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    self.control_gone();
                    return;
                }
            }
        }
    }

    fn obey(&mut self, command: Command) {
        match command {
            Command::Pause => self.paused = true,
            Command::Resume => self.paused = false,
            Command::Cancel => {
                if !self.cancelled {
                    self.cancel();
                }
            }
            Command::Limit(jobs) => self
                .resources
                .set_slots(u32::try_from(jobs.get()).unwrap_or(u32::MAX)),
        }
    }

    /// Nobody can send commands any more: a paused run would wait forever, so it resumes.
    fn control_gone(&mut self) {
        self.control = None;
        self.paused = false;
    }

    fn cancel(&mut self) {
        self.cancelled = true;
        // A cancelled run ends: its `always()` jobs must not wait for a resume.
        self.paused = false;
        self.kill.cancel();
        // Tasks started from now on (always() jobs) get a fresh token.
        self.kill = CancellationToken::new();
        let queued: Vec<(usize, usize)> = self.queue.drain(..).collect();
        for (job, task) in queued {
            if self.condition_holds(job, task) {
                self.queue.push_back((job, task));
            } else {
                self.settle(
                    job,
                    task,
                    TaskState::Cancelled,
                    Some("the run was cancelled".to_owned()),
                );
            }
        }
    }

    fn start_ready(&mut self) {
        if self.paused {
            return;
        }
        while let Some(&(job, task)) = self.queue.front() {
            let weight = self.weights[job];
            if !self.resources.try_acquire(weight) {
                break;
            }
            self.queue.pop_front();
            let id = self.jobs[job].tasks[task].summary.id.clone();
            if weight.cpu_milli > 0 || weight.memory_mib > 0 {
                let capacity = self.resources.capacity();
                let in_use = self.resources.in_use();
                self.emit(EventKind::ResourceAcquired {
                    task: id.clone(),
                    resource: format!("cpu={}m,memory={}Mi", weight.cpu_milli, weight.memory_mib),
                    amount: weight.cpu_milli,
                    in_use: in_use.cpu_milli,
                    capacity: capacity.cpu_milli,
                });
            }
            self.jobs[job].tasks[task].summary.state = TaskState::Running;
            let prepared = self.prepare(job, task);
            let shared = Arc::clone(&self.shared);
            let kill = self.kill.clone();
            let handle = self.running.spawn(execute(shared, prepared, kill));
            self.owners.insert(handle.id(), (job, task));
        }
    }

    /// The scope a task's expressions are evaluated in.
    fn scope<'a>(&'a self, job: usize, fan: Option<&'a Fan>) -> Scope<'a> {
        let planned = &self.plan.jobs[job];
        let needs = planned
            .needs
            .iter()
            .filter_map(|&n| {
                Some((
                    self.plan.jobs[n].id.as_str(),
                    self.jobs[n].outcome.as_ref()?,
                ))
            })
            .collect();
        let (matrix, item) = match fan {
            Some(Fan::Matrix(m)) => (Some(m), None),
            Some(Fan::Item(v)) => (None, Some(v)),
            _ => (None, None),
        };
        Scope {
            plan: self.plan,
            needs,
            matrix,
            item,
            cancelled: self.cancelled,
            ancestor_failed: self.jobs[job].failed_upstream,
        }
    }

    fn condition_holds(&self, job: usize, task: usize) -> bool {
        let fan = &self.jobs[job].tasks[task].fan;
        self.scope(job, Some(fan))
            .condition(self.plan.jobs[job].condition.as_ref())
    }

    /// Turns a job whose needs are final into tasks.
    fn expand(&mut self, job: usize) {
        let mut work = vec![job];
        while let Some(job) = work.pop() {
            if self.jobs[job].expanded {
                continue;
            }
            self.jobs[job].expanded = true;
            self.jobs[job].failed_upstream = self.plan.jobs[job].needs.iter().any(|&n| {
                self.jobs[n].failed_upstream
                    || self.jobs[n]
                        .outcome
                        .as_ref()
                        .is_some_and(|o| o.result == JobResult::Failure)
            });
            let planned = &self.plan.jobs[job];
            let (fans, fan_error, early) = self.fans(job);
            let fanned = !matches!(planned.fan_out, FanOut::Single) && early.is_none();
            let fans = if fans.is_empty() {
                vec![Fan::None]
            } else {
                fans
            };
            let empty = fanned && matches!(fans.as_slice(), [Fan::None]) && fan_error.is_none();
            for (index, fan) in fans.into_iter().enumerate() {
                let id = TaskId {
                    job: planned.id.clone(),
                    index: (fanned && !empty && fan_error.is_none())
                        .then(|| u32::try_from(index).unwrap_or(u32::MAX)),
                };
                let label = match &fan {
                    Fan::None => None,
                    Fan::Matrix(m) => Some(
                        m.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    Fan::Item(v) => {
                        Some(self.shared.masker.mask_str(&cascade_spec::expr::to_text(v)))
                    }
                };
                self.emit(EventKind::TaskPending {
                    task: id.clone(),
                    label: label.clone(),
                });
                self.jobs[job].tasks.push(TaskRt {
                    summary: TaskSummary {
                        id,
                        label,
                        state: TaskState::Pending,
                        attempts: 0,
                        exit_code: None,
                        duration: Duration::ZERO,
                        error: None,
                        outputs: serde_json::Map::new(),
                    },
                    fan,
                });
            }
            let count = self.jobs[job].tasks.len();
            for task in 0..count {
                let skip = if let Some(e) = &early {
                    Some(e.clone())
                } else if let Some(e) = &fan_error {
                    Some((TaskState::Failed, e.clone()))
                } else if empty {
                    Some((TaskState::Skipped, "the for_each list is empty".to_owned()))
                } else if self.condition_holds(job, task) {
                    None
                } else if self.cancelled {
                    Some((TaskState::Cancelled, "the run was cancelled".to_owned()))
                } else {
                    Some((TaskState::Skipped, skip_reason(planned.condition.as_ref())))
                };
                match skip {
                    None => self.queue.push_back((job, task)),
                    Some((state, reason)) => {
                        if let Some(ready) = self.settle_quiet(job, task, state, Some(reason)) {
                            work.extend(ready);
                        }
                    }
                }
            }
        }
    }

    /// The copies of a job about to run: its fan-out values, a fan-out error, or a skip
    /// decided before fanning out (a dynamic list from a need that did not succeed must
    /// not turn a skipped job into a failed one).
    fn fans(&self, job: usize) -> (Vec<Fan>, Option<String>, Option<(TaskState, String)>) {
        let planned = &self.plan.jobs[job];
        // Decide a skip before fanning out: a dynamic list from a need that did not
        // succeed must not turn a skipped job into a failed one.
        let per_copy = planned.condition.as_ref().is_some_and(|c| {
            c.references()
                .iter()
                .any(|r| matches!(r.root, Root::Item | Root::Matrix))
        });
        let early = if let Some(reason) = &planned.skip {
            Some((TaskState::Skipped, reason.clone()))
        } else if per_copy || self.scope(job, None).condition(planned.condition.as_ref()) {
            None
        } else if self.cancelled {
            Some((TaskState::Cancelled, "the run was cancelled".to_owned()))
        } else {
            Some((TaskState::Skipped, skip_reason(planned.condition.as_ref())))
        };
        let (fans, fan_error) = if early.is_some() {
            (vec![Fan::None], None)
        } else {
            match &planned.fan_out {
                FanOut::Single => (vec![Fan::None], None),
                FanOut::Matrix(combos) => (combos.iter().cloned().map(Fan::Matrix).collect(), None),
                FanOut::Items(items) => (items.iter().cloned().map(Fan::Item).collect(), None),
                FanOut::Dynamic(expr) => {
                    let value = cascade_spec::expr::eval(expr, &self.scope(job, None));
                    match as_list(value) {
                        Ok(items) => (items.into_iter().map(Fan::Item).collect(), None),
                        Err(found) => (
                            vec![Fan::None],
                            Some(format!("for_each `{expr}` gave {found}, not a list")),
                        ),
                    }
                }
            }
        };
        (fans, fan_error, early)
    }

    /// Marks a task final without running it, and carries on.
    fn settle(&mut self, job: usize, task: usize, state: TaskState, reason: Option<String>) {
        if let Some(ready) = self.settle_quiet(job, task, state, reason) {
            for j in ready {
                self.expand(j);
            }
        }
    }

    /// Marks a task final; returns dependents that became ready, if the job ended.
    fn settle_quiet(
        &mut self,
        job: usize,
        task: usize,
        state: TaskState,
        reason: Option<String>,
    ) -> Option<Vec<usize>> {
        let id = self.jobs[job].tasks[task].summary.id.clone();
        match state {
            TaskState::Skipped => self.emit(EventKind::TaskSkipped {
                task: id.clone(),
                reason: reason.clone().unwrap_or_default(),
            }),
            _ => self.emit(EventKind::TaskFinished {
                task: id.clone(),
                state,
                attempt: 0,
                exit_code: None,
                duration_ms: 0,
                error: reason.clone(),
            }),
        }
        let t = &mut self.jobs[job].tasks[task].summary;
        t.state = state;
        t.error = reason;
        self.task_final(job)
    }

    fn finish(&mut self, report: Report) {
        let weight = self.weights[report.job];
        self.resources.release(weight);
        let id = self.jobs[report.job].tasks[report.task].summary.id.clone();
        if weight.cpu_milli > 0 || weight.memory_mib > 0 {
            let capacity = self.resources.capacity();
            self.emit(EventKind::ResourceReleased {
                task: id.clone(),
                resource: format!("cpu={}m,memory={}Mi", weight.cpu_milli, weight.memory_mib),
                amount: weight.cpu_milli,
                in_use: self.resources.in_use().cpu_milli,
                capacity: capacity.cpu_milli,
            });
        }
        self.emit(EventKind::TaskFinished {
            task: id,
            state: report.state,
            attempt: report.attempts,
            exit_code: report.exit.code(),
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            error: report.error.clone(),
        });
        let t = &mut self.jobs[report.job].tasks[report.task].summary;
        t.state = report.state;
        t.attempts = report.attempts;
        t.exit_code = report.exit.code();
        t.duration = report.duration;
        t.error = report.error;
        t.outputs = report.outputs;
        if let Some(ready) = self.task_final(report.job) {
            for j in ready {
                self.expand(j);
            }
        }
    }

    /// Counts a final task; when the job is complete, fixes its outcome.
    fn task_final(&mut self, job: usize) -> Option<Vec<usize>> {
        let rt = &mut self.jobs[job];
        rt.finals += 1;
        if rt.finals < rt.tasks.len() {
            return None;
        }
        let planned = &self.plan.jobs[job];
        let states: Vec<TaskState> = rt.tasks.iter().map(|t| t.summary.state).collect();
        let result = JobResult::of_tasks(&states, planned.continue_on_error);
        let fanned = rt.tasks.iter().any(|t| t.summary.id.index.is_some());
        let mut outputs = serde_json::Map::new();
        for name in planned.outputs.keys() {
            let value = if fanned {
                Value::Array(
                    rt.tasks
                        .iter()
                        .map(|t| t.summary.outputs.get(name).cloned().unwrap_or(Value::Null))
                        .collect(),
                )
            } else {
                rt.tasks
                    .first()
                    .and_then(|t| t.summary.outputs.get(name).cloned())
                    .unwrap_or(Value::Null)
            };
            outputs.insert(name.clone(), value);
        }
        rt.outcome = Some(JobOutcome { result, outputs });
        let mut ready = Vec::new();
        for d in rt.dependents.clone() {
            let dep = &mut self.jobs[d];
            dep.remaining -= 1;
            if dep.remaining == 0 {
                ready.push(d);
            }
        }
        Some(ready)
    }

    /// Computes everything a task needs to run, in the loop (expressions see run state).
    fn prepare(&self, job: usize, task: usize) -> Prepared {
        let planned = &self.plan.jobs[job];
        let rt = &self.jobs[job].tasks[task];
        let scope = self.scope(job, Some(&rt.fan));
        let options = &self.shared.options;
        let file = rt.summary.id.to_string().replace(['[', ']'], "_");
        let output_file = options.run_dir.join(format!("{file}.out"));
        let in_podman = planned.image.is_some() && options.containers;
        let sandboxed = options.sandbox.is_some() && !in_podman;
        let mut env = self.base_environment(sandboxed);
        let inherited = env.len();
        let mut set = |k: &str, v: String| env.push((k.into(), v.into()));
        let tracking = (!(sandboxed || in_podman))
            .then(|| OsString::from(format!("{}/{}", self.shared.run_id, rt.summary.id)));
        if let Some(marker) = &tracking {
            set(crate::reaper::MARKER, marker.to_string_lossy().into_owned());
        }
        set("CI", "true".to_owned());
        set("CASCADE", "true".to_owned());
        set("CASCADE_RUN_ID", self.shared.run_id.to_string());
        set("CASCADE_JOB", planned.id.to_string());
        set("CASCADE_TASK", rt.summary.id.to_string());
        set("CASCADE_WORKSPACE", options.workspace.display().to_string());
        set("CASCADE_OUTPUT", output_file.display().to_string());
        for (name, template) in &planned.env {
            set(name, scope.render(template));
        }
        for binding in &planned.script.bindings {
            set(&binding.var, scope.text(&binding.expr));
        }
        for name in &planned.secrets {
            if let Some(v) = self.secrets.get(name) {
                set(name, v.to_owned());
            }
        }
        let capture = if planned
            .outputs
            .values()
            .any(|s| matches!(s, OutputSource::Stdout | OutputSource::StdoutJson))
        {
            1 << 20
        } else {
            0
        };
        let container = (planned.image.is_some() && options.containers).then(|| {
            crate::container::name(self.shared.run_id.as_str(), &rt.summary.id.to_string())
        });
        let on_stop = container.as_ref().map(|name| {
            vec![
                self.program("podman"),
                "rm".into(),
                "--force".into(),
                "--time".into(),
                "0".into(),
                name.into(),
            ]
        });
        let argv = match (&planned.image, &container) {
            (Some(image), Some(name)) => crate::container::argv(
                image,
                planned.shell,
                &planned.script.text,
                &env[inherited..],
                &output_file,
                name,
                options,
            ),
            _ => self.local_argv(planned, sandboxed),
        };
        Prepared {
            job,
            task,
            first_attempt: options
                .attempts_used
                .get(&rt.summary.id.to_string())
                .copied()
                .unwrap_or(0)
                .saturating_add(1),
            id: rt.summary.id.clone(),
            launch: Launch {
                argv,
                env,
                cwd: options.workspace.clone(),
                timeout: planned.timeout,
                grace: options.grace,
                masker: self.shared.masker.clone(),
                capture_stdout: capture,
                on_stop,
                tracking,
                sandboxed,
                warm: (options.warm_python
                    && container.is_none()
                    && !sandboxed
                    && crate::warm::is_python_task(&planned.script.text))
                .then(|| Arc::clone(&self.warm)),
            },
            output_file,
            outputs: planned.outputs.clone(),
            retry: planned.retry.clone(),
        }
    }

    /// The command of a job on this machine: its program straight or through its shell,
    /// inside the sandbox if there is one.
    fn local_argv(&self, planned: &cascade_plan::PlannedJob, sandboxed: bool) -> Vec<OsString> {
        let options = &self.shared.options;
        let argv = self.direct(&planned.script.text).unwrap_or_else(|| {
            vec![
                self.program(planned.shell.program()),
                "-ec".into(),
                planned.script.text.clone().into(),
            ]
        });
        match (&options.sandbox, sandboxed) {
            (Some(sandbox), true) => sandbox.wrap(
                &argv,
                &options.workspace,
                &[options.workspace.as_path(), options.run_dir.as_path()],
                &home_dir(options),
            ),
            _ => argv,
        }
    }

    /// What every task's environment starts from, under the run's policy: the base
    /// without secrets (and a clean policy's or the sandbox's PATH and HOME: the sandbox
    /// mounts only the system and its own HOME, so outside ones would point at nothing).
    fn base_environment(&self, sandboxed: bool) -> Vec<(OsString, OsString)> {
        let options = &self.shared.options;
        let clean = options.env_policy == EnvPolicy::Clean;
        let replaced = |k: &str| (sandboxed || clean) && (k == "PATH" || k == "HOME");
        let mut env: Vec<(OsString, OsString)> = options
            .base_env
            .iter()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                !self.secret_names.iter().any(|s| *s == k)
                    && !k.starts_with("CASCADE_EXPR_")
                    && k != crate::reaper::MARKER
                    && !replaced(&k)
            })
            .cloned()
            .collect();
        let mut set = |k: &str, v: String| env.push((k.into(), v.into()));
        if sandboxed {
            set("PATH", crate::sandbox::PATH.to_owned());
            set("HOME", crate::sandbox::HOME.to_owned());
        } else if clean {
            set("PATH", MINIMAL_PATH.to_owned());
            set("HOME", home_dir(options).display().to_string());
        }
        if clean {
            set("LANG", "C.UTF-8".to_owned());
            set("LC_ALL", "C.UTF-8".to_owned());
        }
        env
    }

    /// The argv of a script that needs no shell, if its program is on `PATH`.
    fn direct(&self, script: &str) -> Option<Vec<OsString>> {
        let words = process::plain_words(script)?;
        let program = self.program(words.first()?);
        std::path::Path::new(&program).is_absolute().then(|| {
            std::iter::once(program)
                .chain(words.iter().skip(1).map(OsString::from))
                .collect()
        })
    }

    /// A program's absolute path on the jobs' `PATH`, looked up once per run.
    fn program(&self, name: &str) -> OsString {
        let mut cache = self.programs.borrow_mut();
        cache
            .entry(name.to_owned())
            .or_insert_with(|| {
                let options = &self.shared.options;
                // Looked up on the PATH the job gets (the sandbox's is the system's).
                let path = if options.sandbox.is_some() {
                    Some(std::ffi::OsStr::new(crate::sandbox::PATH))
                } else if options.env_policy == EnvPolicy::Clean {
                    Some(std::ffi::OsStr::new(MINIMAL_PATH))
                } else {
                    options
                        .base_env
                        .iter()
                        .find(|(k, _)| k == "PATH")
                        .map(|(_, v)| v.as_os_str())
                };
                process::resolve(name, path)
            })
            .clone()
    }

    fn summary(&self) -> Summary {
        let mut jobs = IndexMap::new();
        let mut outputs = IndexMap::new();
        let (mut passed, mut failed, mut allowed, mut cancelled, mut skipped) = (0, 0, 0, 0, 0);
        for (planned, rt) in self.plan.jobs.iter().zip(&self.jobs) {
            let result = rt
                .outcome
                .as_ref()
                .map_or(JobResult::Cancelled, |o| o.result);
            let a_task_failed = rt
                .tasks
                .iter()
                .any(|t| t.summary.state == TaskState::Failed);
            match result {
                // `continue_on_error` made it a success; it still failed.
                JobResult::Success if a_task_failed => {
                    failed += 1;
                    allowed += 1;
                }
                JobResult::Success => passed += 1,
                JobResult::Failure => failed += 1,
                JobResult::Cancelled => cancelled += 1,
                JobResult::Skipped => skipped += 1,
            }
            jobs.insert(planned.id.to_string(), result);
            outputs.insert(
                planned.id.to_string(),
                rt.outcome
                    .as_ref()
                    .map(|o| o.outputs.clone())
                    .unwrap_or_default(),
            );
        }
        let outcome = if self.cancelled {
            RunOutcome::Cancelled
        } else if jobs.values().any(|r| *r == JobResult::Failure) {
            RunOutcome::Failed
        } else {
            RunOutcome::Succeeded
        };
        let duration = self.started.elapsed();
        self.emit(EventKind::RunFinished {
            outcome,
            passed,
            failed,
            skipped,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        });
        Summary {
            outcome,
            passed,
            failed,
            allowed,
            cancelled,
            skipped,
            tasks: self
                .jobs
                .iter()
                .flat_map(|j| j.tasks.iter().map(|t| t.summary.clone()))
                .collect(),
            jobs,
            outputs,
            duration,
        }
    }
}

/// The next command, or `None` when the sender is gone (never called without a receiver).
async fn recv(control: Option<&mut tokio::sync::mpsc::Receiver<Command>>) -> Option<Command> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn skip_reason(condition: Option<&cascade_spec::expr::Expr>) -> String {
    match condition {
        None => "a job it needs did not succeed".to_owned(),
        Some(c) => format!("condition `{c}` is false"),
    }
}

/// A `for_each` value as a list: an array, or a string holding a JSON array.
fn as_list(value: Value) -> Result<Vec<Value>, NotAList> {
    match value {
        Value::Array(items) => Ok(items),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Array(items)) => Ok(items),
            _ => Err(NotAList::Text(s.chars().take(40).collect())),
        },
        Value::Null => Err(NotAList::Nothing),
        other => Err(NotAList::Other(other)),
    }
}

struct Prepared {
    job: usize,
    task: usize,
    /// The number of its first attempt here (more than 1 when an earlier life of the run
    /// used some).
    first_attempt: u32,
    id: TaskId,
    launch: Launch,
    output_file: PathBuf,
    outputs: IndexMap<String, OutputSource>,
    retry: Option<cascade_spec::model::Retry>,
}

/// An empty output file for the next attempt (0600), owned by the sandbox's user when
/// the job runs as another one.
fn fresh_output_file(options: &Options, path: &std::path::Path) {
    let owner = options
        .sandbox
        .as_ref()
        .and_then(|s| s.user())
        .map(|ids| (ids.uid, ids.gid));
    let _ = crate::outputs::prepare_file_for(path, owner);
}

/// Runs a task with its retries and collects its outputs.
async fn execute(shared: Arc<Shared>, p: Prepared, kill: CancellationToken) -> Report {
    let emit = {
        let shared = Arc::clone(&shared);
        move |kind: EventKind| {
            shared.bus.emit(&Event {
                run_id: shared.run_id.clone(),
                ts: jiff::Timestamp::now(),
                kind,
            });
        }
    };
    let sink: LineSink = {
        let shared = Arc::clone(&shared);
        let task = p.id.clone();
        Arc::new(move |stream, line| {
            shared.bus.emit(&Event {
                run_id: shared.run_id.clone(),
                ts: jiff::Timestamp::now(),
                kind: EventKind::TaskLog {
                    task: task.clone(),
                    stream,
                    line,
                },
            });
        })
    };
    let started = Instant::now();
    let mut attempt = p.first_attempt;
    loop {
        if kill.is_cancelled() {
            return Report {
                job: p.job,
                task: p.task,
                state: TaskState::Cancelled,
                attempts: attempt - 1,
                exit: Exit::Cancelled,
                duration: started.elapsed(),
                error: Some(TaskState::Cancelled.as_str().to_owned()),
                outputs: serde_json::Map::new(),
            };
        }
        // A failure shows as the job's own error when it writes its outputs.
        fresh_output_file(&shared.options, &p.output_file);
        emit(EventKind::TaskStarted {
            task: p.id.clone(),
            attempt,
        });
        let finished = process::run(p.launch.clone(), Arc::clone(&sink), kill.clone()).await;
        if finished.exit.success() {
            let collected = collect_outputs(&p, &finished.stdout, &shared.masker);
            let (state, error, outputs) = match collected.map_err(|why| why.to_string()) {
                Ok(outputs) => (TaskState::Succeeded, None, outputs),
                Err(e) => (TaskState::Failed, Some(e), serde_json::Map::new()),
            };
            return Report {
                job: p.job,
                task: p.task,
                state,
                attempts: attempt,
                exit: finished.exit,
                duration: started.elapsed(),
                error,
                outputs,
            };
        }
        let cancelled = finished.exit == Exit::Cancelled;
        let error = finished.exit.describe().map(|e| shared.masker.mask_str(&e));
        if !cancelled && let Some(delay) = retry_delay(p.retry.as_ref(), attempt, &finished.exit) {
            emit(EventKind::TaskRetrying {
                task: p.id.clone(),
                attempt: attempt + 1,
                exit_code: finished.exit.code(),
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            });
            // Cancellation wins over an elapsed backoff; the loop's first check returns.
            tokio::select! {
                biased;
                () = kill.cancelled() => {}
                () = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
            continue;
        }
        let state = if cancelled {
            TaskState::Cancelled
        } else {
            TaskState::Failed
        };
        return Report {
            job: p.job,
            task: p.task,
            state,
            attempts: attempt,
            exit: finished.exit,
            duration: started.elapsed(),
            error,
            outputs: serde_json::Map::new(),
        };
    }
}

/// The delay before the next attempt, if the retry policy allows one.
fn retry_delay(
    retry: Option<&cascade_spec::model::Retry>,
    attempt: u32,
    exit: &Exit,
) -> Option<Duration> {
    let retry = retry?;
    if attempt > retry.limit {
        return None;
    }
    if !retry.on_exit_codes.is_empty()
        && !exit
            .code()
            .is_some_and(|c| retry.on_exit_codes.contains(&c))
    {
        return None;
    }
    let factor = 2u32.saturating_pow(attempt - 1);
    let delay = retry.backoff.saturating_mul(factor);
    Some(retry.max_backoff.map_or(delay, |max| delay.min(max)))
}

/// Declared outputs from `$CASCADE_OUTPUT` and stdout, masked.
fn collect_outputs(
    p: &Prepared,
    stdout: &[u8],
    masker: &Masker,
) -> Result<serde_json::Map<String, Value>, OutputsError> {
    let mut outputs = serde_json::Map::new();
    let file = match crate::outputs::read_output_file(&p.output_file) {
        Ok(bytes) => crate::outputs::parse_bytes(&bytes)
            .map_err(|errors| output_file_error(&bytes, &errors, masker))?,
        Err(_) => Vec::new(),
    };
    for (name, source) in &p.outputs {
        let value = match source {
            // Only declared names are kept: a name, like a value, could hold a secret.
            OutputSource::File => Value::String(
                file.iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| masker.mask_str(v))
                    .unwrap_or_default(),
            ),
            OutputSource::Stdout => {
                Value::String(masker.mask_str(String::from_utf8_lossy(stdout).trim()))
            }
            OutputSource::StdoutJson => {
                let v: Value =
                    serde_json::from_slice(stdout).map_err(|error| OutputsError::StdoutJson {
                        name: name.clone(),
                        error,
                    })?;
                mask_json(v, masker)
            }
        };
        outputs.insert(name.clone(), value);
    }
    Ok(outputs)
}

/// Why `$CASCADE_OUTPUT` could not be read, from the masked text: an excerpt cut from
/// the raw text could hold the start of a secret that masking no longer recognises.
fn output_file_error(
    bytes: &[u8],
    errors: &[crate::outputs::OutputFileError],
    masker: &Masker,
) -> OutputsError {
    let from_masked = crate::outputs::parse_bytes(&masker.mask_bytes(bytes)).err();
    let detail = match from_masked {
        Some(found) => found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        None => format!(
            "malformed at line {}",
            errors
                .iter()
                .map(|e| e.line().map_or_else(|| "?".to_owned(), |l| l.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    OutputsError::OutputFile { detail }
}

fn mask_json(v: Value, masker: &Masker) -> Value {
    if masker.is_empty() {
        return v;
    }
    match v {
        Value::String(s) => Value::String(masker.mask_str(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| mask_json(v, masker)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, mask_json(v, masker)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_spec::model::Retry;

    #[test]
    fn retry_backoff_doubles_up_to_the_cap() {
        let retry = Retry {
            limit: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Some(Duration::from_secs(3)),
            on_exit_codes: vec![],
        };
        let fail = Exit::Code(1);
        assert_eq!(
            retry_delay(Some(&retry), 1, &fail),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_delay(Some(&retry), 2, &fail),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_delay(Some(&retry), 3, &fail),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_delay(Some(&retry), 4, &fail), None);
        assert_eq!(retry_delay(None, 1, &fail), None);
    }

    #[test]
    fn retry_only_on_listed_exit_codes() {
        let retry = Retry {
            limit: 2,
            backoff: Duration::ZERO,
            max_backoff: None,
            on_exit_codes: vec![75],
        };
        assert_eq!(
            retry_delay(Some(&retry), 1, &Exit::Code(75)),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_delay(Some(&retry), 1, &Exit::Code(1)), None);
        assert_eq!(
            retry_delay(Some(&retry), 1, &Exit::TimedOut(Duration::ZERO)),
            None
        );
    }

    #[test]
    fn for_each_values_must_be_lists() {
        assert_eq!(
            as_list(serde_json::json!(["a"])),
            Ok(vec![serde_json::json!("a")])
        );
        assert_eq!(as_list(serde_json::json!("[1, 2]")).map(|v| v.len()), Ok(2));
        assert!(as_list(serde_json::json!("abc")).is_err());
        assert!(as_list(Value::Null).is_err());
    }
}
