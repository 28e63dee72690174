//! What a server run may use (DESIGN §8): secrets only where `cascade.toml` grants them,
//! callbacks only to URLs `cascade.toml` names, dispatches only in the sender's scopes.

use crate::gitops::{Recorder, events, repo, serve_env};
use crate::serve::{http, http_as};
use crate::succeeded;
use crate::workers::{ended, submit, wait_run};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const DEPLOY_KEY: &str = "deploy-key-3f9a61";

/// A dispatch queued as the server's admin.
fn dispatch(addr: &str, event_type: &str, payload: &Value) {
    let body = json!({"event_type": event_type, "client_payload": payload}).to_string();
    let (status, answer) = http(addr, "POST", "/api/v1/dispatch", &body);
    assert_eq!(status, 202, "{answer}");
}

/// Waits for the event of `task` to be handled; its note.
fn handled(server: &crate::serve::Server, task: &str) -> String {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let chain = events(server, Some(task));
        if let Some(e) = chain
            .iter()
            .find(|e| !matches!(e["status"].as_str(), Some("queued" | "processing")))
        {
            return e["note"].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "event {task} not handled: {chain:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The latest run of a registered repository's pipeline, once it ended.
fn ended_run_of(server: &crate::serve::Server, dag_id: &str) -> Value {
    let path = format!("/api/v1/dags/{}", dag_id.replace('/', "%2F"));
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let (status, dag) = http(&server.addr, "GET", &path, "");
        if status == 200
            && let Some(run) = dag["runs"].as_array().and_then(|r| r.first())
            && matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "{dag_id} did not end: {dag}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `cascade.toml` lines registering each `(repository, pipeline file)` of the repository at
/// `url` (one git repository holds every pipeline file of a test).
fn registered(url: &str, repositories: &[(&str, &str)]) -> String {
    use std::fmt::Write as _;
    repositories
        .iter()
        .fold(String::new(), |mut text, (name, file)| {
            let _ = write!(
                text,
                "[repositories.\"{name}\"]\nforge = \"github\"\nurl = \"{url}\"\npipeline = \"{file}\"\n"
            );
            text
        })
}

fn repos(dir: &Path, pipelines: &[(&str, &str)]) -> String {
    let src = dir.join("src");
    repo(&src, pipelines);
    format!("file://{}", src.display())
}

#[test]
fn a_payload_cannot_send_a_callback_to_its_own_url_only_pick_a_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = repos(
        dir.path(),
        &[(
            "build.yaml",
            "on: { repository_dispatch: { types: [go] } }\njobs:\n  build:\n    run: true\n",
        )],
    );
    let attacker = Recorder::start();
    let named = Recorder::start();
    let config = format!(
        "[callbacks]\ndone = \"{}/named\"\n{}",
        named.url,
        registered(&url, &[("acme/build", "build.yaml")])
    );
    let server = serve_env(dir.path(), &config, &[], &[]);
    let steal = format!("{}/steal", attacker.url);
    dispatch(
        &server.addr,
        "go",
        &json!({"task_id": "T1", "callback_url": steal}),
    );
    assert!(handled(&server, "T1").contains("started run"));
    ended_run_of(&server, "acme/build/build.yaml");
    dispatch(
        &server.addr,
        "go",
        &json!({"task_id": "T2", "callback": "done", "callback_url": steal}),
    );
    let got = named.wait(Duration::from_mins(1), "the named callback", |r| {
        r.iter().any(|c| c.body["task_id"] == "T2")
    });
    assert_eq!(got[0].path, "/named");
    // A name that cascade.toml does not have sends nothing either.
    dispatch(
        &server.addr,
        "go",
        &json!({"task_id": "T3", "callback": "nope"}),
    );
    assert!(handled(&server, "T3").contains("started run"));
    ended_run_of(&server, "acme/build/build.yaml");
    // The reporter looks every 300 ms; give it several rounds.
    std::thread::sleep(Duration::from_secs(2));
    assert!(attacker.requests().is_empty(), "{:#?}", attacker.requests());
    assert!(named.requests().iter().all(|c| c.body["task_id"] == "T2"));
}

#[test]
fn a_secret_is_given_only_where_granted_and_the_run_fails_first_naming_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    // Where jobs may leave marks: bound into their sandbox by the config.
    let shared = crate::isolation::shared_dir();
    let job = |marker: &str| {
        format!(
            "on: {{ repository_dispatch: {{ types: [{marker}] }} }}\njobs:\n  deploy:\n    secrets: [DEPLOY_KEY]\n    run: touch {}/{marker}; echo \"key=$DEPLOY_KEY\"\n",
            shared.path().display()
        )
    };
    let url = repos(
        dir.path(),
        &[
            ("granted.yaml", &job("granted")),
            ("denied.yaml", &job("denied")),
        ],
    );
    let config = format!(
        "[sandbox]\nbind = [\"{}\"]\n[grants.DEPLOY_KEY]\nrepositories = [\"acme/granted\"]\n{}",
        shared.path().display(),
        registered(
            &url,
            &[
                ("acme/granted", "granted.yaml"),
                ("acme/denied", "denied.yaml")
            ]
        )
    );
    let server = serve_env(
        dir.path(),
        &config,
        &[],
        &[("DEPLOY_KEY", DEPLOY_KEY.to_owned())],
    );
    dispatch(&server.addr, "denied", &json!({"task_id": "D1"}));
    let note = handled(&server, "D1");
    assert!(
        note.contains("secret `DEPLOY_KEY` not granted to repository `acme/denied`")
            && note.contains("[grants.DEPLOY_KEY] repositories = [\"acme/denied\"]"),
        "{note}"
    );
    assert!(
        !shared.path().join("denied").exists(),
        "a job of the refused run ran"
    );

    dispatch(&server.addr, "granted", &json!({"task_id": "G1"}));
    let run = ended_run_of(&server, "acme/granted/granted.yaml");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(shared.path().join("granted").exists());
    let run_id = run["run_id"].as_str().unwrap();
    let (_, logs) = http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        "",
    );
    let text = logs.to_string();
    assert!(
        text.contains("key=***") && !text.contains(DEPLOY_KEY),
        "{text}"
    );
}

#[test]
fn an_api_submission_gets_only_the_secrets_granted_to_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[grants.DEPLOY_KEY]\nscopes = [\"project:web\"]\n";
    let server = serve_env(
        dir.path(),
        config,
        &[],
        &[("DEPLOY_KEY", DEPLOY_KEY.to_owned())],
    );
    let task = json!({"id": "t", "run": "echo \"key=$DEPLOY_KEY token=${CASCADE_TOKEN:-none}\"", "secrets": ["DEPLOY_KEY"]});
    let web = submit(
        &server,
        &json!({"dag_id": "proj-web-deploy", "tasks": [task]}),
    );
    let other = submit(
        &server,
        &json!({"dag_id": "proj-other-deploy", "tasks": [task]}),
    );
    let done = wait_run(&server, &web, Duration::from_mins(1), ended);
    assert_eq!(done["run"]["status"], "succeeded", "{done}");
    let (_, logs) = http(&server.addr, "GET", &format!("/api/v1/runs/{web}/logs"), "");
    // An API submission's jobs get no job token (its dispatches would reach every
    // repository, whatever scopes its submitter had).
    assert!(logs.to_string().contains("key=*** token=none"), "{logs}");
    // A repository pipeline's DAG id cannot be taken by a submission.
    let squat = json!({"pipeline": "name: acme/b/ci.yaml\njobs: { a: { run: true } }\n"});
    let (status, answer) = http(
        &server.addr,
        "POST",
        "/api/v1/dag/execute",
        &squat.to_string(),
    );
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "dag_id", "{answer}");
    let refused = wait_run(&server, &other, Duration::from_mins(1), ended);
    assert_eq!(refused["run"]["status"], "failed", "{refused}");
    let error = refused["run"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("[grants.DEPLOY_KEY] scopes = [\"project:other\"]"),
        "{refused}"
    );
    assert!(
        refused["tasks"]
            .as_array()
            .is_none_or(|t| t.iter().all(|t| t["status"] != "succeeded"))
    );
    // The orchestrator's own field cannot be smuggled into an API submission.
    let smuggled = json!({"pipeline": "jobs: { a: { run: true } }", "repository": "acme/app"});
    let (status, answer) = http(
        &server.addr,
        "POST",
        "/api/v1/dag/execute",
        &smuggled.to_string(),
    );
    assert_eq!(status, 422, "{answer}");
}

#[test]
fn a_dispatch_starts_only_pipelines_of_its_tokens_scopes_and_needs_submit() {
    let dir = tempfile::tempdir().unwrap();
    // Where jobs may leave marks: bound into their sandbox by the config.
    let shared = crate::isolation::shared_dir();
    let pipeline = |name: &str| {
        format!(
            "on: {{ repository_dispatch: {{ types: [go] }} }}\njobs:\n  a:\n    run: touch {}/{name}\n",
            shared.path().display()
        )
    };
    let url = repos(
        dir.path(),
        &[
            ("one.yaml", &pipeline("one")),
            ("two.yaml", &pipeline("two")),
        ],
    );
    let config = format!(
        "[sandbox]\nbind = [\"{}\"]\n{}",
        shared.path().display(),
        registered(&url, &[("acme/one", "one.yaml"), ("acme/two", "two.yaml")])
    );
    let server = serve_env(dir.path(), &config, &[], &[]);
    let data = dir.path().join("data");
    let token = |role: &str, scope: &str| {
        let out = succeeded(
            crate::cascade()
                .args([
                    "token",
                    "create",
                    "--name",
                    &format!("{role}-{}", scope.replace(':', "-")),
                    "--role",
                    role,
                    "--scope",
                    scope,
                    "--data-dir",
                ])
                .arg(&data),
        );
        format!(
            "Authorization: Bearer {}\r\n",
            String::from_utf8(out.stdout).unwrap().trim()
        )
    };
    let body = json!({"event_type": "go", "client_payload": {"task_id": "S1"}}).to_string();
    let reader = token("read", "project:acme-one");
    assert_eq!(
        http_as(
            &server.addr,
            Some(&reader),
            "POST",
            "/api/v1/dispatch",
            &body
        )
        .0,
        403
    );
    let one = token("submit", "project:acme-one");
    let (status, answer) = http_as(&server.addr, Some(&one), "POST", "/api/v1/dispatch", &body);
    assert_eq!(status, 202, "{answer}");
    let note = handled(&server, "S1");
    assert!(
        note.contains("acme/one/one.yaml") && !note.contains("acme/two"),
        "{note}"
    );
    ended_run_of(&server, "acme/one/one.yaml");
    assert!(shared.path().join("one").exists() && !shared.path().join("two").exists());
    // Its events are its own; another scope's token does not see them.
    let two = token("read", "project:acme-two");
    let (_, seen) = http_as(&server.addr, Some(&two), "GET", "/api/v1/events", "");
    assert_eq!(seen["events"], json!([]), "{seen}");
    let (_, mine) = http_as(&server.addr, Some(&one), "GET", "/api/v1/events", "");
    assert_eq!(mine["events"].as_array().unwrap().len(), 1, "{mine}");
    // Its task id does not take the one another sender's chain uses: that dispatch is
    // queued, not answered as a duplicate.
    let (status, answer) = http(&server.addr, "POST", "/api/v1/dispatch", &body);
    assert_eq!(
        (status, answer["duplicate"].as_bool()),
        (202, Some(false)),
        "{answer}"
    );
}

#[test]
fn a_pull_request_from_a_fork_runs_the_base_pipeline_without_secrets_or_a_job_token() {
    use crate::gitops::{commit, github_headers, post_hook};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let pipeline = "on: { pull_request: {} }\njobs:\n  look:\n    run: echo \"token=${CASCADE_TOKEN:-none} key=${DEPLOY_KEY:-none} title=${{ event.pull_request.title }}\"\n";
    let base = repo(&src, &[("ci.yaml", pipeline)]);
    cascade_test::git(&src, &["checkout", "-q", "-b", "feature"]);
    // The fork's own pipeline would print the key; it is never read.
    let head = commit(
        &src,
        &[(
            "ci.yaml",
            "on: { pull_request: {} }\njobs:\n  steal:\n    secrets: [DEPLOY_KEY]\n    run: echo \"stolen=$DEPLOY_KEY\"\n",
        )],
    );
    let url = format!("file://{}", src.display());
    let config = format!(
        "[grants.DEPLOY_KEY]\nrepositories = [\"acme/app\"]\n[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"{url}\"\n"
    );
    let server = serve_env(
        dir.path(),
        &config,
        &[],
        &[("DEPLOY_KEY", DEPLOY_KEY.to_owned())],
    );
    let body = json!({
        "action": "opened",
        "number": 7,
        "pull_request": {
            "number": 7,
            "title": "$(touch PWNED) \"; echo $DEPLOY_KEY",
            "head": {"ref": "feature", "sha": head, "repo": {"id": 2, "full_name": "mallory/app"}},
            "base": {"ref": "main", "sha": base, "repo": {"id": 1, "full_name": "acme/app"}}
        },
        "repository": {"id": 1, "full_name": "acme/app", "clone_url": url, "default_branch": "main"},
        "sender": {"login": "mallory"}
    })
    .to_string();
    let (status, answer) = post_hook(
        &server.addr,
        "github",
        &github_headers("fork-pr-1", "pull_request", &body),
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    let run = ended_run_of(&server, "acme/app/ci.yaml");
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["run_id"].as_str().unwrap();
    let (_, logs) = http(
        &server.addr,
        "GET",
        &format!("/api/v1/runs/{run_id}/logs"),
        "",
    );
    let text = logs.to_string();
    assert!(
        text.contains("token=none key=none") && !text.contains("stolen"),
        "{text}"
    );
    assert!(
        text.contains("title=$(touch PWNED)"),
        "the title is data: {text}"
    );
    assert!(!src.join("PWNED").exists() && !dir.path().join("PWNED").exists());
}
