//! Each mapping rule on one fixture pipeline, and the safety properties.

use crate::{assert_valid, render_file, root, yaml};
use cascade_argo::{Manifest, RenderError, RenderOptions};
use cascade_plan::Trigger;

fn rules(trigger: &Trigger) -> serde_json::Value {
    let manifest = render_file(
        &root().join("crates/cascade-argo/tests/fixtures/rules.yaml"),
        trigger,
        &RenderOptions::default(),
    )
    .unwrap();
    assert_valid(&manifest);
    manifest.to_json()
}

fn task<'a>(w: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    w["spec"]["templates"][0]["dag"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}"))
}

fn template<'a>(w: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    w["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

#[test]
fn the_rules_fixture_snapshot() {
    let manifest = render_file(
        &root().join("crates/cascade-argo/tests/fixtures/rules.yaml"),
        &Trigger::manual(),
        &RenderOptions::default(),
    )
    .unwrap();
    assert_valid(&manifest);
    insta::assert_snapshot!(yaml(&manifest));
}

#[test]
fn names_are_sanitised_and_needs_become_depends() {
    let w = rules(&Trigger::manual());
    assert_eq!(task(&w, "build-pkg")["template"], "job-build-pkg");
    assert_eq!(task(&w, "fan")["depends"], "detect.Succeeded");
    assert_eq!(
        task(&w, "cleanup")["depends"],
        "(fan.Succeeded || fan.Failed || fan.Errored || fan.Skipped || fan.Omitted) && (grid.Succeeded || grid.Failed || grid.Errored || grid.Skipped || grid.Omitted)"
    );
    assert_eq!(
        task(&w, "on-fail")["depends"],
        "(fan.Failed || fan.Errored) || (grid.Failed || grid.Errored)"
    );
    assert_eq!(
        task(&w, "after-build")["depends"],
        "build-pkg.Succeeded && detect.Succeeded && build-pkg.Succeeded"
    );
    // A condition known false at render time: the task waits, then is skipped.
    assert_eq!(task(&w, "never")["when"], "false");
    assert!(
        w.to_string().find("\"dependencies\"").is_none(),
        "only `depends` is emitted"
    );
}

#[test]
fn fan_out_and_matrix() {
    let w = rules(&Trigger::manual());
    assert_eq!(
        task(&w, "fan")["withParam"],
        "{{tasks.detect.outputs.parameters.list}}"
    );
    let list = &template(&w, "job-detect")["outputs"]["parameters"][0];
    assert_eq!(list["valueFrom"]["default"], "[]");
    assert_eq!(
        task(&w, "grid")["withItems"],
        serde_json::json!([{"os": "linux", "py": "3.11"}, {"os": "mac", "py": "3.11"}])
    );
}

#[test]
fn runner_secret_retry_and_timeout() {
    let w = rules(&Trigger::manual());
    let t = template(&w, "job-build-pkg");
    assert_eq!(
        t["container"]["resources"]["limits"],
        serde_json::json!({"cpu": "500m", "memory": "2Gi"})
    );
    assert_eq!(
        t["nodeSelector"],
        serde_json::json!({"accelerator": "a100"})
    );
    assert_eq!(t["tolerations"][0]["key"], "gpu");
    let secret = t["container"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PYPI_TOKEN")
        .unwrap();
    assert_eq!(
        secret["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "pypi", "key": "token", "optional": false})
    );
    assert_eq!(
        t["retryStrategy"],
        serde_json::json!({"limit": 2, "retryPolicy": "OnFailure", "backoff": {"duration": "5s", "factor": 2, "cap": "1m"}, "expression": "asInt(lastRetry.exitCode) in [75]"})
    );
    assert_eq!(t["activeDeadlineSeconds"], 600);
    assert_eq!(
        t["container"]["securityContext"],
        serde_json::json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false})
    );
    assert_eq!(w["spec"]["serviceAccountName"], "cascade-executor");
    assert!(w.to_string().find("podSpecPatch").is_none());
}

#[test]
fn resources_are_requests_and_limits_overriding_the_runner_field_by_field() {
    let w = rules(&Trigger::manual());
    // No runner: what the job asks for, nothing else.
    let detect = template(&w, "job-detect");
    let own = serde_json::json!({"cpu": "250m", "memory": "128Mi"});
    assert_eq!(
        detect["container"]["resources"],
        serde_json::json!({"requests": own, "limits": own})
    );
    assert!(detect.get("nodeSelector").is_none());
    // Runner `gpu` (500m, 2Gi, a node selector): the job's memory wins, the rest stays.
    let fan = template(&w, "job-fan");
    let merged = serde_json::json!({"cpu": "500m", "memory": "4Gi"});
    assert_eq!(
        fan["container"]["resources"],
        serde_json::json!({"requests": merged, "limits": merged})
    );
    assert_eq!(
        fan["nodeSelector"],
        serde_json::json!({"accelerator": "a100"})
    );
    // Neither: no resources at all.
    assert!(
        template(&w, "job-never")["container"]
            .get("resources")
            .is_none()
    );
}

#[test]
fn untrusted_values_never_reach_command_or_args() {
    let mut trigger = Trigger::manual();
    trigger
        .inputs
        .insert("target".into(), "$(touch /pwned) {{workflow.name}}".into());
    trigger.payload = serde_json::json!({"ref": "refs/heads/\"; rm -rf / #"});
    let w = rules(&trigger);
    for t in w["spec"]["templates"].as_array().unwrap() {
        let container = &t["container"];
        let text = format!("{}{}", container["command"], container["args"]);
        assert!(
            !text.contains("touch /pwned") && !text.contains("rm -rf"),
            "{text}"
        );
    }
    let args = task(&w, "build-pkg")["arguments"]["parameters"].to_string();
    assert!(
        args.contains("$(touch /pwned) {{='{{'}}workflow.name}}"),
        "data is escaped for Argo: {args}"
    );
    // Argo's {{ in the user's own script stays literal.
    assert!(
        template(&w, "job-build-pkg")["container"]["args"][0]
            .as_str()
            .unwrap()
            .contains("echo '{{='{{'}} not argo }}'")
    );
    let env = template(&w, "job-build-pkg")["container"]["env"].to_string();
    assert!(env.contains("{{inputs.parameters.CASCADE_EXPR_1}}"));
}

#[test]
fn unknown_runner_and_secret_are_errors_naming_the_known_ones() {
    let dir = std::env::temp_dir().join(format!("cascade-argo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ci.yaml");
    std::fs::write(&file, "jobs:\n  a: { run: make, runner: huge }\n").unwrap();
    let e = render_file(&file, &Trigger::manual(), &RenderOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "job `a` asks for runner `huge`, which the admin config does not define (known runners: small, large, gpu)"
    );
    std::fs::write(&file, "jobs:\n  a: { run: make, secrets: [NOPE] }\n").unwrap();
    let e = render_file(&file, &Trigger::manual(), &RenderOptions::default()).unwrap_err();
    assert!(matches!(e, RenderError::UnknownSecret { .. }), "{e}");
    std::fs::write(&file, "jobs:\n  a_b: { run: make }\n  a-b: { run: make }\n").unwrap();
    let e = render_file(&file, &Trigger::manual(), &RenderOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "jobs `a_b` and `a-b` both become Argo task `a-b`; rename one of them"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = Manifest::to_json;
}

#[test]
fn rbac_grants_exactly_what_the_generator_and_executor_need() {
    let text = std::fs::read_to_string(root().join("deploy/rbac.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let rules = |name: &str| -> serde_json::Value {
        docs.iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == name)
            .unwrap()["rules"]
            .clone()
    };
    assert_eq!(
        rules("cascade-generator"),
        serde_json::json!([
            {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "get", "list", "watch", "patch"]},
            {"apiGroups": ["argoproj.io"], "resources": ["cronworkflows"], "verbs": ["create", "get", "list", "watch"]},
        ])
    );
    assert_eq!(
        rules("cascade-executor"),
        serde_json::json!([{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}])
    );
    // The executor account the renderer puts in every Workflow is the one defined here.
    assert!(docs.iter().any(|d| d["kind"] == "ServiceAccount"
        && d["metadata"]["name"] == RenderOptions::default().service_account));
    assert_eq!(
        docs.iter()
            .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding")
            .count(),
        0
    );
}

#[test]
fn the_completion_callback_is_an_exit_handler_sent_whatever_the_outcome() {
    let options = RenderOptions {
        callback_url: Some("http://cascade.example:8080/api/v1/dispatch?x={{y}}".into()),
        ..RenderOptions::default()
    };
    let manifest = render_file(
        &root().join("examples/hello.yaml"),
        &Trigger::manual(),
        &options,
    )
    .unwrap();
    assert_valid(&manifest);
    let w = manifest.to_json();
    assert_eq!(w["spec"]["onExit"], "cascade-callback");
    let handler = template(&w, "cascade-callback");
    let env = handler["container"]["env"].to_string();
    assert!(
        env.contains("{{workflow.status}}") && env.contains("x={{='{{'}}y}}"),
        "{env}"
    );
    assert!(
        !handler["container"]["args"]
            .to_string()
            .contains("cascade.example"),
        "the URL is data, not script"
    );
    assert_eq!(handler["retryStrategy"]["retryPolicy"], "Always");
}

/// `layers` × `width` no-op jobs, each layer needing all of the previous one.
fn layered(layers: usize, width: usize, last_if: Option<&str>) -> String {
    let mut text = String::from("name: big\njobs:\n");
    for l in 0..layers {
        for w in 0..width {
            let needs = if l == 0 {
                String::new()
            } else {
                format!(
                    ", needs: [{}]",
                    (0..width)
                        .map(|x| format!("l{}_{x}", l - 1))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let cond = match last_if {
                Some(c) if l == layers - 1 => format!(", if: \"{c}\""),
                _ => String::new(),
            };
            text.push_str(&format!("  l{l}_{w}: {{ run: \"true\"{needs}{cond} }}\n"));
        }
    }
    text
}

fn render_text(text: &str) -> Result<Manifest, RenderError> {
    let pipeline = cascade_spec::parse_pipeline("big.yaml", text).unwrap();
    let plan = cascade_plan::plan(&pipeline, &Trigger::manual(), &[]).unwrap();
    cascade_argo::render(
        &pipeline,
        &plan,
        &crate::config(),
        &RenderOptions::default(),
    )
}

#[test]
fn large_pipelines_become_nested_dags_within_the_crd_limits() {
    let manifest = render_text(&layered(50, 10, None)).unwrap();
    assert_valid(&manifest);
    let w = manifest.to_json();
    let templates = w["spec"]["templates"].as_array().unwrap();
    let names: Vec<&str> = templates
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // 500 identical jobs share one container template; three parts of ≤ 200 tasks.
    assert_eq!(names, ["main", "part-1", "part-2", "part-3", "job-l0-0"]);
    let main = &templates[0]["dag"]["tasks"];
    assert_eq!(main[1]["depends"], "part-1.Succeeded");
    assert_eq!(main[2]["depends"], "part-2.Succeeded");
    for part in &templates[1..4] {
        assert!(part["dag"]["tasks"].as_array().unwrap().len() <= cascade_argo::render::MAX_TASKS);
    }
    // A job whose needs are split between parts waits for its own part's needs only.
    let part3 = templates[3]["dag"]["tasks"].as_array().unwrap();
    assert_eq!(part3[0]["name"], "l40-0");
    assert!(
        part3[0].get("depends").is_none(),
        "its needs are all in part 2"
    );
}

#[test]
fn a_condition_across_parts_is_refused_with_the_reason() {
    // Layer 20 is the first of part 2, and needs layer 19 in part 1.
    let Err(e) = render_text(&layered(21, 10, Some("always()"))) else {
        panic!("a cross-part condition must be refused")
    };
    assert!(
        e.to_string()
            .contains("its `if:` spans parts of a pipeline split for Argo's 200-task limit"),
        "{e}"
    );
}

#[test]
fn distinct_jobs_past_the_template_limit_are_inlined_in_their_tasks() {
    let mut text = String::from("jobs:\n");
    for i in 0..250 {
        text.push_str(&format!("  j{i}: {{ run: \"make part{i}\" }}\n"));
    }
    let manifest = render_text(&text).unwrap();
    assert_valid(&manifest);
    let w = manifest.to_json();
    let templates = w["spec"]["templates"].as_array().unwrap();
    let names: Vec<&str> = templates
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main", "part-1", "part-2"]);
    let task = &templates[2]["dag"]["tasks"][49];
    assert_eq!(task["name"], "j249");
    assert!(task.get("template").is_none());
    assert_eq!(task["inline"]["container"]["args"][0], "make part249");
    assert!(task["inline"].get("name").is_none());
}
