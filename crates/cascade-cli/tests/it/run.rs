//! `cascade run`, `runs`, `logs` and `changed` as a user runs them: real processes, a
//! real `SQLite` file, a real git repository.

use crate::cascade;
use cascade_test::git;

#[test]
fn run_hello_example_and_read_it_back() {
    let data = tempfile::tempdir().unwrap();
    let out = cascade()
        .args(["run", "examples/hello.yaml", "--jobs", "2"])
        .env("CASCADE_DATA_DIR", data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim_end().ends_with("4 passed, 0 failed, 0 skipped"),
        "{stdout}"
    );
    crate::assert_run_snapshot!(stdout);

    let runs = cascade()
        .args(["runs", "--output", "json"])
        .env("CASCADE_DATA_DIR", data.path())
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["dag_id"], "hello");

    let logs = cascade()
        .args(["logs", "last", "work"])
        .env("CASCADE_DATA_DIR", data.path())
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("work[1] │ hello from beta"), "{logs}");
    assert!(!logs.contains("summary"), "only the work job: {logs}");
}

#[test]
fn a_failing_run_exits_1_and_json_output_is_one_event_per_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  bad: { run: echo oops; exit 3 }\n  after: { needs: [bad], run: echo never }\n",
    )
    .unwrap();
    let out = cascade()
        .args(["run", "ci.yaml", "--output", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    let last = events.last().unwrap();
    assert_eq!(
        (
            last["event"].as_str(),
            last["outcome"].as_str(),
            last["failed"].as_u64(),
            last["skipped"].as_u64()
        ),
        (Some("run_finished"), Some("failed"), Some(1), Some(1))
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "task_log" && e["line"] == "oops")
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "task_finished" && e["exit_code"] == 3)
    );
}

#[test]
fn ctrl_c_cancels_cleanly_runs_always_jobs_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  long: { run: 'echo started; sleep 30' }\n  cleanup: { needs: [long], if: always(), run: 'echo cleaned > cleaned' }\n",
    )
    .unwrap();
    let mut child = cascade()
        .args(["run", "ci.yaml", "--output", "json", "--kill-grace", "1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the long job has started (its first log line), then press Ctrl-C.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "run ended before the job started"
        );
        if line.contains("\"started\"") {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(dir.path().join("cleaned").exists(), "the always() job ran");
    assert!(rest.contains("\"outcome\":\"cancelled\""), "{rest}");
}

#[test]
fn a_missing_secret_fails_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  a: { run: touch ran, secrets: [NOPE_TOKEN] }\n",
    )
    .unwrap();
    let out = cascade()
        .args(["run", "ci.yaml"])
        .current_dir(dir.path())
        .env_remove("NOPE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("secrets not set: NOPE_TOKEN; export them or put them in a --secrets-file")
    );
    assert!(!dir.path().join("ran").exists());
}

#[test]
fn an_unknown_runner_names_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  a: { run: touch ran, runner: huge }\n",
    )
    .unwrap();
    let out = cascade()
        .args(["run", "ci.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("job `a` asks for runner `huge`, which the admin config does not define (known runners: small, medium, large)"), "{err}");
    assert!(!dir.path().join("ran").exists());
}

/// A monorepo with three packages; a change touches only `core` and `web`.
fn monorepo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for p in ["core", "web", "cli"] {
        std::fs::create_dir_all(root.join("packages").join(p)).unwrap();
        std::fs::write(root.join("packages").join(p).join("lib.txt"), "v1\n").unwrap();
    }
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/index.md"), "docs\n").unwrap();
    git(root, &["init", "-q"]);
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "base"]);
    git(root, &["branch", "base"]);
    std::fs::write(root.join("packages/core/lib.txt"), "v2\n").unwrap();
    std::fs::write(root.join("packages/web/lib.txt"), "v2\n").unwrap();
    git(root, &["commit", "-qam", "change core and web"]);
    dir
}

#[test]
fn changed_lists_only_the_touched_packages() {
    let repo = monorepo();
    let out = cascade()
        .args([
            "changed",
            "--base",
            "base",
            "--head",
            "HEAD",
            "--pattern",
            "packages/*",
        ])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["core","web"]"#
    );
    let out = cascade()
        .args(["changed", "--base", "nope"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn in_a_monorepo_only_changed_packages_are_linted() {
    let repo = monorepo();
    let bin = env!("CARGO_BIN_EXE_cascade");
    std::fs::write(
        repo.path().join("ci.yaml"),
        format!(
            "jobs:\n  detect:\n    run: {bin} changed --base base --head HEAD --pattern 'packages/*'\n    outputs: {{ packages: stdout-json }}\n  lint:\n    needs: [detect]\n    for_each: ${{{{ needs.detect.outputs.packages }}}}\n    run: echo ${{{{ item }}}} >> linted\n  docs:\n    paths: ['docs/**']\n    run: touch docs-built\n"
        ),
    )
    .unwrap();
    let out = cascade()
        .args([
            "run", "ci.yaml", "--base", "base", "--head", "HEAD", "-j", "1",
        ])
        .current_dir(repo.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("linted")).unwrap(),
        "core\nweb\n"
    );
    assert!(!repo.path().join("docs-built").exists());
    assert!(
        stdout.contains("docs  ") && stdout.contains("skipped"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("2 passed, 0 failed, 1 skipped"),
        "{stdout}"
    );
}

#[test]
fn a_dag_json_runs_like_a_pipeline() {
    let data = tempfile::tempdir().unwrap();
    let out = cascade()
        .args(["run", "examples/dags/proj-a-nightly.json"])
        .env("CASCADE_DATA_DIR", data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim_end().ends_with("3 passed, 0 failed, 0 skipped"),
        "{stdout}"
    );
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("d.json"),
        "{\"tasks\": [{\"id\": \"a\", \"run\": \"x\", \"needs\": [\"b\"]}]}",
    )
    .unwrap();
    let out = cascade()
        .args(["validate", "d.json"])
        .current_dir(bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("d.json:1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn expressions_where_bash_would_evaluate_them_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "on: { workflow_dispatch: { inputs: { value: { default: '1' } } } }\njobs:\n  a: { shell: bash, run: 'echo $(( ${{ inputs.value }} + 1 ))' }\n  b: { shell: bash, run: 'if [[ ${{ inputs.value }} -gt 3 ]]; then echo big; fi' }\n",
    )
    .unwrap();
    let out = cascade()
        .args(["validate", "ci.yaml", "--output", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "job `a`: `${{ inputs.value }}` inside shell arithmetic `$(( ))` would be parsed as code a second time",
            "job `b`: `${{ inputs.value }}` inside a `[[ ]]` test would be parsed as code a second time",
        ]
    );
    assert!(
        report["errors"][0]["help"]
            .as_str()
            .unwrap()
            .contains("pass the value through `env:`")
    );
    assert_eq!(
        (
            report["errors"][0]["line"].as_u64(),
            report["errors"][0]["column"].as_u64()
        ),
        // At the `${{` itself, not at the start of the script.
        (Some(3), Some(36))
    );
    let out = cascade()
        .args(["run", "ci.yaml", "--input", "value=a[$(touch pwned)]"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("pwned").exists());
}

#[test]
fn a_second_ctrl_c_kills_every_task_before_exiting() {
    let dir = tempfile::tempdir().unwrap();
    // Unique to this run, so no other process can match the check at the end.
    let marker = format!(
        "marker-{}",
        dir.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    // The cleanup job ignores SIGTERM, so the first Ctrl-C leaves it running.
    std::fs::write(
        dir.path().join("ci.yaml"),
        format!("jobs:\n  long: {{ run: 'echo started; sleep 30' }}\n  cleanup: {{ needs: [long], if: always(), run: \"trap '' TERM; echo cleaning; sleep 30; echo {marker}\" }}\n"),
    )
    .unwrap();
    let mut child = cascade()
        .args(["run", "ci.yaml", "--output", "json", "--kill-grace", "30"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut wait_for = |needle: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
                "ended before {needle}"
            );
            if line.contains(needle) {
                return;
            }
        }
    };
    wait_for("\"started\"");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    wait_for("\"cleaning\"");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // No `sleep 30` of ours is left: the cleanup job's group was killed.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ps = std::process::Command::new("pgrep")
        .args(["-f", "trap '' TERM; echo cleaning"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "a task outlived cascade"
    );
}
