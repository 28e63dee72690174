//! Python tasks (jobs whose env has `CSPY_TASK`): `tests/fixtures/python.yaml` is the
//! document the Python SDK renders for `python/tests/pipelines/argo.py:pr` (a lazy map
//! with a secret, an image, resources, retry and timeout; a zip of a lazy and a literal
//! list; a literal map; a fan-in of all three). Rendered to Argo it runs every task as
//! `python3 -m cascade.runner` in the checkout and wires results, items and fan-ins
//! through parameters; it matches the strict CRD schemas and is a snapshot.

use crate::{assert_valid, config, root, yaml};
use cascade_argo::{Checkout, Manifest, RenderError, RenderOptions, render};
use cascade_plan::Trigger;
use cascade_spec::config::AdminConfig;
use serde_json::{Value, json};

pub fn checkout() -> RenderOptions {
    RenderOptions {
        checkout: Some(Checkout {
            repo: "https://github.com/acme/app.git".to_owned(),
            revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        }),
        ..RenderOptions::default()
    }
}

pub fn render_python(
    config: &AdminConfig,
    options: &RenderOptions,
) -> Result<Manifest, RenderError> {
    render_with(
        "crates/cascade-argo/tests/fixtures/python.yaml",
        config,
        options,
    )
}

fn render_with(
    path: &str,
    config: &AdminConfig,
    options: &RenderOptions,
) -> Result<Manifest, RenderError> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let pipeline = cascade_spec::parse_pipeline(path, &text).unwrap();
    let plan = cascade_plan::plan(&pipeline, &Trigger::manual(), &[]).unwrap();
    render(&pipeline, &plan, config, options)
}

/// The template of job `name` and its task in `main`.
fn job<'a>(workflow: &'a Value, name: &str) -> (&'a Value, &'a Value) {
    let templates = workflow["spec"]["templates"].as_array().unwrap();
    let task = templates[0]["dag"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}"));
    let template = templates
        .iter()
        .find(|t| t["name"] == task["template"])
        .unwrap_or_else(|| panic!("no template for {name}"));
    (template, task)
}

fn env<'a>(template: &'a Value, name: &str) -> Option<&'a Value> {
    template["container"]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn argument<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["arguments"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map_or(&Value::Null, |p| &p["value"])
}

#[test]
fn python_tasks_render_to_a_valid_workflow_and_a_snapshot() {
    let manifest = render_python(&config(), &checkout()).unwrap();
    assert_valid(&manifest);
    insta::assert_snapshot!("python_pipeline", yaml(&manifest));
    let w = manifest.to_json();
    let tasks: Vec<&str> = w["spec"]["templates"][0]["dag"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tasks,
        ["changed", "lint", "build-zip", "build", "check", "marker"]
    );
    for name in tasks {
        let (template, task) = job(&w, name);
        let container = &template["container"];
        // Every task runs the runner, in the checkout, with its description in CSPY_TASK.
        assert_eq!(container["command"], json!(["sh", "-c"]), "{name}");
        assert_eq!(container["args"][2], "python3 -m cascade.runner", "{name}");
        assert_eq!(container["workingDir"], "/src", "{name}");
        assert_eq!(
            template["inputs"]["artifacts"],
            json!([{"name": "source", "path": "/src", "git": {
                "repo": "https://github.com/acme/app.git",
                "revision": "0123456789abcdef0123456789abcdef01234567"}}]),
            "{name}"
        );
        assert_eq!(
            env(template, "CSPY_TASK").unwrap()["value"],
            "{{inputs.parameters.CSPY_TASK}}"
        );
        assert!(
            argument(task, "CSPY_TASK")
                .as_str()
                .unwrap()
                .contains("\"entry\":\""),
            "{name}: {task}"
        );
        // The result is the output parameter `result`.
        let outputs = template["outputs"]["parameters"].as_array().unwrap();
        assert_eq!(outputs[0]["name"], "result", "{name}");
        assert_eq!(
            outputs[0]["valueFrom"]["path"],
            "/tmp/cascade/outputs/result"
        );
    }

    // The image of the task, else `[python] image`.
    assert_eq!(job(&w, "lint").0["container"]["image"], "python:3.11-slim");
    assert_eq!(
        job(&w, "changed").0["container"]["image"],
        "python:3.12-slim"
    );

    // A lazy list: the producer also writes its items as JSON texts, which the map
    // iterates over; each item reaches the task as that text.
    let (changed, _) = job(&w, "changed");
    assert_eq!(env(changed, "CASCADE_ITEMS_OF").unwrap()["value"], "result");
    assert_eq!(
        changed["outputs"]["parameters"][1],
        json!({"name": "result--items", "valueFrom": {"path": "/tmp/cascade/outputs/result--items", "default": "[]"}})
    );
    assert!(
        changed["container"]["args"][0]
            .as_str()
            .unwrap()
            .contains("json.dumps(i) for i in v"),
        "{changed}"
    );
    let (lint, lint_task) = job(&w, "lint");
    assert_eq!(
        lint_task["withParam"],
        "{{tasks.changed.outputs.parameters.result--items}}"
    );
    assert_eq!(argument(lint_task, "CSPY_ARG_0"), "{{item}}");
    assert_eq!(lint_task["depends"], "changed.Succeeded");
    // Its secret, resources, retry and timeout.
    assert_eq!(
        env(lint, "PYPI_TOKEN").unwrap()["valueFrom"],
        json!({"secretKeyRef": {"name": "pypi", "key": "token", "optional": false}})
    );
    assert_eq!(
        lint["container"]["resources"],
        json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    );
    assert_eq!(lint["retryStrategy"]["limit"], 2);
    assert_eq!(lint["activeDeadlineSeconds"], 600);
    // Only the task that declares it gets the secret.
    assert!(env(changed, "PYPI_TOKEN").is_none());

    // The zip job's list of objects, the same way.
    let (_, build_task) = job(&w, "build");
    assert_eq!(
        build_task["withParam"],
        "{{tasks.build-zip.outputs.parameters.result--items}}"
    );
    assert_eq!(
        argument(job(&w, "build-zip").1, "CSPY_ARG_0"),
        "{{tasks.changed.outputs.parameters.result}}"
    );

    // A literal map: the items are JSON texts already.
    let (_, check_task) = job(&w, "check");
    assert_eq!(check_task["withItems"], json!(["\"ruff\"", "\"mypy\""]));
    assert_eq!(argument(check_task, "CSPY_ARG_0"), "{{item}}");

    // The fan-in: each map's aggregate (the JSON list of its items' results), the
    // parameter's value known at render time; it runs when no map failed.
    let (marker, marker_task) = job(&w, "marker");
    assert_eq!(
        argument(marker_task, "CSPY_ARG_0"),
        "{{tasks.lint.outputs.parameters.result}}"
    );
    assert_eq!(
        argument(marker_task, "CSPY_ARG_1"),
        "{{tasks.build.outputs.parameters.result}}"
    );
    assert_eq!(
        argument(marker_task, "CSPY_ARG_2"),
        "{{tasks.check.outputs.parameters.result}}"
    );
    assert_eq!(argument(marker_task, "CSPY_ARG_3"), "\"prod\"");
    let depends = marker_task["depends"].as_str().unwrap();
    for need in ["build", "check", "lint"] {
        assert!(depends.contains(&format!("{need}.Failed")), "{depends}");
    }
    assert!(env(marker, "CASCADE_ITEMS_OF").is_none());
}

/// A Python task imports its pipeline's files: without a checkout there are none.
#[test]
fn python_tasks_need_a_checkout() {
    let err = render_python(&config(), &RenderOptions::default()).unwrap_err();
    assert_eq!(
        err,
        RenderError::PythonWithoutCheckout {
            job: "changed".into()
        }
    );
    assert!(
        err.to_string().contains("--repo URL --revision SHA"),
        "{err}"
    );
}

/// `[python] image` and `install`: the install command runs first, with a writable HOME.
#[test]
fn python_settings_pick_the_image_and_install_the_package() {
    let mut config = config();
    config.python = AdminConfig::parse(
        "[python]\nimage = \"registry.example/py:3.12\"\ninstall = \"pip install --user cascade==0.1.0\"\n",
    )
    .unwrap()
    .python;
    let manifest = render_python(&config, &checkout()).unwrap();
    assert_valid(&manifest);
    let w = manifest.to_json();
    let (changed, _) = job(&w, "changed");
    assert_eq!(changed["container"]["image"], "registry.example/py:3.12");
    assert_eq!(
        changed["container"]["args"][2],
        "mkdir -p \"$HOME\"\npip install --user cascade==0.1.0\npython3 -m cascade.runner"
    );
    assert_eq!(env(changed, "HOME").unwrap()["value"], "/tmp/cascade/home");
    // A task's own image still wins.
    assert_eq!(job(&w, "lint").0["container"]["image"], "python:3.11-slim");
}

/// YAML jobs keep the `--default-image` and no install step.
#[test]
fn yaml_jobs_are_not_python_tasks() {
    let mut config = config();
    config.python.install = Some("pip install --user cascade".to_owned());
    let manifest = render_with("examples/hello.yaml", &config, &RenderOptions::default()).unwrap();
    let text = yaml(&manifest);
    assert!(!text.contains("pip install"), "{text}");
    assert!(!text.contains("python:3.12-slim"), "{text}");
}

fn render_text(text: &str) -> Result<Manifest, RenderError> {
    let pipeline = cascade_spec::parse_pipeline("inline.yaml", text).unwrap();
    let plan = cascade_plan::plan(&pipeline, &Trigger::manual(), &[]).unwrap();
    render(&pipeline, &plan, &config(), &checkout())
}

/// What Argo cannot pass keeps its clear error: JSON items of a job that has no Python
/// to write them, and `toJSON` of a job's output that is not a map's list.
#[test]
fn json_items_and_aggregates_need_what_argo_can_give() {
    let from_shell = render_text(
        r#"
on: workflow_dispatch
jobs:
  list:
    run: echo 'result=["a"]' >> "$CASCADE_OUTPUT"
    outputs: {result: file}
  each:
    needs: [list]
    for_each: ${{ fromJSON(needs.list.outputs.result) }}
    run: echo "$X"
    env: {X: "${{ toJSON(item) }}"}
"#,
    )
    .unwrap_err();
    assert!(
        matches!(&from_shell, RenderError::Unsupported { job, reason, .. }
            if job == "list" && reason.contains("only when that job is a Python task")),
        "{from_shell}"
    );
    let single = render_text(
        r#"
on: workflow_dispatch
jobs:
  one:
    run: echo 'result=1' >> "$CASCADE_OUTPUT"
    outputs: {result: file}
  next:
    needs: [one]
    run: echo "$X"
    env: {X: "${{ toJSON(needs.one.outputs.result) }}"}
"#,
    )
    .unwrap_err();
    assert!(
        matches!(&single, RenderError::Unsupported { job, reason, .. }
            if job == "next" && reason.contains("only for a job with `for_each`")),
        "{single}"
    );
    let both = render_text(
        r#"
on: workflow_dispatch
jobs:
  each:
    for_each: ["a", "b"]
    run: echo "$X $Y"
    env: {X: "${{ toJSON(item) }}", Y: "${{ item }}"}
"#,
    )
    .unwrap_err();
    assert!(
        matches!(&both, RenderError::Unsupported { reason, .. } if reason.contains("not both")),
        "{both}"
    );
    // A literal list read as `toJSON(item)`: each item is its JSON text (a static
    // `for_each` item is a string to the parser, as in a local run).
    let literal = render_text(
        r#"
on: workflow_dispatch
jobs:
  each:
    for_each: ["a", 2]
    run: echo "$X"
    env: {X: "${{ toJSON(item) }}"}
"#,
    )
    .unwrap()
    .to_json();
    assert_eq!(
        job(&literal, "each").1["withItems"],
        json!(["\"a\"", "\"2\""])
    );
}
