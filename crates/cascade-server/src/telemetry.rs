//! Telemetry and control for the runs of one process (`cascade run`, a worker): the one
//! place that knows both the engine and `cascade-connect`.
//!
//! A [`Link`] is a connection to a broker shared by every run of the process, served by
//! a thread of its own (a one-thread tokio runtime): encoding, masking and the broker
//! client's IO never take turns with the engine's dispatcher, which only pays a
//! `try_send` per event. It never holds a run up: the first connection attempt and the control subscription get a short,
//! bounded wait (a broker that is down refuses at once), after which the connector keeps
//! trying in the background while the run goes on; events recorded while it is down are
//! dropped and counted. Each run gets a [`RunLink`]: a [`Telemetry`] publisher masking with
//! the run's secrets (subscribed to the run's [`Bus`]) and a control channel into the
//! engine. The control subscription maps `cascade_connect::Control` to engine
//! [`Command`]s: `pause`, `resume` and `limit` go to every run of the process (and runs
//! started later inherit them); `cancel {run_id}` only to that run.

use cascade_connect::{BrokerUrl, Connector, Control, Identity, Telemetry, TelemetryOptions};
use cascade_engine::control::{Command, Commands, Controller};
use cascade_engine::{Bus, Secrets, Subscriber};
use cascade_plan::{Event, RunId};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a run waits for the first connection attempt before it starts anyway.
const CONNECT_WAIT: Duration = Duration::from_millis(300);
/// How long a run waits for the broker to confirm the control subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_millis(500);
/// How long the end of a run waits for its last events to go out.
pub const FLUSH_WAIT: Duration = Duration::from_millis(750);
/// How long closing the connection may take.
const CLOSE_WAIT: Duration = Duration::from_millis(250);

/// Where telemetry goes and who publishes it: `--telemetry URL`, with the org and project
/// of [`Identity::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub url: BrokerUrl,
    pub identity: Identity,
}

/// The engine's secrets masker as `cascade-connect`'s; `None` without secrets (nothing to
/// mask, and payloads are then encoded without a second pass).
pub fn masker(secrets: &Secrets) -> Option<cascade_connect::Masker> {
    let masker = secrets.masker();
    if masker.is_empty() {
        return None;
    }
    Some(Arc::new(move |text: &str| masker.mask_str(text)))
}

/// Publishes every event of a run (an engine [`Subscriber`]).
#[derive(Debug)]
pub struct TelemetrySink(pub Telemetry);

impl Subscriber for TelemetrySink {
    fn on_event(&self, event: &Event) {
        self.0.record(event);
    }
}

/// What the control subscription has said so far, and where to say it.
#[derive(Debug, Default)]
struct Runs {
    paused: bool,
    limit: Option<NonZeroUsize>,
    controllers: HashMap<RunId, Controller>,
}

impl Runs {
    fn apply(&mut self, control: Control) {
        let (command, only) = match control {
            Control::Pause => {
                self.paused = true;
                (Command::Pause, None)
            }
            Control::Resume => {
                self.paused = false;
                (Command::Resume, None)
            }
            Control::Limit { jobs } => {
                let Some(jobs) = NonZeroUsize::new(usize::try_from(jobs).unwrap_or(usize::MAX))
                else {
                    return;
                };
                self.limit = Some(jobs);
                (Command::Limit(jobs), None)
            }
            Control::Cancel { run_id } => (Command::Cancel, Some(run_id)),
        };
        for (run, controller) in &self.controllers {
            if only.as_ref().is_none_or(|only| only == run) && !controller.send(command) {
                tracing::warn!(run = %run, ?command, "control command not delivered");
            }
        }
    }
}

/// A broker connection for telemetry and control, shared by the runs of this process.
#[derive(Debug)]
pub struct Link {
    /// The link's own thread; `None` if it could not be started (then the caller's
    /// runtime does the work).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    connector: Arc<dyn Connector>,
    identity: Identity,
    runs: Arc<Mutex<Runs>>,
    /// Events dropped by finished runs (plus what `stats` held when the link started).
    dropped: AtomicU64,
    /// Where the dropped count is kept across restarts (a worker's).
    stats: Option<PathBuf>,
    control: JoinHandle<()>,
}

impl Link {
    /// Connects (waiting briefly) and subscribes to the project's control topics. Never
    /// fails: an unreachable broker is retried in the background.
    pub async fn start(broker: &Broker) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cascade-telemetry")
            .enable_all()
            .build()
            .inspect_err(
                |error| tracing::warn!(%error, "no telemetry thread; publishing on the run's own"),
            )
            .ok();
        let handle = runtime
            .as_ref()
            .map_or_else(tokio::runtime::Handle::current, |r| r.handle().clone());
        let identity = broker.identity.clone();
        let (connector, runs, control) = match handle.spawn(Self::connect(broker.clone())).await {
            Ok(parts) => parts,
            // Only a panic in `connect` gets here: pass it on.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        Self {
            runtime,
            handle,
            connector,
            identity,
            runs,
            dropped: AtomicU64::new(0),
            stats: None,
            control,
        }
    }

    /// Connects and subscribes, on the link's runtime.
    async fn connect(broker: Broker) -> (Arc<dyn Connector>, Arc<Mutex<Runs>>, JoinHandle<()>) {
        let connector: Arc<dyn Connector> = Arc::from(cascade_connect::connector(&broker.url));
        let connecting = tokio::spawn({
            let connector = Arc::clone(&connector);
            async move { connector.connect().await }
        });
        match tokio::time::timeout(CONNECT_WAIT, connecting).await {
            Ok(Ok(Ok(()))) => tracing::debug!(broker = %broker.url, "telemetry connected"),
            Ok(Ok(Err(error))) => {
                tracing::warn!(broker = %broker.url, %error, "telemetry broker unreachable; retrying in the background");
            }
            _ => {
                tracing::warn!(broker = %broker.url, "telemetry broker slow to answer; retrying in the background");
            }
        }
        let runs = Arc::new(Mutex::new(Runs::default()));
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        let control = tokio::spawn(follow_control(
            Arc::clone(&connector),
            broker.identity.clone(),
            Arc::clone(&runs),
            subscribed,
        ));
        let _ = tokio::time::timeout(SUBSCRIBE_WAIT, ready).await;
        (connector, runs, control)
    }

    /// A worker's link, if it has a broker: its dropped count is kept in [`stats_path`]
    /// for `/metrics`.
    pub async fn for_worker(
        broker: Option<&Broker>,
        options: &crate::worker::WorkerOptions,
    ) -> Option<Arc<Self>> {
        let link = Self::start(broker?)
            .await
            .with_stats(stats_path(&options.data_dir, &options.id));
        Some(Arc::new(link))
    }

    /// Keeps the dropped count in `path` (read now, written after each run), so that it
    /// only grows across restarts of the process.
    #[must_use]
    pub fn with_stats(mut self, path: PathBuf) -> Self {
        let before = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        self.dropped = AtomicU64::new(before);
        self.stats = Some(path);
        self
    }

    /// Telemetry and control for a run: `bus` with the publisher added, and the commands
    /// for [`cascade_engine::Options::control`].
    pub fn attach(&self, run_id: &RunId, secrets: &Secrets, bus: Bus) -> (Bus, Commands, RunLink) {
        // The publisher's task runs on the link's thread.
        let _on_link_thread = self.handle.enter();
        let telemetry = Arc::new(TelemetrySink(Telemetry::with_options(
            Arc::clone(&self.connector),
            self.identity.clone(),
            TelemetryOptions {
                masker: masker(secrets),
                ..TelemetryOptions::default()
            },
        )));
        let (controller, commands) = cascade_engine::control::channel(64);
        {
            let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
            // A run started while paused or limited starts that way.
            if runs.paused {
                controller.send(Command::Pause);
            }
            if let Some(jobs) = runs.limit {
                controller.send(Command::Limit(jobs));
            }
            runs.controllers.insert(run_id.clone(), controller);
        }
        let bus = bus.with(Arc::clone(&telemetry) as Arc<dyn Subscriber>);
        (
            bus,
            commands,
            RunLink {
                run_id: run_id.clone(),
                telemetry,
            },
        )
    }

    /// The end of a run: its last events get [`FLUSH_WAIT`] to go out, it stops taking
    /// commands, and its dropped events are counted.
    pub async fn finish(&self, run: RunLink) -> u64 {
        let telemetry = &run.telemetry.0;
        if let Err(error) = telemetry.flush(FLUSH_WAIT).await {
            tracing::debug!(run = %run.run_id, %error, "telemetry not flushed");
        }
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .controllers
            .remove(&run.run_id);
        let dropped = telemetry.dropped();
        let total = self.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
        if let Some(path) = &self.stats
            && let Err(error) = tokio::fs::write(path, format!("{total}\n")).await
        {
            tracing::debug!(path = %path.display(), %error, "cannot write telemetry stats");
        }
        dropped
    }

    /// Events dropped by the runs finished so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops following control and closes the connection, waiting at most a moment (a
    /// run still holding the link keeps it open until it ends).
    pub async fn close(self: Arc<Self>) {
        self.control.abort();
        let Ok(mut link) = Arc::try_unwrap(self) else {
            return;
        };
        let connector = Arc::clone(&link.connector);
        let closing = link.handle.spawn(async move {
            let _ = tokio::time::timeout(CLOSE_WAIT, connector.disconnect()).await;
        });
        let _ = closing.await;
        if let Some(runtime) = link.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // A runtime must not be dropped (blocking) inside async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One run's part of a [`Link`]; hand it back to [`Link::finish`].
#[derive(Debug)]
pub struct RunLink {
    run_id: RunId,
    telemetry: Arc<TelemetrySink>,
}

/// Subscribes to control and applies every command, until aborted.
async fn follow_control(
    connector: Arc<dyn Connector>,
    identity: Identity,
    runs: Arc<Mutex<Runs>>,
    subscribed: tokio::sync::oneshot::Sender<()>,
) {
    let subscription =
        cascade_connect::subscribe_control(connector.as_ref(), identity.org(), identity.project())
            .await;
    let _ = subscribed.send(());
    let mut commands = match subscription {
        Ok(rx) => rx,
        Err(error) => {
            tracing::warn!(broker = %connector.url(), %error, "cannot subscribe to control commands");
            return;
        }
    };
    while let Some(control) = commands.recv().await {
        tracing::info!(?control, "control command");
        runs.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(control);
    }
}

/// Where worker `worker_id` keeps its dropped-telemetry count (read by `/metrics`).
pub fn stats_path(data_dir: &Path, worker_id: &str) -> PathBuf {
    data_dir
        .join("workers")
        .join(format!("{worker_id}.telemetry-dropped"))
}

/// The dropped-telemetry counts of every worker under `data_dir`, summed.
pub fn dropped_total(data_dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(data_dir.join("workers")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".telemetry-dropped")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| t.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str) -> RunId {
        RunId::parse(id).unwrap()
    }

    #[test]
    fn cancel_reaches_only_its_run_and_the_rest_reaches_every_run() {
        let mut runs = Runs::default();
        let mut receivers = Vec::new();
        for id in ["r-1", "r-2"] {
            let (controller, commands) = cascade_engine::control::channel(8);
            runs.controllers.insert(run(id), controller);
            receivers.push(commands.take().unwrap());
        }
        runs.apply(Control::Cancel { run_id: run("r-2") });
        runs.apply(Control::Cancel { run_id: run("r-9") });
        runs.apply(Control::Pause);
        runs.apply(Control::Limit { jobs: 3 });
        runs.apply(Control::Resume);
        let three = Command::Limit(NonZeroUsize::new(3).unwrap());
        let got: Vec<Vec<Command>> = receivers
            .iter_mut()
            .map(|rx| std::iter::from_fn(|| rx.try_recv().ok()).collect())
            .collect();
        assert_eq!(got[0], [Command::Pause, three, Command::Resume]);
        assert_eq!(
            got[1],
            [Command::Cancel, Command::Pause, three, Command::Resume]
        );
        assert!(!runs.paused);
        assert_eq!(runs.limit, NonZeroUsize::new(3));
    }

    #[test]
    fn dropped_counts_of_every_worker_are_summed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dropped_total(dir.path()), 0);
        std::fs::create_dir_all(dir.path().join("workers")).unwrap();
        std::fs::write(stats_path(dir.path(), "worker-global"), "3\n").unwrap();
        std::fs::write(stats_path(dir.path(), "worker-project-a"), "4").unwrap();
        std::fs::write(dir.path().join("workers/worker-global.lock"), "99").unwrap();
        assert_eq!(dropped_total(dir.path()), 7);
    }
}
