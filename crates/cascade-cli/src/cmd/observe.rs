//! `cascade observe --broker URL [--project P]`: a live view of runs and their tasks built
//! from telemetry alone, so it shows runs of any machine publishing to the broker.
//!
//! Subscribes to `cascade/telemetry/{org}/{project or +}/+/events`. On a terminal (table
//! output) the screen is redrawn at most ten times a second with the latest runs and the
//! state of each task; otherwise one line per event; `--output json` prints each payload
//! as it arrives, one per line. `--exit-after-runs N` ends after N runs stopped (scripts
//! and tests); otherwise Ctrl-C ends it.

use crate::output::{self, ListFormat};
use crate::{CliError, CliResult, Outcome};
use anyhow::Context as _;
use cascade_connect::payload::{Body, Lifecycle, Payload, ResourceAction};
use cascade_connect::{BrokerUrl, Message};
use cascade_plan::{RunStatus, TaskState};
use indexmap::IndexMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages waiting to be shown; more are dropped (and counted) rather than slowing the
/// connector.
const QUEUE: usize = 8192;
/// Runs kept on screen (the most recent).
const SHOWN_RUNS: usize = 5;
/// Task rows shown per run; the rest are summed up in one line.
const SHOWN_TASKS: usize = 40;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker: `mqtt://host:port` or `nats://host:port`
    #[arg(long, value_name = "URL", value_parser = super::control::broker_url)]
    broker: BrokerUrl,
    /// Organisation id [default: $`CASCADE_ORG_ID`, else `local`]
    #[arg(long, value_name = "ID")]
    org: Option<String>,
    /// Only this project [default: every project of the organisation]
    #[arg(long, value_name = "ID")]
    project: Option<String>,
    /// `table` (a live view on a terminal, one line per event otherwise) or `json` (each
    /// payload, one per line)
    #[arg(long, value_enum, default_value_t)]
    output: ListFormat,
    /// Exit after this many runs have stopped
    #[arg(long, value_name = "N")]
    exit_after_runs: Option<usize>,
}

/// What is known of one task.
#[derive(Debug, Clone)]
struct TaskView {
    /// Read back from the telemetry word and error ([`cascade_plan::TelemetryState::task_state`]).
    state: TaskState,
    attempt: Option<u32>,
    duration_ms: Option<u64>,
    error: Option<String>,
}

/// What is known of one run.
#[derive(Debug, Clone)]
struct RunView {
    project: String,
    source: String,
    stopped: bool,
    tasks: IndexMap<String, TaskView>,
}

/// Every run seen, in the order first seen.
#[derive(Debug, Default)]
struct View {
    runs: IndexMap<String, RunView>,
    stopped: usize,
}

impl View {
    fn apply(&mut self, payload: &Payload) {
        let header = &payload.header;
        let run = self
            .runs
            .entry(header.run_id.clone())
            .or_insert_with(|| RunView {
                project: header.project_id.clone(),
                source: header.source.clone(),
                stopped: false,
                tasks: IndexMap::new(),
            });
        match &payload.body {
            Body::LifecycleEvent(e) => {
                if e.event == Lifecycle::EngineStopped && !run.stopped {
                    run.stopped = true;
                    self.stopped += 1;
                }
            }
            Body::TaskStateEvent(e) => {
                run.tasks.insert(
                    e.task_id.clone(),
                    TaskView {
                        state: e.state.task_state(e.error.as_deref()),
                        attempt: e.metadata.attempt,
                        duration_ms: e.duration_ms,
                        error: e.error.clone(),
                    },
                );
            }
            Body::ResourceEvent(_) => {}
        }
    }

    /// The screen: the latest runs, each with its tasks.
    fn render(&self, dropped: u64) -> String {
        let mut out = String::new();
        let skip = self.runs.len().saturating_sub(SHOWN_RUNS);
        for (id, run) in self.runs.iter().skip(skip) {
            let count = |s: TaskState| run.tasks.values().filter(|t| t.state == s).count();
            let _ = writeln!(
                out,
                "run {id}  {}  {}  {}  {} running, {} done, {} failed, {} skipped, {} pending",
                run.project,
                run.source,
                run.status(),
                count(TaskState::Running),
                count(TaskState::Succeeded),
                count(TaskState::Failed) + count(TaskState::Cancelled),
                count(TaskState::Skipped),
                count(TaskState::Pending),
            );
            let rows: Vec<Vec<String>> = run
                .tasks
                .iter()
                .take(SHOWN_TASKS)
                .map(|(task, t)| {
                    vec![
                        format!("  {task}"),
                        t.state.to_string(),
                        t.attempt.map(|a| a.to_string()).unwrap_or_default(),
                        t.duration_ms
                            .map(crate::output::duration_ms)
                            .unwrap_or_default(),
                        t.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let _ = writeln!(
                out,
                "{}",
                output::table(&["  TASK", "STATE", "TRY", "TIME", "ERROR"], &rows)
            );
            if run.tasks.len() > SHOWN_TASKS {
                let _ = writeln!(out, "  … {} more", run.tasks.len() - SHOWN_TASKS);
            }
            out.push('\n');
        }
        if skip > 0 {
            let _ = writeln!(out, "({skip} earlier runs not shown)");
        }
        if dropped > 0 {
            let _ = writeln!(
                out,
                "({dropped} messages not shown: the terminal fell behind)"
            );
        }
        out
    }
}

impl RunView {
    /// The run's status as far as telemetry shows it, which carries no outcome: running
    /// until `ENGINE_STOPPED`; then `cancelled` if a task was, `failed` if one failed,
    /// else `succeeded`. (A task that failed under `continue_on_error` makes it look
    /// failed here; `cascade runs` on the machine that ran it has the outcome.)
    fn status(&self) -> RunStatus {
        let any = |s: TaskState| self.tasks.values().any(|t| t.state == s);
        if !self.stopped {
            RunStatus::Running
        } else if any(TaskState::Cancelled) {
            RunStatus::Cancelled
        } else if any(TaskState::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        }
    }
}

/// One event as a line: `time run task STATE details`.
fn line(payload: &Payload) -> String {
    let h = &payload.header;
    let ts = h.ts.strftime("%H:%M:%S%.3f");
    match &payload.body {
        Body::LifecycleEvent(e) => {
            let what = match e.event {
                Lifecycle::EngineStarted => "ENGINE_STARTED",
                Lifecycle::EngineStopped => "ENGINE_STOPPED",
            };
            format!(
                "{ts} {} {what} project={} source={}",
                h.run_id, h.project_id, h.source
            )
        }
        Body::TaskStateEvent(e) => {
            let state = e.state.task_state(e.error.as_deref());
            let mut text = format!("{ts} {} {} {state}", h.run_id, e.task_id);
            if let Some(a) = e.metadata.attempt {
                let _ = write!(text, " attempt={a}");
            }
            if let Some(ms) = e.duration_ms {
                let _ = write!(text, " duration_ms={ms}");
            }
            if let Some(error) = &e.error {
                let _ = write!(text, " error={error:?}");
            }
            text
        }
        Body::ResourceEvent(e) => {
            let action = match e.action {
                ResourceAction::Acquire => "ACQUIRE",
                ResourceAction::Release => "RELEASE",
            };
            format!(
                "{ts} {} {action} {} usage={}",
                h.run_id, e.resource_name, e.current_usage
            )
        }
    }
}

pub fn run(args: &Args) -> CliResult {
    let identity = super::control::identity(args.org.as_deref(), args.project.as_deref())
        .map_err(CliError::usage)?;
    let project = if args.project.is_some() {
        identity.project()
    } else {
        "+"
    };
    let filter = format!("cascade/telemetry/{}/{project}/+/events", identity.org());
    let live = args.output == ListFormat::Table && std::io::stdout().is_terminal();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let connector = cascade_connect::connect(&args.broker)
            .await
            .map_err(|e| CliError::caused(Outcome::Failure, &e))?;
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        let handler: cascade_connect::Handler = Arc::new(move |message| {
            if tx.try_send(message).is_err() {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        connector
            .subscribe(&filter, handler)
            .await
            .map_err(|e| CliError::caused(Outcome::Failure, &e))?;
        output::note(&format!("observing {filter} on {}", args.broker));
        let mut view = View::default();
        let mut redraw = tokio::time::interval(Duration::from_millis(100));
        redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut dirty = false;
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let Some(message) = message else { break };
                    let payload = match serde_json::from_slice::<Payload>(&message.payload) {
                        Ok(p) => p,
                        Err(error) => {
                            output::note(&format!("warning: ignored a message on {}: {error}", message.topic));
                            continue;
                        }
                    };
                    match args.output {
                        ListFormat::Json => output::data(&String::from_utf8_lossy(&message.payload)),
                        ListFormat::Table if !live => output::data(&line(&payload)),
                        ListFormat::Table => dirty = true,
                    }
                    view.apply(&payload);
                    if args.exit_after_runs.is_some_and(|n| view.stopped >= n) {
                        break;
                    }
                }
                _ = redraw.tick(), if live && dirty => {
                    dirty = false;
                    let screen = view.render(dropped.load(std::sync::atomic::Ordering::Relaxed));
                    // Home, clear, then the screen.
                    output::data(&format!("\x1b[H\x1b[2J{screen}"));
                }
                _ = &mut interrupted => break,
            }
        }
        if live {
            let screen = view.render(dropped.load(std::sync::atomic::Ordering::Relaxed));
            output::data(&format!("\x1b[H\x1b[2J{screen}"));
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), connector.disconnect()).await;
        Ok(Outcome::Success)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(run: &str, body: serde_json::Value) -> Payload {
        let mut value = serde_json::json!({
            "header": {"v": "1.0", "ts": "2026-01-01T00:00:01Z", "run_id": run,
                       "org_id": "o", "project_id": "web", "source": "h-1"},
        });
        value["body"] = body;
        serde_json::from_value(value).unwrap()
    }

    fn task(id: &str, state: &str, error: Option<&str>) -> serde_json::Value {
        serde_json::json!({"type": "TaskStateEvent", "task_id": id, "task_name": id,
            "state": state, "duration_ms": 1500, "error": error,
            "metadata": {"attempt": 1, "exit_code": null, "label": null, "retry_delay_ms": null}})
    }

    #[test]
    fn the_view_keeps_the_last_state_of_each_task_and_counts_stopped_runs() {
        let mut view = View::default();
        for p in [
            payload(
                "r-1",
                serde_json::json!({"type": "LifecycleEvent", "event": "ENGINE_STARTED"}),
            ),
            payload("r-1", task("build", "RUNNING", None)),
            payload("r-1", task("build", "COMPLETED", None)),
            payload("r-1", task("test", "FAILED", Some("exit code 2"))),
            payload(
                "r-1",
                serde_json::json!({"type": "LifecycleEvent", "event": "ENGINE_STOPPED"}),
            ),
        ] {
            view.apply(&p);
        }
        assert_eq!(view.stopped, 1);
        let screen = view.render(0);
        assert_eq!(
            screen,
            "run r-1  web  h-1  failed  0 running, 1 done, 1 failed, 0 skipped, 0 pending\n  TASK   STATE      TRY  TIME   ERROR\n  build  succeeded  1    1.50s\n  test   failed     1    1.50s  exit code 2\n\n"
        );
    }

    #[test]
    fn one_line_per_event() {
        assert_eq!(
            line(&payload("r-1", task("test", "FAILED", Some("boom")))),
            "00:00:01.000 r-1 test failed attempt=1 duration_ms=1500 error=\"boom\""
        );
    }
}
