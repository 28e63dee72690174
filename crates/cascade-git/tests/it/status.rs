//! Contract tests of the status reporter: a local HTTP server plays the forge's status
//! API, answers from a script, and records every request; the tests assert the exact
//! method, path, headers and body per forge, and the retry and dedup behaviour.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cascade_git::status::Mask;
use cascade_git::{
    CommitState, Forge, Reporter, RetryPolicy, Sent, StatusError, StatusTarget, http_client,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const TOKEN: &str = "ghp_not_a_real_token";

/// A scripted answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Value,
}

impl Recorded {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<missing>")
    }
}

#[derive(Default)]
struct Forgery {
    recorded: Mutex<Vec<Recorded>>,
    /// (status, extra headers, body) answered in order; 201 when empty.
    script: Mutex<VecDeque<Answer>>,
}

struct Server {
    base: String,
    state: Arc<Forgery>,
}

impl Server {
    async fn start(script: Vec<Answer>) -> Self {
        let state = Arc::new(Forgery {
            script: Mutex::new(script.into()),
            ..Forgery::default()
        });
        let shared = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { answer(&state, method, &uri, headers, &body) }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, state }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }
}

fn answer(state: &Forgery, method: Method, uri: &Uri, headers: HeaderMap, body: &[u8]) -> Response {
    state.recorded.lock().unwrap().push(Recorded {
        method,
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
    let (status, extra, text) =
        state
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((201, Vec::new(), "{}"));
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    for (k, v) in extra {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

fn mask() -> Mask {
    Arc::new(|s: &str| s.replace("hunter2", "***"))
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_secs(5),
    }
}

fn reporter(forge: Forge, api: String, repo: &str) -> Reporter {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = StatusTarget {
        forge,
        api_base_url: api,
        repo: repo.to_owned(),
        sha: SHA.to_owned(),
        token: TOKEN.to_owned(),
        target_url: Some("https://ci.example.invalid/runs/7".to_owned()),
    };
    Reporter::new(http_client().unwrap(), target, mask())
        .unwrap()
        .with_retry(fast())
}

fn assert_common(r: &Recorded) {
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(
        r.header("user-agent").starts_with("cascade/"),
        "{}",
        r.header("user-agent")
    );
}

#[tokio::test]
async fn contract_github_request() {
    let server = Server::start(vec![]).await;
    let r = reporter(Forge::GitHub, server.base.clone(), "octo-org/octo-repo");
    let sent = r
        .report("build", CommitState::Pending, "running")
        .await
        .unwrap();
    assert_eq!(
        sent,
        Sent::Posted {
            attempts: 1,
            delays: vec![]
        }
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_common(req);
    assert_eq!(
        req.path,
        format!("/repos/octo-org/octo-repo/statuses/{SHA}")
    );
    assert_eq!(req.header("authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(req.header("accept"), "application/vnd.github+json");
    assert_eq!(req.header("x-github-api-version"), "2022-11-28");
    assert_eq!(
        req.body,
        json!({"state": "pending", "context": "build", "description": "running",
               "target_url": "https://ci.example.invalid/runs/7"})
    );
}

#[tokio::test]
async fn contract_gitea_request() {
    let server = Server::start(vec![]).await;
    let r = reporter(
        Forge::Gitea,
        format!("{}/api/v1", server.base),
        "example/example",
    );
    r.report("test", CommitState::Failure, "2 tests failed")
        .await
        .unwrap();
    r.report("lint", CommitState::Error, "runner alias `huge` is unknown")
        .await
        .unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_common(&reqs[0]);
    assert_eq!(
        reqs[0].path,
        format!("/api/v1/repos/example/example/statuses/{SHA}")
    );
    assert_eq!(reqs[0].header("authorization"), format!("token {TOKEN}"));
    assert_eq!(
        reqs[0].body,
        json!({"state": "failure", "context": "test", "description": "2 tests failed",
               "target_url": "https://ci.example.invalid/runs/7"})
    );
    assert_eq!(reqs[1].body["state"], "error");
    assert_eq!(reqs[1].body["context"], "lint");
}

#[tokio::test]
async fn contract_gitlab_request() {
    let server = Server::start(vec![]).await;
    let r = reporter(
        Forge::GitLab,
        format!("{}/api/v4", server.base),
        "group/project",
    );
    r.report("build", CommitState::Error, "boom").await.unwrap();
    let by_id = reporter(Forge::GitLab, format!("{}/api/v4", server.base), "72081820");
    by_id
        .report("build", CommitState::Success, "ok")
        .await
        .unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_common(&reqs[0]);
    assert_eq!(
        reqs[0].path,
        format!("/api/v4/projects/group%2Fproject/statuses/{SHA}")
    );
    assert_eq!(reqs[0].header("private-token"), TOKEN);
    assert_eq!(reqs[0].header("authorization"), "<missing>");
    assert_eq!(
        reqs[0].body,
        json!({"state": "failed", "name": "build", "description": "boom",
               "target_url": "https://ci.example.invalid/runs/7"})
    );
    assert_eq!(
        reqs[1].path,
        format!("/api/v4/projects/72081820/statuses/{SHA}")
    );
    assert_eq!(reqs[1].body["state"], "success");
}

#[tokio::test]
async fn contract_retries_503_then_succeeds() {
    let server = Server::start(vec![(503, vec![], "busy"), (502, vec![], "bad gateway")]).await;
    let r = reporter(Forge::GitHub, server.base.clone(), "o/r");
    let sent = r
        .report("build", CommitState::Success, "done")
        .await
        .unwrap();
    assert_eq!(
        sent,
        Sent::Posted {
            attempts: 3,
            delays: vec![Duration::from_millis(1), Duration::from_millis(2)]
        }
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter()
            .all(|r| r.body == reqs[0].body && r.path == reqs[0].path)
    );
}

#[tokio::test]
async fn contract_429_waits_for_retry_after() {
    let server = Server::start(vec![(429, vec![("retry-after", "1")], "slow down")]).await;
    let r = reporter(Forge::Gitea, server.base.clone(), "o/r");
    let sent = r
        .report("build", CommitState::Pending, "queued")
        .await
        .unwrap();
    assert_eq!(
        sent,
        Sent::Posted {
            attempts: 2,
            delays: vec![Duration::from_secs(1)]
        }
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn contract_no_retry_on_404() {
    let server = Server::start(vec![(404, vec![], r#"{"message": "Not Found"}"#)]).await;
    let r = reporter(Forge::GitHub, server.base.clone(), "o/r");
    let err = r
        .report("build", CommitState::Pending, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StatusError::Rejected { status: 404, attempts: 1, body, .. } if body.contains("Not Found")),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1);
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn contract_gives_up_after_the_attempts_and_remembers_nothing() {
    let server = Server::start(vec![
        (500, vec![], ""),
        (500, vec![], ""),
        (500, vec![], ""),
    ])
    .await;
    let r = reporter(Forge::GitHub, server.base.clone(), "o/r");
    let err = r
        .report("build", CommitState::Pending, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StatusError::Rejected {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 3);
    // The failed state was not remembered: the same report is sent again.
    assert!(matches!(
        r.report("build", CommitState::Pending, "x").await.unwrap(),
        Sent::Posted { .. }
    ));
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn contract_transport_errors_are_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let r = reporter(Forge::GitHub, base, "o/r");
    let err = r
        .report("build", CommitState::Pending, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StatusError::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn contract_only_changes_are_sent() {
    let server = Server::start(vec![]).await;
    let r = reporter(Forge::GitHub, server.base.clone(), "o/r");
    assert!(matches!(
        r.report("build", CommitState::Pending, "running")
            .await
            .unwrap(),
        Sent::Posted { .. }
    ));
    assert_eq!(
        r.report("build", CommitState::Pending, "running")
            .await
            .unwrap(),
        Sent::Unchanged
    );
    // Another context is its own status.
    assert!(matches!(
        r.report("test", CommitState::Pending, "running")
            .await
            .unwrap(),
        Sent::Posted { .. }
    ));
    // A new description is a change on GitHub.
    assert!(matches!(
        r.report("build", CommitState::Pending, "step 2")
            .await
            .unwrap(),
        Sent::Posted { .. }
    ));
    assert!(matches!(
        r.report("build", CommitState::Success, "done")
            .await
            .unwrap(),
        Sent::Posted { .. }
    ));
    assert_eq!(
        r.report("build", CommitState::Success, "done")
            .await
            .unwrap(),
        Sent::Unchanged
    );
    assert!(matches!(
        r.skipped("deploy").await.unwrap(),
        Sent::Posted { .. }
    ));
    assert_eq!(r.skipped("deploy").await.unwrap(), Sent::Unchanged);
    let reqs = server.requests();
    let seen: Vec<(String, String, String)> = reqs
        .iter()
        .map(|r| {
            let s = |k: &str| r.body[k].as_str().unwrap().to_owned();
            (s("context"), s("state"), s("description"))
        })
        .collect();
    let expect = |c: &str, s: &str, d: &str| (c.to_owned(), s.to_owned(), d.to_owned());
    assert_eq!(
        seen,
        [
            expect("build", "pending", "running"),
            expect("test", "pending", "running"),
            expect("build", "pending", "step 2"),
            expect("build", "success", "done"),
            expect("deploy", "success", "skipped"),
        ]
    );
}

#[tokio::test]
async fn contract_gitlab_sends_state_changes_only() {
    let server = Server::start(vec![]).await;
    let r = reporter(Forge::GitLab, server.base.clone(), "5");
    r.report("build", CommitState::Pending, "running")
        .await
        .unwrap();
    // GitLab refuses pending → pending: a description-only change is not sent.
    assert_eq!(
        r.report("build", CommitState::Pending, "step 2")
            .await
            .unwrap(),
        Sent::Unchanged
    );
    r.report("build", CommitState::Failure, "failed")
        .await
        .unwrap();
    let states: Vec<Value> = server
        .requests()
        .iter()
        .map(|r| r.body["state"].clone())
        .collect();
    assert_eq!(states, [json!("pending"), json!("failed")]);
}

#[tokio::test]
async fn contract_descriptions_are_masked_then_capped() {
    let server = Server::start(vec![]).await;
    let r = reporter(Forge::GitHub, server.base.clone(), "o/r");
    r.report(
        "a",
        CommitState::Failure,
        "login failed with password hunter2",
    )
    .await
    .unwrap();
    // 136 characters, then the secret across the 140 boundary.
    let long = format!("{}hunter2 and more", "é".repeat(136));
    r.report("b", CommitState::Failure, &long).await.unwrap();
    let multibyte = "失敗しました🚀".repeat(40);
    r.report("c", CommitState::Failure, &multibyte)
        .await
        .unwrap();
    let reqs = server.requests();
    let desc = |i: usize| reqs[i].body["description"].as_str().unwrap().to_owned();
    assert_eq!(desc(0), "login failed with password ***");
    let b = desc(1);
    assert!(!b.contains("hunt"), "{b}");
    assert_eq!(b.chars().count(), 140);
    assert!(b.ends_with('…'));
    let c = desc(2);
    assert_eq!(c.chars().count(), 140);
    assert!(multibyte.starts_with(c.trim_end_matches('…')));
    assert!(reqs.iter().all(|r| !r.body.to_string().contains("hunter2")));
}
