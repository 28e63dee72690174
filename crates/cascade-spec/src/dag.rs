//! The DAG JSON form (DESIGN §3): `{"dag_id", "scope", "target_node", "priority",
//! "tasks": [{"id", "run", "needs", "env", "retry": {"limit", "delay"}, "timeout"}]}`.
//!
//! JSON is YAML, so a DAG file is read into the same span-keeping node tree as ci.yaml
//! and walked here; problems get the same line:column diagnostics. The result is a
//! [`Pipeline`] (one job per task), so every backend runs DAGs and pipelines alike.

use crate::diagnostic::{Code, Diagnostic, SpecErrors};
use crate::model::{Job, JobId, Located, Pipeline, Retry, Shell, Triggers};
use crate::parse::{self, Walker};
use crate::scope::Scope;
use crate::source::{Node, Span, Value};
use indexmap::IndexMap;
use std::sync::Arc;

pub const DAG_FIELDS: &[&str] = &["dag_id", "scope", "target_node", "priority", "tasks"];
pub const TASK_FIELDS: &[&str] = &[
    "id",
    "run",
    "needs",
    "env",
    "retry",
    "timeout",
    "image",
    "runner",
    "secrets",
    "if",
    "continue_on_error",
];
pub const DAG_RETRY_FIELDS: &[&str] = &["limit", "delay", "max_delay"];

/// Queue priority of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
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
        return Err(parse::parse_pipeline_bytes(name, text.as_bytes())
            .err()
            .unwrap_or_else(|| {
                parse::single(
                    name,
                    "",
                    Diagnostic::new(
                        Code::TooLarge,
                        Span::default(),
                        "the DAG is too large",
                        "refused",
                    )
                    .help("split it"),
                )
            }));
    }
    let root = match parse::read_tree(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(parse::single(
                name,
                text,
                Diagnostic::new(
                    Code::Empty,
                    Span::default(),
                    "the DAG is empty",
                    "expected an object with `tasks`",
                )
                .help("send e.g. {\"tasks\": [{\"id\": \"build\", \"run\": \"make\"}]}"),
            ));
        }
        Err(d) => return Err(parse::single(name, text, *d)),
    };
    let mut w = Walker {
        src: text,
        diags: Vec::new(),
    };
    let dag = walk(&mut w, &root);
    if let Some(dag) = &dag {
        crate::validate::check(&dag.pipeline, text, &mut w.diags);
    }
    match dag {
        Some(d) if w.diags.is_empty() => Ok(d),
        _ => {
            let mut diagnostics = w.diags;
            diagnostics.sort_by_key(|d| d.span.offset);
            Err(SpecErrors {
                name: name.to_owned(),
                source: Arc::new(text.to_owned()),
                diagnostics,
            })
        }
    }
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
    let priority = match f.get("priority") {
        None => Priority::Normal,
        Some(n) => match n.as_str() {
            Some("low") => Priority::Low,
            Some("normal") => Priority::Normal,
            Some("high") => Priority::High,
            _ => {
                w.push(
                    Diagnostic::new(
                        Code::BadValue,
                        n.span,
                        "`priority` must be \"low\", \"normal\" or \"high\"",
                        "unknown priority",
                    )
                    .help("leave it out for \"normal\""),
                );
                Priority::Normal
            }
        },
    };
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

#[expect(
    clippy::too_many_lines,
    reason = "one block per task field reads best in one place"
)]
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
            .help(
                "a task id starts with a letter or `_` and has only letters, digits, `-` and `_`",
            ),
        );
        return None;
    };
    let context = format!("task `{id}`");
    let Some(run_node) = f.get("run") else {
        w.push(
            Diagnostic::new(
                Code::MissingField,
                id_node.span,
                format!("missing field `run` in {context}"),
                "no `run`",
            )
            .help("add the command, e.g. \"run\": \"make\""),
        );
        return None;
    };
    let run = w.text(run_node, &format!("`run` of {context}"))?;
    let needs = f
        .get("needs")
        .map(|n| w.strings(n, &format!("`needs` of {context}"), true))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            if let Some(j) = JobId::new(&n.value) {
                return Some(Located {
                    value: j,
                    span: n.span,
                });
            }
            w.push(
                Diagnostic::new(
                    Code::UnknownNeed,
                    n.span,
                    format!(
                        "`needs` of {context} names `{}`, which is not a valid task id",
                        n.value
                    ),
                    "not a task id",
                )
                .help("list the ids of the tasks this one waits for"),
            );
            None
        })
        .collect();
    let env = f
        .get("env")
        .map(|n| w.env(n, &format!("`env` of {context}")))
        .unwrap_or_default();
    let retry = f.get("retry").and_then(|n| dag_retry(w, n, &context));
    let timeout = f
        .get("timeout")
        .and_then(|n| w.duration(n, &format!("`timeout` of {context}")));
    let secrets = f
        .get("secrets")
        .map(|n| w.strings(n, &format!("`secrets` of {context}"), false))
        .unwrap_or_default();
    Some(Job {
        span: id_node.span,
        name: None,
        image: f.get("image").and_then(|n| w.string(n, "`image`")),
        runner: f.get("runner").and_then(|n| {
            w.string(n, "`runner`").map(|value| Located {
                value,
                span: n.span,
            })
        }),
        run,
        shell: Shell::Sh,
        needs,
        env,
        secrets,
        condition: f.get("if").and_then(|n| w.condition(n, &context)),
        matrix: IndexMap::new(),
        for_each: None,
        outputs: IndexMap::new(),
        retry,
        timeout,
        continue_on_error: f
            .get("continue_on_error")
            .and_then(|n| w.bool(n, "`continue_on_error`"))
            .unwrap_or(false),
        paths: Vec::new(),
        id,
    })
}

/// `retry: {limit, delay, max_delay}` (the API's words for limit and backoff).
fn dag_retry(w: &mut Walker<'_>, node: &Node, context: &str) -> Option<Retry> {
    let context = format!("`retry` of {context}");
    let f = w.fields(node, DAG_RETRY_FIELDS, &context)?;
    let Some(limit) = f.get("limit") else {
        w.push(
            Diagnostic::new(
                Code::MissingField,
                node.span,
                format!("missing field `limit` in {context}"),
                "no limit",
            )
            .help("add \"limit\": 2 (retries after the first attempt)"),
        );
        return None;
    };
    Some(Retry {
        limit: w.retry_limit(limit, &context)?,
        backoff: f
            .get("delay")
            .and_then(|n| w.duration(n, "`delay`"))
            .unwrap_or(Retry::DEFAULT_BACKOFF),
        max_backoff: f
            .get("max_delay")
            .and_then(|n| w.duration(n, "`max_delay`")),
        on_exit_codes: Vec::new(),
    })
}

impl Dag {
    /// The scope: explicit, else inferred from `env.PROJECT_ID`, then the dag id.
    pub fn effective_scope(&self) -> (Scope, crate::scope::ScopeSource) {
        let project_ids: Vec<&str> = self
            .pipeline
            .jobs
            .values()
            .filter_map(|j| j.env.get("PROJECT_ID"))
            .filter(|t| t.template.is_plain())
            .map(|t| t.raw.as_str())
            .collect();
        Scope::infer(self.scope.as_ref(), project_ids, self.dag_id.as_deref())
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
                "3:15 unknown field `rn` in a task"
            ]
        );
    }
}
