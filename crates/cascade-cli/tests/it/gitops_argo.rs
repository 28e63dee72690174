//! Repositories with `backend = "argo"`: a signed push reaches `cascade serve`, which
//! creates an Argo `Workflow` on the cluster of its kubeconfig, follows it with a watch,
//! and reports each job's state to the forge.
//!
//! No Argo controller runs here, and a Kubernetes API server cannot always be built, so
//! `contract_…` tests speak to a local HTTP server that answers the way the API server
//! does for Workflows (create → 201 with the generated name; list; watch as a chunked
//! stream of JSON events from a resource version) and move the workflow through its
//! phases with status updates, as the controller would. The `apiserver_…` test repeats
//! the main case against the real API server (`scripts/test` builds and starts it and
//! runs it with `--ignored`).

use crate::gitops::{
    Recorder, commit, config, events, github_headers, post_hook, push_payload, repo, serve_env,
    statuses_for,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const WORKFLOWS: &str = "/apis/argoproj.io/v1alpha1/namespaces/";

#[derive(Default)]
struct Cluster {
    /// Workflows by name.
    objects: BTreeMap<String, Value>,
    /// Every change as a watch event (`ADDED`, `MODIFIED`), its index + 1 being the
    /// resource version it made.
    log: Vec<Value>,
    /// Bodies of every create.
    created: Vec<Value>,
    /// Answer creates with this status and body instead.
    refuse: Option<(u16, Value)>,
    /// (workflow, merge patch) of every patch.
    patches: Vec<(String, Value)>,
}

/// The local Kubernetes API (Workflows only).
struct FakeKube {
    url: String,
    state: Arc<(Mutex<Cluster>, Condvar)>,
}

impl FakeKube {
    fn start() -> Self {
        let state: Arc<(Mutex<Cluster>, Condvar)> = Arc::default();
        let url = crate::gitops::listen(&state, kube_connection);
        Self { url, state }
    }

    /// A kubeconfig naming this server, in `dir`.
    fn kubeconfig(&self, dir: &Path) -> String {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n",
                self.url
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    fn created(&self) -> Vec<Value> {
        self.state.0.lock().unwrap().created.clone()
    }

    fn wait_created(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = self.created();
            if created.len() >= n {
                return created;
            }
            assert!(
                Instant::now() < deadline,
                "no workflow was created: {created:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deletes a workflow (as `kubectl delete` would).
    fn delete(&self, name: &str) {
        let (lock, changed) = &*self.state;
        let mut cluster = lock.lock().unwrap();
        let version = cluster.log.len() + 1;
        let mut object = cluster.objects.remove(name).unwrap();
        object["metadata"]["resourceVersion"] = version.to_string().into();
        cluster
            .log
            .push(json!({"type": "DELETED", "object": object}));
        changed.notify_all();
    }

    /// What the controller would do: set the workflow's status.
    fn set_status(&self, name: &str, status: Value) {
        let (lock, changed) = &*self.state;
        let mut cluster = lock.lock().unwrap();
        let version = cluster.log.len() + 1;
        let object = cluster.objects.get_mut(name).unwrap();
        object["status"] = status;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        let event = json!({"type": "MODIFIED", "object": object.clone()});
        cluster.log.push(event);
        changed.notify_all();
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

fn kube_connection(stream: &TcpStream, state: &(Mutex<Cluster>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream.try_clone().unwrap();
    while let Some(crate::gitops::Request {
        method,
        target,
        body,
        ..
    }) = crate::gitops::read_request(&mut reader)
    {
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let Some(rest) = path.strip_prefix(WORKFLOWS) else {
            respond(&mut out, 404, &json!({"kind": "Status", "code": 404}));
            continue;
        };
        let namespace = rest.split('/').next().unwrap_or("").to_owned();
        let (lock, _) = state;
        match method.as_str() {
            "POST" => {
                let (code, answer) = create(state, namespace, &body);
                respond(&mut out, code, &answer);
            }
            "GET" if query.contains("watch=true") || query.contains("watch=1") => {
                stream_watch(&mut out, state, query);
                return;
            }
            "GET" => {
                let cluster = lock.lock().unwrap();
                let list = json!({
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "WorkflowList",
                    "metadata": {"resourceVersion": cluster.log.len().to_string()},
                    "items": cluster.objects.values().cloned().collect::<Vec<_>>(),
                });
                drop(cluster);
                respond(&mut out, 200, &list);
            }
            "PATCH" => {
                let name = rest.rsplit('/').next().unwrap_or("");
                let (code, answer) = merge_patch(state, name, &body);
                respond(&mut out, code, &answer);
            }
            _ => respond(&mut out, 405, &json!({"kind": "Status", "code": 405})),
        }
    }
}

/// `POST …/workflows`: stores the workflow under a generated name.
fn create(state: &(Mutex<Cluster>, Condvar), namespace: String, body: &[u8]) -> (u16, Value) {
    let (lock, changed) = state;
    let mut object: Value = serde_json::from_slice(body).unwrap();
    let mut cluster = lock.lock().unwrap();
    cluster.created.push(object.clone());
    if let Some(refusal) = cluster.refuse.clone() {
        return refusal;
    }
    let version = cluster.log.len() + 1;
    let name = object["metadata"]["name"].as_str().map_or_else(
        || {
            format!(
                "{}{version:05}",
                object["metadata"]["generateName"].as_str().unwrap_or("wf-")
            )
        },
        str::to_owned,
    );
    if cluster.objects.contains_key(&name) {
        return (
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409,
                   "message": format!("workflows.argoproj.io \"{name}\" already exists")}),
        );
    }
    object["metadata"]["name"] = name.clone().into();
    object["metadata"]["namespace"] = namespace.into();
    object["metadata"]["uid"] = format!("uid-{version}").into();
    object["metadata"]["resourceVersion"] = version.to_string().into();
    cluster.objects.insert(name, object.clone());
    cluster
        .log
        .push(json!({"type": "ADDED", "object": object.clone()}));
    changed.notify_all();
    (201, object)
}

/// `PATCH …/workflows/NAME` with a merge patch of `spec` fields.
fn merge_patch(state: &(Mutex<Cluster>, Condvar), name: &str, body: &[u8]) -> (u16, Value) {
    let (lock, changed) = state;
    let update: Value = serde_json::from_slice(body).unwrap();
    let mut cluster = lock.lock().unwrap();
    cluster.patches.push((name.to_owned(), update.clone()));
    let version = cluster.log.len() + 1;
    let Some(object) = cluster.objects.get_mut(name) else {
        return (404, json!({"kind": "Status", "code": 404}));
    };
    if let Some(spec) = update["spec"].as_object() {
        for (k, v) in spec {
            object["spec"][k] = v.clone();
        }
    }
    object["metadata"]["resourceVersion"] = version.to_string().into();
    let object = object.clone();
    cluster
        .log
        .push(json!({"type": "MODIFIED", "object": object.clone()}));
    changed.notify_all();
    (200, object)
}

/// A watch: every change after the asked resource version, as a chunked stream that
/// stays open (as the API server's does).
fn stream_watch(out: &mut TcpStream, state: &(Mutex<Cluster>, Condvar), query: &str) {
    let (lock, changed) = state;
    let from: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("resourceVersion="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut next = from;
    loop {
        let pending: Vec<Value> = {
            let mut cluster = lock.lock().unwrap();
            while cluster.log.len() <= next {
                cluster = changed
                    .wait_timeout(cluster, Duration::from_secs(1))
                    .unwrap()
                    .0;
            }
            cluster.log[next..].to_vec()
        };
        next += pending.len();
        for event in pending {
            let line = format!("{event}\n");
            if write!(out, "{:x}\r\n{line}\r\n", line.len()).is_err() {
                return;
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}

fn node(name: &str, kind: &str, phase: &str, message: Option<&str>) -> Value {
    json!({"id": name, "name": name, "displayName": name, "type": kind, "phase": phase, "message": message})
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(crate::root().join("../shared/argo/workflows-strict.json"))
        .unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

const PIPELINE: &str = "name: app\non: { push: { branches: [main] } }\njobs:\n  build: { run: make }\n  unit_test: { needs: [build], run: make test }\n";

fn argo_config(src: &Path, host: &str) -> String {
    config(
        src,
        host,
        "backend = \"argo\"\n[argo]\nnamespace = \"ci\"\ndefault_image = \"registry.example/build:1\"\n",
    )
}

fn push(addr: &str, src: &Path, delivery: &str, sha: &str) {
    let body = push_payload(
        &format!("file://{}", src.display()),
        &"0".repeat(40),
        sha,
        &["Makefile"],
    );
    let (status, answer) = post_hook(
        addr,
        "github",
        &github_headers(delivery, "push", &body),
        &body,
    );
    assert_eq!(status, 202, "{answer}");
}

const BUILD: &str = "cascade/acme/app/ci.yaml/build";
const TEST: &str = "cascade/acme/app/ci.yaml/unit_test";

/// A repository on `main` with these files, registered with `backend = "argo"`; the
/// forge's status API, the local Kubernetes API, and `serve` with a kubeconfig for it.
struct Setup {
    dir: tempfile::TempDir,
    src: std::path::PathBuf,
    sha: String,
    host: Recorder,
    kube: FakeKube,
    server: crate::serve::Server,
}

impl Setup {
    fn start(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("app");
        let sha = repo(&src, files);
        let host = Recorder::start();
        let kube = FakeKube::start();
        let server = Self::serve(dir.path(), &src, &host, &kube);
        Self {
            dir,
            src,
            sha,
            host,
            kube,
            server,
        }
    }

    fn serve(dir: &Path, src: &Path, host: &Recorder, kube: &FakeKube) -> crate::serve::Server {
        serve_env(
            dir,
            &argo_config(src, &host.url),
            &[],
            &[("KUBECONFIG", kube.kubeconfig(dir))],
        )
    }

    /// Kills `serve` (as a crash would) and starts it again on the same data.
    fn restart_after(&mut self, while_down: impl FnOnce(&FakeKube)) {
        self.server.child.kill().unwrap();
        self.server.child.wait().unwrap();
        while_down(&self.kube);
        self.server = Self::serve(self.dir.path(), &self.src, &self.host, &self.kube);
    }

    fn push(&self, delivery: &str, sha: &str) {
        push(&self.server.addr, &self.src, delivery, sha);
    }

    /// Waits until both jobs of [`PIPELINE`] were reported pending.
    fn wait_pending(&self) {
        self.host
            .wait(Duration::from_secs(30), "both jobs pending", |r| {
                statuses_for(r, BUILD)
                    .first()
                    .is_some_and(|s| s == "pending")
                    && statuses_for(r, TEST)
                        .first()
                        .is_some_and(|s| s == "pending")
            });
    }

    /// Waits until the run's status reads `status`.
    fn wait_run(&self, run_id: &str, status: &str) {
        let path = format!("/api/v1/runs/{run_id}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, run) = crate::serve::http(&self.server.addr, "GET", &path, "");
            if run["run"]["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the run never read {status}: {run:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn run_of(workflow: &Value) -> String {
    workflow["metadata"]["labels"]["cascade.dev/run-id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn contract_a_push_on_an_argo_repository_becomes_a_workflow_whose_jobs_are_reported() {
    let t = Setup::start(&[("ci.yaml", PIPELINE), ("Makefile", "all:\n")]);
    let (src, sha, host, kube, server) = (&t.src, &t.sha, &t.host, &t.kube, &t.server);
    t.push("d-argo-1", sha);

    let created = kube.wait_created(1);
    let workflow = &created[0];
    // The cluster gets a workflow its CRD accepts, labelled with the run, that checks
    // the pushed commit out for every job and sends no callback of its own.
    let errors: Vec<String> = schema()
        .iter_errors(workflow)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{workflow:#}");
    let run_id = run_of(workflow);
    assert_eq!(workflow["metadata"]["namespace"], "ci");
    assert!(workflow["spec"].get("onExit").is_none(), "{workflow:#}");
    let jobs: Vec<&Value> = workflow["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("container").is_some())
        .collect();
    assert_eq!(jobs.len(), 2, "{workflow:#}");
    for job in jobs {
        let git = &job["inputs"]["artifacts"][0]["git"];
        assert_eq!(git["repo"], format!("file://{}", src.display()));
        assert_eq!(git["revision"], sha.as_str());
        assert_eq!(job["container"]["workingDir"], "/src");
        assert_eq!(job["container"]["image"], "registry.example/build:1");
    }

    let (build, test) = (BUILD, TEST);
    t.wait_pending();
    let name = run_name(workflow, kube);
    assert_eq!(name, format!("app-{run_id}"), "named after its run");
    kube.set_status(
        &name,
        json!({"phase": "Running", "nodes": {
            "n0": node(&name, "DAG", "Running", None),
            "n1": node("build", "Pod", "Running", None),
        }}),
    );
    kube.set_status(
        &name,
        json!({"phase": "Failed", "message": "child 'n2' failed", "nodes": {
            "n0": node(&name, "DAG", "Failed", None),
            "n1": node("build", "Pod", "Succeeded", None),
            "n2": node("unit-test", "Pod", "Failed", Some("Error (exit code 2)")),
        }}),
    );
    let got = host.wait(Duration::from_secs(30), "the jobs' ends", |r| {
        statuses_for(r, build)
            .last()
            .is_some_and(|s| s == "success")
            && statuses_for(r, test).last().is_some_and(|s| s == "failure")
    });
    let failure = got
        .iter()
        .rev()
        .find(|r| r.body["context"] == test)
        .unwrap();
    assert_eq!(failure.body["description"], "Error (exit code 2)");
    assert_eq!(failure.path, format!("/repos/acme/app/statuses/{sha}"));

    // The run reads like any other: failed, where it ran, each job's end.
    let (status, run) =
        crate::serve::http(&server.addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    assert_eq!(run["tasks"][1]["error"], "Error (exit code 2)", "{run:#}");
    let note = events(server, None)[0]["note"].as_str().unwrap().to_owned();
    assert!(note.contains(&format!("Argo workflow ci/{name}")), "{note}");
}

#[test]
fn contract_argo_config_errors_and_refusals_become_failed_statuses_that_say_why() {
    // A secret the admin config does not map to a Kubernetes Secret.
    let secretive = "name: app\non: { push: { branches: [main] } }\njobs:\n  publish: { run: make publish, secrets: [NPM_TOKEN] }\n";
    let t = Setup::start(&[("ci.yaml", secretive)]);
    let whole = "cascade/acme/app/ci.yaml";
    t.push("d-argo-2", &t.sha);
    let got = t
        .host
        .wait(Duration::from_secs(30), "a failed status", |r| {
            statuses_for(r, whole)
                .last()
                .is_some_and(|s| s == "failure")
        });
    let post = got
        .iter()
        .rev()
        .find(|r| r.body["context"] == whole)
        .unwrap();
    let why = post.body["description"].as_str().unwrap();
    assert!(why.contains("secret `NPM_TOKEN`"), "{why}");
    assert!(t.kube.created().is_empty(), "nothing reaches the cluster");

    // The cluster refuses the workflow (as RBAC would): the run fails, saying so.
    t.kube.state.0.lock().unwrap().refuse = Some((
        403,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
               "message": "workflows.argoproj.io is forbidden: User \"cascade\" cannot create resource \"workflows\" in namespace \"ci\""}),
    ));
    let second = commit(&t.src, &[("ci.yaml", PIPELINE)]);
    t.push("d-argo-3", &second);
    t.kube.wait_created(1);
    let of_second =
        |r: &crate::gitops::Recorded| r.path.ends_with(&second) && r.body["context"] == BUILD;
    let got = t.host.wait(
        Duration::from_secs(30),
        "a failed status for the refusal",
        |r| {
            r.iter()
                .any(|p| of_second(p) && p.body["state"] == "failure")
        },
    );
    let post = got.iter().rev().find(|r| of_second(r)).unwrap();
    let why = post.body["description"].as_str().unwrap();
    assert!(
        why.starts_with("cannot create the Argo workflow in `ci`"),
        "{why}"
    );
    assert!(why.contains("forbidden"), "{why}");
}

#[test]
fn contract_argo_runs_survive_a_server_restart_and_a_deleted_workflow_cancels_its_run() {
    let mut t = Setup::start(&[("ci.yaml", PIPELINE), ("Makefile", "all:\n")]);
    t.push("d-argo-4", &t.sha);
    let first = run_name(&t.kube.wait_created(1)[0], &t.kube);
    t.wait_pending();
    // The server dies; the workflow ends while nobody watches.
    t.restart_after(|kube| {
        kube.set_status(
            &first,
            json!({"phase": "Succeeded", "nodes": {
                "n1": node("build", "Pod", "Succeeded", None),
                "n2": node("unit-test", "Pod", "Succeeded", None),
            }}),
        );
    });
    t.host.wait(
        Duration::from_secs(30),
        "the end, seen after the restart",
        |r| {
            statuses_for(r, BUILD)
                .last()
                .is_some_and(|s| s == "success")
                && statuses_for(r, TEST).last().is_some_and(|s| s == "success")
        },
    );

    // A second push; its workflow is deleted before it ends.
    let second = commit(&t.src, &[("Makefile", "all:\n\ttrue\n")]);
    t.push("d-argo-5", &second);
    let name = run_name(&t.kube.wait_created(2)[1], &t.kube);
    t.kube.set_status(
        &name,
        json!({"phase": "Running", "nodes": {"n1": node("build", "Pod", "Running", None)}}),
    );
    t.kube.delete(&name);
    let got = t
        .host
        .wait(Duration::from_secs(30), "the deleted run's jobs end", |r| {
            let last = |context: &str| {
                r.iter()
                    .rev()
                    .find(|p| p.path.ends_with(&second) && p.body["context"] == context)
                    .map(|p| p.body["state"].as_str().unwrap_or_default().to_owned())
            };
            last(BUILD).as_deref() == Some("error") && last(TEST).as_deref() == Some("error")
        });
    assert!(
        got.iter()
            .any(|p| p.path.ends_with(&second) && p.body["description"] == "cancelled"),
        "{got:#?}"
    );
}

/// The name the cluster gave a created workflow (found by its run label).
fn run_name(created: &Value, kube: &FakeKube) -> String {
    let run = run_of(created);
    kube.state
        .0
        .lock()
        .unwrap()
        .objects
        .iter()
        .find(|(_, o)| run_of(o) == run)
        .map(|(name, _)| name.clone())
        .unwrap()
}

#[test]
fn contract_cancelling_an_argo_run_terminates_its_workflow_and_ends_it_cancelled() {
    let t = Setup::start(&[("ci.yaml", PIPELINE), ("Makefile", "all:\n")]);
    t.push("d-argo-6", &t.sha);
    let created = t.kube.wait_created(1);
    let (run_id, name) = (run_of(&created[0]), run_name(&created[0], &t.kube));
    t.kube.set_status(
        &name,
        json!({"phase": "Running", "nodes": {"n1": node("build", "Pod", "Running", None)}}),
    );
    t.wait_run(&run_id, "running");
    let cancel = format!("/api/v1/runs/{run_id}/cancel");
    let (status, answer) = crate::serve::http(&t.server.addr, "POST", &cancel, "");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "cancelling");
    // The server stops the workflow the way `argo terminate` does.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !t
        .kube
        .state
        .0
        .lock()
        .unwrap()
        .patches
        .iter()
        .any(|(n, p)| *n == name && p["spec"]["shutdown"] == "Terminate")
    {
        assert!(Instant::now() < deadline, "the workflow was not terminated");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Argo's controller then fails it; the run ends cancelled, its jobs say so.
    t.kube.set_status(
        &name,
        json!({"phase": "Failed", "message": "Stopped with strategy 'Terminate'", "nodes": {
            "n1": node("build", "Pod", "Failed", Some("terminated")),
        }}),
    );
    t.wait_run(&run_id, "cancelled");
    t.host
        .wait(Duration::from_secs(30), "the cancelled end reported", |r| {
            statuses_for(r, BUILD)
                .last()
                .is_some_and(|s| s == "failure" || s == "error")
        });
    let (status, _) = crate::serve::http(&t.server.addr, "POST", &cancel, "");
    assert_eq!(status, 409, "an ended run has nothing to cancel");
}

/// `curl` with the real API server's admin credentials; returns (status, body).
fn kubectl(k8s: &Path, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let mut out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(k8s.join("pki/ca.crt"))
        .arg("--cert")
        .arg(k8s.join("pki/admin.crt"))
        .arg("--key")
        .arg(k8s.join("pki/admin.key"))
        .args(["-H", &format!("Content-Type: {content_type}")])
        .args(["--data-binary", "@-"])
        .arg(format!("https://127.0.0.1:17445{path}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The body goes through stdin: a CRD is larger than an argument may be.
    let mut stdin = out.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).unwrap();
    drop(stdin);
    let out = out.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Argo's CRDs, applied server-side (idempotent).
fn install_crds(k8s: &Path) {
    for file in [
        "argoproj.io_workflows.yaml",
        "argoproj.io_cronworkflows.yaml",
    ] {
        let text =
            std::fs::read_to_string(crate::root().join("../shared/argo").join(file)).unwrap();
        let name = text
            .lines()
            .skip_while(|l| !l.starts_with("metadata:"))
            .find_map(|l| l.trim().strip_prefix("name: "))
            .unwrap()
            .to_owned();
        let (status, answer) = kubectl(
            k8s,
            "PATCH",
            &format!(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}?fieldManager=cascade-test&force=true"
            ),
            "application/apply-patch+yaml",
            &text,
        );
        assert!(status == 200 || status == 201, "{status} {answer}");
    }
}

#[test]
#[ignore = "needs a real API server; scripts/test builds and starts one and runs this with --ignored"]
fn apiserver_a_push_on_an_argo_repository_runs_as_a_workflow_on_a_real_api_server() {
    let k8s = std::path::PathBuf::from(std::env::var("CASCADE_K8S_DIR").expect(
        "CASCADE_K8S_DIR names the directory of a running API server (scripts/test sets it)",
    ));
    install_crds(&k8s);
    let namespace = format!("e2e-{}", std::process::id());
    let list = format!("/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflows");
    let deadline = Instant::now() + Duration::from_secs(30);
    while kubectl(&k8s, "GET", &list, "application/json", "").0 != 200 {
        assert!(Instant::now() < deadline, "the Workflow CRD is not served");
        std::thread::sleep(Duration::from_millis(200));
    }

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let sha = repo(&src, &[("ci.yaml", PIPELINE), ("Makefile", "all:\n")]);
    let host = Recorder::start();
    let settings = config(
        &src,
        &host.url,
        &format!("backend = \"argo\"\n[argo]\nnamespace = \"{namespace}\"\n"),
    );
    let server = serve_env(
        dir.path(),
        &settings,
        &[],
        &[("KUBECONFIG", k8s.join("kubeconfig").display().to_string())],
    );
    push(&server.addr, &src, "d-argo-real", &sha);
    let workflow = loop {
        let (_, body) = kubectl(&k8s, "GET", &list, "application/json", "");
        if let Some(w) = body["items"].as_array().and_then(|i| i.first()) {
            break w.clone();
        }
        assert!(Instant::now() < deadline, "no workflow was created");
        std::thread::sleep(Duration::from_millis(100));
    };
    let name = workflow["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(
        workflow["metadata"]["labels"]["cascade.dev/run-id"].is_string(),
        "{workflow:#}"
    );
    let build = "cascade/acme/app/ci.yaml/build";
    let test = "cascade/acme/app/ci.yaml/unit_test";
    host.wait(Duration::from_secs(30), "both jobs pending", |r| {
        statuses_for(r, build)
            .first()
            .is_some_and(|s| s == "pending")
            && statuses_for(r, test)
                .first()
                .is_some_and(|s| s == "pending")
    });
    // The controller's part: status updates (this server has no status subresource).
    for status in [
        json!({"phase": "Running", "nodes": {"n1": node("build", "Pod", "Running", None)}}),
        json!({"phase": "Succeeded", "nodes": {
            "n1": node("build", "Pod", "Succeeded", None),
            "n2": node("unit-test", "Pod", "Succeeded", None),
        }}),
    ] {
        let (code, answer) = kubectl(
            &k8s,
            "PATCH",
            &format!("{list}/{name}"),
            "application/merge-patch+json",
            &json!({"status": status}).to_string(),
        );
        assert_eq!(code, 200, "{answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = host.wait(Duration::from_secs(30), "both jobs succeeded", |r| {
        statuses_for(r, build)
            .last()
            .is_some_and(|s| s == "success")
            && statuses_for(r, test).last().is_some_and(|s| s == "success")
    });
    assert!(statuses_for(&got, build).contains(&"pending".to_owned()));
    let (code, _) = kubectl(
        &k8s,
        "DELETE",
        &format!("{list}/{name}"),
        "application/json",
        "",
    );
    assert_eq!(code, 200);
}
