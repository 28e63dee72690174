//! The `validate` defects a new user met (issue 14), each as the user sees it: exit code,
//! stdout and stderr of `cascade validate` on a small file.

use crate::{cascade, transcript};

/// `validate` of `yaml` written to a file named `ci.yaml` in a fresh directory.
fn validate(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.yaml"), yaml).unwrap();
    transcript(
        cascade()
            .current_dir(dir.path())
            .args(["validate", "ci.yaml"]),
    )
}

/// A job with a mistake of its own is still a job: `build` needing it is fine, and the
/// one problem is reported where it is (`runs:`), with the hint for it.
#[test]
fn a_broken_job_still_counts_as_a_job() {
    insta::assert_snapshot!(validate(
        "on: { push: {} }\njobs:\n  lint:\n    runs: ruff check\n  build:\n    needs: [lint]\n    run: make\n"
    ));
}

/// `needs: build2` where `build2` exists but is broken: no "did you mean `build`?" for a
/// name that is there.
#[test]
fn needing_a_broken_job_suggests_no_other_name() {
    insta::assert_snapshot!(validate(
        "on: { push: {} }\njobs:\n  build:\n    run: make\n  build2:\n    run: make\n    timeout: 0s\n  test:\n    needs: [build2]\n    run: make test\n"
    ));
}

/// Every expression problem of a job is reported, each with its hint: a misspelt
/// `outputs` and two unknown inputs are three problems.
#[test]
fn every_expression_problem_of_a_job_is_reported() {
    insta::assert_snapshot!(validate(
        "on: { workflow_dispatch: { inputs: { target: { default: x } } } }\njobs:\n  build:\n    run: make\n    outputs: { x: stdout }\n  ship:\n    needs: [build]\n    env:\n      X: ${{ needs.build.outptus.x }}\n      Y: ${{ inputs.targte }}\n      Z: ${{ inputs.nope }}\n    run: ./ship \"$X\" \"$Y\" \"$Z\"\n"
    ));
}

/// What GitHub Actions users write by habit gets the hint of what Cascade does instead,
/// not the nearest spelling (`runs-on` is not `run`, `services` is not `secrets`).
#[test]
fn github_habits_get_the_cascade_way_as_their_hint() {
    insta::assert_snapshot!(validate(
        "on: { push: {} }\njobs:\n  build:\n    runs-on: ubuntu-latest\n    environment: production\n    services: { db: { image: postgres } }\n    env: { T: \"${{ secrets.TOKEN }}\" }\n    run: make\n"
    ));
}

/// A word from a fixed list (an input's `type`, a DAG's `priority`) that is not one of
/// them: the nearest word, or the list.
#[test]
fn an_unknown_word_of_a_fixed_list_gets_the_nearest_or_the_list() {
    insta::assert_snapshot!(validate(
        "on: { workflow_dispatch: { inputs: { n: { type: numbr } } } }\njobs:\n  a: { run: make }\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dag.json"),
        r#"{"dag_id": "d", "priority": "urgent", "tasks": [{"id": "a", "run": "make"}]}"#,
    )
    .unwrap();
    insta::assert_snapshot!(transcript(
        cascade()
            .current_dir(dir.path())
            .args(["validate", "dag.json"])
    ));
}
