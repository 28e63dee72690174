//! `cascade control pause|resume|cancel RUN|limit N --broker URL`: sends a control command
//! to the engines of a project (`cascade/control/{org}/{project}/{command}`); and the
//! broker flags shared with `run --telemetry`, `serve`, `worker run` and `observe`.
//!
//! Engines subscribed at that moment obey it (`cascade run --telemetry`, workers of
//! `serve --telemetry`): `pause` and `resume` and `limit` reach every run of the project,
//! `cancel` only the run it names. Nothing is kept for engines that start later.

use crate::output;
use crate::{CliError, CliResult, Outcome};
use anyhow::Context as _;
use cascade_connect::topic::{ORG_VAR, PROJECT_VAR};
use cascade_connect::{BrokerUrl, Control, Identity};
use cascade_plan::RunId;
use std::time::Duration;

/// How long sending may take once connected (the broker is given the message).
const SEND_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start no new task in the project's runs until `resume` (running tasks go on)
    Pause(Target),
    /// Start tasks again after `pause`
    Resume(Target),
    /// Cancel one run: its tasks are stopped, then only `always()` jobs run
    Cancel {
        /// The run id (`cascade run` prints it; `cascade observe` shows it)
        #[arg(value_parser = run_id)]
        run: RunId,
        #[command(flatten)]
        target: Target,
    },
    /// Run at most N tasks at once in each of the project's runs, from now on
    Limit {
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        jobs: u32,
        #[command(flatten)]
        target: Target,
    },
}

/// Which broker, and whose engines.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The broker: `mqtt://host:port` or `nats://host:port`
    #[arg(long, value_name = "URL", value_parser = broker_url)]
    broker: BrokerUrl,
    /// Organisation id [default: $`CASCADE_ORG_ID`, else `local`]
    #[arg(long, value_name = "ID")]
    org: Option<String>,
    /// Project id [default: $`CASCADE_PROJECT_ID`, else `default`]
    #[arg(long, value_name = "ID")]
    project: Option<String>,
}

/// `--telemetry URL` and `--broker URL`.
pub fn broker_url(text: &str) -> Result<BrokerUrl, String> {
    BrokerUrl::parse(text).map_err(|e| e.to_string())
}

fn run_id(text: &str) -> Result<RunId, String> {
    RunId::parse(text).ok_or_else(|| {
        format!("expected a run id (`[0-9a-z-]`, at most 64 characters), found `{text}`")
    })
}

/// Where this process publishes: `url`, with the org and project of the environment.
pub fn broker(url: &BrokerUrl) -> Result<cascade_server::telemetry::Broker, String> {
    Ok(cascade_server::telemetry::Broker {
        url: url.clone(),
        identity: Identity::from_env().map_err(|e| e.to_string())?,
    })
}

/// The org and project: flags first, then the environment, then `local` / `default`.
pub fn identity(org: Option<&str>, project: Option<&str>) -> Result<Identity, String> {
    Identity::from_vars(|var| match var {
        ORG_VAR => org.map(str::to_owned).or_else(|| std::env::var(var).ok()),
        PROJECT_VAR => project
            .map(str::to_owned)
            .or_else(|| std::env::var(var).ok()),
        _ => None,
    })
    .map_err(|e| e.to_string())
}

pub fn run(command: &Command) -> CliResult {
    let (control, target) = match command {
        Command::Pause(target) => (Control::Pause, target),
        Command::Resume(target) => (Control::Resume, target),
        Command::Cancel { run, target } => (
            Control::Cancel {
                run_id: run.clone(),
            },
            target,
        ),
        Command::Limit { jobs, target } => (Control::Limit { jobs: *jobs }, target),
    };
    let identity =
        identity(target.org.as_deref(), target.project.as_deref()).map_err(CliError::usage)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let sent = runtime.block_on(async {
        let connector = cascade_connect::connect(&target.broker).await?;
        let sent = tokio::time::timeout(
            SEND_WAIT,
            cascade_connect::send_control(
                connector.as_ref(),
                identity.org(),
                identity.project(),
                &control,
            ),
        )
        .await
        .unwrap_or(Err(cascade_connect::ConnectError::Timeout {
            what: "the broker to take the command",
            ms: SEND_WAIT.as_millis(),
        }));
        // Disconnecting sends what the client still holds.
        let closed = connector.disconnect().await;
        sent.and(closed)
    });
    sent.map_err(|e| CliError::caused(Outcome::Failure, &e))?;
    output::note(&format!(
        "sent `{}` to {}",
        control.command(),
        cascade_connect::control_topic(identity.org(), identity.project(), control.command())
    ));
    Ok(Outcome::Success)
}
