//! `cascade run --telemetry unix:/path.sock`: the run's telemetry as JSON lines to a Unix
//! socket another process listens on (the Python SDK's connector bridge), and control
//! commands read back from it. The listener here is a real socket in the test.
//!
//! Time bounds here are generous ceilings on a hang, never measurements.

use crate::cascade;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

/// A directory with `ci.yaml` and a listening socket `t.sock`.
fn setup(pipeline: &str) -> (tempfile::TempDir, UnixListener, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.yaml"), pipeline).unwrap();
    let path = dir.path().join("t.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let url = format!("unix:{}", path.display());
    (dir, listener, url)
}

fn start(dir: &std::path::Path, args: &[&str]) -> Child {
    cascade()
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env_remove("CASCADE_ORG_ID")
        .env_remove("CASCADE_PROJECT_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most [`PATIENCE`]) for the run to end: its exit code and stderr.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the run did not end within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (child.wait().unwrap().code(), stderr)
}

/// Each line as `(topic, payload)`.
fn parse(line: &str) -> (String, Value) {
    let value: Value = serde_json::from_str(line).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["topic", "payload"], "{line}");
    (
        value["topic"].as_str().unwrap().to_owned(),
        value["payload"].clone(),
    )
}

/// `(task or "engine", state or event)` of a payload.
fn transition(payload: &Value) -> (String, String) {
    let body = &payload["body"];
    match body["event"].as_str() {
        Some(event) => ("engine".to_owned(), event.to_owned()),
        None => (
            body["task_id"].as_str().unwrap_or("?").to_owned(),
            body["state"]
                .as_str()
                .or(body["action"].as_str())
                .unwrap_or("?")
                .to_owned(),
        ),
    }
}

#[test]
fn socket_gets_every_transition_with_the_design_topics() {
    let (dir, listener, url) = setup(
        "jobs:\n  build: { run: echo built }\n  test: { needs: [build], run: exit 3 }\n  deploy: { needs: [test], run: echo never }\n",
    );
    let reader = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        BufReader::new(stream)
            .lines()
            .map(|l| parse(&l.unwrap()))
            .collect::<Vec<_>>()
    });
    let (code, stderr) = finish(start(dir.path(), &["ci.yaml", "--telemetry", &url]));
    assert_eq!(code, Some(1), "{stderr}");
    let got = reader.join().unwrap();
    let run_id = got[0].1["header"]["run_id"].as_str().unwrap().to_owned();
    let validator = jsonschema::validator_for(&cascade_connect::schema()).unwrap();
    for (topic, payload) in &got {
        assert_eq!(
            topic,
            &format!("cascade/telemetry/local/default/{run_id}/events")
        );
        assert!(validator.is_valid(payload), "breaks the schema: {payload}");
        assert_eq!(payload["header"]["v"], "1.0");
        assert_eq!(payload["header"]["run_id"], run_id.as_str());
    }
    let wire: Vec<(String, String)> = got
        .iter()
        .map(|(_, p)| transition(p))
        .filter(|(_, what)| what != "ACQUIRE" && what != "RELEASE")
        .collect();
    let expected: Vec<(String, String)> = [
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
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(wire, expected);
    let failed = got
        .iter()
        .map(|(_, p)| &p["body"])
        .find(|b| b["task_id"] == "test" && b["state"] == "FAILED")
        .unwrap();
    assert_eq!(failed["error"], json!("exited with code 3"));
}

#[test]
fn a_cancel_written_to_the_socket_cancels_the_run() {
    let (dir, listener, url) = setup("jobs:\n  long: { run: 'echo started; sleep 30' }\n");
    let child = start(
        dir.path(),
        &["ci.yaml", "--telemetry", &url, "--kill-grace", "1"],
    );
    let (stream, _) = listener.accept().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stream).lines() {
        let (_, payload) = parse(&line.unwrap());
        let (task, state) = transition(&payload);
        if task == "long" && state == "RUNNING" {
            let run_id = payload["header"]["run_id"].as_str().unwrap();
            let command = json!({
                "topic": "cascade/control/local/default/cancel",
                "payload": {"command": "cancel", "run_id": run_id},
            });
            writer.write_all(format!("{command}\n").as_bytes()).unwrap();
        }
        seen.push((task, state));
    }
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        seen.contains(&("long".to_owned(), "FAILED".to_owned())),
        "the stopped task is reported (cancelled is FAILED on the wire): {seen:?}"
    );
    assert_eq!(seen.last().unwrap().1, "ENGINE_STOPPED", "{seen:?}");
}

/// A listener that accepts and never reads: the socket and the queues in front of it fill,
/// publishes time out and are counted as dropped, and the run ends as it would without
/// telemetry (within the bounded waits of the end of a run).
#[test]
fn a_listener_that_never_reads_does_not_hold_the_run_up() {
    // 600 tasks of three events each, with long labels: more than the socket's buffer and
    // the connector's queue of 1024 lines hold, so publishing gets stuck within the run.
    let items: Vec<String> = (0..600)
        .map(|i| format!("\"{i}-{}\"", "x".repeat(500)))
        .collect();
    // The last job keeps the run going while publishing is stuck, so a publish times out.
    let pipeline = format!(
        "jobs:\n  many:\n    for_each: [{}]\n    run: \"true\"\n  last: {{ needs: [many], run: sleep 3 }}\n",
        items.join(", ")
    );
    let (dir, listener, url) = setup(&pipeline);
    let child = start(dir.path(), &["ci.yaml", "--telemetry", &url, "--jobs", "8"]);
    let (stream, _) = listener.accept().unwrap();
    let (code, stderr) = finish(child);
    drop(stream);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("not published to {url}")),
        "the dropped events are counted: {stderr}"
    );
}
