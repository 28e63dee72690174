//! Depth limits (DESIGN §8: bad input never takes a process down): a 20,000-term `if:`
//! and a 20,000-deep `needs` chain, fed to `cascade validate`, `cascade run`, a real
//! `serve`'s API (as a DAG and as `{pipeline}`) and a registered repository's pipeline
//! file pushed through a signed webhook. Each is either refused with a diagnostic naming
//! the limit or run to its end; the processes stay up (a stack overflow would abort
//! them with a signal), and `serve` starts again on the same data (cron reads the file).

use crate::cascade;
use crate::gitops::{Recorder, config, github_headers, push_payload, repo, serve, statuses_for};
use crate::serve::{Server, http, serve_with};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TERMS: usize = 20_000;

/// `event.n0 == 'v0' || … || true`: 20,000 comparisons, about 500 KB, true in the end.
fn wide_condition() -> String {
    let mut terms: Vec<String> = (0..TERMS)
        .map(|i| format!("event.n{i} == 'v{i}'"))
        .collect();
    terms.push("true".to_owned());
    terms.join(" || ")
}

/// A pipeline whose job `a` runs under the 20,000-term condition.
fn wide_pipeline() -> String {
    format!(
        "name: wide\non:\n  push: {{ branches: [main] }}\n  schedule:\n    - cron: \"0 3 * * *\"\njobs:\n  a:\n    if: \"${{{{ {} }}}}\"\n    run: echo wide-ran\n",
        wide_condition()
    )
}

/// 20,000 jobs, each needing the one before.
fn chain_pipeline() -> String {
    let mut text = String::from(
        "name: chain\non:\n  push: { branches: [main] }\n  schedule:\n    - cron: \"0 3 * * *\"\njobs:\n  j0: { run: 'true' }\n",
    );
    for i in 1..TERMS {
        text.push_str(&format!("  j{i}: {{ run: 'true', needs: [j{}] }}\n", i - 1));
    }
    text
}

fn chain_dag() -> Value {
    let tasks: Vec<Value> = (0..TERMS)
        .map(|i| {
            let needs: Vec<String> = (i > 0).then(|| format!("t{}", i - 1)).into_iter().collect();
            json!({"id": format!("t{i}"), "run": "true", "needs": needs})
        })
        .collect();
    json!({"dag_id": "deep-chain", "tasks": tasks})
}

fn wide_dag() -> Value {
    json!({"dag_id": "wide-if", "tasks": [{"id": "a", "run": "echo wide-ran", "if": wide_condition()}]})
}

/// 20,000 parentheses around `true`: past the nesting limit of 64.
fn nested_pipeline() -> String {
    format!(
        "jobs:\n  a:\n    if: \"{}true{}\"\n    run: echo never\n",
        "(".repeat(TERMS),
        ")".repeat(TERMS)
    )
}

fn run_cascade(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = cascade().args(args).current_dir(dir).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_and_run_take_a_20000_term_condition() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wide.yaml"), wide_pipeline()).unwrap();
    let (code, stdout, stderr) = run_cascade(dir.path(), &["validate", "wide.yaml"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ok: wide.yaml (1 jobs)"), "{stdout}");
    let (code, stdout, stderr) = run_cascade(dir.path(), &["run", "wide.yaml"]);
    // `code()` is `None` when a signal (SIGABRT of a stack overflow) ended the process.
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("wide-ran"),
        "{stdout}{stderr}"
    );
}

#[test]
fn validate_and_run_refuse_a_20000_deep_chain_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chain.yaml"), chain_pipeline()).unwrap();
    for args in [&["validate", "chain.yaml"][..], &["run", "chain.yaml"]] {
        let (code, _, stderr) = run_cascade(dir.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("job `j19999` ends a chain of 20000 jobs, each needing the one before; at most 1000 are allowed"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("cascade::spec::too_deep"), "{stderr}");
        assert!(stderr.contains("chain.yaml:20006:3"), "{stderr}");
    }
    // The same as a DAG JSON file.
    std::fs::write(dir.path().join("chain.json"), chain_dag().to_string()).unwrap();
    let (code, _, stderr) = run_cascade(dir.path(), &["validate", "chain.json"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at most 1000 are allowed"), "{stderr}");
}

#[test]
fn validate_and_run_refuse_nesting_past_the_limit_on_a_line_too_long_to_quote() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nested.yaml"), nested_pipeline()).unwrap();
    for args in [&["validate", "nested.yaml"][..], &["run", "nested.yaml"]] {
        let (code, _, stderr) = run_cascade(dir.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        // miette wraps the message; each part is whole.
        for part in [
            "the expression nests more than 64 levels deep",
            "nested.yaml:3:74;",
            "the line is too long to quote",
        ] {
            assert!(stderr.contains(part), "{args:?}: {part}: {stderr}");
        }
        assert!(stderr.contains("at most 64 are allowed"), "{stderr}");
    }
    let (code, stdout, _) =
        run_cascade(dir.path(), &["validate", "--output", "json", "nested.yaml"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (
            report["errors"][0]["line"].as_u64(),
            report["errors"][0]["column"].as_u64()
        ),
        (Some(3), Some(74))
    );
}

/// The server answers `/healthz` and its process is still running.
fn assert_up(server: &mut Server) {
    assert_eq!(
        server.child.try_wait().unwrap(),
        None,
        "serve is no longer running"
    );
    assert_eq!(http(&server.addr, "GET", "/healthz", "").0, 200);
}

/// Polls a run until it ends; returns its final body.
fn wait_end(server: &Server, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let (status, body) = http(&server.addr, "GET", &format!("/api/v1/runs/{run_id}"), "");
        assert_eq!(status, 200, "{body}");
        if matches!(
            body["run"]["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not end: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_refuses_a_20000_deep_chain_and_runs_a_20000_term_condition_over_the_api() {
    let data = tempfile::tempdir().unwrap();
    let mut server = serve_with(data.path(), &[]);
    let addr = server.addr.clone();
    let execute = |body: &Value| http(&addr, "POST", "/api/v1/dag/execute", &body.to_string());

    // A 20,000-deep chain, as a DAG and as a pipeline: refused with the limit.
    let (status, body) = execute(&chain_dag());
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body.to_string().contains("at most 1000 are allowed"),
        "{body}"
    );
    let (status, body) = execute(&json!({"pipeline": chain_pipeline()}));
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body.to_string().contains("at most 1000 are allowed"),
        "{body}"
    );
    // Nesting past the limit: refused too.
    let (status, body) = execute(&json!({"pipeline": nested_pipeline()}));
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body.to_string().contains("nests more than 64 levels deep"),
        "{body}"
    );
    assert_up(&mut server);

    // A 20,000-term condition, as a DAG and as a pipeline: accepted and run to the end.
    for submission in [wide_dag(), json!({"pipeline": wide_pipeline()})] {
        let (status, body) = execute(&submission);
        assert_eq!(status, 202, "{body}");
        let run_id = body["run_id"].as_str().unwrap().to_owned();
        let end = wait_end(&server, &run_id);
        assert_eq!(end["run"]["status"], "succeeded", "{end}");
        assert_up(&mut server);
    }
}

#[test]
fn a_repository_pipeline_with_20000_terms_or_a_20000_deep_chain_keeps_serve_up_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app");
    let first = repo(&src, &[("ci.yaml", &wide_pipeline())]);
    let host = Recorder::start();
    let settings = config(&src, &host.url, "");
    let mut server = serve(dir.path(), &settings, &[]);
    let url = format!("file://{}", src.display());
    let body = push_payload(&url, &"0".repeat(40), &first, &["ci.yaml"]);
    let (status, answer) = crate::gitops::post_hook(
        &server.addr,
        "github",
        &github_headers("wide-1", "push", &body),
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    let context = "cascade/acme/app/ci.yaml/a";
    host.wait(Duration::from_mins(2), "job a reported", |r| {
        statuses_for(r, context)
            .last()
            .is_some_and(|s| s == "success")
    });
    assert_up(&mut server);

    // Restarted: cron reads the 20,000-term file at start.
    drop(server);
    let mut server = serve(dir.path(), &settings, &[]);
    assert_up(&mut server);

    // The chain on the default branch: the push is a failed run naming the limit.
    let second = crate::gitops::commit(&src, &[("ci.yaml", &chain_pipeline())]);
    let body = push_payload(&url, &first, &second, &["ci.yaml"]);
    let (status, answer) = crate::gitops::post_hook(
        &server.addr,
        "github",
        &github_headers("chain-1", "push", &body),
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let log = crate::gitops::events(&server, None);
        if log
            .iter()
            .any(|e| e["status"] == "failed" && e.to_string().contains("at most 1000 are allowed"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed run for the chain: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_up(&mut server);

    // Restarted with the chain on the default branch: cron reads it, serve stays up.
    drop(server);
    let mut server = serve(dir.path(), &settings, &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert_up(&mut server);
}
