//! A pipeline submitted at a commit of a registered repository (`source` of
//! `POST /api/v1/dag/execute`, `cascade dag submit --commit --repository`): a real
//! `cascade serve`, a git repository made here, its tasks run in a worktree at that
//! commit; unregistered repositories, bad commits and other scopes refused.

use crate::cascade;
use crate::gitops::{commit, repo, serve};
use crate::isolation::log_lines;
use crate::serve::{Server, http, http_as};
use crate::workers::{ended, wait_run};
use cascade_test::git;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const PIPELINE: &str = "name: at-commit\njobs:\n  show:\n    run: cat only-here.txt\n";

/// A repository whose first commit has `only-here.txt` and whose second removes it;
/// `(first, second)`.
fn two_commits(dir: &Path) -> (String, String) {
    let first = repo(
        dir,
        &[
            ("only-here.txt", "made at the first commit\n"),
            ("ci.yaml", PIPELINE),
        ],
    );
    git(dir, &["rm", "-q", "only-here.txt"]);
    let second = commit(dir, &[("README", "the file is gone\n")]);
    (first, second)
}

fn config(repo: &Path) -> String {
    format!(
        "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"file://{}\"\n",
        repo.display()
    )
}

fn submit(server: &Server, auth: Option<&str>, body: &Value) -> (u16, Value) {
    let auth = auth.map_or_else(
        || crate::serve::auth_line(&server.addr),
        |t| format!("Authorization: Bearer {t}\r\n"),
    );
    http_as(
        &server.addr,
        Some(&auth),
        "POST",
        "/api/v1/dag/execute",
        &body.to_string(),
    )
}

#[test]
fn dag_submit_at_a_commit_runs_the_tasks_in_a_worktree_of_that_commit_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("app");
    let (first, _second) = two_commits(&work);
    // `origin` names the registered URL: the server matches it to `acme/app`.
    git(
        &work,
        &[
            "remote",
            "add",
            "origin",
            &format!("file://{}", work.display()),
        ],
    );
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let server = serve(dir.path(), &config(&work), &[]);
    let url = format!("http://{}", server.addr);
    let out = cascade()
        .current_dir(&work)
        .args([
            "dag",
            "submit",
            "ci.yaml",
            "--commit",
            &first[..12],
            "--wait",
        ])
        .args(["--server", &url])
        .env("CASCADE_TOKEN", &server.token)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let run_id = stdout
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(stdout.contains(&format!("{run_id} succeeded")), "{stdout}");
    // The file exists only at that commit: the task ran in its checkout.
    assert_eq!(log_lines(&server, &run_id), ["made at the first commit"]);
    let (_, run) = http(&server.addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
    assert_eq!(run["run"]["source"], format!("acme/app@{first}"), "{run}");
    let (_, dag) = http(&server.addr, "GET", "/api/v1/dags/at-commit", "");
    assert_eq!(dag["scope"], "project:acme-app", "{dag}");
    assert_eq!(
        dag["definition"]["source"],
        json!({"repository": "acme/app", "commit": first})
    );
    let status = cascade()
        .args(["dag", "status", "at-commit", "--server", &url])
        .env("CASCADE_TOKEN", &server.token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("source:     acme/app@{first}")),
        "{text}"
    );
    // The worktree is gone with the run; the clone cache has no worktree left.
    let worktrees = dir.path().join("data/repos");
    assert!(
        walk(&worktrees).iter().any(|p| p.ends_with("objects")),
        "no clone in {}",
        worktrees.display()
    );
    let left: Vec<_> = walk(&worktrees)
        .into_iter()
        .filter(|p| p.ends_with("worktrees"))
        .filter(|p| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()))
        .collect();
    assert!(left.is_empty(), "worktrees left: {left:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.push(path.clone());
            found.extend(walk(&path));
        }
    }
    found
}

#[test]
fn a_source_must_be_a_registered_repository_a_full_sha_and_a_scope_the_token_has() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("app");
    let (first, second) = two_commits(&work);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let server = serve(dir.path(), &config(&work), &[]);
    let body = |repository: &str, commit: &str| json!({"pipeline": PIPELINE, "source": {"repository": repository, "commit": commit}});

    let (status, answer) = submit(&server, None, &body("acme/other", &first));
    assert_eq!(status, 422, "{answer}");
    let message = answer.to_string();
    assert!(
        message.contains("not a repository registered on this server")
            && message.contains("`acme/app`"),
        "{message}"
    );
    for bad in ["main", &first[..12], &format!("{first}0"), "-x"] {
        let (status, answer) = submit(&server, None, &body("acme/app", bad));
        assert_eq!(status, 422, "{bad}: {answer}");
        assert!(answer.to_string().contains("40 hex digits"), "{answer}");
    }
    let (status, answer) = submit(
        &server,
        None,
        &json!({"pipeline": PIPELINE, "source": {"repository": "acme/app", "commit": first, "url": "file:///"}}),
    );
    assert_eq!(status, 422, "{answer}");
    let (status, answer) = submit(
        &server,
        None,
        &json!({"pipeline": PIPELINE, "checkout": {"url": "file:///", "sha": first}}),
    );
    assert_eq!(
        status, 422,
        "a body cannot name the checkout itself: {answer}"
    );

    // The repository's scope decides: a token of another scope is refused, one of it is
    // not (and the URL, in any usual form, names the repository as well as its name).
    let data = dir.path().join("data");
    let other = crate::auth::create_token(&data, "other", "submit", &["project:web"]);
    let (status, answer) = submit(&server, Some(&other), &body("acme/app", &first));
    assert_eq!(status, 403, "{answer}");
    assert!(answer.to_string().contains("project:acme-app"), "{answer}");
    let mine = crate::auth::create_token(&data, "mine", "submit", &["project:acme-app"]);
    let by_url = format!("file://{}/.git/", work.display());
    let (status, answer) = submit(&server, Some(&mine), &body(&by_url, &second.to_uppercase()));
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["run_id"].as_str().unwrap();
    let run = wait_run(&server, run_id, Duration::from_mins(1), ended);
    // At the second commit the file is gone.
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(run["run"]["source"], format!("acme/app@{second}"), "{run}");
    assert!(
        log_lines(&server, run_id)
            .iter()
            .any(|l| l.contains("only-here.txt")),
        "{run}"
    );
}

#[test]
fn a_commit_the_repository_does_not_have_fails_the_run_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("app");
    two_commits(&work);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let server = serve(dir.path(), &config(&work), &[]);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let (status, answer) = submit(
        &server,
        None,
        &json!({"pipeline": PIPELINE, "source": {"repository": "acme/app", "commit": missing}}),
    );
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["run_id"].as_str().unwrap();
    let run = wait_run(&server, run_id, Duration::from_mins(1), ended);
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let error = run["run"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("cannot fetch {missing}")), "{run}");
    assert!(
        run["tasks"]
            .as_array()
            .is_none_or(|t| t.iter().all(|t| t["status"] != "succeeded")),
        "{run}"
    );
}

#[test]
fn dag_submit_at_a_commit_needs_a_server_and_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("app");
    two_commits(&work);
    let out = cascade()
        .current_dir(&work)
        .args(["dag", "submit", "ci.yaml", "--commit", "HEAD", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("CASCADE_SERVER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--commit and --repository need --server"),
        "{out:?}"
    );
    let out = cascade()
        .current_dir(&work)
        .args(["dag", "submit", "ci.yaml", "--commit", "no-such-rev"])
        .args(["--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--commit no-such-rev: not a commit"),
        "{out:?}"
    );
}
