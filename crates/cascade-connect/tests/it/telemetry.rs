//! Telemetry through real brokers: every transition in order with the exact schema, a
//! broker killed mid-stream, a broker that is not there, a restart, and a burst followed
//! at once by a disconnect.

use crate::{Broker, Inbox, Kind, connected, eventually, identity, settings};
use cascade_connect::{Connector, Telemetry, connector_with, schema};
use cascade_plan::{Event, EventKind, RunId, RunOutcome, Stream, TaskId, TaskState};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const RUN: &str = "lz1k2m3n-4a5b6c";
const FLUSH: Duration = Duration::from_secs(20);

fn at(second: i64, kind: EventKind) -> Event {
    Event {
        run_id: RunId::parse(RUN).unwrap(),
        ts: jiff::Timestamp::from_second(1_767_225_600 + second).unwrap(),
        kind,
    }
}

fn task(text: &str) -> TaskId {
    TaskId::parse(text).unwrap()
}

/// A run with every kind of event: a retried job, a fan-out with one failed and one
/// cancelled copy, a skipped job, resources, and a log line (not published).
fn run() -> Vec<Event> {
    use EventKind as K;
    let finished =
        |t: &str, state, attempt, exit_code, duration_ms, error: Option<&str>| K::TaskFinished {
            task: task(t),
            state,
            attempt,
            exit_code,
            duration_ms,
            error: error.map(str::to_owned),
        };
    let kinds = vec![
        K::RunStarted {
            pipeline: "ci".into(),
            jobs: 3,
            parallelism: 2,
        },
        K::TaskPending {
            task: task("build"),
            label: None,
        },
        K::TaskPending {
            task: task("test[0]"),
            label: Some("linux".into()),
        },
        K::TaskPending {
            task: task("test[1]"),
            label: Some("mac".into()),
        },
        K::TaskPending {
            task: task("deploy"),
            label: None,
        },
        K::TaskStarted {
            task: task("build"),
            attempt: 1,
        },
        K::ResourceAcquired {
            task: task("build"),
            resource: "cpu=500m,memory=256Mi".into(),
            amount: 500,
            in_use: 500,
            capacity: 2000,
        },
        K::TaskLog {
            task: task("build"),
            stream: Stream::Stdout,
            line: "compiling".into(),
        },
        K::TaskRetrying {
            task: task("build"),
            attempt: 2,
            exit_code: Some(1),
            delay_ms: 100,
        },
        K::TaskStarted {
            task: task("build"),
            attempt: 2,
        },
        finished("build", TaskState::Succeeded, 2, Some(0), 1200, None),
        K::ResourceReleased {
            task: task("build"),
            resource: "cpu=500m,memory=256Mi".into(),
            amount: 500,
            in_use: 0,
            capacity: 2000,
        },
        K::TaskStarted {
            task: task("test[0]"),
            attempt: 1,
        },
        finished(
            "test[0]",
            TaskState::Failed,
            1,
            Some(2),
            30,
            Some("exit code 2"),
        ),
        finished("test[1]", TaskState::Cancelled, 0, None, 0, None),
        K::TaskSkipped {
            task: task("deploy"),
            reason: "needs failed".into(),
        },
        K::RunFinished {
            outcome: RunOutcome::Failed,
            passed: 1,
            failed: 1,
            skipped: 1,
            duration_ms: 1500,
        },
    ];
    kinds
        .into_iter()
        .zip(0..)
        .map(|(kind, second)| at(second, kind))
        .collect()
}

/// The payloads `run()` must produce, written out by hand (the log line is absent).
#[expect(
    clippy::too_many_lines,
    reason = "every expected payload written out, one after the other"
)]
fn expected() -> Vec<Value> {
    let header = |second: u32| {
        json!({"v": "1.0", "ts": format!("2026-01-01T00:00:{second:02}Z"), "run_id": RUN,
               "org_id": "acme", "project_id": "web", "source": "ci-host-4242"})
    };
    let meta = |attempt: Value, exit_code: Value, label: Value, retry_delay_ms: Value| json!({"attempt": attempt, "exit_code": exit_code, "label": label, "retry_delay_ms": retry_delay_ms});
    let none = || meta(Value::Null, Value::Null, Value::Null, Value::Null);
    let state = |id: &str, name: &str, state: &str, duration: Value, error: Value, metadata| {
        json!({"type": "TaskStateEvent", "task_id": id, "task_name": name, "state": state,
               "duration_ms": duration, "error": error, "metadata": metadata})
    };
    let n = Value::Null;
    let bodies = [
        (
            0,
            json!({"type": "LifecycleEvent", "event": "ENGINE_STARTED"}),
        ),
        (
            1,
            state("build", "build", "PENDING", n.clone(), n.clone(), none()),
        ),
        (
            2,
            state(
                "test[0]",
                "test",
                "PENDING",
                n.clone(),
                n.clone(),
                meta(n.clone(), n.clone(), json!("linux"), n.clone()),
            ),
        ),
        (
            3,
            state(
                "test[1]",
                "test",
                "PENDING",
                n.clone(),
                n.clone(),
                meta(n.clone(), n.clone(), json!("mac"), n.clone()),
            ),
        ),
        (
            4,
            state("deploy", "deploy", "PENDING", n.clone(), n.clone(), none()),
        ),
        (
            5,
            state(
                "build",
                "build",
                "RUNNING",
                n.clone(),
                n.clone(),
                meta(json!(1), n.clone(), n.clone(), n.clone()),
            ),
        ),
        (
            6,
            json!({"type": "ResourceEvent", "resource_name": "cpu=500m,memory=256Mi",
                   "action": "ACQUIRE", "current_usage": 500}),
        ),
        (
            8,
            state(
                "build",
                "build",
                "PENDING",
                n.clone(),
                n.clone(),
                meta(json!(2), json!(1), n.clone(), json!(100)),
            ),
        ),
        (
            9,
            state(
                "build",
                "build",
                "RUNNING",
                n.clone(),
                n.clone(),
                meta(json!(2), n.clone(), n.clone(), n.clone()),
            ),
        ),
        (
            10,
            state(
                "build",
                "build",
                "COMPLETED",
                json!(1200),
                n.clone(),
                meta(json!(2), json!(0), n.clone(), n.clone()),
            ),
        ),
        (
            11,
            json!({"type": "ResourceEvent", "resource_name": "cpu=500m,memory=256Mi",
                    "action": "RELEASE", "current_usage": 0}),
        ),
        (
            12,
            state(
                "test[0]",
                "test",
                "RUNNING",
                n.clone(),
                n.clone(),
                meta(json!(1), n.clone(), n.clone(), n.clone()),
            ),
        ),
        (
            13,
            state(
                "test[0]",
                "test",
                "FAILED",
                json!(30),
                json!("exit code 2"),
                meta(json!(1), json!(2), n.clone(), n.clone()),
            ),
        ),
        (
            14,
            state(
                "test[1]",
                "test",
                "FAILED",
                json!(0),
                json!("cancelled"),
                none(),
            ),
        ),
        (
            15,
            state("deploy", "deploy", "SKIPPED", n.clone(), n.clone(), none()),
        ),
        (
            16,
            json!({"type": "LifecycleEvent", "event": "ENGINE_STOPPED"}),
        ),
    ];
    bodies
        .into_iter()
        .map(|(second, body)| json!({"header": header(second), "body": body}))
        .collect()
}

/// Compares two JSON trees field by field, naming the first path that differs.
fn assert_same(expected: &Value, got: &Value, path: &str) {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            let mut ek: Vec<_> = e.keys().collect();
            let mut gk: Vec<_> = g.keys().collect();
            ek.sort();
            gk.sort();
            assert_eq!(ek, gk, "fields at {path}");
            for (k, v) in e {
                assert_same(v, &g[k], &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(expected, got, "value at {path}"),
    }
}

async fn every_transition_in_order_with_the_exact_schema(kind: Kind) {
    let broker = Broker::start(kind);
    let url = broker.url();
    // MQTT: another connector subscribes; NATS: a plain async-nats client, on the
    // subject with dots.
    let (mut inbox, _subscriber) = match kind {
        Kind::Mqtt => {
            let subscriber = connected(&url).await;
            let inbox = Inbox::subscribe(subscriber.as_ref(), "cascade/telemetry/#").await;
            (inbox, Some(subscriber))
        }
        Kind::Nats => (Inbox::nats_raw(&url, "cascade.telemetry.>").await, None),
    };
    let publisher = connected(&url).await;
    let telemetry = Telemetry::new(publisher.clone(), identity(), 1024);
    for event in run() {
        telemetry.record(&event);
    }
    telemetry.flush(FLUSH).await.unwrap();
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let expected = expected();
    let topic = match kind {
        Kind::Mqtt => format!("cascade/telemetry/acme/web/{RUN}/events"),
        Kind::Nats => format!("cascade.telemetry.acme.web.{RUN}.events"),
    };
    for (i, want) in expected.iter().enumerate() {
        let message = inbox.next().await;
        assert_eq!(message.topic, topic);
        let got: Value = serde_json::from_slice(&message.payload).unwrap();
        assert!(
            validator.is_valid(&got),
            "message {i} breaks the schema: {got}"
        );
        assert_same(want, &got, &format!("message {i}"));
    }
    assert_eq!((telemetry.published(), telemetry.dropped()), (16, 0));
    publisher.disconnect().await.unwrap();
    assert!(
        inbox.within(Duration::from_millis(200)).await.is_none(),
        "more messages than transitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_delivers_every_transition_in_order_with_the_exact_schema() {
    every_transition_in_order_with_the_exact_schema(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_delivers_every_transition_in_order_with_the_exact_schema() {
    every_transition_in_order_with_the_exact_schema(Kind::Nats).await;
}

fn numbered(n: u32) -> Event {
    at(
        0,
        EventKind::TaskStarted {
            task: task("load"),
            attempt: n,
        },
    )
}

async fn a_broker_killed_mid_stream_neither_blocks_nor_fails(kind: Kind) {
    const BEFORE: u32 = 50;
    const AFTER: u32 = 20_000;
    let mut broker = Broker::start(kind);
    let publisher = connected(&broker.url()).await;
    let telemetry = Telemetry::new(publisher.clone(), identity(), 64);
    for n in 0..BEFORE {
        telemetry.record(&numbered(n));
    }
    telemetry.flush(FLUSH).await.unwrap();
    assert_eq!(telemetry.published(), u64::from(BEFORE));

    broker.kill();
    // Every record returns while the broker is gone: counted, not timed.
    let mut returned = 0_u32;
    for n in 0..AFTER {
        telemetry.record(&numbered(BEFORE + n));
        returned += 1;
    }
    assert_eq!(returned, AFTER);
    // The publishing task is not stuck either: it gets through the queue.
    telemetry.flush(FLUSH).await.unwrap();
    let total = u64::from(BEFORE + AFTER);
    assert_eq!(telemetry.published() + telemetry.dropped(), total);
    assert!(
        telemetry.dropped() >= u64::from(AFTER / 2),
        "most events after the kill are dropped, not queued: {} dropped",
        telemetry.dropped()
    );
    eventually("the connector to notice the broker is gone", || {
        !publisher.is_connected()
    })
    .await;
    // Once the connector knows, every event is dropped at once.
    let dropped = telemetry.dropped();
    for n in 0..100 {
        telemetry.record(&numbered(n));
    }
    telemetry.flush(FLUSH).await.unwrap();
    assert_eq!(telemetry.dropped(), dropped + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_broker_killed_mid_stream_neither_blocks_nor_fails() {
    a_broker_killed_mid_stream_neither_blocks_nor_fails(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_broker_killed_mid_stream_neither_blocks_nor_fails() {
    a_broker_killed_mid_stream_neither_blocks_nor_fails(Kind::Nats).await;
}

async fn no_broker_at_all_means_every_event_is_dropped(scheme: &str) {
    let port = cascade_test::free_port();
    let url = format!("{scheme}://127.0.0.1:{port}").parse().unwrap();
    let connector: Arc<dyn Connector> = Arc::from(connector_with(&url, settings()));
    let err = connector.connect().await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let telemetry = Telemetry::new(connector.clone(), identity(), 256);
    let events = run();
    for _ in 0..100 {
        for event in &events {
            telemetry.record(event);
        }
    }
    telemetry.flush(FLUSH).await.unwrap();
    assert_eq!(telemetry.published(), 0);
    assert_eq!(telemetry.dropped(), 1600, "16 published kinds × 100");
    connector.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_without_a_broker_drops_every_event() {
    no_broker_at_all_means_every_event_is_dropped("mqtt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_without_a_broker_drops_every_event() {
    no_broker_at_all_means_every_event_is_dropped("nats").await;
}

fn attempt_of(message: &cascade_connect::Message) -> (String, u64) {
    let v: Value = serde_json::from_slice(&message.payload).unwrap();
    (
        v["body"]["task_id"].as_str().unwrap().to_owned(),
        v["body"]["metadata"]["attempt"].as_u64().unwrap(),
    )
}

async fn delivery_resumes_after_a_broker_restart(kind: Kind) {
    let mut broker = Broker::start(kind);
    let url = broker.url();
    let subscriber = connected(&url).await;
    let mut inbox = Inbox::subscribe(subscriber.as_ref(), "cascade/telemetry/#").await;
    let publisher = connected(&url).await;
    let telemetry = Telemetry::new(publisher.clone(), identity(), 256);
    telemetry.record(&numbered(1));
    assert_eq!(attempt_of(&inbox.next().await), ("load".to_owned(), 1));

    broker.kill();
    eventually("both connectors to notice the broker is gone", || {
        !publisher.is_connected() && !subscriber.is_connected()
    })
    .await;
    broker.restart();
    eventually("both connectors to reconnect", || {
        publisher.is_connected() && subscriber.is_connected()
    })
    .await;
    // The subscriber's subscription comes back on its own; probe until it has.
    let mut probes = 0;
    loop {
        probes += 1;
        assert!(probes < 200, "no probe came through after the restart");
        telemetry.record(&at(
            0,
            EventKind::TaskStarted {
                task: task("probe"),
                attempt: probes,
            },
        ));
        if inbox.within(Duration::from_millis(100)).await.is_some() {
            break;
        }
    }
    for n in 10..20 {
        telemetry.record(&numbered(n));
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        let (id, attempt) = attempt_of(&inbox.next().await);
        if id == "load" {
            got.push(attempt);
        }
    }
    assert_eq!(got, (10..20).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_delivery_resumes_after_a_broker_restart() {
    delivery_resumes_after_a_broker_restart(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_delivery_resumes_after_a_broker_restart() {
    delivery_resumes_after_a_broker_restart(Kind::Nats).await;
}

/// A burst far larger than one write's batch, then a disconnect at once: the subscriber
/// gets every event, in order, and the disconnect goes out behind them.
async fn a_burst_arrives_complete_and_in_order_before_the_disconnect(kind: Kind) {
    const BURST: u32 = 2_000;
    let broker = Broker::start(kind);
    let url = broker.url();
    let subscriber = connected(&url).await;
    let mut inbox = Inbox::subscribe(subscriber.as_ref(), "cascade/telemetry/#").await;
    let publisher = connected(&url).await;
    let telemetry = Telemetry::new(publisher.clone(), identity(), 4096);
    for n in 0..BURST {
        telemetry.record(&numbered(n));
    }
    telemetry.flush(FLUSH).await.unwrap();
    assert_eq!(
        (telemetry.published(), telemetry.dropped()),
        (u64::from(BURST), 0)
    );
    publisher.disconnect().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..BURST {
        got.push(attempt_of(&inbox.next().await).1);
    }
    assert_eq!(got, (0..u64::from(BURST)).collect::<Vec<u64>>());
    assert!(inbox.within(Duration::from_millis(200)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_burst_arrives_complete_and_in_order_before_the_disconnect() {
    a_burst_arrives_complete_and_in_order_before_the_disconnect(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_burst_arrives_complete_and_in_order_before_the_disconnect() {
    a_burst_arrives_complete_and_in_order_before_the_disconnect(Kind::Nats).await;
}
