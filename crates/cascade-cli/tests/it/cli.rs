//! `cascade validate`, `graph` and `schema` as a user runs them.

use crate::{cascade, succeeded, transcript};

#[test]
fn validate_every_example() {
    let mut cmd = cascade();
    cmd.arg("validate");
    let mut files: Vec<_> = ["examples", "examples/dags"]
        .iter()
        .flat_map(|d| std::fs::read_dir(crate::root().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        // Pipelines and DAGs; examples/cascade.toml is the admin config.
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    for f in &files {
        cmd.arg(f.strip_prefix(crate::root()).unwrap());
    }
    insta::assert_snapshot!(transcript(&mut cmd));
}

#[test]
fn validate_reports_problems_with_exit_code_1() {
    let out = transcript(cascade().args([
        "validate",
        "crates/cascade-spec/tests/fixtures/invalid/many_errors.yaml",
    ]));
    insta::assert_snapshot!(out);
}

#[test]
fn validate_json_has_line_column_and_help_per_error() {
    let out = cascade()
        .args([
            "validate",
            "--output",
            "json",
            "examples/hello.yaml",
            "crates/cascade-spec/tests/fixtures/invalid/cycle.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["errors"], serde_json::json!([]));
    assert_eq!(lines[1]["ok"], false);
    assert_eq!(
        lines[1]["file"],
        "crates/cascade-spec/tests/fixtures/invalid/cycle.yaml"
    );
    let error = &lines[1]["errors"][0];
    assert_eq!(error["message"], "dependency cycle: a → b → c → a");
    assert_eq!(error["line"], 3);
    assert_eq!(error["column"], 13);
    assert!(error["help"].as_str().unwrap().contains("DAG"));
}

#[test]
fn validate_a_missing_file_says_so() {
    let out = cascade()
        .args(["validate", "no/such.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such.yaml"));
}

#[test]
fn graph_formats() {
    for format in ["json", "dot", "mermaid"] {
        let out =
            transcript(cascade().args(["graph", "examples/monorepo.yaml", "--format", format]));
        insta::assert_snapshot!(format!("graph_monorepo_{format}"), out);
    }
}

#[test]
fn graph_of_an_invalid_file_fails_with_the_diagnostics() {
    let out = transcript(cascade().args([
        "graph",
        "crates/cascade-spec/tests/fixtures/invalid/cycle.yaml",
    ]));
    assert!(out.starts_with("exit: 1\n"));
    assert!(out.contains("dependency cycle: a → b → c → a"));
}

#[test]
fn schema_is_valid_json_and_describes_jobs() {
    let out = cascade().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(
        schema
            .pointer("/$defs/JobField/properties/for_each")
            .is_some()
    );
}

#[test]
fn schema_dag_is_the_schema_of_dag_json() {
    let out = cascade().args(["schema", "--dag"]).output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema, cascade_spec::schema::dag_schema());
    assert_eq!(schema["title"], "Cascade DAG submission (DAG JSON)");
    assert!(
        schema
            .pointer("/$defs/TaskField/properties/resources")
            .is_some()
    );
}

#[test]
fn empty_listings_in_a_fresh_directory_are_empty_lists() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["runs", "--output", "json"][..],
        &["dag", "list", "--output", "json"],
        &["dag", "worker", "list", "--output", "json"],
        &["events", "--output", "json"],
    ] {
        let out = cascade()
            .current_dir(dir.path())
            .args(args)
            .env_remove("CASCADE_DATA_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            (out.status.code(), stdout.trim()),
            (Some(0), "[]"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A table says what to do instead, and still succeeds.
    let out = cascade()
        .current_dir(dir.path())
        .arg("runs")
        .env_remove("CASCADE_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`cascade run FILE` records one"));
}

#[test]
fn dag_list_refuses_an_unknown_status_and_names_the_known_ones() {
    let out = cascade()
        .args(["dag", "list", "--status", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'bogus'") && stderr.contains("succeeded"),
        "{stderr}"
    );
}

#[test]
fn logs_of_a_job_the_run_does_not_have_is_an_error_naming_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  build: { run: echo built }\n  test: { run: echo tested, needs: [build] }\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        cascade()
            .current_dir(dir.path())
            .args(args)
            .env_remove("CASCADE_DATA_DIR")
            .output()
            .unwrap()
    };
    assert!(run(&["run", "ci.yaml"]).status.success());
    let out = run(&["logs", "last", "nosuchjob"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has no job `nosuchjob`; its tasks are build, test"),
        "{stderr}"
    );
    let out = run(&["logs", "last", "build"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("built"));
}

#[test]
fn bad_jobs_and_server_values_are_usage_errors_that_say_what_was_expected() {
    let out = cascade()
        .args(["run", "examples/hello.yaml", "--jobs", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected at least 1"));
    let out = cascade()
        .args(["dag", "list", "--server", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("expected a URL like http://127.0.0.1:8080, found `127.0.0.1:1`"),
        "{stderr}"
    );
}

#[test]
fn dag_cancel_takes_a_dag_id_and_submit_names_where_to_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = succeeded(
        cascade()
            .args([
                "dag",
                "submit",
                "examples/dags/proj-a-nightly.json",
                "--data-dir",
            ])
            .arg(&data),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "follow it with `cascade dag status proj-a-nightly --data-dir {}`",
            data.display()
        )),
        "{stderr}"
    );
    let out = succeeded(
        cascade()
            .args([
                "dag",
                "cancel",
                "proj-a-nightly",
                "--output",
                "json",
                "--data-dir",
            ])
            .arg(&data),
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "cancelled", "{answer}");
    let out = cascade()
        .args(["dag", "cancel", "nosuch", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}
