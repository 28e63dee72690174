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
        stdout
            .trim_end()
            .ends_with("jobs: 4 passed, 0 failed, 0 skipped"),
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
    crate::interrupt_at(&child, &mut stdout, "\"started\"");
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
        stdout
            .trim_end()
            .ends_with("jobs: 2 passed, 0 failed, 1 skipped"),
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
        stdout
            .trim_end()
            .ends_with("jobs: 3 passed, 0 failed, 0 skipped"),
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

/// A pipeline with a failure, an allowed failure (a timeout) and what they hold up.
const FAILING: &str = "jobs:\n  build: { run: 'for i in $(seq 1 25); do echo \"line $i\"; done; exit 3' }\n  lint: { run: 'echo linting; sleep 5', timeout: 300ms, continue_on_error: true }\n  deploy: { needs: [build], run: echo never }\n  docs: { needs: [lint], run: echo docs }\n";

#[test]
fn a_run_starts_with_its_id_and_ends_with_what_failed_and_an_honest_count() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.yaml"), FAILING).unwrap();
    let transcript = crate::transcript(
        cascade()
            .args(["run", "ci.yaml", "-j", "1", "--kill-grace", "1"])
            .current_dir(dir.path())
            .env_remove("CASCADE_DATA_DIR"),
    );
    // The id comes first, with the commands that use it while the run goes.
    let stderr = transcript.split("--- stderr\n").nth(1).unwrap();
    let first = stderr.lines().next().unwrap();
    let id = first
        .strip_prefix("▶ run ")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        stderr
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with(&format!("cascade logs {id}"))),
        "{stderr}"
    );
    crate::assert_run_snapshot!(transcript);
}

#[test]
fn the_follow_up_commands_carry_the_flags_they_need() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.yaml"), "jobs:\n  a: { run: echo hi }\n").unwrap();
    let out = cascade()
        .args([
            "run",
            "ci.yaml",
            "--data-dir",
            "my runs",
            "--telemetry",
            "mqtt://127.0.0.1:1",
        ])
        .current_dir(dir.path())
        .env_remove("CASCADE_DATA_DIR")
        .env_remove("CASCADE_ORG_ID")
        .env("CASCADE_PROJECT_ID", "web")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = stderr
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("▶ run "))
        .and_then(|rest| rest.split(':').next())
        .unwrap();
    assert!(
        stderr.contains(&format!(
            "  logs:   cascade logs {id} --data-dir 'my runs'\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "  cancel: Ctrl-C, or cascade control cancel {id} --broker mqtt://127.0.0.1:1 --project web\n"
        )),
        "{stderr}"
    );
    // The hint works as printed.
    let logs = cascade()
        .args(["logs", id, "--data-dir", "my runs"])
        .current_dir(dir.path())
        .env_remove("CASCADE_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("a │ hi"),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
}

#[test]
fn colour_follows_the_flag_then_no_color_then_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  a: { run: echo hi }\n  b: { run: exit 1 }\n",
    )
    .unwrap();
    let run = |args: &[&str], no_color: bool| {
        let mut cmd = cascade();
        cmd.arg("run")
            .arg("ci.yaml")
            .args(args)
            .current_dir(dir.path());
        if !no_color {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // `always` wins over NO_COLOR: green success, red failure, on both streams.
    let (stdout, stderr) = run(&["--color", "always"], true);
    assert!(stdout.contains("\u{1b}[32m1 passed\u{1b}[0m"), "{stdout}");
    assert!(stdout.contains("\u{1b}[31m1 failed\u{1b}[0m"), "{stdout}");
    assert!(stderr.contains("\u{1b}[32m✓ a\u{1b}[0m"), "{stderr}");
    assert!(stderr.contains("\u{1b}[31m✗ b\u{1b}[0m"), "{stderr}");
    // The flag is global: it may come before the command.
    let out = cascade()
        .args(["--color", "always", "run", "ci.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
    // `never`, NO_COLOR, and `auto` into a pipe: no escape at all.
    for (args, no_color) in [
        (&["--color", "never"][..], false),
        (&[][..], true),
        (&[][..], false),
    ] {
        let (stdout, stderr) = run(args, no_color);
        assert!(
            !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
            "{args:?} NO_COLOR={no_color}: {stdout}{stderr}"
        );
    }
    let out = cascade()
        .args(["run", "ci.yaml", "--color", "sometimes"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[possible values: auto, always, never]")
    );
}

/// Runs `cascade` with stdin, stdout and stderr on a pseudo-terminal; returns what the
/// terminal received.
fn on_a_terminal(cmd: &mut std::process::Command) -> (Option<i32>, String) {
    use std::io::Read;
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = cmd
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    // Our copies of the slave (the command keeps what it was given) are dropped, so the
    // master reads an error once the child's are closed.
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut master = std::fs::File::from(pty.master);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let code = child.wait().unwrap().code();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn on_a_terminal_the_total_is_known_from_the_start_and_grows_with_a_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    // detect, each (one until it expands to three), last: 3 tasks, then 5.
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  detect: { run: \"sleep 0.5; echo '[1, 2, 3]'\", outputs: { p: stdout-json } }\n  each: { needs: [detect], for_each: '${{ needs.detect.outputs.p }}', run: 'sleep 0.3' }\n  last: { needs: [each], run: echo done }\n",
    )
    .unwrap();
    let (code, screen) = on_a_terminal(
        cascade()
            .args(["run", "ci.yaml", "-j", "1"])
            .current_dir(dir.path()),
    );
    assert_eq!(code, Some(0), "{screen}");
    let totals: Vec<&str> = screen
        .match_indices(" done · ")
        .filter_map(|(at, _)| {
            let counts = screen[..at]
                .rsplit(|c: char| !c.is_ascii_digit() && c != '/')
                .next()?;
            counts.split_once('/').map(|(_, total)| total)
        })
        .collect();
    let totals: Vec<u32> = totals.iter().map(|t| t.parse().unwrap()).collect();
    // Never `0/0`, never shrinking: 3 from the first frame, 5 once `each` expanded.
    assert_eq!(totals.first(), Some(&3), "{screen}");
    assert_eq!(totals.last(), Some(&5), "{totals:?}");
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
    // In colour on a terminal.
    assert!(screen.contains("\u{1b}[32m✓ detect"), "{screen}");
}

#[test]
fn after_ctrl_c_what_never_started_counts_as_cancelled_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  long: { run: 'echo started; sleep 30' }\n  next: { needs: [long], run: echo never }\n  cleanup: { needs: [long], if: always(), run: echo cleaned }\n",
    )
    .unwrap();
    let mut child = cascade()
        .args(["run", "ci.yaml", "--kill-grace", "1", "-j", "1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    crate::interrupt_at(&child, &mut stderr, "long │ started");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{rest}");
    assert!(
        rest.contains("⊘ next cancelled: the run was cancelled\n"),
        "{rest}"
    );
    // Nothing failed, so nothing is replayed.
    assert!(!rest.contains("✗"), "{rest}");
    crate::assert_run_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn kill_9_of_cascade_run_takes_the_jobs_processes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // The job's shell, a child and a grandchild, each writing its pid.
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  hold:\n    run: |\n      echo $$ > pids\n      sleep 300 &\n      echo $! >> pids\n      sh -c 'echo $$ >> pids; sleep 300 & echo $! >> pids; wait' &\n      echo started\n      wait\n",
    )
    .unwrap();
    let mut child = cascade()
        .args(["run", "ci.yaml", "--output", "json"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("\"started\"") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0);
    }
    let read_pids = || -> Vec<i32> {
        std::fs::read_to_string(dir.path().join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while read_pids().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "{:?}", read_pids());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pids = read_pids();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?}");
    child.kill().unwrap(); // SIGKILL: no handler of cascade runs.
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut left: Vec<i32> = pids.clone();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left.retain(|&p| alive(p));
    }
    for &pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(left.is_empty(), "outlived cascade: {left:?} of {pids:?}");
}

#[test]
fn jobs_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  a: { run: touch ran }\n",
    )
    .unwrap();
    crate::assert_run_snapshot!(crate::transcript(
        cascade()
            .args(["run", "ci.yaml", "--jobs", "0"])
            .current_dir(dir.path())
    ));
    assert!(!dir.path().join("ran").exists());
}

/// `--capacity cpu=2`: two jobs weighing `cpu: 2` each never run at the same time, even
/// with slots for both; a resource the engine does not know is refused before anything runs.
#[test]
fn capacity_flag_is_the_engines_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let job = |name: &str| {
        format!(
            "  {name}:\n    resources: {{ cpu: 2 }}\n    run: date +%s.%N > {name}.start; sleep 1; date +%s.%N > {name}.end\n"
        )
    };
    std::fs::write(
        dir.path().join("ci.yaml"),
        format!("jobs:\n{}{}", job("a"), job("b")),
    )
    .unwrap();
    let out = cascade()
        .args([
            "run",
            "ci.yaml",
            "-j",
            "4",
            "--capacity",
            "cpu=2,memory=1Gi",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let time = |file: &str| -> f64 {
        std::fs::read_to_string(dir.path().join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (a, b) = (
        (time("a.start"), time("a.end")),
        (time("b.start"), time("b.end")),
    );
    assert!(
        a.1 <= b.0 || b.1 <= a.0,
        "the two cpu-2 jobs overlapped on cpu=2: a {a:?}, b {b:?}"
    );

    let out = cascade()
        .args(["run", "ci.yaml", "--capacity", "gpu=1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown resource \"gpu\": expected cpu=N and/or memory=SIZE"),
        "{stderr}"
    );
}

/// `--clean-env`: a job sees PATH and HOME of the caller and its declared secret (masked
/// in its log), not the caller's other variables.
#[test]
fn clean_env_hands_over_only_what_is_declared() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  env:\n    secrets: [CLEAN_ENV_TOKEN]\n    run: echo \"undeclared=${CLEAN_ENV_OTHER:-absent} token=$CLEAN_ENV_TOKEN home=${HOME:+set}\"\n",
    )
    .unwrap();
    let run = |clean: bool| {
        let mut cmd = cascade();
        cmd.args(["run", "ci.yaml"])
            .current_dir(dir.path())
            .env("CLEAN_ENV_OTHER", "visible")
            .env("CLEAN_ENV_TOKEN", "s3cret-value");
        if clean {
            cmd.arg("--clean-env");
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let logs = cascade()
            .args(["logs", "last", "env"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&logs.stdout).into_owned()
    };
    let inherited = run(false);
    assert!(inherited.contains("undeclared=visible"), "{inherited}");
    let clean = run(true);
    assert!(clean.contains("undeclared=absent"), "{clean}");
    assert!(clean.contains("home=set"), "{clean}");
    assert!(
        clean.contains("token=***"),
        "the secret is there, masked: {clean}"
    );
    assert!(!clean.contains("s3cret"), "{clean}");
}
