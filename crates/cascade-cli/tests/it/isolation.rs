//! Job isolation, as processes: jobs run by a real `serve` start from an empty
//! environment in a bubblewrap sandbox (no data dir, config or secrets file, no view of
//! the server), run as `nobody` when the server is root, and die with their worker; a
//! worker's death is a failed attempt of the task it ran. `cascade run` stops `setsid`
//! daemons at the end of a job, with and without `--sandbox`.

use crate::cascade;
use crate::serve::{Server, http, serve_with_env};
use crate::workers::submit;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WEBHOOK_SECRET: &str = "whsec-do-not-leak-4242";
const AWS_KEY: &str = "aws-key-do-not-leak-0000";
const FILE_SECRET: &str = "file-secret-do-not-leak-77";

/// A directory jobs may write to (bound into every sandbox by the config), writable by
/// the user jobs run as.
pub(crate) fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A cascade.toml (in `dir`) binding `shared` into every job.
pub(crate) fn config_binding(dir: &Path, shared: &Path) -> PathBuf {
    let path = dir.join("cascade.toml");
    std::fs::write(
        &path,
        format!("[sandbox]\nbind = [\"{}\"]\n", shared.display()),
    )
    .unwrap();
    path
}

fn run(server: &Server, run_id: &str) -> Value {
    let (status, body) = http(&server.addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
    assert_eq!(status, 200, "{body}");
    body
}

fn wait_ended(server: &Server, run_id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let body = run(server, run_id);
        if matches!(
            body["run"]["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not end: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text of a server run's log lines, in order.
pub(crate) fn log_lines(server: &Server, run_id: &str) -> Vec<String> {
    let (status, body) = http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["line"].as_str().map(str::to_owned))
        .collect()
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn serve_jobs_get_an_empty_environment_and_none_of_the_data_dir_config_or_secrets() {
    let data = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("cascade.toml");
    std::fs::write(&config, "[engine]\ncpu = 2\n").unwrap();
    let secrets = etc.path().join("secrets.env");
    std::fs::write(&secrets, format!("DEPLOY_KEY={FILE_SECRET}\n")).unwrap();
    let server = serve_with_env(
        data.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--secrets-file",
            secrets.to_str().unwrap(),
        ],
        &[
            ("CASCADE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("AWS_SECRET_ACCESS_KEY", AWS_KEY),
        ],
    );
    let d = data.path().display();
    let script = format!(
        "env | sort; \
         for f in {d}/cascade.db {c} {s}; do if [ -e $f ]; then echo \"visible: $f\"; cat $f; else echo \"absent: $f\"; fi; done; \
         echo \"data dir: $(ls -A {d} 2>&1 | tr '\\n' ' ')\"; \
         n=$(for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null | grep -c '^[^ ]*cascade \\(serve\\|worker\\)' || true); \
         echo \"server processes: $n\"; \
         echo \"uid=$(id -u)\"; test -e {e} || echo 'absent: {e}'",
        e = etc.path().display(),
        c = config.display(),
        s = secrets.display(),
    );
    let run_id = submit(
        &server,
        &json!({"dag_id": "proj-iso-env", "tasks": [{"id": "t", "run": script, "env": {"OWN": "mine"}}]}),
    );
    let done = wait_ended(&server, &run_id, Duration::from_secs(30));
    let lines = log_lines(&server, &run_id);
    assert_eq!(done["run"]["status"], "succeeded", "{done} {lines:#?}");
    let text = lines.join("\n");
    for leaked in [
        WEBHOOK_SECRET,
        AWS_KEY,
        FILE_SECRET,
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(!text.contains(leaked), "{leaked} reached the job:\n{text}");
    }
    // The environment is the job's own, the server's address and a minimal base.
    let vars: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    for expected in ["OWN", "PATH", "HOME", "LANG", "LC_ALL", "CASCADE_SERVER"] {
        assert!(vars.contains(&expected), "{expected} missing: {vars:?}");
    }
    assert!(text.contains("OWN=mine") && text.contains("HOME=/home/cascade"));
    for var in &vars {
        assert!(
            var.starts_with("CASCADE")
                || [
                    "CI", "OWN", "PATH", "HOME", "LANG", "LC_ALL", "PWD", "SHLVL", "_"
                ]
                .contains(var),
            "{var} is not the job's: {vars:?}"
        );
    }
    for path in [
        format!("{d}/cascade.db"),
        config.display().to_string(),
        secrets.display().to_string(),
    ] {
        assert!(
            lines.contains(&format!("absent: {path}")),
            "{path}:\n{text}"
        );
    }
    // Of the data dir, only the run's own directory exists inside (and the job may not
    // even list it).
    assert!(
        lines.iter().any(|l| l == "data dir: runs "
            || (l.starts_with("data dir: ") && l.contains("Permission denied"))),
        "{text}"
    );
    // No process of the server is visible: no command line names it.
    assert!(lines.contains(&"server processes: 0".to_owned()), "{text}");
    // The host's /tmp (where the config and the secrets file are) is not the job's.
    assert!(
        lines.contains(&format!("absent: {}", etc.path().display())),
        "{text}"
    );
    if root() {
        assert!(lines.contains(&"uid=65534".to_owned()), "{text}");
    }
}

#[test]
fn a_job_cannot_see_or_kill_the_server_and_its_daemons_end_with_it() {
    let data = tempfile::tempdir().unwrap();
    let shared = shared_dir();
    let etc = tempfile::tempdir().unwrap();
    let config = config_binding(etc.path(), shared.path());
    let server = serve_with_env(data.path(), &["--config", config.to_str().unwrap()], &[]);
    let serve_pid = server.child.id();
    let beat = shared.path().join("beat");
    let script = format!(
        "if [ -e /proc/{serve_pid} ] && grep -q serve /proc/{serve_pid}/cmdline; then echo 'serve visible'; fi; \
         if kill -9 {serve_pid} 2>/dev/null; then echo 'kill worked'; else echo 'kill failed'; fi; \
         echo \"processes: $(ls /proc | grep -c '^[0-9]')\"; \
         setsid sh -c 'while :; do date +%s%N > {b}; sleep 0.05; done' </dev/null >/dev/null 2>&1 & \
         sleep 0.3",
        b = beat.display()
    );
    let run_id = submit(
        &server,
        &json!({"dag_id": "proj-iso-kill", "tasks": [{"id": "t", "run": script}]}),
    );
    let done = wait_ended(&server, &run_id, Duration::from_secs(30));
    let lines = log_lines(&server, &run_id);
    assert_eq!(done["run"]["status"], "succeeded", "{done} {lines:?}");
    assert!(lines.contains(&"kill failed".to_owned()), "{lines:?}");
    assert!(!lines.contains(&"serve visible".to_owned()), "{lines:?}");
    // Its own PID namespace: bwrap's init, the shell, ls and grep (and a command
    // substitution's subshell) are all it can see.
    let count: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("processes: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(count <= 6, "{lines:?}");
    let (status, _) = http(&server.addr, "GET", "/healthz", "");
    assert_eq!(status, 200, "serve is up");
    assert!(
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(serve_pid).unwrap()),
            None
        )
        .is_ok()
    );
    assert_stops_changing(&beat);
}

/// The file a daemon keeps rewriting stays the same from now on.
fn assert_stops_changing(beat: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !beat.exists() {
        assert!(Instant::now() < deadline, "the daemon never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = std::fs::read_to_string(beat).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(400));
    let second = std::fs::read_to_string(beat).unwrap_or_default();
    assert_eq!(first, second, "the daemon outlived its job");
}

#[test]
fn a_task_running_when_its_worker_dies_is_a_failed_attempt_and_its_job_dies_with_the_worker() {
    let data = tempfile::tempdir().unwrap();
    let shared = shared_dir();
    let etc = tempfile::tempdir().unwrap();
    let config = config_binding(etc.path(), shared.path());
    let server = serve_with_env(
        data.path(),
        &["--lease", "2s", "--config", config.to_str().unwrap()],
        &[],
    );
    let dir = shared.path().display();
    // Each attempt counts itself, then keeps a heartbeat going.
    let script =
        format!("echo x >> {dir}/attempts; while :; do date +%s%N > {dir}/beat; sleep 0.05; done");
    let run_id = submit(
        &server,
        &json!({"dag_id": "proj-iso-die", "tasks": [{"id": "t", "run": script}]}),
    );
    let beat = shared.path().join("beat");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !beat.exists() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, workers) = http(&server.addr, "GET", "/api/v1/workers", "");
    let pid = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "worker-project-iso")
        .and_then(|w| w["pid"].as_i64())
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The job died with its worker: no orphan keeps the heartbeat going.
    std::thread::sleep(Duration::from_millis(200));
    assert_stops_changing(&beat);
    // No retry policy: the attempt the worker died in fails the run, which is not run again.
    let done = wait_ended(&server, &run_id, Duration::from_secs(10));
    assert_eq!(done["run"]["status"], "failed", "{done}");
    let task = &done["tasks"][0];
    assert_eq!(task["status"], "failed", "{done}");
    assert_eq!(task["attempt"], 1, "{done}");
    assert!(
        task["error"]
            .as_str()
            .unwrap_or_default()
            .contains("worker running it died"),
        "{done}"
    );
    assert!(
        done["run"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("retry policy allows no other attempt"),
        "{done}"
    );
    let attempts = std::fs::read_to_string(shared.path().join("attempts")).unwrap();
    assert_eq!(attempts.lines().count(), 1, "ran once: {attempts:?}");
}

/// `cascade run` on a job that starts a `setsid` daemon (which writes its pid first).
fn run_with_daemon(sandbox: bool) {
    let work = tempfile::tempdir().unwrap();
    let beat = work.path().join("beat");
    let pid_file = work.path().join("daemon.pid");
    std::fs::write(
        work.path().join("ci.yaml"),
        format!(
            "jobs:\n  start:\n    run: |\n      setsid sh -c 'echo $$ > {p}; while :; do date +%s%N > {b}; sleep 0.05; done' </dev/null >/dev/null 2>&1 &\n      sleep 0.3\n  after:\n    needs: [start]\n    run: echo next\n",
            p = pid_file.display(),
            b = beat.display()
        ),
    )
    .unwrap();
    let mut cmd = cascade();
    cmd.current_dir(work.path())
        .args(["run", "ci.yaml", "--data-dir"])
        .arg(work.path().join(".cascade"));
    if sandbox {
        cmd.arg("--sandbox");
    }
    let out = cmd.output().unwrap();
    let daemon = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    let result = std::panic::catch_unwind(|| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_stops_changing(&beat);
    });
    // On failure the daemon is still there: stop it (inside a sandbox its pid is the
    // namespace's, and the namespace is gone anyway).
    if let (Some(pid), false) = (daemon, sandbox) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn cascade_run_stops_a_setsid_daemon_at_the_end_of_its_job() {
    run_with_daemon(false);
}

#[test]
fn cascade_run_with_sandbox_stops_a_setsid_daemon_at_the_end_of_its_job() {
    run_with_daemon(true);
}

#[test]
fn cascade_run_with_sandbox_keeps_the_job_to_its_workspace() {
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("private"), "x").unwrap();
    std::fs::write(
        work.path().join("ci.yaml"),
        format!(
            "jobs:\n  a:\n    run: |\n      test ! -e {o}/private\n      echo made > here.txt\n      echo \"result=$HOME\" >> \"$CASCADE_OUTPUT\"\n    outputs: {{ result: file }}\n  b:\n    needs: [a]\n    run: test \"${{{{ needs.a.outputs.result }}}}\" = /home/cascade\n",
            o = outside.path().display()
        ),
    )
    .unwrap();
    let out = cascade()
        .current_dir(work.path())
        .args(["run", "ci.yaml", "--sandbox", "--data-dir"])
        .arg(work.path().join(".cascade"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("here.txt")).unwrap(),
        "made\n"
    );
    // Without bwrap on PATH, --sandbox refuses with the command that installs it.
    let out = cascade()
        .current_dir(work.path())
        .env("PATH", "/nonexistent")
        .args(["run", "ci.yaml", "--sandbox", "--data-dir"])
        .arg(work.path().join(".cascade"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("apt-get install bubblewrap"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_worker_without_bwrap_refuses_to_start_and_says_how_to_install_it() {
    let data = tempfile::tempdir().unwrap();
    let out = cascade()
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
        .env("PATH", "/nonexistent")
        .env("CASCADE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot isolate jobs") && stderr.contains("apt-get install bubblewrap"),
        "{stderr}"
    );
    // Nor does `serve`, which would only start workers that cannot run anything.
    let out = cascade()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("PATH", "/nonexistent")
        .env("CASCADE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("apt-get install bubblewrap"), "{stderr}");
}

#[test]
fn a_timed_out_job_in_the_sandbox_gets_sigterm_before_it_is_killed() {
    // bwrap dies of SIGTERM without passing it on: the engine sends it to the job inside.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("ci.yaml"),
        "jobs:\n  a:\n    timeout: 1s\n    run: |\n      trap 'echo got-term > term.txt; exit 0' TERM\n      while :; do sleep 0.05; done\n",
    )
    .unwrap();
    let out = cascade()
        .current_dir(work.path())
        .args([
            "run",
            "ci.yaml",
            "--sandbox",
            "--kill-grace",
            "5",
            "--data-dir",
        ])
        .arg(work.path().join(".cascade"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the timeout fails the job");
    assert_eq!(
        std::fs::read_to_string(work.path().join("term.txt")).unwrap_or_default(),
        "got-term\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
