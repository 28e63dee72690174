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
        serde_json::json!([{"apiGroups": ["argoproj.io"], "resources": ["workflows", "cronworkflows"], "verbs": ["create", "get", "list", "watch"]}])
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
