//! Contract test of `cluster`: a local HTTP server speaks the Kubernetes API the way the
//! API server does for Argo's Workflow resource (create → 201 with the object; list;
//! watch as a stream of JSON events), and the real kube client talks to it. A Kubernetes
//! API server cannot always be built here, so this test always runs; `apiserver.rs`
//! repeats the important parts against a real one when it is available.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cascade_argo::cluster::{self, Progress};
use cascade_argo::{Manifest, RenderOptions};
use cascade_plan::{TaskState, Trigger};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Server {
    /// (method, path, body) of every request.
    requests: Mutex<Vec<(String, String, serde_json::Value)>>,
    stored: Mutex<Option<serde_json::Value>>,
    /// Phases the watch stream moves the workflow through.
    phases: Vec<&'static str>,
}

fn with_status(mut object: serde_json::Value, phase: &str, version: usize) -> serde_json::Value {
    object["metadata"]["resourceVersion"] = version.to_string().into();
    let node_phase = if phase == "Pending" { "Pending" } else { phase };
    object["status"] = serde_json::json!({
        "phase": phase,
        "nodes": {
            "wf-1": {"displayName": "wf", "type": "DAG", "phase": phase},
            "wf-2": {"displayName": "build", "type": "Pod", "phase": node_phase},
        }
    });
    object
}

async fn create(State(s): State<Arc<Server>>, Path(ns): Path<String>, body: Bytes) -> Response {
    let mut object: serde_json::Value = serde_json::from_slice(&body).unwrap();
    s.requests.lock().unwrap().push((
        "POST".into(),
        format!("/namespaces/{ns}/workflows"),
        object.clone(),
    ));
    let name = format!(
        "{}x7k2p",
        object["metadata"]["generateName"].as_str().unwrap_or("wf-")
    );
    object["metadata"]["name"] = name.into();
    object["metadata"]["namespace"] = ns.into();
    object["metadata"]["uid"] = "0a1b2c3d".into();
    object["metadata"]["resourceVersion"] = "1".into();
    *s.stored.lock().unwrap() = Some(object.clone());
    (StatusCode::CREATED, axum::Json(object)).into_response()
}

async fn list_or_watch(
    State(s): State<Arc<Server>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.requests.lock().unwrap().push((
        "GET".into(),
        format!(
            "/namespaces/{ns}/workflows?{}",
            q.get("fieldSelector").cloned().unwrap_or_default()
        ),
        serde_json::Value::Null,
    ));
    let object = s.stored.lock().unwrap().clone().unwrap();
    if q.get("watch").map(String::as_str) != Some("true") {
        let list = serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowList",
            "metadata": {"resourceVersion": "1"},
            "items": [with_status(object, s.phases[0], 1)],
        });
        return axum::Json(list).into_response();
    }
    let events: Vec<Result<Bytes, std::io::Error>> = s.phases[1..]
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let event = serde_json::json!({"type": "MODIFIED", "object": with_status(object.clone(), phase, i + 2)});
            Ok(Bytes::from(format!("{event}\n")))
        })
        .collect();
    Response::new(Body::from_stream(futures::stream::iter(events)))
}

async fn config_map(Path((ns, name)): Path<(String, String)>) -> Response {
    match (ns.as_str(), name.as_str()) {
        ("ci", "cascade") => axum::Json(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cascade", "namespace": "ci"},
            "data": {"cascade.toml": "[runners.gpu]\ncpu = 2\nmemory = \"4Gi\"\n[secrets.PYPI_TOKEN]\nsecret = \"pypi\"\nkey = \"token\"\n"},
        }))
        .into_response(),
        ("ci", "broken") => axum::Json(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "broken", "namespace": "ci"},
            "data": {"cascade.toml": "[runners.x]\ncpu = 1\nmemroy = 2\n"},
        }))
        .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("configmaps \"{name}\" not found")})),
        )
            .into_response(),
    }
}

async fn start(phases: Vec<&'static str>) -> (kube::Client, Arc<Server>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Arc::new(Server {
        phases,
        ..Server::default()
    });
    let app = Router::new()
        .route(
            "/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows",
            get(list_or_watch).post(create),
        )
        .route("/api/v1/namespaces/{ns}/configmaps/{name}", get(config_map))
        .with_state(Arc::clone(&server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(url.parse().unwrap());
    (kube::Client::try_from(config).unwrap(), server)
}

fn manifest() -> Manifest {
    crate::render_file(
        &crate::root().join("examples/hello.yaml"),
        &Trigger {
            event_name: "push".into(),
            ..Trigger::manual()
        },
        &RenderOptions::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn contract_create_returns_the_object_with_its_name() {
    let (client, server) = start(vec!["Pending", "Running", "Succeeded"]).await;
    let name = cluster::submit(&client, "ci", &manifest()).await.unwrap();
    assert_eq!(name, "hello-x7k2p");
    let requests = server.requests.lock().unwrap();
    let (method, path, body) = &requests[0];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/namespaces/ci/workflows")
    );
    assert_eq!(body["kind"], "Workflow");
    assert_eq!(body["spec"]["entrypoint"], "main");
    assert!(
        body.get("status").is_none(),
        "a new workflow carries no status"
    );
}

#[tokio::test]
async fn contract_watch_follows_phases_to_success() {
    let (client, _server) = start(vec!["Pending", "Running", "Succeeded"]).await;
    let name = cluster::submit(&client, "ci", &manifest()).await.unwrap();
    let mut seen = Vec::new();
    let phase = cluster::watch(&client, "ci", &name, |p| seen.push(p.clone()))
        .await
        .unwrap();
    assert_eq!(phase, cascade_plan::RunStatus::Succeeded);
    let phases: Vec<&str> = seen
        .iter()
        .filter_map(|p| {
            if let Progress::Phase { phase, .. } = p {
                Some(phase.as_str())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(phases, ["Pending", "Running", "Succeeded"]);
    let build: Vec<TaskState> = seen
        .iter()
        .filter_map(|p| {
            if let Progress::Task { name, state, .. } = p {
                (name == "build").then_some(*state)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        build,
        [TaskState::Pending, TaskState::Running, TaskState::Succeeded]
    );
}

#[tokio::test]
async fn contract_watch_reports_failure() {
    let (client, server) = start(vec!["Pending", "Running", "Failed"]).await;
    let name = cluster::submit(&client, "ci", &manifest()).await.unwrap();
    let phase = cluster::watch(&client, "ci", &name, |_| {}).await.unwrap();
    assert_eq!(phase, cascade_plan::RunStatus::Failed);
    let requests = server.requests.lock().unwrap();
    assert!(
        requests
            .iter()
            .any(|(m, p, _)| m == "GET" && p.ends_with(&format!("metadata.name={name}"))),
        "{requests:?}"
    );
}

#[tokio::test]
async fn contract_the_admin_config_comes_from_a_config_map() {
    let (client, _server) = start(vec!["Pending"]).await;
    let config = cluster::load_config(&client, "ci", "cascade")
        .await
        .unwrap();
    assert_eq!(config.runners.keys().collect::<Vec<_>>(), ["gpu"]);
    assert_eq!(config.secrets["PYPI_TOKEN"].key, "token");
    let missing = cluster::load_config(&client, "ci", "nope")
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "cannot read config map `nope` in namespace `ci`"
    );
    let broken = cluster::load_config(&client, "ci", "broken")
        .await
        .unwrap_err();
    assert!(
        broken
            .to_string()
            .starts_with("config map `broken`, key `cascade.toml`: invalid cascade.toml at line 3"),
        "{broken}"
    );
}
