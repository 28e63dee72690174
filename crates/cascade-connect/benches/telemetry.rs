//! What telemetry costs a run, against no telemetry, in one run: the events of a 500-job
//! run (pending, started, finished per job, plus two log lines each that are not
//! published) recorded through [`Telemetry::record`] with
//!
//! - no telemetry (the baseline: the events are only walked),
//! - a live mosquitto and a live nats-server (started here, on loopback),
//! - a dead broker: a loopback port nobody listens on, and an unroutable address.
//!
//! Two figures per case, medians over the rounds: the caller's cost (the `record` loop
//! alone, which is all the engine's dispatcher pays) and the whole cost (until `flush`
//! says every event was published or dropped: the background work included).
//!
//! `cargo bench -p cascade-connect --bench telemetry`
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "a benchmark program: panics and prints are its interface"
)]

use cascade_connect::{Connector, Identity, Settings, Telemetry, connector_with};
use cascade_plan::{Event, EventKind, RunId, RunOutcome, Stream, TaskId, TaskState};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOBS: usize = 500;
const ROUNDS: usize = 31;

fn run_events() -> Vec<Event> {
    let run_id = RunId::parse("lz1k2m3n-4a5b6c").unwrap();
    let event = |kind| Event {
        run_id: run_id.clone(),
        ts: jiff::Timestamp::now(),
        kind,
    };
    let mut events = vec![event(EventKind::RunStarted {
        pipeline: "bench".into(),
        jobs: JOBS,
        parallelism: 2,
    })];
    for i in 0..JOBS {
        let task = TaskId::parse(&format!("job{i}")).unwrap();
        events.push(event(EventKind::TaskPending {
            task: task.clone(),
            label: None,
        }));
        events.push(event(EventKind::TaskStarted {
            task: task.clone(),
            attempt: 1,
        }));
        for line in ["building", "done"] {
            events.push(event(EventKind::TaskLog {
                task: task.clone(),
                stream: Stream::Stdout,
                line: line.into(),
            }));
        }
        events.push(event(EventKind::TaskFinished {
            task,
            state: TaskState::Succeeded,
            attempt: 1,
            exit_code: Some(0),
            duration_ms: 3,
            error: None,
        }));
    }
    events.push(event(EventKind::RunFinished {
        outcome: RunOutcome::Succeeded,
        passed: JOBS,
        failed: 0,
        skipped: 0,
        duration_ms: 200,
    }));
    events
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux; 10 ms
/// ticks, so only the mean over all rounds is worth printing).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

struct Figures {
    name: &'static str,
    caller: Duration,
    whole: Duration,
    /// Mean CPU time per round, all threads.
    cpu: Duration,
    published: u64,
    dropped: u64,
}

async fn measure(
    name: &'static str,
    connector: Option<Arc<dyn Connector>>,
    events: &[Event],
) -> Figures {
    let identity = Identity::new("bench", "bench", "bench-1").unwrap();
    let (mut caller, mut whole) = (Vec::new(), Vec::new());
    let (mut published, mut dropped) = (0, 0);
    let cpu_before = cpu_time();
    for _ in 0..ROUNDS {
        let telemetry = connector
            .as_ref()
            .map(|c| Telemetry::new(Arc::clone(c), identity.clone(), 4096));
        let start = Instant::now();
        for event in events {
            match &telemetry {
                Some(t) => t.record(event),
                None => {
                    black_box(event);
                }
            }
        }
        caller.push(start.elapsed());
        if let Some(t) = &telemetry {
            t.flush(Duration::from_mins(1)).await.unwrap();
            published += t.published();
            dropped += t.dropped();
        }
        whole.push(start.elapsed());
    }
    let rounds = u32::try_from(ROUNDS).unwrap();
    Figures {
        name,
        caller: median(caller),
        whole: median(whole),
        cpu: cpu_time().saturating_sub(cpu_before) / rounds,
        published,
        dropped,
    }
}

async fn connector(url: &str) -> Arc<dyn Connector> {
    let connector: Arc<dyn Connector> =
        Arc::from(connector_with(&url.parse().unwrap(), Settings::default()));
    // A dead broker refuses or times out: the connector is used all the same, as the
    // engine would use it.
    let _ = tokio::time::timeout(Duration::from_secs(5), connector.connect()).await;
    connector
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mosquitto = cascade_test::Mosquitto::start();
    let nats = cascade_test::NatsServer::start();
    let refused = format!("mqtt://127.0.0.1:{}", cascade_test::free_port());
    let events = run_events();
    let figures = runtime.block_on(async {
        let cases = [
            ("live mosquitto", Some(connector(&mosquitto.url()).await)),
            ("live nats-server", Some(connector(&nats.url()).await)),
            (
                "dead broker (port refused)",
                Some(connector(&refused).await),
            ),
            (
                "dead broker (unroutable 10.255.255.1)",
                Some(connector("mqtt://10.255.255.1:1883").await),
            ),
        ];
        let mut figures = vec![measure("no telemetry (baseline)", None, &events).await];
        for (name, connector) in cases {
            figures.push(measure(name, connector, &events).await);
        }
        figures
    });
    let published_kinds = events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::TaskLog { .. }))
        .count();
    println!(
        "{JOBS}-job run: {} events ({published_kinds} published kinds), median of {ROUNDS} rounds",
        events.len()
    );
    println!(
        "| case | record loop (caller) | per event | record + flush (whole) | per event | CPU per run | published / dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    let n = events.len() as f64;
    for f in &figures {
        println!(
            "| {} | {:.3} ms | {:.0} ns | {:.3} ms | {:.0} ns | {:.1} ms | {} / {} |",
            f.name,
            f.caller.as_secs_f64() * 1e3,
            f.caller.as_secs_f64() * 1e9 / n,
            f.whole.as_secs_f64() * 1e3,
            f.whole.as_secs_f64() * 1e9 / n,
            f.cpu.as_secs_f64() * 1e3,
            f.published,
            f.dropped,
        );
    }
    println!(
        "target: telemetry adds < 5 % to a {JOBS}-job run (about 220 ms for no-op jobs, benches/README.md), i.e. < 11 ms"
    );
}
