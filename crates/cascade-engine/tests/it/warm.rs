//! Warm Python runners ([`cascade_engine::warm`]) with the real interpreter and the
//! package from the source tree (`PYTHONPATH`): the same results, outputs and
//! environment as cold attempts, one server per module, timeouts that end the forked
//! task's grandchildren, and a module that does not import falling back to cold.

use crate::{Ran, Setup, run};
use cascade_plan::{RunOutcome, TaskState};
use serde_json::Value;

const PYTHONPATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../python");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/warm");

fn setup(warm: bool) -> Setup {
    Setup {
        warm_python: warm,
        env: vec![("PYTHONPATH", PYTHONPATH)],
        ..Setup::default()
    }
}

/// A Python job as the SDK lowers one: `python3 -m cascade.runner`, the task in
/// `CSPY_TASK`, its arguments in `CSPY_ARG_n`.
fn job(id: &str, module: &str, function: &str, args: &str, extra: &str) -> String {
    let spec =
        format!(r#"{{"entry": "{module}:{function}", "path": "{FIXTURES}", "args": {{{args}}}}}"#);
    format!(
        "  {id}:\n    run: python3 -m cascade.runner\n    outputs: {{ result: file }}\n{extra}    env:\n      CSPY_TASK: '{spec}'\n"
    )
}

fn chain_map_fan_in() -> String {
    let mut yaml = "jobs:\n".to_owned();
    yaml += &job(
        "items",
        "warm_tasks",
        "items",
        r#""n": {"kind": "const", "value": 3}"#,
        "",
    );
    yaml += &job(
        "shout",
        "warm_tasks",
        "shout",
        r#""item": {"env": "CSPY_ARG_0", "kind": "item"}"#,
        "    needs: [items]\n    for_each: ${{ fromJSON(needs.items.outputs.result) }}\n",
    );
    yaml += "      CSPY_ARG_0: ${{ toJSON(item) }}\n";
    yaml += &job(
        "join",
        "warm_tasks",
        "join",
        r#""parts": {"env": "CSPY_ARG_0", "kind": "fanin"}"#,
        "    needs: [shout]\n",
    );
    yaml += "      CSPY_ARG_0: ${{ toJSON(needs.shout.outputs.result) }}\n";
    yaml
}

fn result(ran: &Ran, task: &str) -> Value {
    let text = ran.task(task).outputs["result"]
        .as_str()
        .unwrap()
        .to_owned();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{task}: {e}: {text}"))
}

#[test]
fn warm_tasks_give_what_cold_tasks_give_from_one_server_per_module() {
    let (warm, cold) = (
        run(&chain_map_fan_in(), setup(true)),
        run(&chain_map_fan_in(), setup(false)),
    );
    for ran in [&warm, &cold] {
        assert_eq!(
            ran.summary.outcome,
            RunOutcome::Succeeded,
            "{:?}",
            ran.logs()
        );
        assert_eq!(result(ran, "join"), Value::from("I0I1I2"));
        assert_eq!(result(ran, "items"), serde_json::json!(["i0", "i1", "i2"]));
        assert!(
            ran.logs().contains(&"shout[1]: shouting i1".to_owned()),
            "{:?}",
            ran.logs()
        );
    }
    let engine = i64::from(std::process::id());
    let mut parents = std::collections::BTreeSet::new();
    for i in 0..3 {
        let task = format!("shout[{i}]");
        let (w, c) = (result(&warm, &task), result(&cold, &task));
        assert_eq!(w["value"], c["value"]);
        // Cold: a fresh interpreter the engine started, which imported the module itself.
        assert_eq!(c["parent"], Value::from(engine));
        assert_eq!(c["imported_here"], Value::Bool(true));
        // Warm: a fork of a server that imported it, not the engine's child.
        assert_ne!(w["parent"], Value::from(engine));
        assert_eq!(w["imported_here"], Value::Bool(false));
        parents.insert(w["parent"].as_i64().unwrap());
        // Both lead their own process group, in the workspace.
        assert_eq!(w["group_leader"], Value::Bool(true));
        assert_eq!(c["group_leader"], Value::Bool(true));
        assert_eq!(w["cwd"].as_str(), warm.dir.path().to_str());
        // The environment a cold task process has: the job's (plus what the
        // interpreter's start adds, e.g. a pyenv shim's variables), nothing of the
        // server's first task; equal values but for the run's own ids and paths.
        let names = |v: &Value| {
            let mut names: Vec<String> = v["env"].as_object().unwrap().keys().cloned().collect();
            names.sort();
            names
        };
        assert_eq!(names(&w), names(&c));
        let value = |v: &Value, ran: &Ran, name: &str| {
            v["env"][name]
                .as_str()
                .unwrap()
                .replace(ran.dir.path().to_str().unwrap(), "<workspace>")
                .replace(ran.events[0].run_id.as_str(), "<run>")
        };
        for name in names(&w) {
            assert_eq!(value(&w, &warm, &name), value(&c, &cold, &name), "{name}");
        }
        assert_eq!(w["env"]["CASCADE_TASK"], Value::from(task.as_str()));
    }
    assert_eq!(parents.len(), 1, "one server for the module: {parents:?}");
    let server = *parents.first().unwrap();
    // The server ended with the run.
    let alive =
        std::fs::read_to_string(format!("/proc/{server}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "the fork server {server} outlived the run");
}

#[test]
fn a_warm_task_that_times_out_is_killed_with_its_grandchild() {
    let mut yaml = "jobs:\n".to_owned();
    yaml += &job("slow", "warm_tasks", "hang", "", "    timeout: 2s\n");
    let ran = run(&yaml, setup(true));
    let slow = ran.task("slow");
    assert_eq!(slow.state, TaskState::Failed, "{:?}", ran.logs());
    assert_eq!(slow.error.as_deref(), Some("timed out after 2s"));
    let pid: i32 = std::fs::read_to_string(ran.dir.path().join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "grandchild {pid} survived the timeout");
}

#[test]
fn a_module_that_does_not_import_runs_cold_and_fails_with_the_import_error() {
    let mut yaml = "jobs:\n".to_owned();
    yaml += &job("broken", "broken_tasks", "never", "", "");
    let ran = run(&yaml, setup(true));
    assert_eq!(ran.state("broken"), TaskState::Failed);
    let logs = ran.logs().join("\n");
    assert!(
        logs.contains("no warm Python runner for broken_tasks"),
        "{logs}"
    );
    assert!(
        logs.contains("RuntimeError: broken on purpose at import"),
        "{logs}"
    );
}

/// A module that takes 30 s to import: the task's 2 s timeout counts from the attempt's
/// start, so it ends the task while its fork server is still importing (before, the
/// attempt waited for the server, then started cold with a fresh timeout).
#[test]
fn a_timeout_does_not_wait_for_the_fork_server_to_import() {
    let mut yaml = "jobs:\n".to_owned();
    yaml += &job("slow", "slow_import", "never", "", "    timeout: 2s\n");
    let began = std::time::Instant::now();
    let ran = run(&yaml, setup(true));
    let slow = ran.task("slow");
    assert_eq!(slow.state, TaskState::Failed, "{:?}", ran.logs());
    assert_eq!(slow.error.as_deref(), Some("timed out after 2s"));
    assert!(
        began.elapsed() < std::time::Duration::from_secs(20),
        "the timeout waited for the import: {:?}",
        began.elapsed()
    );
}
