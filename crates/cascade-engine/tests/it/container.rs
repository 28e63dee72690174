//! `--containers`: a job with `image:` runs in podman with the workspace bound in.
//! Images cannot be pulled here, so the test imports a busybox root filesystem.

use crate::{Setup, run};
use cascade_plan::{RunOutcome, TaskState};
use std::process::Command;

const IMAGE: &str = "localhost/cascade-test-busybox:1";

/// Imports a one-binary busybox image once (the test command installs podman and
/// busybox-static).
fn image() {
    let exists = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .status();
    match exists {
        Ok(s) if s.success() => return,
        Ok(_) => {}
        Err(e) => panic!("podman is needed for this test ({e}); ./scripts/test installs it"),
    }
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/usr/bin/busybox", bin.join("busybox"))
        .expect("busybox-static is needed; ./scripts/test installs it");
    for applet in [
        "sh", "echo", "cat", "touch", "printf", "env", "true", "sleep",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let tar = root.path().join("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&tar)
        .arg("bin")
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("podman")
        .arg("import")
        .arg(&tar)
        .arg(IMAGE)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "podman import: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn a_job_with_an_image_runs_in_podman_with_the_workspace_bound() {
    image();
    let mut secrets = cascade_engine::Secrets::default();
    secrets.insert("TOKEN", "container-secret-value");
    let ran = run(
        &format!(
            r#"
jobs:
  inside:
    image: {IMAGE}
    secrets: [TOKEN]
    env: {{ GREETING: "hello ${{{{ matrix.who }}}}" }}
    matrix: {{ who: [box] }}
    outputs: {{ where: file }}
    run: |
      echo "$GREETING from $CASCADE_WORKSPACE"
      echo "token $TOKEN"
      touch made-in-container
      echo "where=$(cat /proc/1/cgroup >/dev/null 2>&1; echo container)" >> "$CASCADE_OUTPUT"
  outside:
    needs: [inside]
    run: echo "got ${{{{ needs.inside.outputs.where }}}}"
"#
        ),
        Setup {
            secrets,
            containers: true,
            ..Setup::default()
        },
    );
    assert_eq!(
        ran.summary.outcome,
        RunOutcome::Succeeded,
        "{:?}\n{:?}",
        ran.summary.tasks,
        ran.logs()
    );
    assert_eq!(ran.state("inside[0]"), TaskState::Succeeded);
    let logs = ran.logs();
    assert!(
        logs.contains(&"inside[0]: hello box from /workspace".to_owned()),
        "{logs:?}"
    );
    assert!(
        logs.contains(&"inside[0]: token ***".to_owned()),
        "{logs:?}"
    );
    assert!(!logs.join("\n").contains("container-secret-value"));
    assert!(
        ran.dir.path().join("made-in-container").exists(),
        "the workspace is bound in"
    );
    assert!(
        logs.contains(&"outside: got [\"container\"]".to_owned()),
        "{logs:?}"
    );
}

#[test]
fn podman_never_sees_a_value_on_its_command_line() {
    let options = cascade_engine::Options {
        run_id: cascade_plan::RunId::generate(1, 1),
        workspace: "/w".into(),
        run_dir: "/r".into(),
        capacity: cascade_engine::Capacity {
            slots: 1,
            cpu_milli: 1000,
            memory_mib: 1024,
        },
        grace: std::time::Duration::from_secs(1),
        containers: true,
        base_env: Vec::new(),
        env_policy: cascade_engine::EnvPolicy::Inherit,
        sandbox: None,
        config: cascade_spec::config::AdminConfig::default(),
        control: None,
        attempts_used: std::collections::HashMap::new(),
        warm_python: false,
    };
    let env = vec![
        ("TOKEN".into(), "s3cret-value".into()),
        ("CASCADE_EXPR_1".into(), "\"; rm -rf / #".into()),
    ];
    let argv = cascade_engine::container::argv(
        IMAGE,
        cascade_spec::model::Shell::Sh,
        "echo \"${CASCADE_EXPR_1}\"",
        &env,
        std::path::Path::new("/r/a.out"),
        "cascade-run-a",
        &options,
    );
    let text: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(
        !text
            .iter()
            .any(|a| a.contains("s3cret") || a.contains("rm -rf")),
        "{text:?}"
    );
    assert!(text.windows(2).any(|w| w[0] == "--env" && w[1] == "TOKEN"));
    assert!(text.contains(&"--volume=/w:/workspace".to_owned()));
}

#[test]
fn a_timed_out_container_is_removed_not_left_running() {
    image();
    let ran = run(
        &format!("jobs:\n  slow: {{ image: {IMAGE}, run: 'sleep 30', timeout: 1s }}\n"),
        Setup {
            containers: true,
            ..Setup::default()
        },
    );
    assert_eq!(ran.state("slow"), TaskState::Failed);
    let name =
        cascade_engine::container::name(cascade_plan::RunId::generate(1, 1).as_str(), "slow");
    let out = Command::new("podman")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "container {name} is still there"
    );
}
