//! `cascade run --summary FILE`: the run's result as JSON, written when the run ends
//! whatever its outcome (the Python SDK's `cs.run` reads the target's value from it).

use crate::cascade;
use serde_json::json;

const PIPELINE: &str = r#"jobs:
  plan:
    run: echo '["a", "b"]'
    outputs: { parts: stdout-json }
  work:
    needs: [plan]
    for_each: ${{ needs.plan.outputs.parts }}
    run: echo "len=${{ item }}${{ item }}" >> "$CASCADE_OUTPUT"
    outputs: { len: file }
  leak:
    secrets: [SUMMARY_TOKEN]
    run: echo "tok=$SUMMARY_TOKEN" >> "$CASCADE_OUTPUT"
    outputs: { tok: file }
  bad:
    needs: [work]
    run: exit 3
  never:
    needs: [bad]
    run: echo never
"#;

#[test]
fn summary_has_each_task_and_each_job_with_outputs_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.yaml"), PIPELINE).unwrap();
    let out = cascade()
        .args(["run", "ci.yaml", "--summary", "out/summary.json"])
        .current_dir(dir.path())
        .env("SUMMARY_TOKEN", "hunter2-not-to-be-seen")
        .output()
        .unwrap();
    assert!(
        !dir.path().join(".cascade").exists(),
        "refused before the run started"
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot write the summary to out/summary.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cascade()
        .args(["run", "ci.yaml", "--summary", "summary.json", "-j", "1"])
        .current_dir(dir.path())
        .env("SUMMARY_TOKEN", "hunter2-not-to-be-seen")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    assert!(!text.contains("hunter2"), "the secret is masked: {text}");
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["status"], "failed");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(summary["run_id"].as_str().unwrap()),
        "the run id of the run"
    );
    let tasks: Vec<(String, String, String)> = summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["job"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("plan", "plan", "succeeded"),
        ("work[0]", "work", "succeeded"),
        ("work[1]", "work", "succeeded"),
        ("leak", "leak", "succeeded"),
        ("bad", "bad", "failed"),
        ("never", "never", "skipped"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(tasks, expected);
    let task = |id: &str| {
        summary["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(task("work[1]")["outputs"], json!({"len": "bb"}));
    assert_eq!(task("work[1]")["error"], json!(null));
    assert!(
        task("bad")["error"].as_str().unwrap().contains('3'),
        "{}",
        task("bad")
    );
    assert_eq!(
        summary["jobs"],
        json!({
            "plan": {"result": "success", "outputs": {"parts": ["a", "b"]}},
            "work": {"result": "success", "outputs": {"len": ["aa", "bb"]}},
            "leak": {"result": "success", "outputs": {"tok": "***"}},
            "bad": {"result": "failure", "outputs": {}},
            "never": {"result": "skipped", "outputs": {}},
        })
    );
}

#[test]
fn summary_is_written_when_the_run_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ci.yaml"),
        "jobs:\n  long: { run: 'echo started; sleep 30' }\n",
    )
    .unwrap();
    let mut child = cascade()
        .args([
            "run",
            "ci.yaml",
            "--output",
            "json",
            "--kill-grace",
            "1",
            "--summary",
            "summary.json",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    crate::interrupt_at(&child, &mut stdout, "\"started\"");
    std::io::Read::read_to_string(&mut stdout, &mut String::new()).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "cancelled");
    assert_eq!(summary["tasks"][0]["state"], "cancelled");
    assert_eq!(summary["jobs"]["long"]["result"], "cancelled");
}
