//! Inputs meant to hurt: oversized files, alias bombs, invalid UTF-8.

use cascade_spec::{Code, MAX_FILE_BYTES, parse_pipeline_bytes};

#[test]
fn a_file_over_one_mebibyte_is_refused_before_parsing() {
    // Valid YAML, so only the size check can refuse it.
    let mut text = String::from("jobs:\n  a: { run: make }\n# ");
    text.push_str(&"x".repeat(MAX_FILE_BYTES));
    let errors = parse_pipeline_bytes("big.yaml", text.as_bytes()).unwrap_err();
    assert_eq!(errors.diagnostics.len(), 1);
    assert_eq!(errors.diagnostics[0].code, Code::TooLarge);
    // The error keeps no copy of the refused text.
    assert!(errors.source.is_empty());
}

#[test]
fn a_file_of_exactly_the_limit_is_read() {
    let mut text = String::from("jobs:\n  a: { run: make }\n# ");
    text.push_str(&"x".repeat(MAX_FILE_BYTES - text.len()));
    assert_eq!(text.len(), MAX_FILE_BYTES);
    assert!(parse_pipeline_bytes("edge.yaml", text.as_bytes()).is_ok());
}

#[test]
fn an_alias_bomb_is_refused_by_the_replay_budget() {
    // Nine levels of nine aliases would expand to 387 million strings.
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let refs = vec![format!("*a{}", level - 1); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    text.push_str("jobs: { a: { run: make } }\n");
    let errors = parse_pipeline_bytes("bomb.yaml", text.as_bytes()).unwrap_err();
    assert_eq!(errors.diagnostics[0].code, Code::Syntax);
    assert!(
        errors.diagnostics[0].message.contains("alias replay limit"),
        "{}",
        errors.diagnostics[0].message
    );
}

#[test]
fn invalid_utf8_is_reported_with_its_offset() {
    let mut bytes = b"jobs:\n  a: { run: \"echo ".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\" }\n");
    let errors = parse_pipeline_bytes("bad.yaml", &bytes).unwrap_err();
    assert_eq!(errors.diagnostics[0].code, Code::NotUtf8);
    assert_eq!(errors.diagnostics[0].span.offset, 24);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("jobs: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse_pipeline_bytes("deep.yaml", text.as_bytes()).is_err());
}

/// Runs `f` on a thread with a tokio worker's stack (2 MiB): what the server parses
/// submissions and webhook pipelines on.
fn on_worker_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn chain_yaml(n: usize) -> String {
    let mut text = String::from("jobs:\n  j0: { run: 'true' }\n");
    for i in 1..n {
        text.push_str(&format!("  j{i}: {{ run: 'true', needs: [j{}] }}\n", i - 1));
    }
    text
}

fn chain_dag(n: usize) -> String {
    let tasks: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let needs: Vec<String> = (i > 0).then(|| format!("t{}", i - 1)).into_iter().collect();
            serde_json::json!({"id": format!("t{i}"), "run": "true", "needs": needs})
        })
        .collect();
    serde_json::json!({"dag_id": "deep", "tasks": tasks}).to_string()
}

#[test]
fn a_20000_term_condition_parses_and_validates_on_a_worker_stack() {
    on_worker_stack(|| {
        let terms: Vec<String> = (0..20_000)
            .map(|i| format!("event.n{i} == 'v{i}'"))
            .collect();
        let text = format!(
            "jobs:\n  a:\n    if: \"${{{{ {} || true }}}}\"\n    run: echo hi\n",
            terms.join(" || ")
        );
        assert!(text.len() > 380_000);
        let pipeline = parse_pipeline_bytes("wide.yaml", text.as_bytes()).unwrap();
        let condition = pipeline.jobs["a"].condition.as_ref().unwrap();
        assert_eq!(condition.expr.references().len(), 20_000);
        drop(pipeline);
    });
}

#[test]
fn expression_nesting_past_the_limit_is_a_diagnostic() {
    on_worker_stack(|| {
        let text = format!(
            "jobs:\n  a:\n    if: \"{}true{}\"\n    run: echo hi\n",
            "(".repeat(20_000),
            ")".repeat(20_000)
        );
        let errors = parse_pipeline_bytes("nested.yaml", text.as_bytes()).unwrap_err();
        assert_eq!(errors.diagnostics.len(), 1);
        let d = &errors.diagnostics[0];
        assert_eq!(d.code, Code::BadExpression);
        assert_eq!(
            d.message,
            "invalid expression in `if` of job `a`: the expression nests more than 64 levels deep"
        );
        // At the first `(` past the limit: the 65th, the first being in column 10.
        assert_eq!(errors.line_column(d).line, 3);
        assert_eq!(errors.line_column(d).column, 10 + 64);
    });
}

#[test]
fn a_needs_chain_past_the_limit_is_a_diagnostic_in_yaml_and_dag_json() {
    on_worker_stack(|| {
        let limit = cascade_spec::MAX_NEEDS_DEPTH;
        let errors = parse_pipeline_bytes("chain.yaml", chain_yaml(20_000).as_bytes()).unwrap_err();
        assert_eq!(errors.diagnostics.len(), 1);
        let d = &errors.diagnostics[0];
        assert_eq!(d.code, Code::TooDeep);
        assert_eq!(
            d.message,
            format!(
                "job `j19999` ends a chain of 20000 jobs, each needing the one before; at most {limit} are allowed"
            )
        );
        assert_eq!(errors.line_column(d).line, 20_001);
        let errors = cascade_spec::parse_dag("chain.json", &chain_dag(20_000)).unwrap_err();
        assert_eq!(errors.diagnostics[0].code, Code::TooDeep);
        // Up to the limit is fine.
        assert!(parse_pipeline_bytes("ok.yaml", chain_yaml(limit).as_bytes()).is_ok());
        assert!(cascade_spec::parse_dag("ok.json", &chain_dag(limit)).is_ok());
        assert!(parse_pipeline_bytes("over.yaml", chain_yaml(limit + 1).as_bytes()).is_err());
    });
}

#[test]
fn a_cycle_in_a_20000_job_pipeline_is_found_without_recursion() {
    on_worker_stack(|| {
        let text = chain_yaml(20_000).replacen(
            "j0: { run: 'true' }",
            "j0: { run: 'true', needs: [j19999] }",
            1,
        );
        let errors = parse_pipeline_bytes("cycle.yaml", text.as_bytes()).unwrap_err();
        assert_eq!(errors.diagnostics.len(), 1);
        assert_eq!(errors.diagnostics[0].code, Code::Cycle);
    });
}
