//! `cascade worker run`: one worker process for one scope (normally started by `serve`).

use crate::{CliError, CliResult, Outcome};
use anyhow::Context as _;
use cascade_server::worker::{WorkerExit, WorkerOptions};
use cascade_spec::Scope;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the worker of one scope: claim its queued runs and run them
    Run(Box<RunArgs>),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The worker id: `worker-<type>-<id>` of its scope (`worker-global`)
    #[arg(long)]
    id: String,
    /// `global`, `project:<id>`, `user:<id>` or `type:<id>`
    #[arg(long, value_parser = parse_scope)]
    scope: Scope,
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Claim only runs for this node (and runs for no node in particular)
    #[arg(long, value_name = "ID", env = "CASCADE_NODE_ID")]
    node_id: Option<String>,
    /// Set by `serve`: stop when this process dies; stdin is the wake-up pipe
    #[arg(long, value_name = "PID")]
    parent_pid: Option<u32>,
    /// How long a claim holds without renewal
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    lease: Duration,
    /// Runs at once [default: number of CPUs, at least 2]
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// How often to look for work when not woken
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    poll: Duration,
    /// Admin config [default: ./cascade.toml if present, else built-in runners]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Secrets, `NAME=value` lines (others are looked up in the environment)
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when a task is stopped
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    kill_grace: f64,
    /// Publish every run's events to this broker and obey its control commands
    /// (`mqtt://host:port` or `nats://host:port`; org and project from
    /// `CASCADE_ORG_ID`, `CASCADE_PROJECT_ID`)
    #[arg(long, value_name = "URL", value_parser = super::control::broker_url)]
    telemetry: Option<cascade_connect::BrokerUrl>,
    #[command(flatten)]
    log: crate::logging::LogArgs,
}

pub fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).map_err(|e| e.to_string())
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    cascade_spec::duration::parse(text).map_err(|e| e.to_string())
}

pub fn run(command: &Command) -> CliResult {
    let Command::Run(args) = command;
    args.log.init();
    let (config, secrets) =
        super::trigger::load_admin(args.config.as_deref(), args.secrets_file.as_deref())?;
    let telemetry = args
        .telemetry
        .as_ref()
        .map(super::control::broker)
        .transpose()
        .map_err(CliError::usage)?;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let options = WorkerOptions {
        id: args.id.clone(),
        scope: args.scope.clone(),
        data_dir: args.data_dir.clone(),
        node_id: args.node_id.clone(),
        parent_pid: args.parent_pid,
        lease: args.lease,
        concurrency: args.concurrency.unwrap_or(cpus.max(2)).max(1),
        poll: args.poll,
        config,
        secrets,
        kill_grace: Duration::from_secs_f64(args.kill_grace.max(0.0)),
        telemetry,
        // Jobs get this one variable of the worker's environment (set by `serve`'s pool).
        job_env: std::env::var_os("CASCADE_SERVER")
            .map(|url| ("CASCADE_SERVER".into(), url))
            .into_iter()
            .collect(),
    };
    // Small: the engine's work is child processes; two threads keep the ledger replies
    // and the dispatch loops moving.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let result = runtime.block_on(async {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
        if args.parent_pid.is_none() {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    term.recv().await;
                    stop.cancel();
                }
            });
        }
        cascade_server::worker::run(options, shutdown).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(WorkerExit::Stopped | WorkerExit::ParentGone) => Ok(Outcome::Success),
        Err(e @ cascade_server::worker::WorkerError::Locked { .. }) => {
            Err(CliError::usage(e.to_string()))
        }
        Err(e) => Err(CliError::caused(Outcome::Failure, &e)),
    }
}
