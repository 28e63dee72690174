//! What a user reads, as snapshots of exit code, stdout and stderr (uv's `uv_snapshot!`
//! style): the `--help` of every command, the listings (`runs`, `logs`, `dag list`,
//! `dag status`, `events`), and the exit codes of the cases issue 14 found inconsistent.

use crate::{cascade, transcript};
use std::path::Path;
use std::process::Command;

/// A transcript with what changes from run to run replaced: run ids, times, temp paths.
macro_rules! assert_screen {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => vec![
            (r"\b[0-9a-z]{8,11}-[0-9a-z]{1,6}\b", "[run-id]"),
            // A time inside a table: its width (and so its column's) varies.
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:[\d.]+Z {2,}", "[ts]  "),
            (r"\b(RECEIVED|CREATED|STARTED) {2,}", "$1  "),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:[\d.]+Z", "[ts]"),
            (r"\b\d+\.\d+s\b", "[time]"),
            (r"/tmp/\.tmp[0-9A-Za-z]+", "[tmp]"),
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
            (r"'\x22[^']*/\.kube/config\x22'", "'\"[home]/.kube/config\"'"),
        ]}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

/// The subcommands listed under `Commands:` of a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_of_every_command() {
    // Walks the command tree as a user would: each help names the commands below it.
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        // No CASCADE_* variables, no COLUMNS: the help as a fresh shell shows it.
        let out = cascade()
            .env_clear()
            .env("NO_COLOR", "1")
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{path:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        let name = if path.is_empty() {
            "help_cascade".to_owned()
        } else {
            format!("help_{}", path.join("_"))
        };
        insta::assert_snapshot!(name, help);
        seen += 1;
    }
    assert!(seen > 30, "walked only {seen} commands");
}

/// A directory with a pipeline whose run has stdout, stderr and a retried job.
fn recorded_run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "name: screens\njobs:\n  build:\n    run: echo building; echo 'a warning' >&2\n  flaky:\n    needs: [build]\n    retry: { limit: 1, backoff: 1s }\n    run: if [ -e marker ]; then echo second try; else touch marker; echo first try; exit 1; fi\n",
    )
    .unwrap();
    crate::succeeded(at(dir.path()).args(["run", "ci.yaml", "--jobs", "1"]));
    dir
}

/// `cascade` in `dir`, its data dir `.cascade` there.
fn at(dir: &Path) -> Command {
    let mut cmd = cascade();
    cmd.current_dir(dir).env_remove("CASCADE_DATA_DIR");
    cmd
}

#[test]
fn runs_and_logs() {
    let dir = recorded_run();
    let screens = [
        ("runs_table", &["runs"][..]),
        ("logs_of_a_run", &["logs", "last"]),
        (
            "logs_with_timestamps",
            &["logs", "last", "flaky", "--timestamps"],
        ),
        (
            "logs_of_a_job_it_does_not_have",
            &["logs", "last", "nosuchjob"],
        ),
        ("logs_of_a_run_that_does_not_exist", &["logs", "nosuch-run"]),
    ];
    for (name, args) in screens {
        assert_screen!(name, transcript(at(dir.path()).args(args)));
    }
}

#[test]
fn logs_follow_a_running_run_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  slow:\n    run: echo one; while [ ! -e go ]; do sleep 0.1; done; echo two\n",
    )
    .unwrap();
    let mut run = at(dir.path())
        .args(["run", "ci.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The run is recorded and has written its first line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !at(dir.path())
        .args(["logs", "last"])
        .output()
        .unwrap()
        .stdout
        .starts_with(b"\xe2\x94\x80")
    {
        assert!(std::time::Instant::now() < deadline, "the run never logged");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let follow = at(dir.path())
        .args(["logs", "last", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert!(run.wait().unwrap().success());
    let out = follow.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Both lines: the one written before it started following, and the one after.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "── slow · attempt 1 ──\nslow │ one\nslow │ two\n"
    );
}

#[test]
fn dag_list_and_status() {
    let dir = tempfile::tempdir().unwrap();
    crate::succeeded(
        at(dir.path())
            .arg("dag")
            .arg("submit")
            .arg(crate::root().join("examples/dags/proj-a-nightly.json")),
    );
    assert_screen!("dag_list", transcript(at(dir.path()).args(["dag", "list"])));
    assert_screen!(
        "dag_status",
        transcript(at(dir.path()).args(["dag", "status", "proj-a-nightly"]))
    );
    assert_screen!(
        "dag_status_of_a_dag_that_does_not_exist",
        transcript(at(dir.path()).args(["dag", "status", "nope"]))
    );
    assert_screen!(
        "dag_logs_of_a_dag_that_does_not_exist",
        transcript(at(dir.path()).args(["dag", "logs", "nope"]))
    );
}

/// A missing file is exit 4 (not found) for every command that reads one.
#[test]
fn a_missing_file_is_not_found_for_every_command() {
    for command in ["validate", "run", "graph", "argo render", "dag submit"] {
        let mut cmd = cascade();
        cmd.args(command.split(' ')).arg("no/such.yaml");
        assert_screen!(
            format!("missing_file_{}", command.replace(' ', "_")),
            transcript(&mut cmd)
        );
    }
}

#[test]
fn argo_submit_without_a_kubeconfig_says_what_to_do_once() {
    let home = tempfile::tempdir().unwrap();
    let out = transcript(
        cascade()
            .args(["argo", "submit", "examples/hello.yaml"])
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", home.path()),
    );
    assert_eq!(out.matches("No such file or directory").count(), 1, "{out}");
    assert_screen!("argo_submit_without_kubeconfig", out);
}

#[test]
fn a_scheduled_pipeline_renders_as_a_schedule_event() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nightly.yaml"),
        "on: { schedule: [{ cron: \"0 3 * * *\" }] }\njobs:\n  a: { run: echo a }\n",
    )
    .unwrap();
    let out = crate::succeeded(at(dir.path()).args(["argo", "render", "nightly.yaml"]));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("kind: CronWorkflow"), "{yaml}");
    assert!(
        yaml.contains("- name: event\n        value: schedule\n"),
        "{yaml}"
    );
    assert!(!yaml.contains("value: manual"), "{yaml}");
    // Rendering is not submitting, and does not talk about it (it once said "nothing was
    // submitted"): the manifest on stdout, nothing on stderr.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn a_server_dispatch_nobody_listens_to_and_a_dag_submit_that_waits() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    crate::gitops::repo(
        &src,
        &[(
            "ci.yaml",
            "on: { repository_dispatch: { types: [\"build:start\"] } }\njobs:\n  build: { run: echo built }\n",
        )],
    );
    let config = format!(
        "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"file://{}\"\npipeline = \"ci.yaml\"\n",
        src.display()
    );
    let server = crate::gitops::serve(dir.path(), &config, &[]);
    let url = format!("http://{}", server.addr);
    let with_server = |args: &[&str]| {
        let mut cmd = at(dir.path());
        cmd.args(args)
            .args(["--server", &url])
            .env("CASCADE_TOKEN", &server.token);
        transcript(&mut cmd)
    };
    let nobody = with_server(&[
        "dispatch",
        "build:stert",
        "--payload",
        r#"{"task_id": "T-1"}"#,
    ]);
    assert!(nobody.starts_with("exit: 2\n"), "{nobody}");
    assert_screen!("dispatch_nobody_listens", nobody);
    let heard = with_server(&[
        "dispatch",
        "build:start",
        "--payload",
        r#"{"task_id": "T-2"}"#,
    ]);
    assert!(heard.starts_with("exit: 0\n"), "{heard}");
    assert_screen!("events_table", with_server(&["events"]));

    std::fs::write(
        dir.path().join("ok.json"),
        r#"{"dag_id": "waits", "tasks": [{"id": "hello", "run": "echo hello"}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"dag_id": "fails", "tasks": [{"id": "boom", "run": "exit 3"}]}"#,
    )
    .unwrap();
    // How many states a poll sees on the way depends on timing: only the last ones stay.
    let ended = |text: String| -> String {
        text.lines()
            .filter(|l| !l.ends_with(": queued") && !l.ends_with(": running"))
            .fold(String::new(), |mut kept, l| {
                kept.push_str(l);
                kept.push('\n');
                kept
            })
    };
    assert_screen!(
        "dag_submit_wait_succeeded",
        ended(with_server(&["dag", "submit", "ok.json", "--wait"]))
    );
    assert_screen!(
        "dag_submit_wait_failed",
        ended(with_server(&["dag", "submit", "bad.json", "--wait"]))
    );
    assert_screen!(
        "dag_logs_of_a_server_run",
        with_server(&["dag", "logs", "waits"])
    );
}
