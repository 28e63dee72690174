//! The DAG JSON form (DESIGN §3): `{"dag_id", "scope", "target_node", "priority",
//! "tasks": [{"id", "run", "needs", "env", "retry": {"limit", "delay"}, "timeout",
//! "resources": {"cpu", "memory"}}]}`.
//!
//! JSON is YAML, so a DAG file is read into the same span-keeping node tree as ci.yaml
//! and walked here; problems get the same line:column diagnostics. The result is a
//! [`Pipeline`] (one job per task), so every backend runs DAGs and pipelines alike.

use crate::diagnostic::{Code, Diagnostic, SpecErrors};
use crate::job::Form;
use crate::model::{Job, JobId, Pipeline, Triggers};
use crate::parse::{self, Walker};
use crate::scope::Scope;
use crate::source::{Node, Span, Value};
use indexmap::IndexMap;

pub const DAG_FIELDS: &[&str] = &["dag_id", "scope", "target_node", "priority", "tasks"];
/// The fields of a task: `id` (read here), the others by the job walker of `job.rs`.
pub const TASK_FIELDS: &[&str] = &[
    "id",
    "run",
    "needs",
    "env",
    "retry",
    "timeout",
    "image",
    "runner",
    "resources",
    "secrets",
    "if",
    "continue_on_error",
];
pub const DAG_RETRY_FIELDS: &[&str] = &["limit", "delay", "max_delay"];

/// A DAG task: the API's words for the retry delays, help examples in JSON.
const DAG_TASK: Form = Form {
    noun: "task",
    fields: TASK_FIELDS,
    habits: &[],
    retry_fields: DAG_RETRY_FIELDS,
    backoff: "delay",
    max_backoff: "max_delay",
    json: true,
};

/// Queue priority of a submission: the word everywhere it is shown (`low`, `normal`,
/// `high`), its [`rank`](Priority::rank) only in the store's queue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    /// The words of the DAG JSON, with their priorities.
    pub const WORDS: &'static [(&'static str, Priority)] = &[
        ("low", Priority::Low),
        ("normal", Priority::Normal),
        ("high", Priority::High),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// The number the queue orders by (higher runs first).
    pub fn rank(self) -> i64 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
        }
    }

    /// The priority of a stored rank; a rank outside 0..=2 (none is written) is the
    /// nearest one.
    pub fn from_rank(rank: i64) -> Self {
        match rank {
            ..=0 => Priority::Low,
            1 => Priority::Normal,
            2.. => Priority::High,
        }
    }
}

/// A validated DAG submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Dag {
    pub dag_id: Option<String>,
    pub scope: Option<Scope>,
    pub target_node: Option<String>,
    pub priority: Priority,
    /// The tasks as a pipeline, one job per task.
    pub pipeline: Pipeline,
}

/// Parses and validates a DAG JSON text.
pub fn parse_dag(name: &str, text: &str) -> Result<Dag, SpecErrors> {
    if text.len() > parse::MAX_FILE_BYTES {
        // The same refusal as for pipeline files, before any parsing.
        return Err(parse::too_large(name, text.len()));
    }
    let empty = Diagnostic::new(
        Code::Empty,
        Span::default(),
        "the DAG is empty",
        "expected an object with `tasks`",
    )
    .help("send e.g. {\"tasks\": [{\"id\": \"build\", \"run\": \"make\"}]}");
    let root = parse::read_document(name, text, empty)?;
    let mut w = Walker::new(text);
    let dag = walk(&mut w, &root);
    w.finish(name, dag, |d| &d.pipeline)
}

#[expect(
    clippy::too_many_lines,
    reason = "one block per DAG field reads best in one place"
)]
fn walk(w: &mut Walker<'_>, root: &Node) -> Option<Dag> {
    let f = w.fields(root, DAG_FIELDS, "the DAG")?;
    let dag_id = f.get("dag_id").and_then(|n| {
        let id = w.string(n, "`dag_id`")?;
        if id.is_empty()
            || id.len() > 128
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            w.push(
                Diagnostic::new(
                    Code::BadName,
                    n.span,
                    format!("invalid dag_id `{id}`"),
                    "invalid id",
                )
                .help("use letters, digits, `_`, `-`, `.` and `:` (at most 128 characters)"),
            );
            return None;
        }
        Some(id)
    });
    let scope = f.get("scope").and_then(|n| {
        let text = w.string(n, "`scope`")?;
        match Scope::parse(&text) {
            Ok(s) => Some(s),
            Err(e) => {
                w.push(
                    Diagnostic::new(Code::BadValue, n.span, e.to_string(), "invalid scope")
                        .help("e.g. \"global\", \"project:proj-a\", \"user:ana\" or \"type:gpu\""),
                );
                None
            }
        }
    });
    let target_node = f
        .get("target_node")
        .and_then(|n| w.string(n, "`target_node`"));
    let priority = f
        .get("priority")
        .and_then(|n| w.one_of(n, "`priority`", "priority", Priority::WORDS))
        .unwrap_or_default();
    let Some(tasks) = f.get("tasks") else {
        w.push(
            Diagnostic::new(
                Code::MissingField,
                root.span,
                "missing field `tasks`",
                "the DAG starts here",
            )
            .help("add \"tasks\": [{\"id\": \"build\", \"run\": \"make\"}]"),
        );
        return None;
    };
    let Value::Seq(items) = &tasks.value else {
        w.wrong_type(tasks, "a list of tasks", "`tasks`");
        return None;
    };
    if items.is_empty() {
        w.push(
            Diagnostic::new(
                Code::MissingField,
                tasks.span,
                "`tasks` is empty",
                "no tasks",
            )
            .help("a DAG needs at least one task"),
        );
    }
    let mut jobs = IndexMap::new();
    let mut first_seen: IndexMap<String, Span> = IndexMap::new();
    for item in items {
        let Some(job) = task(w, item) else { continue };
        if let Some(first) = first_seen.get(job.id.as_str()) {
            w.push(
                Diagnostic::new(
                    Code::DuplicateKey,
                    job.span,
                    format!("task id `{}` is used twice", job.id),
                    "used again",
                )
                .related(*first, "first used here")
                .help("task ids must be unique"),
            );
            continue;
        }
        first_seen.insert(job.id.to_string(), job.span);
        jobs.insert(job.id.clone(), job);
    }
    Some(Dag {
        pipeline: Pipeline {
            name: dag_id.clone(),
            on: Triggers::default(),
            env: IndexMap::new(),
            jobs,
        },
        dag_id,
        scope,
        target_node,
        priority,
    })
}

/// One task: its `id`, then every other field through the job walker shared with
/// ci.yaml.
fn task(w: &mut Walker<'_>, node: &Node) -> Option<Job> {
    let f = w.fields(node, TASK_FIELDS, "a task")?;
    let Some(id_node) = f.get("id") else {
        w.push(
            Diagnostic::new(
                Code::MissingField,
                node.span,
                "missing field `id` in a task",
                "this task",
            )
            .help("give every task an id, e.g. \"id\": \"build\""),
        );
        return None;
    };
    let id_text = w.string(id_node, "`id`")?;
    let Some(id) = JobId::new(&id_text) else {
        w.push(
            Diagnostic::new(
                Code::InvalidJobId,
                id_node.span,
                format!("invalid task id `{id_text}`"),
                "invalid id",
            )
            .help(format!(
                "a task id starts with a letter or `_` and has only letters, digits, `-` and `_` (at most {} characters)",
                JobId::MAX_LEN
            )),
        );
        return None;
    };
    Some(w.job(&DAG_TASK, id, id_node.span, Some(&f)))
}

impl Dag {
    /// The scope: explicit, else inferred from `env.PROJECT_ID`, then the dag id.
    pub fn effective_scope(&self) -> (Scope, crate::scope::ScopeSource) {
        Scope::infer(
            self.scope.as_ref(),
            self.pipeline.project_ids(),
            self.dag_id.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_example_parses() {
        let dag = parse_dag(
            "dag.json",
            r#"{"dag_id": "proj-a-nightly", "scope": "project:proj-a", "target_node": "node-1",
 "priority": "high",
 "tasks": [{"id": "build", "run": "make", "needs": [], "env": {"PROJECT_ID": "proj-a"},
            "retry": {"limit": 2, "delay": "5s"}, "timeout": "10m"}]}"#,
        )
        .unwrap();
        assert_eq!(dag.priority, Priority::High);
        assert_eq!(dag.effective_scope().0.to_string(), "project:proj-a");
        let build = &dag.pipeline.jobs["build"];
        assert_eq!(build.retry.as_ref().unwrap().limit, 2);
        assert_eq!(build.timeout, Some(std::time::Duration::from_mins(10)));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse_dag("d.json", "{\"tasks\": [\n  {\"id\": \"a\", \"run\": \"x\", \"needs\": [\"b\"]},\n  {\"id\": \"a\", \"rn\": \"y\"}\n]}").unwrap_err();
        let text: Vec<String> = e
            .diagnostics
            .iter()
            .map(|d| {
                format!(
                    "{}:{} {}",
                    e.line_column(d).line,
                    e.line_column(d).column,
                    d.message
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                "2:37 job `a` needs `b`, which is not a job",
                "3:10 missing field `run` in task `a`",
                // A task with a problem is still a task, so its repeated id is seen too.
                "3:10 task id `a` is used twice",
                "3:15 unknown field `rn` in a task"
            ]
        );
    }
}
