//! Worker processes under `cascade serve`, as processes: one per scope side by side,
//! reuse, a worker killed mid-task, the lock on a worker id, cancel, the pool's cap, the
//! parent's death, and the `cascade dag` commands against the server and the data dir.

use crate::isolation::{config_binding, shared_dir};
use crate::serve::{Server, http, serve_with};
use crate::{cascade, succeeded};
use serde_json::Value;
use std::time::{Duration, Instant};

pub(crate) fn submit(server: &Server, dag: &Value) -> String {
    let (status, body) = http(
        &server.addr,
        "POST",
        "/api/v1/dag/execute",
        &dag.to_string(),
    );
    assert_eq!(status, 202, "{body}");
    body["run_id"].as_str().unwrap().to_owned()
}

fn run(server: &Server, run_id: &str) -> Value {
    let (status, body) = http(&server.addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls until `done` holds for the run, or fails after `limit` with its last state.
pub(crate) fn wait_run(
    server: &Server,
    run_id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let body = run(server, run_id);
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not get there within {limit:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn ended(body: &Value) -> bool {
    matches!(
        body["run"]["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

fn workers(server: &Server) -> Vec<Value> {
    let (status, body) = http(&server.addr, "GET", "/api/v1/workers", "");
    assert_eq!(status, 200);
    body["workers"].as_array().unwrap().clone()
}

fn worker(server: &Server, id: &str) -> Value {
    workers(server)
        .into_iter()
        .find(|w| w["worker_id"] == id)
        .unwrap_or_else(|| panic!("no worker {id}"))
}

fn alive(pid: i64) -> bool {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        None,
    )
    .is_ok()
}

fn dag(dag_id: &str, run: &str) -> Value {
    serde_json::json!({"dag_id": dag_id, "tasks": [{"id": "t", "run": run}]})
}

#[test]
fn two_scopes_run_side_by_side_in_two_workers_and_a_scope_reuses_its_worker() {
    let data = tempfile::tempdir().unwrap();
    // Jobs see only their sandbox: the marks go to a directory the config shares.
    let shared = shared_dir();
    let config = config_binding(data.path(), shared.path());
    let server = serve_with(data.path(), &["--config", config.to_str().unwrap()]);
    // Each task waits for the other scope's task to have started: they can only both
    // finish if the two scopes run at the same time.
    let dir = shared.path().display().to_string();
    let a = submit(
        &server,
        &dag(
            "proj-a-one",
            &format!(
                "touch {dir}/a; for i in $(seq 100); do [ -e {dir}/b ] && exit 0; sleep 0.05; done; exit 1"
            ),
        ),
    );
    let b = submit(
        &server,
        &dag(
            "proj-b-one",
            &format!(
                "touch {dir}/b; for i in $(seq 100); do [ -e {dir}/a ] && exit 0; sleep 0.05; done; exit 1"
            ),
        ),
    );
    let a_run = wait_run(&server, &a, Duration::from_secs(20), ended);
    let b_run = wait_run(&server, &b, Duration::from_secs(20), ended);
    assert_eq!(a_run["run"]["status"], "succeeded", "{a_run}");
    assert_eq!(b_run["run"]["status"], "succeeded", "{b_run}");
    assert_eq!(a_run["run"]["worker_id"], "worker-project-a");
    assert_eq!(b_run["run"]["worker_id"], "worker-project-b");
    let first = worker(&server, "worker-project-a");
    let other = worker(&server, "worker-project-b");
    assert_ne!(first["pid"], other["pid"], "two processes");
    assert_eq!(first["node_id"], "test-node");

    let again = submit(&server, &dag("proj-a-two", "echo again"));
    let again = wait_run(&server, &again, Duration::from_secs(20), ended);
    assert_eq!(again["run"]["status"], "succeeded");
    let reused = worker(&server, "worker-project-a");
    assert_eq!(
        reused["pid"], first["pid"],
        "the same worker process ran it"
    );
    assert_eq!(reused["runs_done"], 2);
    assert_eq!(reused["status"], "idle");
}

#[test]
fn a_worker_killed_mid_task_is_replaced_and_the_dag_completes_with_the_task_retried() {
    let data = tempfile::tempdir().unwrap();
    let lease = Duration::from_secs(2);
    let shared = shared_dir();
    let config = config_binding(data.path(), shared.path());
    let server = serve_with(
        data.path(),
        &["--lease", "2s", "--config", config.to_str().unwrap()],
    );
    let marker = shared.path().join("started");
    let beat = shared.path().join("beat");
    // The first attempt keeps a heartbeat going; the second (after the crash) checks that
    // nothing of the first still runs, and finishes.
    let script = format!(
        "if [ -e {m} ]; then a=$(cat {b}); sleep 0.3; [ \"$a\" = \"$(cat {b})\" ] || {{ echo overlap; exit 1; }}; echo second; \
         else touch {m}; while :; do date +%s%N > {b}; sleep 0.05; done; fi",
        m = marker.display(),
        b = beat.display()
    );
    // A worker's death is a failed attempt: the task needs a retry to run again.
    let mut crash = dag("proj-c-crash", &script);
    crash["tasks"][0]["retry"] = serde_json::json!({"limit": 1});
    let run_id = submit(&server, &crash);
    wait_run(&server, &run_id, Duration::from_secs(20), |r| {
        r["tasks"][0]["status"] == "running"
    });
    while !beat.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = worker(&server, "worker-project-c")["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Nothing stays Running beyond the lease and 5 seconds.
    let done = wait_run(&server, &run_id, lease + Duration::from_secs(5), ended);
    assert_eq!(done["run"]["status"], "succeeded", "{done}");
    assert_eq!(done["tasks"][0]["status"], "succeeded");
    assert_eq!(
        done["tasks"][0]["attempt"], 2,
        "the task was retried: {done}"
    );
    let replacement = worker(&server, "worker-project-c");
    assert_ne!(
        replacement["pid"].as_i64(),
        Some(pid),
        "a new worker took over"
    );
    let (_, logs) = http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        "",
    );
    assert_eq!(logs["logs"][0]["line"], "second");
    // The first attempt died with its worker (its sandbox's --die-with-parent).
    let before = std::fs::read_to_string(&beat).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&beat).unwrap(),
        before,
        "an orphan runs on"
    );
}

#[test]
fn a_second_worker_with_the_same_id_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let mut first = cascade()
        .args([
            "worker",
            "run",
            "--id",
            "worker-global",
            "--scope",
            "global",
            "--data-dir",
        ])
        .arg(data.path())
        .env("CASCADE_LOG", "warn")
        .spawn()
        .unwrap();
    let lock = data.path().join("workers/worker-global.lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string() {
        assert!(
            Instant::now() < deadline,
            "the first worker never took its lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = cascade()
        .args([
            "worker",
            "run",
            "--id",
            "worker-global",
            "--scope",
            "global",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "worker `worker-global` is already running as pid {}",
            first.id()
        )),
        "{stderr}"
    );
    // A worker id that is not its scope's is refused too.
    let wrong = cascade()
        .args([
            "worker",
            "run",
            "--id",
            "worker-x",
            "--scope",
            "project:a",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("worker id `worker-x` does not belong to scope `project:a`"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn a_cancel_stops_a_running_dag_and_a_second_cancel_is_a_conflict() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    let running = submit(&server, &dag("proj-d-long", "sleep 60"));
    wait_run(&server, &running, Duration::from_secs(20), |r| {
        r["tasks"][0]["status"] == "running"
    });
    let (status, body) = http(
        &server.addr,
        "POST",
        &format!("/api/v1/runs/{running}/cancel"),
        "",
    );
    assert_eq!((status, body["status"].as_str()), (202, Some("cancelling")));
    let done = wait_run(&server, &running, Duration::from_secs(10), ended);
    assert_eq!(done["run"]["status"], "cancelled", "{done}");
    assert_eq!(done["tasks"][0]["status"], "cancelled");
    let (status, body) = http(
        &server.addr,
        "POST",
        &format!("/api/v1/runs/{running}/cancel"),
        "",
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already ended (cancelled)")
    );
    assert_eq!(
        http(&server.addr, "POST", "/api/v1/runs/nope/cancel", "").0,
        404
    );
}

#[test]
fn the_pool_caps_workers_and_stops_the_least_recently_used_idle_one() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &["--max-workers", "1"]);
    let a = submit(&server, &dag("proj-e-one", "true"));
    wait_run(&server, &a, Duration::from_secs(20), ended);
    let first = worker(&server, "worker-project-e");
    let b = submit(&server, &dag("proj-f-one", "true"));
    let b = wait_run(&server, &b, Duration::from_secs(20), ended);
    assert_eq!(b["run"]["status"], "succeeded");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(first["pid"].as_i64().unwrap()) {
        assert!(Instant::now() < deadline, "the idle worker was not stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(worker(&server, "worker-project-e")["status"], "stopped");
}

#[test]
fn workers_exit_when_serve_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let mut server = serve_with(data.path(), &[]);
    let a = submit(&server, &dag("proj-g-one", "sleep 60"));
    wait_run(&server, &a, Duration::from_secs(20), |r| {
        r["tasks"][0]["status"] == "running"
    });
    let pid = worker(&server, "worker-project-g")["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = server.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the worker outlived its parent");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its run went back to the queue; the next server finishes... by cancelling it here.
    let server = serve_with(data.path(), &[]);
    let body = run(&server, &a);
    assert!(
        matches!(body["run"]["status"].as_str(), Some("queued" | "running")),
        "{body}"
    );
    let (status, _) = http(
        &server.addr,
        "POST",
        &format!("/api/v1/runs/{a}/cancel"),
        "",
    );
    assert!(status == 200 || status == 202);
    wait_run(&server, &a, Duration::from_secs(10), ended);
}

#[test]
fn dag_commands_work_against_the_server_and_the_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    let url = format!("http://{}", server.addr);
    let out = succeeded(
        cascade()
            .args([
                "dag",
                "submit",
                "examples/dags/proj-a-nightly.json",
                "--output",
                "json",
                "--server",
                &url,
            ])
            .env("CASCADE_TOKEN", &server.token),
    );
    let submitted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = submitted["run_id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["worker_id"], "worker-project-proj-a");
    wait_run(&server, &run_id, Duration::from_secs(20), ended);

    let json = |args: &[&str]| -> Value {
        let out = cascade()
            .args(args)
            .args(["--output", "json"])
            .env("CASCADE_TOKEN", &server.token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let list = json(&["dag", "list", "--server", &url]);
    assert_eq!(list[0]["dag_id"], "proj-a-nightly");
    assert_eq!(list[0]["status"], "succeeded");
    assert_eq!(list[0]["owner_node"], "test-node");
    assert_eq!(
        json(&["dag", "list", "--status", "failed", "--server", &url]),
        serde_json::json!([])
    );
    let status = json(&["dag", "status", "proj-a-nightly", "--server", &url]);
    assert_eq!(status["scope"], "project:proj-a");
    assert_eq!(status["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(status["latest_tasks"][0]["status"], "succeeded");
    let logs = json(&["dag", "logs", "proj-a-nightly", "--server", &url]);
    assert!(!logs["logs"].as_array().unwrap().is_empty(), "{logs}");
    let workers = json(&["dag", "worker", "list", "--server", &url]);
    assert_eq!(workers[0]["worker_id"], "worker-project-proj-a");
    let one = json(&[
        "dag",
        "worker",
        "status",
        "worker-project-proj-a",
        "--server",
        &url,
    ]);
    assert_eq!(one["runs"][0]["run_id"], run_id.as_str());

    // The same answers straight from the data dir, without the server.
    let dir = data.path().to_str().unwrap();
    let from_dir = json(&["dag", "status", "proj-a-nightly", "--data-dir", dir]);
    assert_eq!(from_dir["runs"], status["runs"]);
    let table = cascade()
        .args(["dag", "list", "--data-dir", dir])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("DAG_ID          SCOPE           STATUS     OWNER_NODE  CREATED"),
        "{table}"
    );
    // Unknown ids are not found (exit 4) and say what to do.
    let missing = cascade()
        .args(["dag", "status", "nope", "--data-dir", dir])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("no DAG `nope`; `cascade dag list` lists the DAGs")
    );
}

/// Every `status`/`state` field under `value`, with its path.
fn status_words(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let at = format!("{path}.{key}");
                match (key.as_str(), v) {
                    ("status" | "state", Value::String(word)) => out.push((at, word.clone())),
                    _ => status_words(v, &at, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                status_words(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The one vocabulary (DESIGN §6): every run status and task state that the API, the
/// `dag` commands and a local `cascade run`'s records show is a word of cascade-plan's
/// `RunStatus` or `TaskState`, and a finished run is `succeeded` wherever it ran.
#[test]
fn every_status_word_shown_comes_from_the_one_vocabulary() {
    use cascade_plan::{RunStatus, TaskState};
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    let dag = serde_json::json!({"dag_id": "words", "tasks": [
        {"id": "a", "run": "true"},
        {"id": "b", "run": "false", "needs": ["a"]},
        {"id": "c", "run": "true", "needs": ["b"]},
    ]});
    let failing = submit(&server, &dag);
    let passing = submit(
        &server,
        &serde_json::json!({"dag_id": "fine", "tasks": [{"id": "ok", "run": "true"}]}),
    );
    let mut seen = Vec::new();
    for run_id in [&failing, &passing] {
        let body = wait_run(&server, run_id, Duration::from_mins(1), ended);
        status_words(&body, &format!("runs/{run_id}"), &mut seen);
    }
    let done = run(&server, &passing);
    assert_eq!(done["run"]["status"], RunStatus::Succeeded.as_str());
    let (_, dags) = http(&server.addr, "GET", "/api/v1/dags", "");
    status_words(&dags, "dags", &mut seen);
    let out = cascade()
        .args(["dag", "list", "--output", "json", "--server"])
        .arg(format!("http://{}", server.addr))
        .env("CASCADE_TOKEN", &server.token)
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    status_words(&listed, "dag list", &mut seen);
    // A local run, recorded and read back.
    let local = tempfile::tempdir().unwrap();
    std::fs::write(
        local.path().join("ci.yaml"),
        "name: w\njobs:\n  a: { run: 'true' }\n  b: { needs: [a], run: 'false' }\n  c: { needs: [b], run: 'true' }\n",
    )
    .unwrap();
    let ran = cascade()
        .current_dir(local.path())
        .args(["run", "ci.yaml"])
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(1));
    let out = cascade()
        .current_dir(local.path())
        .args(["runs", "--output", "json"])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    status_words(&runs, "runs", &mut seen);
    assert!(seen.len() >= 8, "{seen:?}");
    for (path, word) in &seen {
        assert!(
            RunStatus::parse(word).is_some() || TaskState::parse(word).is_some(),
            "{path} is `{word}`, not a word of RunStatus or TaskState"
        );
    }
    for word in ["succeeded", "failed", "skipped"] {
        assert!(
            seen.iter().any(|(_, w)| w == word),
            "no `{word}` in {seen:?}"
        );
    }
}

/// `cascade dag logs --follow` against a server: started while the task runs (after its
/// first line, before its second, written 3 s later), it prints each line once and returns
/// when the run ends. The API's `after=SEQ` gives only the lines after one already seen.
#[test]
fn dag_logs_follow_prints_each_line_once_and_ends_with_the_run() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    let dag = serde_json::json!({"dag_id": "follow", "tasks": [{"id": "talk",
        "run": "echo one; sleep 3; echo two"}]});
    let run_id = submit(&server, &dag);
    // The first line is there before the follower starts.
    let deadline = Instant::now() + Duration::from_mins(1);
    while http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        "",
    )
    .1["logs"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "no log line came");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut follower = cascade()
        .args(["dag", "logs", "follow", "--follow", "--server"])
        .arg(format!("http://{}", server.addr))
        .env("CASCADE_TOKEN", &server.token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    while follower.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = follower.kill();
            panic!("`dag logs --follow` did not end with the run");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" │ "))
        .map(|l| l.rsplit(" │ ").next().unwrap_or_default())
        .collect();
    assert_eq!(lines, ["one", "two"], "{stdout}");
    assert!(ended(&wait_run(
        &server,
        &run_id,
        Duration::from_secs(30),
        ended
    )));
    // `after=SEQ`: the lines after the first one.
    let (_, all) = http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        "",
    );
    let first = all["logs"][0]["seq"].as_i64().unwrap();
    let (status, later) = http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs?after={first}"),
        "",
    );
    assert_eq!(status, 200, "{later}");
    let texts: Vec<&str> = later["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["line"].as_str())
        .collect();
    assert_eq!(texts, ["two"], "{later}");
}
