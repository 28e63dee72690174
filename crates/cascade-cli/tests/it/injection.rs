//! Second-level injection (DESIGN §8): the corpus in `tests/fixtures/injection/`.
//!
//! `refused/` has one file per context where a `${{ }}` value would be parsed as code a
//! second time: `validate` refuses each, at the expression's line and column, naming the
//! context and giving the `env:` hint, and `run` refuses it before anything starts.
//! `safe/` has the same commands with the value passed through `env:` (and
//! `first_level.yaml`, every context where `${{ }}` is allowed): they validate, and run
//! with hostile inputs without ever running them.

use crate::{cascade, root};
use std::path::PathBuf;

fn corpus(kind: &str) -> PathBuf {
    root()
        .join("crates/cascade-cli/tests/fixtures/injection")
        .join(kind)
}

/// Values that run `touch PWNED` wherever they are parsed as code: by a shell, by bash
/// arithmetic (`a[$(…)]`), inside quotes, or by Python.
const HOSTILE: &[&str] = &[
    "a[$(touch PWNED)]",
    "'; touch PWNED; '",
    "\"; touch PWNED; \"",
    "`touch PWNED`",
    "x'); __import__('os').system('touch PWNED'); print('",
];

/// Runs the pipeline in a fresh directory with `value` as its input.
fn run_with(file: &std::path::Path, value: &str) -> (Option<i32>, bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(file, dir.path().join("ci.yaml")).unwrap();
    let out = cascade()
        .args(["run", "ci.yaml", "--input", &format!("value={value}")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), dir.path().join("PWNED").exists(), log)
}

fn refused(case: &str) {
    let relative = format!("crates/cascade-cli/tests/fixtures/injection/refused/{case}.yaml");
    let path = root().join(&relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let context = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# Refused: "))
        .expect("a refused fixture starts with `# Refused: <context>`");
    // The one `${{` of the script, as 1-based line and column.
    let offset = text.find("${{").unwrap();
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;

    let out = cascade()
        .args(["validate", "--output", "json", &relative])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{case}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{case}: {errors:?}");
    let e = &errors[0];
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("inside {context} would be parsed as code")),
        "{case}: {message}"
    );
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(line as u64), Some(column as u64)),
        "{case}"
    );
    assert_eq!(e["code"], "cascade::spec::bad_expression");
    assert!(
        e["help"]
            .as_str()
            .unwrap()
            .contains("pass the value through `env:`"),
        "{case}"
    );

    let out = cascade().args(["validate", &relative]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains(&format!("{relative}:{line}:{column}")),
        "{case}: {stderr}"
    );
    insta::assert_snapshot!(format!("injection_refused_{case}"), stderr);

    // `run` plans the same way, so nothing starts.
    let (code, pwned, log) = run_with(&path, HOSTILE[0]);
    assert_eq!(code, Some(1), "{case}: {log}");
    assert!(!pwned, "{case}");
}

fn safe(case: &str) {
    let relative = format!("crates/cascade-cli/tests/fixtures/injection/safe/{case}.yaml");
    let out = cascade().args(["validate", &relative]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for value in HOSTILE {
        let (code, pwned, log) = run_with(&root().join(&relative), value);
        assert_eq!(code, Some(0), "{case} with {value}: {log}");
        assert!(!pwned, "{case}: {value} was run as code\n{log}");
        if case == "first_level" {
            // The value arrived, as data.
            assert!(log.contains(value), "{case}: {log}");
        }
    }
}

macro_rules! corpus {
    ($kind:ident, $check:ident: $($case:ident),* $(,)?) => {
        mod $kind {
            $( #[test] fn $case() { super::$check(stringify!($case)); } )*
            pub const CASES: &[&str] = &[$(stringify!($case)),*];
        }
    };
}

corpus!(refused_contexts, refused:
    arithmetic, array_assignment, array_declaration, array_subscript, awk, backquotes,
    bash_c, declare_i, dollar_brackets, dollar_single_quote, double_brackets, double_parens,
    eval, heredoc_to_shell, integer_assignment, let_arithmetic, perl_e, printf_v, python_c,
    quoted_heredoc, read, sh_c, single_quotes, ssh, su_c, substring_offset, test_v, trap,
    unset,
);

corpus!(safe_forms, safe:
    arithmetic, array_assignment, array_declaration, array_subscript, awk, backquotes,
    bash_c, declare_i, dollar_brackets, dollar_single_quote, double_brackets, double_parens,
    eval, first_level, heredoc_to_shell, integer_assignment, let_arithmetic, perl_e, printf_v, python_c,
    quoted_heredoc, read, sh_c, single_quotes, ssh, su_c, substring_offset, test_v, trap,
    unset,
);

fn names(kind: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(corpus(kind))
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
    files
}

#[test]
fn every_fixture_has_a_test_and_every_refused_context_a_safe_form() {
    let sorted = |cases: &[&str]| {
        let mut v: Vec<String> = cases.iter().map(|c| (*c).to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names("refused"), sorted(refused_contexts::CASES));
    assert_eq!(names("safe"), sorted(safe_forms::CASES));
    let mut expected = names("refused");
    expected.push("first_level".to_owned());
    expected.sort();
    assert_eq!(names("safe"), expected);
}

/// The server plans every submission with the same scanner: a refused context never
/// reaches a worker.
#[test]
fn serve_refuses_a_second_level_context_in_a_submitted_pipeline() {
    let data = tempfile::tempdir().unwrap();
    let server = crate::serve::serve_with(data.path(), &[]);
    let text = std::fs::read_to_string(corpus("refused").join("sh_c.yaml")).unwrap();
    let body = serde_json::json!({"pipeline": text, "inputs": {"value": HOSTILE[0]}});
    let (status, answer) = crate::serve::http(
        &server.addr,
        "POST",
        "/api/v1/dag/execute",
        &body.to_string(),
    );
    assert!((400..500).contains(&status), "{status} {answer}");
    let answer = answer.to_string();
    assert!(
        answer.contains("the string given to `sh -c` or `bash -c`"),
        "{answer}"
    );
    assert!(answer.contains("env:"), "{answer}");
    assert!(!data.path().join("PWNED").exists());
}
