//! The GitOps loop with real parts: `cascade serve` as a process, git repositories made
//! here, signed webhooks, and the forge's status API and a callback receiver as a local
//! HTTP server that records requests (the contract tests, named `contract_…`).

use crate::serve::{Server, http};
use crate::{cascade, succeeded};
use cascade_test::git;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const SECRET: &str = "It's a Secret to Everybody";

/// A repository with these files committed on `main`; returns its head.
pub(crate) fn repo(dir: &Path, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    commit(dir, files)
}

pub(crate) fn commit(dir: &Path, files: &[(&str, &str)]) -> String {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "change"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// One recorded HTTP request.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Value,
}

/// A local HTTP server that records every request and answers `201 {}`.
pub(crate) struct Recorder {
    pub(crate) url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    pub(crate) fn start() -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let url = listen(&requests, serve_one);
        Self { url, requests }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the recorded requests.
    pub(crate) fn wait(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests();
            if pred(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "{what}: got {got:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A loopback HTTP server answering each connection on a thread of its own with
/// `handle`; returns its base URL.
pub(crate) fn listen<S: Send + Sync + 'static>(
    state: &Arc<S>,
    handle: fn(&TcpStream, &S),
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::clone(state);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = Arc::clone(&state);
            std::thread::spawn(move || handle(&stream, &state));
        }
    });
    url
}

/// One HTTP/1.1 request read from a kept-alive connection: method, target, headers
/// (names lower-cased) and body; `None` once the client closed it.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn serve_one(stream: &TcpStream, sink: &Mutex<Vec<Recorded>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    while let Some(request) = read_request(&mut reader) {
        sink.lock().unwrap().push(Recorded {
            method: request.method,
            path: request.target,
            headers: request.headers,
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        });
        let mut out = stream.try_clone().unwrap();
        let _ = out.write_all(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cascade serve` with a config, a webhook secret and a known port.
pub(crate) fn serve(data: &Path, config: &str, extra: &[&str]) -> Server {
    serve_env(data, config, extra, &[])
}

/// [`serve`] with more environment variables.
pub(crate) fn serve_env(
    data: &Path,
    config: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> Server {
    std::fs::write(data.join("cascade.toml"), config).unwrap();
    let port = free_port();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cascade"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = cascade()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-id",
            "test-node",
            "--data-dir",
        ])
        .arg(data.join("data"))
        .arg("--config")
        .arg(data.join("cascade.toml"))
        .args(extra)
        .env("CASCADE_WEBHOOK_SECRET", SECRET)
        .env("GH_TOKEN", "token-123")
        .env("CASCADE_SERVER", format!("http://127.0.0.1:{port}"))
        .env("PATH", path)
        .env(
            "CASCADE_LOG",
            std::env::var("CASCADE_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve exited before listening"
        );
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stderr.read_line(&mut sink).is_ok_and(|n| n > 0) {
            // Shown when a test fails (libtest captures it otherwise).
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("serve: {sink}").as_bytes(),
            );
            sink.clear();
        }
    });
    let addr = format!("127.0.0.1:{port}");
    let token = crate::serve::admin_token(&addr, &data.join("data"));
    Server { child, addr, token }
}

/// A GitHub push of `after` on `main` (the payload shape GitHub sends, trimmed).
pub(crate) fn push_payload(repo_url: &str, before: &str, after: &str, changed: &[&str]) -> String {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "commits": [{"id": after, "added": [], "removed": [], "modified": changed}],
        "head_commit": {"id": after},
        "repository": {"id": 1, "full_name": "acme/app", "clone_url": repo_url, "html_url": "https://example.invalid/acme/app", "default_branch": "main"},
        "sender": {"login": "octocat"}
    })
    .to_string()
}

/// Posts a webhook; returns the status code.
pub(crate) fn post_hook(
    addr: &str,
    forge: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "POST /hooks/{forge} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status: u16 = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = match (response.find('{'), response.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&response[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

pub(crate) fn github_headers(
    delivery: &str,
    event: &str,
    body: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        (
            "X-Hub-Signature-256",
            format!(
                "sha256={}",
                cascade_git::signature::sign(body.as_bytes(), SECRET.as_bytes())
            ),
        ),
    ]
}

pub(crate) fn config(repo: &Path, statuses: &str, extra: &str) -> String {
    format!(
        "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"file://{}\"\napi_url = \"{statuses}\"\ntoken_secret = \"GH_TOKEN\"\n{extra}",
        repo.display()
    )
}

pub(crate) fn events(server: &Server, task: Option<&str>) -> Vec<Value> {
    let path = task.map_or_else(
        || "/api/v1/events".to_owned(),
        |t| format!("/api/v1/events?task_id={t}"),
    );
    let (status, body) = http(&server.addr, "GET", &path, "");
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

pub(crate) fn statuses_for(requests: &[Recorded], context: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.body["context"] == context)
        .map(|r| r.body["state"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn contract_a_push_runs_the_pipeline_and_reports_one_status_per_job() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let pipeline = "name: app\non: { push: { branches: [main] } }\njobs:\n  build: { run: test -f src/main.txt && echo built }\n  docs: { needs: [build], if: \"false\", run: echo never }\n";
    let sha = repo(&src, &[("ci.yaml", pipeline), ("src/main.txt", "hello")]);
    let host = Recorder::start();
    let server = serve(dir.path(), &config(&src, &host.url, ""), &[]);
    let body = push_payload(
        &format!("file://{}", src.display()),
        &"0".repeat(40),
        &sha,
        &["src/main.txt"],
    );
    let (status, answer) = post_hook(
        &server.addr,
        "github",
        &github_headers("d-1", "push", &body),
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    let build = "cascade/acme/app/ci.yaml/build";
    let docs = "cascade/acme/app/ci.yaml/docs";
    let got = host.wait(Duration::from_secs(30), "statuses of build and docs", |r| {
        statuses_for(r, build)
            .last()
            .is_some_and(|s| s == "success")
            && statuses_for(r, docs).last().is_some_and(|s| s == "success")
    });
    assert_eq!(
        statuses_for(&got, build).first().map(String::as_str),
        Some("pending")
    );
    let post = got.iter().find(|r| r.body["context"] == build).unwrap();
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, format!("/repos/acme/app/statuses/{sha}"));
    assert!(
        post.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v.ends_with("token-123")),
        "{:?}",
        post.headers
    );
    let skipped = got
        .iter()
        .rev()
        .find(|r| r.body["context"] == docs)
        .unwrap();
    assert_eq!(skipped.body["description"], "skipped");
    // Each state is posted once: only changes are sent.
    let mut build_states = statuses_for(&got, build);
    build_states.dedup();
    assert_eq!(
        build_states.len(),
        statuses_for(&got, build).len(),
        "{got:#?}"
    );
}

#[test]
fn contract_a_push_touching_only_docs_does_not_start_a_src_pipeline_and_is_reported_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let pipeline = "name: app\non: { push: { branches: [main], paths: [\"src/**\"] } }\njobs:\n  build: { run: echo built }\n";
    let before = repo(&src, &[("ci.yaml", pipeline), ("src/main.txt", "hello")]);
    let after = commit(&src, &[("docs/guide.md", "words")]);
    let host = Recorder::start();
    let server = serve(dir.path(), &config(&src, &host.url, ""), &[]);
    let body = push_payload(
        &format!("file://{}", src.display()),
        &before,
        &after,
        &["docs/guide.md"],
    );
    let (status, _) = post_hook(
        &server.addr,
        "github",
        &github_headers("d-docs", "push", &body),
        &body,
    );
    assert_eq!(status, 202);
    let got = host.wait(Duration::from_secs(30), "a skipped status", |r| {
        r.iter().any(|p| p.body["state"] == "success")
    });
    let posted: Vec<&str> = got
        .iter()
        .map(|p| p.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(posted, ["pending", "success"]);
    let last = &got[1].body;
    assert_eq!(last["context"], "cascade/acme/app/ci.yaml");
    assert!(
        last["description"]
            .as_str()
            .unwrap()
            .starts_with("skipped: "),
        "{last}"
    );
    let (_, dags) = http(&server.addr, "GET", "/api/v1/dags", "");
    assert_eq!(
        dags["dags"].as_array().map(Vec::len),
        Some(0),
        "no run was queued: {dags}"
    );
    let log = events(&server, None);
    assert_eq!(log[0]["status"], "skipped");
}

#[test]
fn bad_signatures_are_rejected_and_nothing_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let sha = repo(&src, &[("ci.yaml", "jobs: { a: { run: echo } }\n")]);
    let server = serve(dir.path(), &config(&src, "http://127.0.0.1:9", ""), &[]);
    let body = push_payload("file:///nowhere", &"0".repeat(40), &sha, &[]);
    let good = cascade_git::signature::sign(body.as_bytes(), SECRET.as_bytes());
    let wrong = cascade_git::signature::sign(body.as_bytes(), b"another secret");
    let mut flipped = good.clone().into_bytes();
    flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut corpus: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("sha256=".to_owned()),
        Some(format!("sha256={flipped}")),
        Some(format!("sha256={wrong}")),
        Some(good.clone()),
        Some(format!("sha1={good}")),
    ];
    for n in 1..64 {
        corpus.push(Some(format!("sha256={}", &good[..n])));
    }
    for signature in &corpus {
        let mut headers = vec![
            ("X-GitHub-Event", "push".to_owned()),
            ("X-GitHub-Delivery", "bad".to_owned()),
        ];
        if let Some(s) = signature {
            headers.push(("X-Hub-Signature-256", s.clone()));
        }
        let (status, answer) = post_hook(&server.addr, "github", &headers, &body);
        assert_eq!(status, 401, "{signature:?} → {answer}");
    }
    // The same bytes re-serialised (as a proxy might) no longer match the signature.
    let reserialised =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&body).unwrap()).unwrap();
    let mut headers = github_headers("bad", "push", &body);
    headers.retain(|(k, _)| *k != "X-Hub-Signature-256");
    headers.push(("X-Hub-Signature-256", format!("sha256={good}")));
    assert_eq!(
        post_hook(&server.addr, "github", &headers, &reserialised).0,
        401
    );
    assert!(events(&server, None).is_empty(), "nothing was queued");
}

#[test]
fn the_same_delivery_sent_100_times_concurrently_starts_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let sha = repo(
        &src,
        &[(
            "ci.yaml",
            "name: app\non: { push: {} }\njobs: { a: { run: echo once } }\n",
        )],
    );
    let server = serve(dir.path(), &config(&src, "http://127.0.0.1:9", ""), &[]);
    let body = Arc::new(push_payload(
        &format!("file://{}", src.display()),
        &"0".repeat(40),
        &sha,
        &["ci.yaml"],
    ));
    let addr = Arc::new(server.addr.clone());
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (body, addr) = (Arc::clone(&body), Arc::clone(&addr));
            std::thread::spawn(move || {
                post_hook(
                    &addr,
                    "github",
                    &github_headers("same-delivery", "push", &body),
                    &body,
                )
                .0
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 99, "{codes:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, dags) = http(&server.addr, "GET", "/api/v1/dags/acme%2Fapp%2Fci.yaml", "");
        if dags["runs"].as_array().is_some_and(|r| !r.is_empty()) {
            assert_eq!(dags["runs"].as_array().unwrap().len(), 1, "{dags}");
            break;
        }
        assert!(Instant::now() < deadline, "no run started: {dags}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(events(&server, None).len(), 1);
}

#[test]
fn contract_a_dispatch_chain_runs_to_its_callback_with_one_failure_retried() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("chain");
    // Jobs see only their sandbox: the marker goes to a directory the config shares.
    let shared = crate::isolation::shared_dir();
    let marker = shared.path().join("failed-once");
    let agent = "name: agent\non: { repository_dispatch: { types: [\"task:start\"] } }\njobs:\n  agent:\n    env: { TASK_ID: \"${{ event.client_payload.task_id }}\" }\n    run: |\n      cascade dispatch agent:complete --payload \"{\\\"task_id\\\": \\\"$TASK_ID\\\", \\\"status\\\": \\\"success\\\"}\"\n";
    let build = format!(
        "name: build\non: {{ repository_dispatch: {{ types: [\"agent:complete\"] }} }}\njobs:\n  build:\n    if: event.client_payload.status == 'success'\n    run: if [ -e {m} ]; then echo built; else touch {m}; exit 3; fi\n",
        m = marker.display()
    );
    repo(&src, &[("agent.yaml", agent), ("build.yaml", &build)]);
    let callbacks = Recorder::start();
    let url = format!("file://{}", src.display());
    let config = format!(
        "[repositories.\"acme/agent\"]\nforge = \"github\"\nurl = \"{url}\"\npipeline = \"agent.yaml\"\n[repositories.\"acme/build\"]\nforge = \"github\"\nurl = \"{url}\"\npipeline = \"build.yaml\"\n[orchestrator]\nretry_limit = 3\ncallback_url = \"{}/done\"\n[sandbox]\nbind = [\"{}\"]\n",
        callbacks.url,
        shared.path().display()
    );
    let server = serve(dir.path(), &config, &[]);
    succeeded(
        cascade()
            .args([
                "dispatch",
                "task:start",
                "--payload",
                r#"{"task_id": "T-42"}"#,
                "--server",
                &format!("http://{}", server.addr),
            ])
            .env("CASCADE_TOKEN", &server.token),
    );
    let got = callbacks.wait(
        Duration::from_mins(1),
        "the build's completion callback",
        |r| {
            r.iter().any(|c| {
                c.body["pipeline"] == "acme/build/build.yaml" && c.body["status"] == "succeeded"
            })
        },
    );
    let done = got
        .iter()
        .find(|c| c.body["pipeline"] == "acme/build/build.yaml" && c.body["status"] == "succeeded")
        .unwrap();
    assert_eq!(done.path, "/done");
    assert_eq!(done.body["task_id"], "T-42");
    assert_eq!(
        done.body["retry_count"], 1,
        "the failed first run was retried once: {got:#?}"
    );
    assert!(
        got.iter()
            .any(|c| c.body["pipeline"] == "acme/agent/agent.yaml"
                && c.body["status"] == "succeeded"),
        "the agent's callback too: {got:#?}"
    );
    let chain = events(&server, Some("T-42"));
    let kinds: Vec<(String, i64)> = chain
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap_or_default().to_owned(),
                e["payload"]["client_payload"]["retry_count"]
                    .as_i64()
                    .unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("task:start".into(), 0),
            ("agent:complete".into(), 0),
            ("agent:complete".into(), 1)
        ],
        "{chain:#?}"
    );
    let out = cascade()
        .args([
            "events",
            "--task-id",
            "T-42",
            "--server",
            &format!("http://{}", server.addr),
        ])
        .env("CASCADE_TOKEN", &server.token)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("agent:complete") && table.contains("task:start"),
        "{table}"
    );
}

/// Posts one dispatch with a fresh connection; the status code, or 0 when the server
/// did not answer.
fn post_dispatch(addr: &str, task: &str) -> u16 {
    let body = format!(r#"{{"event_type": "burst", "client_payload": {{"task_id": "{task}"}}}}"#);
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    let request = format!(
        "POST /api/v1/dispatch HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        crate::serve::auth_line(addr),
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn no_acknowledged_event_is_lost_when_nats_is_killed_during_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = cascade_test::NatsServer::start_jetstream(&dir.path().join("jetstream"));
    let server = serve(dir.path(), "", &["--nats-url", &nats.url()]);
    let addr = server.addr.clone();
    let burst = std::thread::spawn(move || {
        (0..1000)
            .map(|i| {
                let task = format!("b{i}");
                let status = post_dispatch(&addr, &task);
                (task, status)
            })
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!burst.is_finished(), "the kill falls inside the burst");
    nats.kill();
    std::thread::sleep(Duration::from_millis(500));
    nats.restart();
    let answers = burst.join().unwrap();
    let accepted: Vec<&str> = answers
        .iter()
        .filter(|(_, s)| *s == 202)
        .map(|(t, _)| t.as_str())
        .collect();
    assert!(!accepted.is_empty(), "some dispatches were acknowledged");
    assert!(
        answers.iter().all(|(_, s)| matches!(*s, 202 | 503)),
        "each was acknowledged or refused with 503: {answers:?}"
    );
    // Every acknowledged event reaches the event log once NATS is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored: std::collections::HashSet<String> = {
            let (status, body) = http(&server.addr, "GET", "/api/v1/events?limit=10000", "");
            assert_eq!(status, 200);
            body["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["task_id"].as_str().map(str::to_owned))
                .collect()
        };
        let missing: Vec<&&str> = accepted.iter().filter(|t| !stored.contains(**t)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged events lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn contract_a_gitlab_push_with_its_token_runs_and_reports_to_the_gitlab_status_api() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let pipeline =
        "name: app\non: { push: { branches: [main] } }\njobs:\n  build: { run: echo built }\n";
    let sha = repo(&src, &[("ci.yaml", pipeline)]);
    let host = Recorder::start();
    let config = format!(
        "[repositories.\"acme/app\"]\nforge = \"gitlab\"\nurl = \"file://{}\"\napi_url = \"{}/api/v4\"\nproject_id = \"42\"\ntoken_secret = \"GH_TOKEN\"\n",
        src.display(),
        host.url
    );
    let server = serve(dir.path(), &config, &[]);
    // GitLab's published push payload, pointed at this repository and commit.
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::root().join("../shared/webhooks/gitlab/push.json"))
            .unwrap(),
    )
    .unwrap();
    body["ref"] = "refs/heads/main".into();
    body["before"] = "0".repeat(40).into();
    body["after"] = sha.clone().into();
    body["checkout_sha"] = sha.clone().into();
    body["project"]["path_with_namespace"] = "acme/app".into();
    body["project"]["git_http_url"] = format!("file://{}", src.display()).into();
    let body = body.to_string();
    let headers = |token: &str| {
        vec![
            ("X-Gitlab-Event", "Push Hook".to_owned()),
            ("X-Gitlab-Webhook-UUID", "gl-1".to_owned()),
            ("X-Gitlab-Token", token.to_owned()),
        ]
    };
    assert_eq!(
        post_hook(&server.addr, "gitlab", &headers("wrong"), &body).0,
        401
    );
    let (status, answer) = post_hook(&server.addr, "gitlab", &headers(SECRET), &body);
    assert_eq!(status, 202, "{answer}");
    let got = host.wait(Duration::from_secs(30), "a success status on GitLab", |r| {
        r.iter().any(|p| p.body["state"] == "success")
    });
    let last = got.last().unwrap();
    assert_eq!(last.path, format!("/api/v4/projects/42/statuses/{sha}"));
    assert_eq!(last.body["name"], "cascade/acme/app/ci.yaml/build");
    assert!(
        last.headers
            .iter()
            .any(|(k, v)| k == "private-token" && v == "token-123"),
        "{:?}",
        last.headers
    );
    assert_eq!(got[0].body["state"], "pending");
}

/// GitHub's published delivery of a merged pull request, pointed at this repository and
/// commit: the stored event is the pull request whole (action, `merged`, title, as
/// `cascade-git` read it), the orchestrator routes it by its action, and the job reads
/// the same facts as `event.*`.
#[test]
fn contract_a_real_merged_github_pull_request_arrives_whole_and_its_job_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let pipeline = "name: app\non: { pull_request: { types: [closed] } }\njobs:\n  release:\n    if: event.pull_request.merged\n    run: echo \"merged=${{ event.pull_request.merged }} action=${{ event.action }} title=${{ event.pull_request.title }}\"\n";
    let sha = repo(&src, &[("ci.yaml", pipeline)]);
    let host = Recorder::start();
    let server = serve(dir.path(), &config(&src, &host.url, ""), &[]);
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::root()
                .join("../shared/webhooks/github/pull_request.closed.merged.woodpecker.json"),
        )
        .unwrap(),
    )
    .unwrap();
    body["repository"]["full_name"] = "acme/app".into();
    body["repository"]["clone_url"] = format!("file://{}", src.display()).into();
    body["pull_request"]["head"]["sha"] = sha.clone().into();
    body["pull_request"]["base"]["sha"] = sha.clone().into();
    let body = body.to_string();
    let (status, answer) = post_hook(
        &server.addr,
        "github",
        &github_headers("pr-merged-1", "pull_request", &body),
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["kind"], "pull_request");
    let context = "cascade/acme/app/ci.yaml/release";
    let got = host.wait(Duration::from_secs(30), "the release job's end", |r| {
        statuses_for(r, context)
            .last()
            .is_some_and(|s| s == "success")
    });
    let last = got
        .iter()
        .rev()
        .find(|r| r.body["context"] == context)
        .unwrap();
    assert_eq!(last.body["description"], "passed", "not skipped: {got:#?}");
    assert_eq!(last.path, format!("/repos/acme/app/statuses/{sha}"));
    let log = events(&server, None);
    assert_eq!(log.len(), 1, "{log:#?}");
    let stored = &log[0]["payload"];
    assert_eq!(stored["from"], "forge", "{stored}");
    let pr = &stored["event"]["kind"];
    assert_eq!(
        (
            &pr["type"],
            &pr["action"],
            &pr["merged"],
            &pr["title"],
            &pr["number"]
        ),
        (
            &Value::from("pull_request"),
            &Value::from("closed"),
            &Value::from(true),
            &Value::from("Change file"),
            &Value::from(62)
        ),
        "{pr}"
    );
    let note = log[0]["note"].as_str().unwrap();
    let run_id = note
        .strip_prefix("started run ")
        .and_then(|n| n.split_whitespace().next())
        .unwrap_or_else(|| panic!("a started run: {note}"));
    let (_, logs) = http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        "",
    );
    assert!(
        logs.to_string()
            .contains("merged=true action=closed title=Change file"),
        "{logs}"
    );
}
