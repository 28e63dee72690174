//! Python pipelines, `path/file.py:function` (DESIGN §7, issue 15): every command that
//! takes a pipeline renders it with `$CASCADE_PYTHON -m cascade render`, parses the
//! document, and reports problems at the Python lines.
//!
//! The renderer here is a small stand-in for the `cascade` Python package, written to a
//! temporary `PYTHONPATH`: it prints exactly what the recorded contract between the binary
//! and the package says (`/work/notes/sdk-contract.md`, "The binary side"): one JSON
//! object `{"document": {…}, "sources": {"<job id>": {"file", "line"}}}` on stdout, the
//! pipeline under `""` at its `def` line, or `path/file.py:LINE: error: MESSAGE` lines on
//! stderr and exit 1. It is real Python, run by the real interpreter: the line numbers
//! come from Python's own frames, as the package takes them.

use crate::{cascade, succeeded, transcript};
use std::path::Path;
use std::process::Command;

/// `cascade.job(id, **fields)` records one job and where it was called;
/// `python -m cascade render file.py:function` calls the function and prints the contract's
/// object, or the contract's error lines.
const INIT: &str = r#"import os
import sys

FIELDS = {"run", "needs", "env", "outputs", "if", "for_each", "retry", "timeout", "secrets"}
jobs = {}
sources = {}


def job(id, **fields):
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise TypeError(f"{id}() got an unexpected keyword argument '{unknown[0]}'")
    caller = sys._getframe(1)
    sources[id] = {"file": os.path.relpath(caller.f_code.co_filename), "line": caller.f_lineno}
    jobs[id] = fields
"#;

const MAIN: &str = r#"import importlib.util
import json
import os
import sys
import traceback

import cascade

_, command, target = sys.argv
assert command == "render", command
path, function = target.rsplit(":", 1)
spec = importlib.util.spec_from_file_location("pipeline", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
fn = getattr(module, function, None)
if fn is None:
    print(f"{path}:1: error: {path} has no function `{function}`", file=sys.stderr)
    sys.exit(1)
try:
    fn()
except Exception as e:
    line = [f for f in traceback.extract_tb(e.__traceback__) if os.path.relpath(f.filename) == path][-1].lineno
    print(f"{path}:{line}: error: {e}", file=sys.stderr)
    sys.exit(1)
sources = dict(cascade.sources)
sources[""] = {"file": path, "line": fn.__code__.co_firstlineno}
document = {
    "name": function,
    "on": {"workflow_dispatch": {"inputs": {}}},
    "jobs": cascade.jobs,
}
print(json.dumps({"document": document, "sources": sources}))
"#;

/// The pipelines of the tests: the line numbers matter (they are in the snapshots).
const PIPELINE: &str = r#"import cascade as cs


def ok():
    cs.job("build", run="echo built", outputs={"result": "file"})
    cs.job("test", run="echo tested", needs=["build"])


def misspelt_need():
    cs.job("build", run="echo built")
    cs.job("test", run="echo tested", needs=["biuld"])


def wrong_argument():
    cs.job("build", run="echo built")
    cs.job("lint", rnu="ruff check")
"#;

/// A directory with the stand-in package (`lib/`) and `pipeline.py`.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("lib/cascade");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join("__init__.py"), INIT).unwrap();
    std::fs::write(package.join("__main__.py"), MAIN).unwrap();
    std::fs::write(dir.path().join("pipeline.py"), PIPELINE).unwrap();
    dir
}

/// `cascade ARGS` in `dir`, rendering with the stand-in package.
fn in_dir(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = cascade();
    cmd.current_dir(dir)
        .env("PYTHONPATH", dir.join("lib"))
        .env_remove("CASCADE_PYTHON")
        .args(args);
    cmd
}

#[test]
fn python_validate_ok() {
    let dir = workspace();
    let out = transcript(&mut in_dir(dir.path(), &["validate", "pipeline.py:ok"]));
    insta::assert_snapshot!(out);
}

#[test]
fn python_diagnostic_is_at_the_python_line_of_its_job() {
    let dir = workspace();
    let out = transcript(&mut in_dir(
        dir.path(),
        &["validate", "pipeline.py:misspelt_need"],
    ));
    assert!(out.contains("pipeline.py:11:"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn python_diagnostic_in_json_names_the_python_file_and_line() {
    let dir = workspace();
    let out = in_dir(
        dir.path(),
        &["validate", "--output", "json", "pipeline.py:misspelt_need"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["file"], "pipeline.py:misspelt_need");
    let error = &report["errors"][0];
    assert_eq!(error["file"], "pipeline.py");
    assert_eq!(error["line"], 11);
    assert!(
        error["message"].as_str().unwrap().contains("`test`"),
        "{error}"
    );
}

#[test]
fn python_render_error_is_shown_as_it_is() {
    let dir = workspace();
    let out = transcript(&mut in_dir(
        dir.path(),
        &["plan", "pipeline.py:wrong_argument"],
    ));
    assert!(
        out.contains("pipeline.py:16: error: lint() got an unexpected keyword argument 'rnu'"),
        "{out}"
    );
    insta::assert_snapshot!(out);
}

#[test]
fn python_render_error_in_json_is_each_line_with_its_file_and_line() {
    let dir = workspace();
    let out = in_dir(
        dir.path(),
        &["validate", "--output", "json", "pipeline.py:wrong_argument"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "file": "pipeline.py:wrong_argument", "ok": false,
            "errors": [{
                "file": "pipeline.py", "line": 16, "column": null, "help": null,
                "message": "lint() got an unexpected keyword argument 'rnu'",
            }],
        })
    );
}

/// A renderer that prints without end is stopped at the size limit.
#[test]
fn python_render_output_over_the_limit_is_refused() {
    let dir = workspace();
    std::fs::write(
        dir.path().join("huge.py"),
        "import sys\n\n\ndef huge():\n    for _ in range(100_000):\n        sys.stdout.write('x' * 1000)\n",
    )
    .unwrap();
    let out = transcript(&mut in_dir(dir.path(), &["plan", "huge.py:huge"]));
    assert!(out.starts_with("exit: 1\n"), "{out}");
    assert!(out.contains("printed more than 8388608 bytes"), "{out}");
}

/// A pipeline module that starts a helper at import (which keeps the render's stdout
/// open): the render's whole process group ends with it, so `validate` returns as soon as
/// the render is done, not when the helper would end (300 s).
#[test]
fn python_render_leaves_no_helper_holding_cascade() {
    let dir = workspace();
    std::fs::write(
        dir.path().join("helper.py"),
        format!(
            "import subprocess\nimport cascade as cs\n\nsubprocess.Popen(['sleep', '300'])\n\n\n{}",
            PIPELINE.trim_start_matches("import cascade as cs\n")
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = transcript(&mut in_dir(dir.path(), &["validate", "helper.py:ok"]));
    assert!(out.starts_with("exit: 0\n"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_mins(1),
        "validate waited for the helper: {:?}",
        started.elapsed()
    );
}

/// A problem outside the jobs is put at the pipeline function's `def` line.
#[test]
fn python_problem_outside_the_jobs_is_at_the_pipeline_function() {
    let dir = workspace();
    std::fs::write(
        dir.path().join("empty.py"),
        "import cascade as cs\n\n\ndef nothing():\n    pass\n",
    )
    .unwrap();
    let out = transcript(&mut in_dir(dir.path(), &["validate", "empty.py:nothing"]));
    assert!(out.starts_with("exit: 1\n"), "{out}");
    assert!(out.contains("[empty.py:4:1]"), "{out}");
}

#[test]
fn python_file_without_its_function_is_refused() {
    let dir = workspace();
    let out = transcript(&mut in_dir(dir.path(), &["run", "pipeline.py"]));
    insta::assert_snapshot!(out);
}

#[test]
fn python_missing_interpreter_says_how_to_get_one() {
    let dir = workspace();
    let out = transcript(
        in_dir(dir.path(), &["graph", "pipeline.py:ok"]).env("CASCADE_PYTHON", "/nonexistent"),
    );
    insta::assert_snapshot!(out);
}

#[test]
fn python_without_the_package_says_to_install_it() {
    let dir = workspace();
    let out = transcript(
        in_dir(dir.path(), &["validate", "pipeline.py:ok"]).env("PYTHONPATH", dir.path()),
    );
    assert!(out.starts_with("exit: 2\n"), "{out}");
    assert!(out.contains("pip install"), "{out}");
    assert!(out.contains("CASCADE_PYTHON"), "{out}");
}

/// The plan of `file.py:function` is the plan of its rendered document saved as a file,
/// JSON or YAML.
#[test]
fn python_plan_equals_the_plan_of_the_rendered_document() {
    let dir = workspace();
    let plan = |target: &str| {
        let out = succeeded(&mut in_dir(
            dir.path(),
            &["plan", "--output", "json", target],
        ));
        String::from_utf8(out.stdout).unwrap()
    };
    let rendered = succeeded(
        Command::new("python3")
            .args(["-m", "cascade", "render", "pipeline.py:ok"])
            .current_dir(dir.path())
            .env("PYTHONPATH", dir.path().join("lib")),
    );
    let rendered: serde_json::Value = serde_json::from_slice(&rendered.stdout).unwrap();
    let document = &rendered["document"];
    std::fs::write(dir.path().join("ok.json"), document.to_string()).unwrap();
    std::fs::write(
        dir.path().join("ok.yaml"),
        serde_saphyr::to_string(document).unwrap(),
    )
    .unwrap();
    let from_python = plan("pipeline.py:ok");
    assert!(from_python.contains("\"build\""), "{from_python}");
    assert_eq!(from_python, plan("ok.json"));
    assert_eq!(from_python, plan("ok.yaml"));
}

/// The jobs of a Python pipeline run, in the directory `cascade run` was started in.
#[test]
fn python_pipeline_runs() {
    let dir = workspace();
    let out = transcript(&mut in_dir(
        dir.path(),
        &["run", "pipeline.py:ok", "--output", "json"],
    ));
    assert!(out.starts_with("exit: 0\n"), "{out}");
    assert!(out.contains("tested"), "{out}");
}

/// The other commands that take a pipeline take a Python one too: the Argo Workflow and a
/// submission queued in a data dir hold the rendered jobs.
#[test]
fn python_pipeline_is_taken_by_graph_argo_render_and_dag_submit() {
    let dir = workspace();
    let graph = succeeded(&mut in_dir(dir.path(), &["graph", "pipeline.py:ok"]));
    assert!(
        String::from_utf8_lossy(&graph.stdout).contains("\"build\" -> \"test\""),
        "{}",
        String::from_utf8_lossy(&graph.stdout)
    );
    let argo = succeeded(&mut in_dir(
        dir.path(),
        &["argo", "render", "pipeline.py:ok"],
    ));
    let manifest = String::from_utf8_lossy(&argo.stdout);
    assert!(manifest.contains("echo tested"), "{manifest}");
    let queued = succeeded(&mut in_dir(
        dir.path(),
        &[
            "dag",
            "submit",
            "pipeline.py:ok",
            "--data-dir",
            "data",
            "--output",
            "json",
        ],
    ));
    let answer: serde_json::Value = serde_json::from_slice(&queued.stdout).unwrap();
    assert_eq!(answer["dag_id"], "ok", "{answer}");
}

/// What `cs.run` does: the rendered document saved as `.cascade/python/<name>.json` runs
/// as a pipeline (not a DAG), and `--summary` gives each job's outputs.
#[test]
fn python_rendered_document_runs_as_cs_run_runs_it() {
    let dir = workspace();
    std::fs::write(
        dir.path().join("value.py"),
        "import cascade as cs\n\n\ndef value():\n    cs.job(\"answer\", run='echo \"result=42\" >> \"$CASCADE_OUTPUT\"', outputs={\"result\": \"file\"})\n",
    )
    .unwrap();
    let rendered = succeeded(
        Command::new("python3")
            .args(["-m", "cascade", "render", "value.py:value"])
            .current_dir(dir.path())
            .env("PYTHONPATH", dir.path().join("lib")),
    );
    let rendered: serde_json::Value = serde_json::from_slice(&rendered.stdout).unwrap();
    std::fs::create_dir_all(dir.path().join(".cascade/python")).unwrap();
    std::fs::write(
        dir.path().join(".cascade/python/value.json"),
        rendered["document"].to_string(),
    )
    .unwrap();
    succeeded(&mut in_dir(
        dir.path(),
        &[
            "run",
            ".cascade/python/value.json",
            "--data-dir",
            ".cascade",
            "--summary",
            "summary.json",
        ],
    ));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(
        summary["jobs"]["answer"],
        serde_json::json!({"result": "success", "outputs": {"result": "42"}})
    );
}
