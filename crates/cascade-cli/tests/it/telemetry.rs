//! `--telemetry`, `cascade control`, `cascade observe` and `/metrics` as a user runs them,
//! against a real mosquitto and a real nats-server (started per test on a free port):
//! every state transition in order with the exact schema, a broker killed mid-run, a
//! cancel, pause, resume and limit through the broker, the masking corpus, a live view
//! from another process, workers of `serve` publishing and obeying pause, resume and
//! cancel, and the metrics of a server.
//!
//! Time bounds here are generous ceilings on a hang, never measurements.

use crate::cascade;
use crate::serve::{http, serve_with, serve_with_env};
use cascade_connect::{BrokerUrl, Connector, Message};
use cascade_test::{Mosquitto, NatsServer};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mqtt,
    Nats,
}

#[derive(Debug)]
enum Broker {
    Mqtt(Mosquitto),
    Nats(NatsServer),
}

impl Broker {
    fn start(kind: Kind) -> Self {
        match kind {
            Kind::Mqtt => Broker::Mqtt(Mosquitto::start()),
            Kind::Nats => Broker::Nats(NatsServer::start()),
        }
    }

    fn url(&self) -> String {
        match self {
            Broker::Mqtt(b) => b.url(),
            Broker::Nats(b) => b.url(),
        }
    }

    fn kill(&mut self) {
        match self {
            Broker::Mqtt(b) => b.kill(),
            Broker::Nats(b) => b.kill(),
        }
    }
}

/// Payloads received on a subscription, in order.
struct Inbox {
    rx: mpsc::UnboundedReceiver<Message>,
    _connector: Box<dyn Connector>,
}

impl Inbox {
    async fn subscribe(url: &str, filter: &str) -> Self {
        let connector = cascade_connect::connect(&BrokerUrl::parse(url).unwrap())
            .await
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        connector
            .subscribe(
                filter,
                Arc::new(move |m| {
                    let _ = tx.send(m);
                }),
            )
            .await
            .unwrap();
        Self {
            rx,
            _connector: connector,
        }
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within {PATIENCE:?}"))
            .expect("the subscription ended")
    }

    /// Skips payloads until one matches; returns it.
    async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let m = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}"))
                .expect("the subscription ended");
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            if matches(&payload) {
                return payload;
            }
        }
    }

    /// Every message up to and including the first `ENGINE_STOPPED`.
    async fn until_stopped(&mut self) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        loop {
            let m = self.next().await;
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            let stopped = payload["body"]["event"] == "ENGINE_STOPPED";
            got.push((m.topic, payload));
            if stopped {
                return got;
            }
        }
    }
}

/// A pipeline file in a temp dir, with a data dir beside it.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ci.yaml"), pipeline).unwrap();
        Self { dir }
    }

    /// `cascade run ci.yaml --output json` with `args`, org `acme`, project `web`.
    fn run(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = cascade();
        cmd.current_dir(self.dir.path())
            .args(["run", "ci.yaml", "--output", "json"])
            .args(args)
            .env("CASCADE_DATA_DIR", self.dir.path().join("data"))
            .env("CASCADE_ORG_ID", "acme")
            .env("CASCADE_PROJECT_ID", "web");
        cmd
    }
}

/// The JSON events a run printed on stdout.
fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A running `cascade run` whose JSON events are read line by line.
struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Running {
    fn start(mut cmd: std::process::Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads events until one matches; returns it.
    async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = tokio::time::timeout(PATIENCE, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("{what}: not within {PATIENCE:?}: {:?}", self.seen))
                .unwrap_or_else(|| panic!("{what}: the run ended first: {:?}", self.seen));
            self.seen.push(v.clone());
            if matches(&v) {
                return v;
            }
        }
    }

    fn run_id(&self) -> String {
        self.seen[0]["run_id"].as_str().unwrap().to_owned()
    }

    /// Waits for the exit (killing it after [`PATIENCE`]); the code and every event.
    async fn wait(mut self) -> (Option<i32>, Vec<Value>) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not end within {PATIENCE:?}: {:?}", self.seen);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        while let Some(v) = self.lines.recv().await {
            self.seen.push(v);
        }
        (status.code(), self.seen)
    }
}

/// `cascade control ARGS --broker URL` for org `acme`, project `web`; must succeed.
fn control(url: &str, args: &[&str]) {
    let out = cascade()
        .arg("control")
        .args(args)
        .args(["--broker", url, "--org", "acme", "--project", "web"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cascade control {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (task, state) of a task event on the wire, `engine` for lifecycle events.
fn transition(payload: &Value) -> (String, String) {
    let body = &payload["body"];
    match body["type"].as_str().unwrap() {
        "LifecycleEvent" => ("engine".into(), body["event"].as_str().unwrap().into()),
        "TaskStateEvent" => (
            body["task_id"].as_str().unwrap().into(),
            body["state"].as_str().unwrap().into(),
        ),
        other => (other.into(), body["action"].to_string()),
    }
}

/// What the wire must say for a run's own JSON event (`None`: not published).
fn wire_of(event: &Value) -> Option<(String, String)> {
    let task = || event["task"].as_str().unwrap().to_owned();
    Some(match event["event"].as_str().unwrap() {
        "run_started" => ("engine".into(), "ENGINE_STARTED".into()),
        "run_finished" => ("engine".into(), "ENGINE_STOPPED".into()),
        "task_pending" => (task(), "PENDING".into()),
        "task_started" => (task(), "RUNNING".into()),
        "task_skipped" => (task(), "SKIPPED".into()),
        "task_finished" => (
            task(),
            match event["state"].as_str().unwrap() {
                "succeeded" => "COMPLETED",
                "skipped" => "SKIPPED",
                _ => "FAILED",
            }
            .into(),
        ),
        _ => return None,
    })
}

const CHAIN: &str = "jobs:\n  build: { run: echo building }\n  test: { needs: [build], run: 'echo testing; exit 3' }\n  deploy: { needs: [test], run: echo deploying }\n";

async fn every_transition_in_order_with_the_exact_schema(kind: Kind) {
    let broker = Broker::start(kind);
    let url = broker.url();
    let mut inbox = Inbox::subscribe(&url, "cascade/telemetry/acme/web/+/events").await;
    let work = Workdir::new(CHAIN);
    let out = work.run(&["--telemetry", &url]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = events(&out.stdout);
    let run_id = own[0]["run_id"].as_str().unwrap();
    let got = inbox.until_stopped().await;

    // In order, exactly the run's own transitions.
    let wire: Vec<(String, String)> = got.iter().map(|(_, p)| transition(p)).collect();
    let expected: Vec<(String, String)> = own.iter().filter_map(wire_of).collect();
    assert_eq!(wire, expected);
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        wire,
        pairs(&[
            ("engine", "ENGINE_STARTED"),
            ("build", "PENDING"),
            ("build", "RUNNING"),
            ("build", "COMPLETED"),
            ("test", "PENDING"),
            ("test", "RUNNING"),
            ("test", "FAILED"),
            ("deploy", "PENDING"),
            ("deploy", "SKIPPED"),
            ("engine", "ENGINE_STOPPED"),
        ])
    );

    // The exact schema: every payload valid, every field there, headers right.
    let validator = jsonschema::validator_for(&cascade_connect::schema()).unwrap();
    let mut last_ts = jiff::Timestamp::MIN;
    for (topic, payload) in &got {
        assert_eq!(
            topic,
            &format!("cascade/telemetry/acme/web/{run_id}/events")
        );
        assert!(validator.is_valid(payload), "breaks the schema: {payload}");
        let header = &payload["header"];
        let keys: Vec<&str> = header
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["v", "ts", "run_id", "org_id", "project_id", "source"]
        );
        assert_eq!(
            (
                &header["v"],
                &header["run_id"],
                &header["org_id"],
                &header["project_id"]
            ),
            (&json!("1.0"), &json!(run_id), &json!("acme"), &json!("web"))
        );
        let ts: jiff::Timestamp = header["ts"].as_str().unwrap().parse().unwrap();
        assert!(ts >= last_ts, "timestamps go forward: {payload}");
        last_ts = ts;
    }
    let body = |task: &str, state: &str| {
        got.iter()
            .map(|(_, p)| p["body"].clone())
            .find(|b| b["task_id"] == task && b["state"] == state)
            .unwrap()
    };
    let mut failed = body("test", "FAILED");
    assert!(failed["duration_ms"].is_u64());
    failed["duration_ms"] = json!("[ms]");
    assert_eq!(
        failed,
        json!({"type": "TaskStateEvent", "task_id": "test", "task_name": "test", "state": "FAILED",
               "duration_ms": "[ms]", "error": "exited with code 3",
               "metadata": {"attempt": 1, "exit_code": 3, "label": null, "retry_delay_ms": null}})
    );
    assert_eq!(
        body("build", "RUNNING"),
        json!({"type": "TaskStateEvent", "task_id": "build", "task_name": "build", "state": "RUNNING",
               "duration_ms": null, "error": null,
               "metadata": {"attempt": 1, "exit_code": null, "label": null, "retry_delay_ms": null}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_subscriber_gets_every_transition_of_a_run_in_order() {
    every_transition_in_order_with_the_exact_schema(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_subscriber_gets_every_transition_of_a_run_in_order() {
    every_transition_in_order_with_the_exact_schema(Kind::Nats).await;
}

const SLEEPS: &str = "jobs:\n  a: { run: sleep 0.2 }\n  b: { needs: [a], run: sleep 0.2 }\n  c: { needs: [b], run: sleep 0.2 }\n  d: { needs: [c], run: sleep 0.2 }\n";

async fn a_broker_killed_mid_run_does_not_fail_or_delay_it(kind: Kind) {
    let work = Workdir::new(SLEEPS);
    let started = Instant::now();
    let baseline = work.run(&[]).output().unwrap();
    let without = started.elapsed();
    assert_eq!(baseline.status.code(), Some(0));

    let mut broker = Broker::start(kind);
    let url = broker.url();
    let mut inbox = Inbox::subscribe(&url, "cascade/telemetry/acme/web/+/events").await;
    let started = Instant::now();
    let run = Running::start(work.run(&["--telemetry", &url]));
    // The first job finished and the broker said so: now it dies.
    loop {
        let m = inbox.next().await;
        let p: Value = serde_json::from_slice(&m.payload).unwrap();
        if transition(&p) == ("a".to_owned(), "COMPLETED".to_owned()) {
            break;
        }
    }
    broker.kill();
    let (code, events) = run.wait().await;
    let with = started.elapsed();
    assert_eq!(code, Some(0), "{events:?}");
    let finished = events.iter().filter(|e| e["event"] == "task_finished");
    assert_eq!(finished.filter(|e| e["state"] == "succeeded").count(), 4);
    // Generous: the end of a run gives telemetry at most a second by design.
    assert!(
        with < without + Duration::from_secs(3),
        "with a dead broker {with:?}, without telemetry {without:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_broker_killed_mid_run_does_not_fail_or_delay_it() {
    a_broker_killed_mid_run_does_not_fail_or_delay_it(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_broker_killed_mid_run_does_not_fail_or_delay_it() {
    a_broker_killed_mid_run_does_not_fail_or_delay_it(Kind::Nats).await;
}

#[test]
fn a_broker_that_is_not_there_changes_nothing_but_a_note() {
    let work = Workdir::new(SLEEPS);
    let dead = format!("mqtt://127.0.0.1:{}", cascade_test::free_port());
    let out = work.run(&["--telemetry", &dead]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events = events(&out.stdout);
    assert_eq!(events.last().unwrap()["outcome"], "succeeded");
    assert!(
        stderr.contains(&format!("events not published to {dead}")),
        "{stderr}"
    );
}

async fn a_cancel_through_the_broker_stops_the_run(kind: Kind) {
    let broker = Broker::start(kind);
    let url = broker.url();
    let work = Workdir::new(
        "jobs:\n  slow: { run: sleep 60 }\n  after: { needs: [slow], run: 'true' }\n  cleanup: { needs: [slow], if: always(), run: echo cleaned }\n",
    );
    let mut run = Running::start(work.run(&["--telemetry", &url]));
    run.until("slow started", |e| {
        e["event"] == "task_started" && e["task"] == "slow"
    })
    .await;
    // A cancel for another run is not for this one.
    control(&url, &["cancel", "someone-else-1"]);
    let run_id = run.run_id();
    control(&url, &["cancel", &run_id]);
    let (code, events) = run.wait().await;
    assert_eq!(code, Some(130), "{events:?}");
    let state = |task: &str| {
        events
            .iter()
            .find(|e| e["event"] == "task_finished" && e["task"] == task)
            .map(|e| e["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("slow").as_deref(), Some("cancelled"));
    assert_eq!(state("cleanup").as_deref(), Some("succeeded"));
    assert_eq!(events.last().unwrap()["outcome"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_cancel_through_the_broker_stops_the_run() {
    a_cancel_through_the_broker_stops_the_run(Kind::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cancel_through_the_broker_stops_the_run() {
    a_cancel_through_the_broker_stops_the_run(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_limit_and_resume_through_the_broker_shape_the_task_starts() {
    let broker = Broker::start(Kind::Mqtt);
    let url = broker.url();
    let work = Workdir::new(
        "jobs:\n  gate: { run: sleep 1 }\n  a: { needs: [gate], run: sleep 0.2 }\n  b: { needs: [gate], run: sleep 0.2 }\n  c: { needs: [gate], run: sleep 0.2 }\n",
    );
    let mut run = Running::start(work.run(&["--telemetry", &url, "--jobs", "4"]));
    run.until("gate started", |e| {
        e["event"] == "task_started" && e["task"] == "gate"
    })
    .await;
    control(&url, &["limit", "1"]);
    control(&url, &["pause"]);
    run.until("gate finished", |e| {
        e["event"] == "task_finished" && e["task"] == "gate"
    })
    .await;
    // Paused: nothing starts, however long we wait here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resumed = jiff::Timestamp::now();
    control(&url, &["resume"]);
    let (code, events) = run.wait().await;
    assert_eq!(code, Some(0), "{events:?}");
    let at = |event: &str, task: &str| -> jiff::Timestamp {
        let e = events
            .iter()
            .find(|e| e["event"] == event && e["task"] == task)
            .unwrap_or_else(|| panic!("no {event} of {task}: {events:?}"));
        e["ts"].as_str().unwrap().parse().unwrap()
    };
    let mut spans: Vec<(jiff::Timestamp, jiff::Timestamp, &str)> = ["a", "b", "c"]
        .iter()
        .map(|t| (at("task_started", t), at("task_finished", t), *t))
        .collect();
    spans.sort();
    for (start, _, task) in &spans {
        assert!(
            *start >= resumed,
            "{task} started at {start}, before the resume at {resumed}"
        );
    }
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "limit 1: {} started before {} finished ({spans:?})",
            pair[1].2,
            pair[0].2
        );
    }
}

/// The engine's masking corpus (crates/cascade-engine/tests/it/safety.rs).
const SECRETS: &[(&str, &str)] = &[
    ("PLAIN", "hunter2-super-secret"),
    ("SHELLY", "p@$$w0rd$(x)`y`*?[a]"),
    (
        "MULTI",
        "-----BEGIN KEY-----\nline-one-of-key\nline-two-of-key\n-----END KEY-----",
    ),
    ("UNICODE", "sécret-✓-value"),
];

/// Every form a secret could take in a payload: whole, line by line, JSON-escaped, hex
/// in both cases, percent-encoded, base64.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    forms.extend(secret.lines().map(str::to_owned));
    forms.extend(crate::exposure::encoded_forms(secret));
    let escaped = serde_json::to_string(secret).unwrap();
    forms.push(escaped.trim_matches('"').to_owned());
    forms.retain(|f| f.len() >= 4);
    forms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_masking_corpus_never_appears_in_a_payload() {
    let broker = Broker::start(Kind::Mqtt);
    let url = broker.url();
    let work = Workdir::new(
        r#"
jobs:
  leak:
    secrets: [PLAIN, SHELLY, MULTI, UNICODE]
    outputs: { list: stdout-json }
    run: |
      echo "$MULTI" >&2
      hex=$(printf '%s' "$UNICODE" | od -An -v -tx1 | tr -d ' \n')
      HEX=$(printf '%s' "$PLAIN" | od -An -v -tx1 | tr -d ' \n' | tr a-f A-F)
      uri=$(jq -rn --arg v "$SHELLY" '$v|@uri')
      low=$(printf '%s' "$uri" | sed 's/%../\L&/g')
      printf '["%s", "%s", "%s", "plain-%s", "%s", "%s", "%s", "%s"]' "$PLAIN" "$SHELLY" "$UNICODE" "$PLAIN" "$hex" "$HEX" "$uri" "$low"
  fan:
    needs: [leak]
    for_each: ${{ needs.leak.outputs.list }}
    run: echo "${{ item }}"
  bad_output:
    secrets: [PLAIN, UNICODE]
    outputs: { x: file }
    run: echo "garbage $PLAIN $UNICODE" >> "$CASCADE_OUTPUT"
  failing:
    secrets: [MULTI]
    run: echo "$MULTI"; exit 1
"#,
    );
    let mut file = String::new();
    for (name, value) in SECRETS {
        if value.contains('\n') {
            file.push_str(&format!("{name}<<EOF\n{value}\nEOF\n"));
        } else {
            file.push_str(&format!("{name}={value}\n"));
        }
    }
    std::fs::write(work.dir.path().join("secrets.env"), file).unwrap();
    let mut inbox = Inbox::subscribe(&url, "cascade/telemetry/acme/web/+/events").await;
    let out = work
        .run(&["--telemetry", &url, "--secrets-file", "secrets.env"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = inbox.until_stopped().await;
    let text = got
        .iter()
        .map(|(_, p)| p.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for (name, value) in SECRETS {
        for form in forms(value) {
            assert!(
                !text.contains(&form),
                "secret {name} ({form:?}) in a payload:\n{text}"
            );
        }
    }
    // The masked values did travel: eight fan-out copies, labelled with a mask.
    let labels: Vec<&Value> = got
        .iter()
        .map(|(_, p)| &p["body"]["metadata"]["label"])
        .filter(|l| l.is_string())
        .collect();
    assert!(labels.len() >= 8, "{text}");
    assert!(
        labels.iter().all(|l| l.as_str().unwrap().contains("***")),
        "{labels:?}"
    );
    assert!(text.contains("invalid $CASCADE_OUTPUT"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_shows_the_tasks_of_a_run_in_another_process() {
    let broker = Broker::start(Kind::Nats);
    let url = broker.url();
    let mut observe = cascade()
        .args([
            "observe",
            "--broker",
            &url,
            "--org",
            "acme",
            "--project",
            "web",
        ])
        .args(["--exit-after-runs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(observe.stderr.take().unwrap());
    let mut ready = String::new();
    stderr.read_line(&mut ready).unwrap();
    assert_eq!(
        ready.trim(),
        format!("observing cascade/telemetry/acme/web/+/events on {url}")
    );
    let work = Workdir::new(CHAIN);
    let out = work.run(&["--telemetry", &url]).output().unwrap();
    let run_id = events(&out.stdout)[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = observe.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = observe.kill();
            panic!("observe did not end after the run");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());
    let mut lines = String::new();
    std::io::Read::read_to_string(&mut observe.stdout.take().unwrap(), &mut lines).unwrap();
    let shown: Vec<String> = lines
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .map(|l| {
            l.split(" attempt=")
                .next()
                .unwrap()
                .split(" project=")
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let want: Vec<String> = [
        "ENGINE_STARTED",
        "build pending",
        "build running",
        "build succeeded",
        "test pending",
        "test running",
        "test failed",
        "deploy pending",
        "deploy skipped",
        "ENGINE_STOPPED",
    ]
    .iter()
    .map(|s| format!("{run_id} {s}"))
    .collect();
    assert_eq!(shown, want, "{lines}");
}

/// `GET path` as text.
fn get_text(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{}Connection: close\r\n\r\n",
        crate::serve::auth_line(addr)
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// Submits a one-task DAG and waits until its run ended; returns the run id.
fn submit_and_wait(addr: &str, run: &str) -> String {
    let dag = json!({"dag_id": "metrics", "tasks": [{"id": "t", "run": run}]});
    let (status, body) = http(addr, "POST", "/api/v1/dag/execute", &dag.to_string());
    assert_eq!(status, 202, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = http(addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
        if matches!(
            body["run"]["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return run_id;
        }
        assert!(Instant::now() < deadline, "run did not end: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of one series line `name{labels} value` (or `name value`).
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_workers_publish_telemetry_and_metrics_show_the_run() {
    let broker = Broker::start(Kind::Mqtt);
    let url = broker.url();
    let mut inbox = Inbox::subscribe(&url, "cascade/telemetry/+/+/+/events").await;
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &["--telemetry", &url]);
    let addr = server.addr.clone();
    let run_id = tokio::task::spawn_blocking(move || submit_and_wait(&addr, "echo from-a-worker"))
        .await
        .unwrap();
    let got = inbox.until_stopped().await;
    assert!(
        got.iter()
            .all(|(_, p)| p["header"]["run_id"] == run_id.as_str())
    );
    let wire: Vec<(String, String)> = got.iter().map(|(_, p)| transition(p)).collect();
    assert_eq!(
        wire.iter()
            .map(|(a, b)| format!("{a} {b}"))
            .collect::<Vec<_>>(),
        [
            "engine ENGINE_STARTED",
            "t PENDING",
            "t RUNNING",
            "t COMPLETED",
            "engine ENGINE_STOPPED"
        ]
    );
    let metrics = get_text(&server.addr, "/metrics");
    for (name, value) in [
        ("cascade_runs{status=\"succeeded\"}", 1.0),
        ("cascade_tasks{state=\"succeeded\"}", 1.0),
        ("cascade_queue_depth", 0.0),
        ("cascade_workers", 1.0),
        ("cascade_telemetry_dropped_total", 0.0),
    ] {
        assert_eq!(series(&metrics, name), Some(value), "{name} in\n{metrics}");
    }
    for described in ["cascade_runs", "cascade_tasks", "cascade_workers"] {
        assert!(
            metrics.contains(&format!("# TYPE {described} gauge")),
            "{metrics}"
        );
    }
}

#[test]
fn metrics_count_what_workers_could_not_publish() {
    let data = tempfile::tempdir().unwrap();
    let dead = format!("nats://127.0.0.1:{}", cascade_test::free_port());
    let server = serve_with(data.path(), &["--telemetry", &dead]);
    submit_and_wait(&server.addr, "true");
    let metrics = get_text(&server.addr, "/metrics");
    let dropped = series(&metrics, "cascade_telemetry_dropped_total").unwrap();
    // Started, pending, running, completed, stopped: none could go out.
    assert!(dropped >= 5.0, "{metrics}");
    assert_eq!(
        series(&metrics, "cascade_runs{status=\"succeeded\"}"),
        Some(1.0)
    );
}

/// The status of a run of the server, once `done` holds for it.
fn wait_status(addr: &str, run_id: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = http(addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
        if let Some(status) = body["run"]["status"].as_str()
            && done(status)
        {
            return status.to_owned();
        }
        assert!(Instant::now() < deadline, "run {run_id}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a telemetry payload says task `task` of run `run_id` entered `state`.
fn entered(payload: &Value, run_id: &str, task: &str, state: &str) -> bool {
    payload["header"]["run_id"] == run_id && transition(payload) == (task.into(), state.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_through_mosquitto_reach_a_serve_worker() {
    let broker = Broker::start(Kind::Mqtt);
    let url = broker.url();
    let mut telemetry = Inbox::subscribe(&url, "cascade/telemetry/acme/web/+/events").await;
    let mut controls = Inbox::subscribe(&url, "cascade/control/acme/web/#").await;
    let data = tempfile::tempdir().unwrap();
    // Jobs see only their sandbox: the marks go to a directory the config shares.
    let marks = crate::isolation::shared_dir();
    let config = crate::isolation::config_binding(data.path(), marks.path());
    let mark = |name: &str| marks.path().join(name);
    let server = serve_with_env(
        data.path(),
        &["--telemetry", &url, "--config", config.to_str().unwrap()],
        &[("CASCADE_ORG_ID", "acme"), ("CASCADE_PROJECT_ID", "web")],
    );
    let submit = |dag: Value| crate::workers::submit(&server, &dag);

    // `gate` runs until the test lets it end; `after` needs it and leaves a mark.
    let run_id = submit(json!({"dag_id": "paused", "tasks": [
        {"id": "gate", "run": format!(
            "for i in $(seq 600); do [ -e {go} ] && exit 0; sleep 0.05; done; exit 1",
            go = mark("go").display()
        )},
        {"id": "after", "needs": ["gate"], "run": format!("touch {}", mark("after").display())},
    ]}));
    telemetry
        .until("gate running", |p| entered(p, &run_id, "gate", "RUNNING"))
        .await;
    control(&url, &["pause"]);
    // The broker passed the pause on to its subscribers; give the worker's a moment to
    // hand it to the engine.
    controls
        .until("the pause", |p| p["command"] == "pause")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(mark("go"), "").unwrap();
    telemetry
        .until("gate completed", |p| {
            entered(p, &run_id, "gate", "COMPLETED")
        })
        .await;
    // Paused: `after` does not start, however long we wait here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!mark("after").exists(), "a task started while paused");
    assert_eq!(wait_status(&server.addr, &run_id, |_| true), "running");
    control(&url, &["resume"]);
    assert_eq!(
        wait_status(&server.addr, &run_id, |s| s != "running"),
        "succeeded"
    );
    assert!(mark("after").exists(), "resumed, but `after` did not run");

    // A cancel names its run: one for another run changes nothing, this run's ends it.
    let run_id = submit(json!({"dag_id": "cancelled", "tasks": [
        {"id": "slow", "run": "sleep 60"},
        {"id": "next", "needs": ["slow"], "run": format!("touch {}", mark("next").display())},
    ]}));
    telemetry
        .until("slow running", |p| entered(p, &run_id, "slow", "RUNNING"))
        .await;
    control(&url, &["cancel", "someone-else-1"]);
    controls
        .until("the other cancel", |p| p["run_id"] == "someone-else-1")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wait_status(&server.addr, &run_id, |_| true), "running");
    control(&url, &["cancel", &run_id]);
    assert_eq!(
        wait_status(&server.addr, &run_id, |s| s != "running"),
        "cancelled"
    );
    telemetry
        .until("slow cancelled", |p| entered(p, &run_id, "slow", "FAILED"))
        .await;
    assert!(!mark("next").exists(), "a task ran after the cancel");
}
