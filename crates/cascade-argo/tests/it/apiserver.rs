//! Against a real CRD-serving Kubernetes API server (built from Debian's sources by
//! `../shared/k8s/build-apiserver.sh`, started by `scripts/test`): the server enforces
//! Argo's CRD schemas and CEL rules. `scripts/test` runs these with `--ignored` when the
//! server is up, and passes its directory in `CASCADE_K8S_DIR`.

use cascade_argo::cluster::{self, Progress};
use cascade_argo::manifest::Workflow;
use cascade_argo::{Manifest, RenderOptions};
use cascade_plan::Trigger;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

async fn client() -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::var("CASCADE_K8S_DIR").expect(
        "CASCADE_K8S_DIR names the directory of a running API server (scripts/test sets it)",
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(format!("{dir}/kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    install_crds(&client).await;
    client
}

/// Server-side applies Argo's CRDs (idempotent) and waits until they are served.
async fn install_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "argoproj.io_workflows.yaml",
        "argoproj.io_cronworkflows.yaml",
    ] {
        let text =
            std::fs::read_to_string(crate::root().join("../shared/argo").join(file)).unwrap();
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("cascade-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("the CRD is established within 30 s")
        .unwrap();
    }
}

#[tokio::test]
#[ignore = "needs a real API server; scripts/test builds and starts one and runs this with --ignored"]
async fn apiserver_strict_dry_run_accepts_every_example() {
    let client = client().await;
    let mut files: Vec<_> = std::fs::read_dir(crate::root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        for event in ["manual", "push"] {
            let trigger = Trigger {
                event_name: event.into(),
                ..Trigger::manual()
            };
            let manifest = crate::render_file(&path, &trigger, &RenderOptions::default()).unwrap();
            let name = format!("dry-{}", path.file_stem().unwrap().to_string_lossy());
            cluster::dry_run(&client, "default", &manifest, &name)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{} ({event}): {e}: {:?}",
                        path.display(),
                        std::error::Error::source(&e)
                    )
                });
        }
    }
}

/// `examples/hello.yaml`, rendered for a manual run.
fn hello() -> Manifest {
    crate::render_file(
        &crate::root().join("examples/hello.yaml"),
        &Trigger::manual(),
        &RenderOptions::default(),
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "needs a real API server; scripts/test builds and starts one and runs this with --ignored"]
async fn apiserver_strict_dry_run_rejects_what_the_crd_forbids() {
    let client = client().await;
    let manifest = hello();
    let Manifest::Workflow(w) = manifest else {
        panic!("hello.yaml renders a Workflow")
    };
    // `depends` together with `dependencies` breaks a CEL rule of the CRD.
    let mut json = serde_json::to_value(&*w).unwrap();
    json["spec"]["templates"][0]["dag"]["tasks"][1]["dependencies"] = serde_json::json!(["plan"]);
    let api: Api<Workflow> = Api::namespaced(client.clone(), "default");
    json["metadata"] = serde_json::json!({"name": "dry-bad"});
    let refused = api
        .patch(
            "dry-bad",
            &PatchParams::apply("cascade").dry_run().validation_strict(),
            &Patch::Apply(&json),
        )
        .await;
    assert!(
        refused.is_err(),
        "the server must refuse depends + dependencies"
    );
    // An unknown field is refused under strict validation.
    json["spec"]["templates"][0]["dag"]["tasks"][1]
        .as_object_mut()
        .unwrap()
        .remove("dependencies");
    json["spec"]["notAField"] = true.into();
    let refused = api
        .patch(
            "dry-bad",
            &PatchParams::apply("cascade").dry_run().validation_strict(),
            &Patch::Apply(&json),
        )
        .await;
    assert!(refused.is_err(), "the server must refuse unknown fields");
}

#[tokio::test]
#[ignore = "needs a real API server; scripts/test builds and starts one and runs this with --ignored"]
async fn apiserver_watch_follows_a_submitted_workflow_through_its_phases() {
    let client = client().await;
    let manifest = crate::render_file(
        &crate::root().join("examples/hello.yaml"),
        &Trigger {
            event_name: "push".into(),
            ..Trigger::manual()
        },
        &RenderOptions::default(),
    )
    .unwrap();
    let name = cluster::submit(&client, "default", &manifest)
        .await
        .unwrap();
    assert!(name.starts_with("hello-"), "{name}");
    let api: Api<Workflow> = Api::namespaced(client.clone(), "default");
    let driver = {
        let api = api.clone();
        let name = name.clone();
        tokio::spawn(async move {
            for phase in ["Running", "Succeeded"] {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                let node = format!("{name}-1");
                let status = serde_json::json!({"status": {"phase": phase, "nodes": {node.clone(): {"id": node, "name": format!("{name}.plan"), "displayName": "plan", "type": "Pod", "phase": phase}}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .unwrap();
            }
        })
    };
    let mut phases = Vec::new();
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        cluster::watch(&client, "default", &name, |p| {
            if let Progress::Phase { phase, .. } = p {
                phases.push(phase.clone());
            }
        }),
    )
    .await
    .expect("the watch ends when the phase is final")
    .unwrap();
    driver.await.unwrap();
    assert_eq!(done, cascade_plan::RunStatus::Succeeded);
    assert_eq!(phases.last().map(String::as_str), Some("Succeeded"));
    assert!(phases.contains(&"Running".to_owned()), "{phases:?}");
    api.delete(&name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a real API server; scripts/test builds and starts one and runs this with --ignored"]
async fn apiserver_terminate_asks_argo_to_stop_the_workflow() {
    let client = client().await;
    let manifest = hello();
    let name = cluster::submit(&client, "default", &manifest)
        .await
        .unwrap();
    cluster::terminate(&client, "default", &name).await.unwrap();
    // Idempotent: a second ask (after a restart of serve) changes nothing.
    cluster::terminate(&client, "default", &name).await.unwrap();
    let api: Api<Workflow> = Api::namespaced(client.clone(), "default");
    let stored = api.get(&name).await.unwrap();
    assert_eq!(stored.spec.shutdown.as_deref(), Some("Terminate"));
    let missing = cluster::terminate(&client, "default", "no-such-workflow").await;
    assert!(missing.is_err());
    api.delete(&name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
}

/// The Workflow of a Python pipeline (`tests/fixtures/python.yaml`, with a checkout) is
/// accepted by the real API server under strict validation.
#[tokio::test]
#[ignore = "needs a real API server; scripts/test builds and starts one and runs this with --ignored"]
async fn apiserver_strict_dry_run_accepts_a_python_pipeline() {
    let client = client().await;
    let manifest =
        crate::python::render_python(&crate::config(), &crate::python::checkout()).unwrap();
    cluster::dry_run(&client, "default", &manifest, "dry-python")
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
}
