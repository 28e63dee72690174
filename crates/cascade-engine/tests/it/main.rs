//! Integration tests of the engine with real processes: fan-out and fan-in, retries,
//! timeouts, conditions, cancellation, control commands, injection and masking corpora.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::format_push_string,
    clippy::needless_pass_by_value,
    reason = "test helpers: a panic is the failure report"
)]
#![expect(
    clippy::disallowed_methods,
    reason = "tests start the tools they check against (podman, tar) directly; only the product's own spawns must go through its builders"
)]

mod container;
mod control;
mod flow;
mod safety;
mod warm;

use cascade_engine::{Bus, Command, Recorder, Secrets, Summary};
use cascade_plan::{Event, EventKind, Trigger};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A run's summary and every event it emitted.
#[derive(Debug)]
pub struct Ran {
    pub summary: Summary,
    pub events: Vec<Event>,
    pub dir: tempfile::TempDir,
    /// When each of [`Setup::commands`] was sent, in order.
    pub sent: Vec<jiff::Timestamp>,
}

impl Ran {
    pub fn state(&self, task: &str) -> cascade_plan::TaskState {
        self.summary
            .tasks
            .iter()
            .find(|t| t.id.to_string() == task)
            .unwrap_or_else(|| panic!("no task {task}: {:?}", self.summary.tasks))
            .state
    }

    pub fn task(&self, task: &str) -> &cascade_engine::TaskSummary {
        self.summary
            .tasks
            .iter()
            .find(|t| t.id.to_string() == task)
            .unwrap()
    }

    /// Every log line of the run, as `task: line`.
    pub fn logs(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::TaskLog { task, line, .. } => Some(format!("{task}: {line}")),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug)]
pub struct Setup {
    pub trigger: Trigger,
    pub secrets: Secrets,
    pub slots: u32,
    /// CPU capacity in millicores (4 cores unless a test says otherwise).
    pub cpu_milli: u32,
    pub cancel_after: Option<Duration>,
    pub grace: Duration,
    /// Extra variables in the environment the engine inherits.
    pub env: Vec<(&'static str, &'static str)>,
    /// Run jobs with `image:` in podman.
    pub containers: bool,
    /// Control commands, each sent that long after the run started (zero: before it
    /// starts); the sender is dropped after the last one.
    pub commands: Vec<(Duration, Command)>,
    /// Start Python tasks as forks of warm runners.
    pub warm_python: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            trigger: Trigger::manual(),
            secrets: Secrets::default(),
            slots: 4,
            cpu_milli: 4000,
            cancel_after: None,
            grace: Duration::from_millis(500),
            env: Vec::new(),
            containers: false,
            commands: Vec::new(),
            warm_python: false,
        }
    }
}

pub fn run(yaml: &str, setup: Setup) -> Ran {
    let pipeline =
        cascade_spec::parse_pipeline("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let plan = cascade_plan::plan(&pipeline, &setup.trigger, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let options = cascade_engine::Options {
        run_id: cascade_plan::RunId::generate(1, 1),
        workspace: dir.path().to_owned(),
        run_dir: dir.path().join(".run"),
        capacity: cascade_engine::Capacity {
            slots: setup.slots,
            cpu_milli: setup.cpu_milli,
            memory_mib: 8192,
        },
        grace: setup.grace,
        containers: setup.containers,
        base_env: std::env::vars_os()
            .filter(|(k, _)| k == "PATH" || k == "HOME")
            .chain(setup.env.iter().map(|(k, v)| ((*k).into(), (*v).into())))
            .collect(),
        env_policy: cascade_engine::EnvPolicy::Inherit,
        sandbox: None,
        config: cascade_spec::config::AdminConfig::default(),
        control: None,
        attempts_used: std::collections::HashMap::new(),
        warm_python: setup.warm_python,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    if let Some(after) = setup.cancel_after {
        let c = cancel.clone();
        runtime.spawn(async move {
            tokio::time::sleep(after).await;
            c.cancel();
        });
    }
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let options = if setup.commands.is_empty() {
        options
    } else {
        let (controller, commands) = cascade_engine::control::channel(16);
        let mut later = Vec::new();
        for (after, command) in setup.commands {
            if after.is_zero() {
                sent.lock().unwrap().push(jiff::Timestamp::now());
                assert!(controller.send(command));
            } else {
                later.push((after, command));
            }
        }
        let sent = Arc::clone(&sent);
        runtime.spawn(async move {
            let start = tokio::time::Instant::now();
            for (after, command) in later {
                tokio::time::sleep_until(start + after).await;
                sent.lock().unwrap().push(jiff::Timestamp::now());
                controller.send(command);
            }
        });
        cascade_engine::Options {
            control: Some(commands),
            ..options
        }
    };
    let summary = runtime
        .block_on(cascade_engine::run(
            &plan,
            &setup.secrets,
            options,
            Bus::new().with(recorder.clone()),
            cancel,
        ))
        .unwrap();
    let sent = sent.lock().unwrap().clone();
    Ran {
        summary,
        events: recorder.events(),
        dir,
        sent,
    }
}
