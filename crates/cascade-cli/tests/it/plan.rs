//! `cascade plan`, `cascade init` and `cascade completions`.

use crate::{cascade, root, transcript};
use std::path::PathBuf;

/// Every pipeline and DAG of examples/ (a new example is covered without a new test).
fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["examples", "examples/dags"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .map(|p| p.strip_prefix(root()).unwrap().to_owned())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    files
}

fn plan_json(file: &std::path::Path) -> String {
    let out = cascade()
        .args(["plan", "--output", "json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The plan document of each example: a snapshot, valid against the committed schema,
/// and the same bytes on a second run.
#[test]
fn plan_json_of_every_example() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("crates/cascade-plan/plan.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for file in examples() {
        let text = plan_json(&file);
        assert_eq!(
            text,
            plan_json(&file),
            "{}: not deterministic",
            file.display()
        );
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["version"], 1);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        // The schema is strict: a missing or an unknown field is refused.
        let mut missing = doc.clone();
        missing["jobs"][0]
            .as_object_mut()
            .unwrap()
            .remove("timeout_ms");
        assert!(!validator.is_valid(&missing), "{}", file.display());
        let mut extra = doc.clone();
        extra["jobs"][0]["colour"] = serde_json::json!("blue");
        assert!(!validator.is_valid(&extra), "{}", file.display());
        let ids: Vec<&str> = doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert!(ids.is_sorted(), "{}: {ids:?}", file.display());
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("plan_json_{name}"), text);
    }
}

/// The human summary of the example with every kind of job, and of the DAG.
#[test]
fn plan_human_summary() {
    for file in [
        "examples/monorepo.yaml",
        "examples/dags/proj-a-nightly.json",
    ] {
        let name = std::path::Path::new(file)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        insta::assert_snapshot!(
            format!("plan_human_{name}"),
            transcript(cascade().args(["plan", file]))
        );
    }
}

#[test]
fn plan_takes_inputs_and_a_job_selection() {
    let text = transcript(cascade().args([
        "plan",
        "examples/release.yaml",
        "--output",
        "json",
        "--input",
        "channel=stable",
        "--job",
        "sign",
    ]));
    let json = text
        .split_once("--- stdout\n")
        .unwrap()
        .1
        .split_once("--- stderr\n")
        .unwrap()
        .0;
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(doc["trigger"]["inputs"]["channel"], "stable");
    let ids: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["build", "sign"]);
    insta::assert_snapshot!(transcript(cascade().args([
        "plan",
        "examples/release.yaml",
        "--input",
        "nope=1"
    ])));
}

/// An invalid file: every problem with its line and column on stderr, nothing on stdout, and the
/// exit code `validate` gives the same file.
#[test]
fn plan_of_an_invalid_file_reports_where_and_exits_like_validate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  build:\n    run: make\n    needs: [lint]\n  test:\n    runs: make test\n",
    )
    .unwrap();
    let plan = cascade()
        .current_dir(dir.path())
        .args(["plan", "ci.yaml", "--output", "json"])
        .output()
        .unwrap();
    let validate = cascade()
        .current_dir(dir.path())
        .args(["validate", "ci.yaml"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), validate.status.code());
    assert_eq!(plan.status.code(), Some(1));
    assert!(plan.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(stderr.contains("ci.yaml:4:"), "{stderr}");
    insta::assert_snapshot!(transcript(
        cascade().current_dir(dir.path()).args(["plan", "ci.yaml"])
    ));
}

#[test]
fn init_writes_files_that_validate_load_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let at = |args: &[&str]| {
        let mut cmd = cascade();
        cmd.current_dir(dir.path()).args(args);
        cmd
    };
    insta::assert_snapshot!("init_fresh", transcript(&mut at(&["init"])));
    let config = std::fs::read_to_string(dir.path().join("cascade.toml")).unwrap();
    // The real loader reads it, and it is the built-in defaults, documented.
    assert_eq!(
        cascade_spec::config::AdminConfig::parse(&config).unwrap(),
        cascade_spec::config::AdminConfig::default()
    );
    assert!(config.contains("# [repositories.\"acme/app\"]"), "{config}");
    insta::assert_snapshot!(
        "init_starter_plan",
        transcript(&mut at(&["plan", "ci.yaml"]))
    );
    let out = at(&["validate", "ci.yaml"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `run` reads ./cascade.toml, so this also proves `run` accepts the config.
    let out = at(&["run", "ci.yaml", "--data-dir", ".cascade"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The matrix ran, the output reached it, and the always() job saw the result.
    assert!(
        stderr.contains("testing integration of version 0.1.0"),
        "{stderr}"
    );
    assert!(stderr.contains("tests success"), "{stderr}");

    // A second init keeps both files; --force writes them again.
    std::fs::write(dir.path().join("ci.yaml"), "mine").unwrap();
    insta::assert_snapshot!("init_refuses_to_overwrite", transcript(&mut at(&["init"])));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ci.yaml")).unwrap(),
        "mine"
    );
    let out = at(&["init", "--force"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(dir.path().join("ci.yaml"))
            .unwrap()
            .contains("jobs:")
    );

    // A given directory is created.
    let out = at(&["init", "sub/project"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("sub/project/cascade.toml").is_file());
}

const SUBCOMMANDS: &[&str] = &["run", "validate", "plan", "init", "completions", "dag"];

#[test]
fn completions_name_the_subcommands_in_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cascade().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(!script.trim().is_empty(), "{shell}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no `{sub}`");
        }
    }
    let out = cascade().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The bash script, sourced by a real bash, registers `cascade` and completes `pl` to
/// `plan`.
#[test]
fn bash_completion_registers_and_completes() {
    let out = cascade().args(["completions", "bash"]).output().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cascade.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1" && complete -p cascade && COMP_WORDS=(cascade pl) && COMP_CWORD=1 && COMP_LINE="cascade pl" && COMP_POINT=10 && _cascade cascade pl cascade && printf 'reply:%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-F _cascade cascade"), "{stdout}");
    assert!(stdout.contains("cascade"), "{stdout}");
    assert!(stdout.contains("reply:plan"), "{stdout}");
}
