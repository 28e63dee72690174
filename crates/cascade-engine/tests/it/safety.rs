//! Untrusted data never becomes shell text; secrets never reach a log or an output.

use crate::{Setup, run};
use base64::Engine as _;
use cascade_plan::{RunOutcome, TaskState, Trigger};

/// Values an attacker would put in a PR title, a branch name or an input. Each tries to
/// create the file `pwned` in the workspace.
const INJECTIONS: &[&str] = &[
    "\"; touch pwned #",
    "'; touch pwned #",
    "$(touch pwned)",
    "`touch pwned`",
    "x\ntouch pwned",
    "${IFS}touch${IFS}pwned",
    "a && touch pwned",
    "a; touch pwned",
    "a | touch pwned",
    "$(touch${IFS}pwned)",
    "\\\"; touch pwned; echo \\\"",
    "'\"$(touch pwned)\"'",
];

fn injection_pipeline() -> &'static str {
    r#"
on:
  workflow_dispatch:
    inputs:
      value: { default: "" }
jobs:
  unquoted:
    run: printf '%s\n' ${{ inputs.value }} ${{ event.pull_request.title }}
  double:
    run: printf '%s\n' "input ${{ inputs.value }} title ${{ event.pull_request.title }}"
  # `${{ }}` inside '…' is refused (it is what `sh -c '…'` takes as code); the value
  # goes through `env:` and is spliced in next to the quotes.
  single:
    env: { VALUE: "${{ inputs.value }}", TITLE: "${{ event.pull_request.title }}" }
    run: printf '%s\n' 'input '"$VALUE"' title '"$TITLE"
  env:
    env: { TITLE: "${{ event.pull_request.title }}" }
    run: printf '%s\n' "$TITLE"
  fan:
    for_each: ${{ fromJSON(event.items) }}
    run: printf '%s\n' ${{ item }}
  check:
    if: event.pull_request.title == inputs.value
    run: echo "equal"
"#
}

#[test]
fn the_injection_corpus_never_runs_as_code() {
    for value in INJECTIONS {
        let mut trigger = Trigger::manual();
        trigger.inputs.insert("value".into(), (*value).to_owned());
        trigger.payload = serde_json::json!({
            "pull_request": {"title": value},
            "items": serde_json::to_string(&[value]).unwrap(),
        });
        let ran = run(
            injection_pipeline(),
            Setup {
                trigger,
                ..Setup::default()
            },
        );
        assert!(
            !ran.dir.path().join("pwned").exists(),
            "{value:?} ran as code"
        );
        assert_eq!(
            ran.summary.outcome,
            RunOutcome::Succeeded,
            "{value:?}: {:?}",
            ran.summary.tasks
        );
        // The value arrives as data, byte for byte.
        let logs = ran.logs().join("\n");
        let first_line = value.lines().next().unwrap();
        assert!(
            logs.contains(&format!("double: input {first_line}")),
            "{value:?} not passed intact: {logs}"
        );
        assert!(
            logs.contains(&format!("single: input {first_line}")),
            "{value:?} not passed intact in single quotes: {logs}"
        );
        assert!(
            logs.contains(&format!("env: {first_line}")),
            "{value:?}: {logs}"
        );
        assert!(
            logs.contains(&format!("fan[0]: {first_line}")),
            "{value:?}: {logs}"
        );
        assert_eq!(ran.state("check"), TaskState::Succeeded);
    }
}

/// Secrets with characters that break naive masking (regex, shell, multi-line).
const SECRETS: &[(&str, &str)] = &[
    ("PLAIN", "hunter2-super-secret"),
    ("SHELLY", "p@$$w0rd$(x)`y`*?[a]"),
    (
        "MULTI",
        "-----BEGIN KEY-----\nline-one-of-key\nline-two-of-key\n-----END KEY-----",
    ),
    ("UNICODE", "sécret-✓-value"),
];

#[test]
fn the_masking_corpus_never_leaks() {
    let mut secrets = cascade_engine::Secrets::default();
    for (k, v) in SECRETS {
        secrets.insert(k, v);
    }
    let ran = run(
        r#"
jobs:
  leak:
    secrets: [PLAIN, SHELLY, MULTI, UNICODE]
    outputs: { token: file, raw: stdout }
    run: |
      echo "plain $PLAIN"
      echo "shelly $SHELLY"
      echo "$MULTI"
      echo "unicode $UNICODE"
      printf '%s' "$PLAIN" | base64
      printf 'user:%s' "$PLAIN" | base64
      printf '%s' "$PLAIN" | cut -c1-6; sleep 0.05; printf '%s\n' "$PLAIN" | cut -c7-
      printf '%s' "$PLAIN" | head -c 8 >&2; sleep 0.05; printf '%s\n' "$PLAIN" | tail -c +9 >&2
      echo "token=$PLAIN" >> "$CASCADE_OUTPUT"
  undeclared:
    run: echo "plain=[${PLAIN:-unset}]"
  failing:
    secrets: [PLAIN]
    run: echo "$PLAIN" >&2; exit 1
"#,
        // The user also exported PLAIN in the shell that started the engine.
        Setup {
            secrets,
            env: vec![("PLAIN", "hunter2-super-secret")],
            ..Setup::default()
        },
    );
    let logs = ran.logs().join("\n");
    let outputs = serde_json::to_string(
        &ran.summary
            .tasks
            .iter()
            .map(|t| &t.outputs)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (_, value) in SECRETS {
        for line in value.lines().filter(|l| l.len() >= 4) {
            assert!(
                !logs.contains(line),
                "secret line {line:?} leaked into logs:\n{logs}"
            );
            assert!(
                !outputs.contains(line),
                "secret line {line:?} leaked into outputs: {outputs}"
            );
        }
        assert!(
            !logs.contains(&b64.encode(value)),
            "base64 of a secret leaked:\n{logs}"
        );
    }
    assert!(logs.contains("leak: plain ***"), "{logs}");
    // The secret split across two writes is still masked, on stdout and stderr.
    assert!(!logs.contains("hunter2"), "{logs}");
    // A job that does not declare a secret does not get it, even though the engine knows it.
    assert!(logs.contains("undeclared: plain=[unset]"), "{logs}");
    assert_eq!(ran.state("failing"), TaskState::Failed);
}

#[test]
fn a_malformed_output_file_does_not_quote_a_secret_in_the_error() {
    let mut secrets = cascade_engine::Secrets::default();
    secrets.insert("TOKEN", "output-file-secret");
    let ran = run(
        "jobs:\n  a: { secrets: [TOKEN], outputs: { x: file }, run: 'echo \"$TOKEN\" >> \"$CASCADE_OUTPUT\"' }\n",
        Setup {
            secrets,
            ..Setup::default()
        },
    );
    let error = ran.task("a").error.clone().unwrap();
    assert!(error.starts_with("invalid $CASCADE_OUTPUT"), "{error}");
    assert!(!error.contains("output-file-secret"), "{error}");
    let events = serde_json::to_string(&ran.events).unwrap();
    assert!(!events.contains("output-file-secret"));
}

#[test]
fn a_long_secret_cut_by_an_error_excerpt_is_still_masked() {
    // Longer than the 60-character excerpt of a malformed line.
    let jwt =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.abcdefghijkl";
    let mut secrets = cascade_engine::Secrets::default();
    secrets.insert("TOKEN", jwt);
    let ran = run(
        "jobs:\n  a: { secrets: [TOKEN], outputs: { x: file }, run: 'echo \"$TOKEN\" >> \"$CASCADE_OUTPUT\"' }\n",
        Setup {
            secrets,
            ..Setup::default()
        },
    );
    let error = ran.task("a").error.clone().unwrap();
    assert!(!error.contains(&jwt[..20]), "{error}");
    let events = serde_json::to_string(&ran.events).unwrap();
    assert!(!events.contains(&jwt[..20]));
}

#[test]
fn only_declared_outputs_are_kept_and_names_never_carry_secrets() {
    let mut secrets = cascade_engine::Secrets::default();
    secrets.insert("TOKEN", "SuperSecretTokenValue1=");
    let ran = run(
        "jobs:\n  a: { secrets: [TOKEN], outputs: { x: file }, run: 'echo \"$TOKEN\" >> \"$CASCADE_OUTPUT\"; echo x=1 >> \"$CASCADE_OUTPUT\"; echo other=2 >> \"$CASCADE_OUTPUT\"' }\n",
        Setup {
            secrets,
            ..Setup::default()
        },
    );
    let outputs = &ran.task("a").outputs;
    assert_eq!(outputs.keys().collect::<Vec<_>>(), ["x"]);
    assert_eq!(outputs["x"], "1");
}

#[test]
fn comments_and_command_substitution_keep_values_whole() {
    let mut trigger = Trigger::manual();
    trigger.inputs.insert("value".into(), "a b -x *".into());
    let ran = run(
        "on: { workflow_dispatch: { inputs: { value: { default: '' } } } }\njobs:\n  a:\n    run: |\n      # don't do this\n      printf '[%s]\\n' \"${{ inputs.value }}\"\n      printf '[%s]\\n' \"$(printf '%s' \"${{ inputs.value }}\")\"\n      cat <<EOF\n      [${{ inputs.value }}]\n      EOF\n",
        Setup {
            trigger,
            ..Setup::default()
        },
    );
    assert_eq!(
        ran.logs(),
        ["a: [a b -x *]", "a: [a b -x *]", "a: [a b -x *]"]
    );
}
