//! `cascade run FILE`: plan and run a pipeline on this machine.

use crate::output;
use crate::output::Tone;
use crate::progress::{Mode, Progress};
use crate::{CliError, Outcome};
use anyhow::Context as _;
use cascade_engine::{Bus, Secrets, Subscriber};
use cascade_plan::{Event, JobResult, RunId, RunOutcome, TaskState};
use cascade_store::{RunMeta, Writer};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RunOutput {
    #[default]
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "clap flags: each bool is one independent on/off `--flag` of the command line"
)]
pub struct Args {
    /// Pipeline file (ci.yaml), DAG JSON, or Python pipeline (`file.py:function`)
    file: PathBuf,
    /// Run only these jobs and what they need (repeatable)
    #[arg(long = "job", value_name = "JOB")]
    jobs_selected: Vec<String>,
    #[command(flatten)]
    trigger: super::trigger::TriggerArgs,
    /// How many tasks run at once [default: number of CPUs]
    #[arg(long = "jobs", short = 'j', value_name = "N", value_parser = at_least_one)]
    parallelism: Option<usize>,
    /// Run jobs that have an `image:` in podman
    #[arg(long)]
    containers: bool,
    /// Run every job in a bubblewrap sandbox, as `serve` does: the system read-only, the
    /// workspace read-write, a private /tmp, its own PID namespace (all it started ends
    /// with it); `[sandbox]` in cascade.toml adds paths. Needs `bwrap`
    #[arg(long)]
    sandbox: bool,
    /// Start each Python task (`python3 -m cascade.runner`) as a fresh interpreter, not as
    /// a fork of a warm runner that already imported its module
    #[arg(long)]
    cold: bool,
    /// Secrets, `NAME=value` lines (multi-line: `NAME<<EOF` … `EOF`)
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,
    /// Admin config [default: ./cascade.toml if present, else built-in runners]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where runs are recorded (`SQLite` database `cascade.db` inside)
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Compare with this git ref to find changed files (job-level `paths:` filters)
    #[arg(long, value_name = "REF")]
    base: Option<String>,
    /// The changed side of `--base` [default: the working tree]
    #[arg(long, value_name = "REF", requires = "base")]
    head: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when a task is stopped
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    kill_grace: f64,
    /// `human` (live view and summary) or `json` (one event per line on stdout)
    #[arg(long, value_enum, default_value_t)]
    output: RunOutput,
    /// Publish the run's events to this broker and obey its control commands
    /// (`mqtt://host:port` or `nats://host:port`, or `unix:/path/to.sock`: JSON lines
    /// `{"topic", "payload"}` both ways; org and project from `CASCADE_ORG_ID`,
    /// `CASCADE_PROJECT_ID`). A broker that is down never holds the run up: its events are
    /// dropped
    #[arg(long, value_name = "URL", value_parser = super::control::broker_url)]
    telemetry: Option<cascade_connect::BrokerUrl>,
    /// When the run ends, whatever its outcome (cancelled too), write its result to FILE as
    /// JSON: `{"run_id", "status", "tasks": [{"id", "job", "state", "error", "outputs"}],
    /// "jobs": {JOB: {"result", "outputs"}}}`, outputs masked
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// What the engine may hand out to jobs at once, weighed by their `resources:`:
    /// `cpu=4,memory=8Gi` (either or both) [default: `[engine]` of cascade.toml, else this
    /// machine's CPUs and no memory limit]
    #[arg(long, value_name = "LIMITS", value_parser = capacity_flag)]
    capacity: Option<CapacityFlag>,
    /// Jobs get only `PATH`, `HOME`, `LANG`, `LC_*`, `TERM`, `TMPDIR`, `VIRTUAL_ENV` and
    /// `PYTHONPATH` of this environment (plus their declared secrets and `env:`), not all
    /// of it: what a job may read is what it declares (the Python SDK's `cs.run` passes it)
    #[arg(long)]
    clean_env: bool,
}

/// `--capacity`: the engine's limits given on the command line.
#[derive(Debug, Clone, Default, PartialEq)]
struct CapacityFlag {
    cpu: Option<f64>,
    memory: Option<String>,
}

/// Parses `cpu=4,memory=8Gi` (either part may be left out, not both).
fn capacity_flag(text: &str) -> Result<CapacityFlag, String> {
    let mut flag = CapacityFlag::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("expected cpu=N or memory=SIZE, found {part:?}"))?;
        match key.trim() {
            "cpu" => {
                let cpu: f64 = value.trim().parse().map_err(|_| {
                    format!("cpu must be a number of cores (`cpu=4`, `cpu=0.5`), found {value:?}")
                })?;
                if !(cpu.is_finite() && cpu > 0.0) {
                    return Err(format!("cpu must be more than 0, found {value:?}"));
                }
                flag.cpu = Some(cpu);
            }
            "memory" => {
                let value = value.trim();
                if cascade_spec::config::memory_bytes(value).is_none_or(|b| b == 0) {
                    return Err(format!(
                        "memory must be a size such as 512Mi, 8Gi or 2G, found {value:?}"
                    ));
                }
                flag.memory = Some(value.to_owned());
            }
            other => {
                return Err(format!(
                    "unknown resource {other:?}: expected cpu=N and/or memory=SIZE"
                ));
            }
        }
    }
    if flag == CapacityFlag::default() {
        return Err("expected cpu=N and/or memory=SIZE, e.g. cpu=4,memory=8Gi".to_owned());
    }
    Ok(flag)
}

/// What `--clean-env` keeps of the caller's environment: what finding programs, the
/// user's files, text and the Python environment need; nothing that could be a secret.
fn kept_by_clean_env(name: &str) -> bool {
    matches!(
        name,
        "PATH" | "HOME" | "LANG" | "TERM" | "TMPDIR" | "VIRTUAL_ENV" | "PYTHONPATH"
    ) || name.starts_with("LC_")
}

struct StoreSink(Writer);

impl Subscriber for StoreSink {
    fn on_event(&self, event: &Event) {
        self.0.record(event);
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the steps of one run, in order, each a call"
)]
pub fn run(args: &Args) -> crate::CliResult {
    let pipeline = super::load_or_report(&args.file)?;
    if let Some(path) = &args.summary {
        summary_place(path)?;
    }
    let mut config =
        super::trigger::load_config(args.config.as_deref()).map_err(CliError::failure)?;
    if let Some(flag) = &args.capacity {
        if flag.cpu.is_some() {
            config.engine.cpu = flag.cpu;
        }
        if flag.memory.is_some() {
            config.engine.memory.clone_from(&flag.memory);
        }
    }
    let trigger = args
        .trigger
        .trigger(args.base.as_deref(), args.head.as_deref())
        .map_err(CliError::usage)?;
    let plan = cascade_plan::plan(&pipeline, &trigger, &args.jobs_selected).map_err(|e| {
        CliError::caused(Outcome::Failure, &e)
            .hint(format!("see `cascade validate {}`", args.file.display()))
    })?;
    // A bad or unsafe secrets file is the user's to fix, like an invalid pipeline.
    let mut secrets = match args.secrets_file.as_deref().map(Secrets::from_file) {
        Some(s) => s.map_err(|e| CliError::caused(Outcome::Failure, &e))?,
        None => Secrets::default(),
    };
    let declared: Vec<&str> = plan
        .jobs
        .iter()
        .flat_map(|j| j.secrets.iter().map(String::as_str))
        .collect();
    secrets
        .resolve(declared, &|name| std::env::var(name).ok())
        .map_err(|e| CliError::caused(Outcome::Failure, &e))?;
    let broker = args
        .telemetry
        .as_ref()
        .map(super::control::broker)
        .transpose()
        .map_err(CliError::usage)?;
    if !args.containers && plan.jobs.iter().any(|j| j.image.is_some()) {
        output::note("note: `image:` is ignored without --containers; jobs run on this machine");
    }

    let now = jiff::Timestamp::now();
    let run_id = RunId::generate(u64::try_from(now.as_millisecond()).unwrap_or(0), random());
    let db = args.data_dir.join("cascade.db");
    let writer = Writer::start(
        &db,
        &RunMeta {
            run_id: run_id.clone(),
            dag_id: plan.name.clone(),
            source: Some(args.file.display().to_string()),
            trigger: plan.event_name.clone(),
        },
    )
    .with_context(|| format!("cannot record the run in {}", db.display()))?;
    let store = Arc::new(StoreSink(writer));
    let mode = match args.output {
        RunOutput::Json => Mode::Json,
        RunOutput::Human if std::io::stderr().is_terminal() => Mode::Tty,
        RunOutput::Human => Mode::Plain,
    };
    let logs = format!("cascade logs {run_id}{}", data_dir_flag(&args.data_dir));
    let progress = Arc::new(Progress::new(
        mode,
        &plan,
        follow_up(&logs, &run_id, broker.as_ref()),
    ));
    let bus = Bus::new().with(store.clone()).with(progress.clone());
    let slots = args
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        .max(1);
    let workspace = std::env::current_dir().context("cannot read the current directory")?;
    let sandbox = if args.sandbox {
        let sandbox = cascade_engine::Sandbox::configured(
            &config.sandbox,
            std::env::var_os("PATH").as_deref(),
            false,
        )
        .map_err(|e| CliError::caused(Outcome::Failure, &e))?;
        Some(Arc::new(sandbox))
    } else {
        None
    };
    let options = cascade_engine::Options {
        run_id: run_id.clone(),
        run_dir: absolute(
            &args.data_dir.join("runs").join(run_id.as_str()),
            &workspace,
        ),
        workspace,
        capacity: cascade_engine::capacity(&config, slots),
        grace: Duration::from_secs_f64(args.kill_grace.max(0.0)),
        containers: args.containers,
        base_env: std::env::vars_os()
            .filter(|(k, _)| !args.clean_env || k.to_str().is_some_and(kept_by_clean_env))
            .collect(),
        env_policy: cascade_engine::EnvPolicy::Inherit,
        sandbox,
        config,
        control: None,
        attempts_used: std::collections::HashMap::new(),
        warm_python: !args.cold,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let cancel = CancellationToken::new();
    let (summary, dropped) = runtime.block_on(async {
        let signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                signal.cancel();
                // A second Ctrl-C stops at once, taking every task's process group
                // with it (they are in their own groups: the terminal's signal misses them).
                if tokio::signal::ctrl_c().await.is_ok() {
                    cascade_engine::process::kill_all();
                    std::process::exit(130);
                }
            }
        });
        let Some(broker) = &broker else {
            return (
                cascade_engine::run(&plan, &secrets, options, bus, cancel).await,
                None,
            );
        };
        let link = std::sync::Arc::new(cascade_server::telemetry::Link::start(broker).await);
        let (bus, commands, attached) = link.attach(&run_id, &secrets, bus);
        let options = cascade_engine::Options {
            control: Some(commands),
            ..options
        };
        let summary = cascade_engine::run(&plan, &secrets, options, bus, cancel).await;
        let dropped = link.finish(attached).await;
        link.close().await;
        (summary, Some(dropped))
    });
    progress.finish();
    if let (Some(dropped @ 1..), Some(broker)) = (dropped, &broker) {
        output::note(&format!(
            "telemetry: {dropped} event{} not published to {}",
            if dropped == 1 { "" } else { "s" },
            broker.url
        ));
    }
    // Written now, whatever the outcome; a failure to write ends the command after the
    // run is recorded.
    let summary_written = args.summary.as_ref().map_or(Ok(()), |path| {
        write_summary(path, &run_id, summary.as_ref())
    });
    let summary = summary.map_err(|e| CliError::caused(Outcome::Failure, &e))?;
    for task in &summary.tasks {
        if !task.outputs.is_empty() {
            store.0.outputs(
                &run_id,
                &task.id.to_string(),
                &serde_json::Value::Object(task.outputs.clone()),
            );
        }
    }
    drop(runtime);
    if let Ok(StoreSink(writer)) = Arc::try_unwrap(store) {
        writer.close().context("cannot finish writing the run")?;
    }
    if mode != Mode::Json {
        // The replay on stderr first, so the summary is the last thing on the screen.
        let replay = progress.replay(&summary, &logs);
        if !replay.is_empty() {
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), replay.as_bytes());
        }
        output::data(&summary_table(&summary, &run_id, &logs));
    }
    summary_written?;
    Ok(Outcome::of_run(summary.outcome))
}

/// The `--summary` document of a run (or of an engine that could not run it).
fn summary_json(
    run_id: &RunId,
    summary: Result<&cascade_engine::Summary, &cascade_engine::EngineError>,
) -> serde_json::Value {
    use serde_json::json;
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            return json!({
                "run_id": run_id.as_str(),
                "status": RunOutcome::Failed.as_str(),
                "error": crate::error::chain(e),
                "tasks": [],
                "jobs": {},
            });
        }
    };
    let tasks: Vec<serde_json::Value> = summary
        .tasks
        .iter()
        .map(|t| {
            json!({
                "id": t.id.to_string(),
                "job": t.id.job.as_str(),
                "state": t.state.as_str(),
                "error": t.error,
                "outputs": t.outputs,
            })
        })
        .collect();
    let jobs: serde_json::Map<String, serde_json::Value> = summary
        .jobs
        .iter()
        .map(|(job, result)| {
            let outputs = summary.outputs.get(job).cloned().unwrap_or_default();
            (
                job.clone(),
                json!({"result": result.as_str(), "outputs": outputs}),
            )
        })
        .collect();
    json!({
        "run_id": run_id.as_str(),
        "status": summary.outcome.as_str(),
        "tasks": tasks,
        "jobs": jobs,
    })
}

/// Refuses a `--summary` path whose directory does not exist before anything runs (the
/// file is written at the end).
fn summary_place(path: &Path) -> crate::CliResult<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "cannot write the summary to {}: the directory {} does not exist",
            path.display(),
            parent.display()
        ))
        .hint("create the directory first, or give --summary a path in one that exists"))
    }
}

/// Writes the `--summary` file whole: to a temporary file beside it, then renamed, so a
/// reader never sees half of one.
fn write_summary(
    path: &Path,
    run_id: &RunId,
    summary: Result<&cascade_engine::Summary, &cascade_engine::EngineError>,
) -> crate::CliResult<()> {
    let text = summary_json(run_id, summary).to_string();
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text + "\n")
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            CliError::usage(format!(
                "cannot write the summary to {}: {e}",
                path.display()
            ))
            .hint("give --summary a path in a directory that exists and is writable")
        })
}

fn absolute(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// What the user can do while the run goes: read its logs, cancel it.
fn follow_up(
    logs: &str,
    run_id: &RunId,
    broker: Option<&cascade_server::telemetry::Broker>,
) -> Vec<String> {
    use std::fmt::Write as _;
    let mut lines = vec![format!("  logs:   {logs}")];
    match broker {
        Some(broker) => {
            let mut cancel = format!(
                "  cancel: Ctrl-C, or cascade control cancel {run_id} --broker {}",
                shell_word(&broker.url.to_string())
            );
            // The same org and project as this run, if the environment chose them.
            for (flag, var) in [
                ("--org", cascade_connect::topic::ORG_VAR),
                ("--project", cascade_connect::topic::PROJECT_VAR),
            ] {
                if let Ok(value) = std::env::var(var) {
                    let _ = write!(cancel, " {flag} {}", shell_word(&value));
                }
            }
            lines.push(cancel);
        }
        None => lines.push("  cancel: Ctrl-C (twice: stop every task at once)".to_owned()),
    }
    lines
}

/// ` --data-dir DIR` when a follow-up command needs it to find this run: the directory
/// is not the default, and not what `CASCADE_DATA_DIR` says already.
fn data_dir_flag(data_dir: &Path) -> String {
    let from_env = std::env::var_os("CASCADE_DATA_DIR").is_some_and(|d| Path::new(&d) == data_dir);
    if data_dir == Path::new(".cascade") || from_env {
        String::new()
    } else {
        format!(
            " --data-dir {}",
            shell_word(&data_dir.display().to_string())
        )
    }
}

/// A word a shell reads back as `text` (quoted only when it must be).
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The summary table and the last line `N passed, N failed, N skipped`.
fn summary_table(summary: &cascade_engine::Summary, run_id: &RunId, logs: &str) -> String {
    use std::fmt::Write;
    let paint = |text: &str, tone| output::paint(text, tone, output::Stream::Stdout);
    let mut out = String::new();
    let width = summary
        .tasks
        .iter()
        .map(|t| t.id.to_string().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:<9}  {:>8}  {:>4}  NOTE",
        "TASK", "STATE", "TIME", "TRY"
    );
    for t in &summary.tasks {
        let allowed = t.state == TaskState::Failed
            && summary.jobs.get(t.id.job.as_str()) == Some(&JobResult::Success);
        let mut note = match (&t.label, &t.error) {
            (_, Some(e)) => e.clone(),
            (Some(l), None) => l.clone(),
            (None, None) => String::new(),
        };
        if allowed {
            note.push_str(" (allowed by continue_on_error)");
        }
        let time = if t.attempts == 0 {
            "-".to_owned()
        } else {
            crate::output::duration(t.duration)
        };
        // Padded first: colour codes have no width on the screen.
        let state = format!("{:<9}", t.state.as_str());
        let state = match Tone::of(t.state) {
            Some(_) if allowed => paint(&state, Tone::Warn),
            Some(tone) => paint(&state, tone),
            None => state,
        };
        let row = format!(
            "{:<width$}  {state}  {:>8}  {:>4}  {note}",
            t.id.to_string(),
            time,
            t.attempts
        );
        let _ = writeln!(out, "{}", row.trim_end());
    }
    let tone = match summary.outcome {
        RunOutcome::Succeeded => Tone::Good,
        RunOutcome::Failed => Tone::Bad,
        RunOutcome::Cancelled => Tone::Warn,
    };
    let word = summary.outcome.as_str();
    let _ = writeln!(
        out,
        "\nrun {run_id} {} in {} (logs: {logs})",
        paint(word, tone),
        crate::output::duration(summary.duration)
    );
    out.push_str(&tally(summary, &paint));
    out
}

/// `jobs: 3 passed, 2 failed (1 allowed by continue_on_error), 0 skipped, 1 cancelled`: every
/// job once; a count is coloured when it is not zero.
fn tally(summary: &cascade_engine::Summary, paint: &dyn Fn(&str, Tone) -> String) -> String {
    let count = |n: usize, text: &str, tone: Tone| {
        if n == 0 {
            text.to_owned()
        } else {
            paint(text, tone)
        }
    };
    let failed = if summary.allowed > 0 {
        let tone = if summary.failed > summary.allowed {
            Tone::Bad
        } else {
            Tone::Warn
        };
        count(
            summary.failed,
            &format!(
                "{} failed ({} allowed by continue_on_error)",
                summary.failed, summary.allowed
            ),
            tone,
        )
    } else {
        count(
            summary.failed,
            &format!("{} failed", summary.failed),
            Tone::Bad,
        )
    };
    let mut parts = vec![
        count(
            summary.passed,
            &format!("{} passed", summary.passed),
            Tone::Good,
        ),
        failed,
        count(
            summary.skipped,
            &format!("{} skipped", summary.skipped),
            Tone::Quiet,
        ),
    ];
    if summary.cancelled > 0 {
        parts.push(paint(
            &format!("{} cancelled", summary.cancelled),
            Tone::Warn,
        ));
    }
    format!("jobs: {}", parts.join(", "))
}

/// `--jobs`: a whole number of at least 1 (0 would run nothing).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("expected at least 1 (tasks that run at once)".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("expected a whole number: {e}")),
    }
}
