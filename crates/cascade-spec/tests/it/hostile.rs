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
