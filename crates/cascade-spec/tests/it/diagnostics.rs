//! One test per broken fixture: the full diagnostics output is a snapshot.

use crate::{fixtures, render};

fn check(case: &str) {
    let path = fixtures().join("invalid").join(format!("{case}.yaml"));
    let bytes = std::fs::read(&path).unwrap();
    let name = format!("{case}.yaml");
    let errors = cascade_spec::parse_pipeline_bytes(&name, &bytes)
        .expect_err("a broken fixture must not validate");
    assert!(!errors.diagnostics.is_empty());
    for d in &errors.diagnostics {
        assert!(
            d.span.offset <= bytes.len(),
            "span out of the file in {case}"
        );
        assert!(
            d.help.is_some(),
            "every diagnostic has a help line: {} in {case}",
            d.message
        );
    }
    insta::assert_snapshot!(case, render(&errors));
}

macro_rules! fixtures {
    ($($case:ident),* $(,)?) => {
        $( #[test] fn $case() { check(stringify!($case)); } )*
        const CASES: &[&str] = &[$(stringify!($case)),*];
    };
}

fixtures!(
    alias_bomb,
    bad_cron,
    bad_duration,
    bad_event,
    bad_expression_function,
    bad_expression_root,
    bad_expression_syntax,
    bad_matrix,
    bad_pull_request_type,
    bad_resources,
    bad_retry,
    bad_shell,
    bad_timezone,
    cycle,
    duplicate_job,
    duplicate_key,
    duplicate_need,
    empty,
    for_each_not_list,
    if_with_text,
    invalid_job_id,
    item_outside_for_each,
    many_errors,
    matrix_and_for_each,
    missing_jobs,
    missing_run,
    ref_not_in_needs,
    reserved_env,
    self_dependency,
    status_outside_if,
    syntax_error,
    top_env_needs,
    unclosed_expression,
    unknown_field_job,
    unknown_field_on,
    unknown_field_top,
    unknown_input,
    unknown_matrix_key,
    unknown_needs,
    unknown_output,
    unknown_output_source,
    wrong_type,
);

#[test]
fn every_fixture_file_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(fixtures().join("invalid"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".yaml")
                .to_owned()
        })
        .collect();
    files.sort();
    let mut cases: Vec<String> = CASES.iter().map(|c| (*c).to_owned()).collect();
    cases.sort();
    assert_eq!(files, cases);
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let bytes = std::fs::read(fixtures().join("invalid/many_errors.yaml")).unwrap();
    let errors = cascade_spec::parse_pipeline_bytes("many_errors.yaml", &bytes).unwrap_err();
    let codes: Vec<&str> = errors.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "cascade::spec::unknown_field",
            "cascade::spec::unknown_need",
            "cascade::spec::unknown_field",
            "cascade::spec::self_dependency",
            "cascade::spec::not_in_needs",
        ]
    );
}

#[test]
fn cycle_message_names_the_whole_cycle() {
    let bytes = std::fs::read(fixtures().join("invalid/cycle.yaml")).unwrap();
    let errors = cascade_spec::parse_pipeline_bytes("cycle.yaml", &bytes).unwrap_err();
    assert_eq!(errors.diagnostics.len(), 1);
    assert_eq!(
        errors.diagnostics[0].message,
        "dependency cycle: a → b → c → a"
    );
}

#[test]
fn unknown_field_suggests_the_closest_name() {
    let bytes = std::fs::read(fixtures().join("invalid/unknown_field_job.yaml")).unwrap();
    let errors = cascade_spec::parse_pipeline_bytes("x.yaml", &bytes).unwrap_err();
    let d = &errors.diagnostics[0];
    assert_eq!(d.help.as_deref(), Some("did you mean `needs`?"));
    assert_eq!(
        errors.line_column(d),
        cascade_spec::LineColumn { line: 5, column: 5 }
    );
}
