//! The `cascade` binary: argument parsing, output formats, exit codes.
//!
//! Every command ends with one of these exit codes ([`error::Outcome`]; README.md has the
//! same table, and a test holds both to the code):
//!
//! | 0 | success | done: the run succeeded, the files are valid, the data was printed |
//! | 1 | failure | a job or run failed; an input file is invalid; the server refused |
//! | 2 | usage | bad flags or values, an unreadable file, a missing configuration |
//! | 3 | internal | a bug or a broken environment |
//! | 4 | not found | a named file, run, DAG, job, worker or token does not exist |
//! | 130 | cancelled | Ctrl-C, or the run followed was cancelled |
//!
//! A command returns [`error::CliResult`]; an error is printed once by `main` (its message,
//! each cause once, and a `hint:` saying what to do next).

mod cmd;
mod error;
mod logging;
mod output;
mod progress;
mod python;

use clap::{Parser, Subcommand};
pub use error::{CliError, CliResult, Outcome};
use std::process::ExitCode;

/// The exit code table, shown at the end of `cascade --help`.
const EXIT_CODES: &str = "Exit codes: 0 success, 1 failure (a job failed, an input is invalid, the server \
refused), 2 usage, 3 internal, 4 not found, 130 cancelled";

#[derive(Debug, Parser)]
#[command(
    name = "cascade",
    version,
    about = "CI/CD and DAG workflows: one pipeline file, run anywhere",
    after_help = EXIT_CODES
)]
struct Cli {
    /// When to colour: `auto` (a terminal, without `NO_COLOR` or `TERM=dumb`), `always`
    /// (even into a pipe, whatever `NO_COLOR` says) or `never`
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t)]
    color: output::ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check pipeline files and report every problem with its line and column
    Validate(cmd::validate::Args),
    /// Print the job DAG of a pipeline (dot, mermaid or json)
    Graph(cmd::graph::Args),
    /// Print what a run would do (jobs, edges, fan-outs, env, secrets), as text or JSON
    Plan(cmd::plan::Args),
    /// Print the JSON Schema of ci.yaml, or of DAG JSON with --dag, for editor completion
    Schema(cmd::schema::Args),
    /// Run a pipeline on this machine
    Run(Box<cmd::run::Args>),
    /// List recorded runs
    Runs(cmd::runs::RunsArgs),
    /// Print the logs of a run, or of one of its jobs
    Logs(cmd::runs::LogsArgs),
    /// Print the packages (or files) changed since a git ref, as a JSON list
    Changed(cmd::changed::Args),
    /// Serve the DAG API (submissions are queued durably) and run them in workers
    Serve(cmd::serve::Args),
    /// Submit DAGs to a server (or its data dir) and follow them
    #[command(subcommand)]
    Dag(cmd::dag::Command),
    /// Start `repository_dispatch` pipelines on a server (`client_payload` as JSON)
    Dispatch(cmd::events::DispatchArgs),
    /// The event log: webhooks, dispatches and cron ticks, and what each started
    Events(cmd::events::EventsArgs),
    /// Worker processes (started by `serve`; one per scope)
    #[command(subcommand)]
    Worker(cmd::worker::Command),
    /// Run pipelines on Kubernetes through Argo Workflows
    #[command(subcommand)]
    Argo(cmd::argo::Command),
    /// Watch runs and their tasks live from telemetry (runs of any machine)
    Observe(cmd::observe::Args),
    /// Pause, resume, cancel or limit running engines through the broker
    #[command(subcommand)]
    Control(cmd::control::Command),
    /// API tokens of a server: create (shown once), list, revoke
    #[command(subcommand)]
    Token(cmd::token::Command),
    /// Write a starter ci.yaml and a commented cascade.toml
    Init(cmd::init::Args),
    /// Print a shell completion script (bash, zsh or fish)
    Completions(cmd::completions::Args),
}

fn main() -> ExitCode {
    // ring is the only rustls provider (no aws-lc-rs); clients fail to build without one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    output::set_color(cli.color);
    let result: CliResult = match cli.command {
        Command::Validate(args) => Ok(cmd::validate::run(&args)),
        Command::Graph(args) => cmd::graph::run(&args),
        Command::Schema(args) => cmd::schema::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Runs(args) => cmd::runs::runs(&args),
        Command::Logs(args) => cmd::runs::logs(&args),
        Command::Changed(args) => cmd::changed::run(&args),
        Command::Argo(command) => cmd::argo::run(&command),
        Command::Serve(args) => cmd::serve::run(&args),
        Command::Worker(command) => cmd::worker::run(&command),
        Command::Dag(command) => cmd::dag::run(&command),
        Command::Dispatch(args) => cmd::events::dispatch(&args),
        Command::Events(args) => cmd::events::events(&args),
        Command::Observe(args) => cmd::observe::run(&args),
        Command::Control(command) => cmd::control::run(&command),
        Command::Token(command) => cmd::token::run(&command),
        Command::Plan(args) => cmd::plan::run(&args),
        Command::Init(args) => cmd::init::run(&args),
        Command::Completions(args) => Ok(cmd::completions::run(
            &args,
            &mut <Cli as clap::CommandFactory>::command(),
        )),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(error) => {
            let text = error.text();
            if !text.is_empty() {
                output::note(&text);
            }
            error.outcome.into()
        }
    }
}
