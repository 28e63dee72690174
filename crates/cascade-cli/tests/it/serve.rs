//! `cascade serve` as a process: submissions over HTTP on loopback, bad input, conflicts,
//! and durability across kill -9.

use crate::cascade;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

/// A server process on a free port; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Its admin token (`DATA_DIR/admin.token`); [`http`] sends it.
    pub token: String,
}

/// The admin token of each server started by the tests, by address, so every request
/// helper authenticates as that server's admin without being handed the token.
static TOKENS: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Reads the admin token `serve` wrote to `data_dir` and remembers it for `addr`.
pub fn admin_token(addr: &str, data_dir: &std::path::Path) -> String {
    let path = data_dir.join("admin.token");
    let token = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("serve wrote no {}: {e}", path.display()))
        .trim()
        .to_owned();
    TOKENS
        .lock()
        .unwrap()
        .insert(addr.to_owned(), token.clone());
    token
}

/// The `Authorization` header line for the server at `addr` (empty for an unknown one).
pub fn auth_line(addr: &str) -> String {
    TOKENS
        .lock()
        .unwrap()
        .get(addr)
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &std::path::Path) -> Server {
    serve_with(data, &[])
}

/// A server with more flags; its node id is `test-node`.
pub fn serve_with(data: &std::path::Path, args: &[&str]) -> Server {
    serve_with_env(data, args, &[])
}

/// A server with more flags and environment variables (its workers inherit them).
pub fn serve_with_env(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = cascade();
    cmd.arg("serve");
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .args(["--node-id", "test-node", "--data-dir"])
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .env("CASCADE_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    // Log lines may come first; the address is on the `listening on` line.
    while !line.contains("listening on ") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve exited before listening"
        );
    }
    let addr = line
        .split("://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    // Keep reading stderr (worker logs go there too), so nobody blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stderr.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    let token = admin_token(&addr, data);
    Server { child, addr, token }
}

/// One HTTP/1.1 request as the server's admin; returns status and body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    http_as(addr, Some(&auth_line(addr)), method, path, body)
}

/// One HTTP/1.1 request with the given `Authorization` header line (`None`: none).
pub fn http_as(
    addr: &str,
    auth: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = auth.unwrap_or_default();
    let mut stream = TcpStream::connect(addr).unwrap();
    // A server may answer (413, 401) and close before it has read a large body;
    // the write then fails with a broken pipe while the answer is there to read.
    let sent = write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // `read_to_end` keeps what arrived before a reset.
    let mut bytes = Vec::new();
    let read = stream.read_to_end(&mut bytes);
    if bytes.is_empty() {
        sent.unwrap();
        read.unwrap();
    }
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let status: u16 = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // Bodies may be chunked; the JSON object is between the first `{` and the last `}`.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    };
    (status, json)
}

const DAG: &str = r#"{"dag_id": "proj-a-nightly", "target_node": "node-1", "priority": "high",
 "tasks": [{"id": "build", "run": "make", "needs": [], "env": {"PROJECT_ID": "proj-a"}, "retry": {"limit": 2, "delay": "5s"}, "timeout": "10m"}]}"#;

#[test]
fn a_dag_is_accepted_after_commit_and_can_be_read_back() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path());
    assert_eq!(http(&server.addr, "GET", "/healthz", "").0, 200);
    let (status, body) = http(&server.addr, "POST", "/api/v1/dag/execute", DAG);
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (
            body["dag_id"].as_str(),
            body["scope"].as_str(),
            body["worker_id"].as_str()
        ),
        (
            Some("proj-a-nightly"),
            Some("project:proj-a"),
            Some("worker-project-proj-a")
        )
    );
    let run_id = body["run_id"].as_str().unwrap();
    let (status, run) = http(&server.addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
    assert_eq!(
        (status, run["run"]["status"].as_str()),
        (200, Some("queued"))
    );
    let (_, dags) = http(&server.addr, "GET", "/api/v1/dags", "");
    assert_eq!(dags["dags"][0]["dag_id"], "proj-a-nightly");
    let (status, dag) = http(&server.addr, "GET", "/api/v1/dags/proj-a-nightly", "");
    assert_eq!(
        (status, dag["definition"]["tasks"][0]["id"].as_str()),
        (200, Some("build"))
    );
    assert_eq!(http(&server.addr, "GET", "/api/v1/runs/nope", "").0, 404);
}

#[test]
fn bad_submissions_are_refused_with_the_field_and_position() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path());
    let (status, body) = http(&server.addr, "POST", "/api/v1/dag/execute", "{\"tasks\": [");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["line"], 1);
    let (status, body) = http(
        &server.addr,
        "POST",
        "/api/v1/dag/execute",
        "{\"tasks\": [{\"id\": \"a\", \"run\": \"x\", \"nedds\": []}]}",
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "unknown field `nedds` in a task"
    );
    assert_eq!(body["errors"][0]["help"], "did you mean `needs`?");
    assert_eq!(
        (
            body["errors"][0]["line"].as_u64(),
            body["errors"][0]["column"].as_u64()
        ),
        (Some(1), Some(36))
    );
    let (status, body) = http(
        &server.addr,
        "POST",
        "/api/v1/dag/execute",
        r#"{"pipeline": "jobs: { a: { run: make } }", "inputz": {}}"#,
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("body")),
        "{body}"
    );
    // Refused from its declared length, before the body is sent: a client writing
    // 2 MiB the server will not read could see its connection reset before the answer.
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    write!(stream, "POST /api/v1/dag/execute HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", auth_line(&server.addr), 2 << 20).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // A pipeline with a declared input.
    let pipeline = serde_json::json!({"pipeline": "name: p\non: { workflow_dispatch: { inputs: { who: { required: true } } } }\njobs:\n  a: { run: 'echo ${{ inputs.who }}' }\n", "inputs": {"who": "me"}}).to_string();
    assert_eq!(
        http(&server.addr, "POST", "/api/v1/dag/execute", &pipeline).0,
        202
    );
    let missing = serde_json::json!({"pipeline": "name: p\non: { workflow_dispatch: { inputs: { who: { required: true } } } }\njobs:\n  a: { run: 'echo ${{ inputs.who }}' }\n"}).to_string();
    let (status, body) = http(&server.addr, "POST", "/api/v1/dag/execute", &missing);
    assert_eq!(
        (status, body["error"].as_str()),
        (
            422,
            Some("`inputs`: input `who` is required and has no default")
        )
    );
}

#[test]
fn the_same_worker_on_another_node_is_a_conflict() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path());
    assert_eq!(
        http(&server.addr, "POST", "/api/v1/dag/execute", DAG).0,
        202
    );
    let other = DAG
        .replace("node-1", "node-2")
        .replace("proj-a-nightly", "proj-a-hourly");
    let (status, body) = http(&server.addr, "POST", "/api/v1/dag/execute", &other);
    assert_eq!(status, 409);
    assert_eq!(
        body["error"],
        "worker-project-proj-a already runs on node `node-1`; it cannot also target `node-2` (one worker, one node)"
    );
}

#[test]
fn every_accepted_submission_survives_kill_9_of_the_server() {
    let data = tempfile::tempdir().unwrap();
    let mut server = serve(data.path());
    let addr = server.addr.clone();
    // Submit from a thread; kill -9 the server partway through.
    let submitter = std::thread::spawn(move || {
        let mut accepted = Vec::new();
        for i in 0..1000 {
            let dag = format!(
                "{{\"dag_id\": \"d{i}\", \"tasks\": [{{\"id\": \"a\", \"run\": \"true\"}}]}}"
            );
            let Ok(mut stream) = TcpStream::connect(&addr) else {
                break;
            };
            let request = format!(
                "POST /api/v1/dag/execute HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{dag}",
                crate::serve::auth_line(&addr),
                dag.len()
            );
            if stream.write_all(request.as_bytes()).is_err() {
                break;
            }
            let mut response = String::new();
            if stream.read_to_string(&mut response).is_err()
                || !response.starts_with("HTTP/1.1 202")
            {
                break;
            }
            let body = &response[response.find('{').unwrap()..=response.rfind('}').unwrap()];
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            accepted.push(json["run_id"].as_str().unwrap().to_owned());
        }
        accepted
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let accepted = submitter.join().unwrap();
    let _ = server.child.wait();
    assert!(
        !accepted.is_empty(),
        "some submissions were accepted before the kill"
    );
    assert!(accepted.len() < 1000, "the kill happened during the burst");
    let server = serve(data.path());
    for run_id in &accepted {
        let (status, run) = http(&server.addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
        // After the restart the workers take them up: any state but "unknown" will do.
        assert_eq!(status, 200, "run {run_id} was acknowledged but lost");
        assert!(
            matches!(
                run["run"]["status"].as_str(),
                Some("queued" | "running" | "succeeded")
            ),
            "{run}"
        );
    }
}
