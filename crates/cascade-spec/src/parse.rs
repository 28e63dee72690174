//! Reads a ci.yaml file into a [`Pipeline`], collecting every problem on the way.
//!
//! The file is read into a [`Node`] tree first (serde-saphyr, with spans), then walked
//! here field by field. Each shape error, unknown field or bad value becomes a
//! [`Diagnostic`] and the walk goes on, so a user sees all problems of a file in one run.
//! The [`Walker`] and its value readers are shared with the DAG JSON form (`dag.rs`); the
//! fields of one job are read in `job.rs`, for both forms. Cross-job checks (needs,
//! cycles, expression scopes) are in `validate.rs`.

use crate::diagnostic::{Code, Diagnostic, SpecErrors, offset_of, suggest};
use crate::duration;
use crate::expr;
use crate::job::PIPELINE_JOB;
use crate::model::{
    Input, InputKind, JobId, Located, Pipeline, PullRequestTrigger, RefFilter, RepositoryDispatch,
    Schedule, Text, Triggers, WorkflowDispatch,
};
use crate::source::{Node, Span, Value};
use indexmap::{IndexMap, IndexSet};
use std::sync::Arc;

/// Files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Alias replay budget: far above any real pipeline, far below an alias bomb.
const MAX_REPLAYED_EVENTS: usize = 20_000;
/// GitHub's limit, and a sane one: a matrix expands to at most this many jobs.
pub const MAX_MATRIX_JOBS: usize = 256;

pub const TOP_FIELDS: &[&str] = &["name", "on", "env", "jobs"];
/// What a GitHub Actions user writes at the top of a workflow, and what Cascade does
/// instead (DESIGN §2; the version 1.1 keys of §2.1 are said to be planned).
const TOP_HABITS: &[(&str, &str)] = &[
    (
        "run-name",
        "Cascade has no `run-name`; `name:` names the pipeline, and each run gets its own id",
    ),
    (
        "concurrency",
        "`concurrency` is not supported in pipeline version 1 (planned for version 1.1); runs of one pipeline may overlap",
    ),
    (
        "defaults",
        "`defaults` is not supported in pipeline version 1 (planned for version 1.1); set `shell:` on each job and `cd` in its `run:`",
    ),
    (
        "permissions",
        "Cascade gives jobs no forge token to scope: a job gets only the secrets it lists in `secrets:`",
    ),
];
pub const ON_FIELDS: &[&str] = &[
    "push",
    "pull_request",
    "schedule",
    "workflow_dispatch",
    "repository_dispatch",
];
pub const PUSH_FIELDS: &[&str] = &[
    "branches",
    "branches-ignore",
    "tags",
    "tags-ignore",
    "paths",
    "paths-ignore",
];
pub const PULL_REQUEST_FIELDS: &[&str] = &[
    "branches",
    "branches-ignore",
    "paths",
    "paths-ignore",
    "types",
];
pub const SCHEDULE_FIELDS: &[&str] = &["cron", "timezone"];
pub const WORKFLOW_DISPATCH_FIELDS: &[&str] = &["inputs"];
pub const INPUT_FIELDS: &[&str] = &["description", "default", "required", "type", "options"];
pub const REPOSITORY_DISPATCH_FIELDS: &[&str] = &["types"];
pub const JOB_FIELDS: &[&str] = &[
    "name",
    "image",
    "runner",
    "resources",
    "run",
    "shell",
    "needs",
    "env",
    "secrets",
    "if",
    "matrix",
    "for_each",
    "outputs",
    "retry",
    "timeout",
    "continue_on_error",
    "paths",
];
pub const RETRY_FIELDS: &[&str] = &["limit", "backoff", "max_backoff", "on_exit_codes"];
/// The fields of a job's `resources:` (the same in ci.yaml and DAG JSON).
pub const RESOURCE_FIELDS: &[&str] = &["cpu", "memory"];
const PULL_REQUEST_TYPES: &[&str] = &[
    "opened",
    "synchronize",
    "reopened",
    "closed",
    "edited",
    "labeled",
    "unlabeled",
    "ready_for_review",
];
const INPUT_TYPES: &[(&str, InputKind)] = &[
    ("string", InputKind::String),
    ("boolean", InputKind::Boolean),
    ("number", InputKind::Number),
    ("choice", InputKind::Choice),
];

/// Parses and validates a pipeline file given as bytes (as read from disk).
pub fn parse_pipeline_bytes(name: &str, bytes: &[u8]) -> Result<Pipeline, SpecErrors> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_large(name, bytes.len()));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_pipeline(name, text),
        Err(e) => {
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
            let at = valid.len();
            Err(single(
                name,
                &valid,
                Diagnostic::new(
                    Code::NotUtf8,
                    Span::new(at, 0),
                    format!("the file is not valid UTF-8 (bad byte at offset {at})"),
                    "invalid UTF-8 here",
                )
                .help("save the file as UTF-8"),
            ))
        }
    }
}

/// Parses and validates a pipeline file.
pub fn parse_pipeline(name: &str, text: &str) -> Result<Pipeline, SpecErrors> {
    if text.len() > MAX_FILE_BYTES {
        return parse_pipeline_bytes(name, text.as_bytes());
    }
    let empty = Diagnostic::new(
        Code::Empty,
        Span::default(),
        "the file is empty",
        "expected a mapping with `jobs:`",
    )
    .help("start with `jobs:` and one job, e.g. `jobs: { hello: { run: echo hi } }`");
    let root = read_document(name, text, empty)?;
    let mut walker = Walker::new(text);
    let pipeline = walker.pipeline(&root);
    walker.finish(name, pipeline, |p| p)
}

/// The node tree of a document, or its one problem: empty (`empty` says how to start)
/// or not YAML (JSON is YAML, so DAG files are read here too).
pub(crate) fn read_document(name: &str, text: &str, empty: Diagnostic) -> Result<Node, SpecErrors> {
    match read_tree(text) {
        Ok(Some(root)) => Ok(root),
        Ok(None) => Err(single(name, text, empty)),
        Err(diagnostic) => Err(single(name, text, *diagnostic)),
    }
}

/// The refusal of a file over [`MAX_FILE_BYTES`], before any parsing.
pub(crate) fn too_large(name: &str, len: usize) -> SpecErrors {
    single(
        name,
        "",
        Diagnostic::new(
            Code::TooLarge,
            Span::default(),
            format!(
                "the file is {len} bytes; pipeline and DAG files are limited to {MAX_FILE_BYTES} bytes (1 MiB)"
            ),
            "refused before parsing",
        )
        .help("split the pipeline into smaller files chained with repository_dispatch, or the DAG into smaller DAGs"),
    )
}

pub(crate) fn single(name: &str, text: &str, diagnostic: Diagnostic) -> SpecErrors {
    SpecErrors {
        name: name.to_owned(),
        source: Arc::new(text.to_owned()),
        diagnostics: vec![diagnostic],
    }
}

/// Reads YAML text into a node tree; `Ok(None)` for an empty document.
pub fn read_tree(text: &str) -> Result<Option<Node>, Box<Diagnostic>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        alias_limits: serde_saphyr::alias_limits! { max_total_replayed_events: MAX_REPLAYED_EVENTS },
    };
    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(node) if node.value == Value::Null => Ok(None),
        Ok(node) => Ok(Some(node)),
        Err(error) => {
            let (span, _) = error_span(text, &error);
            let message = syntax_message(&error);
            let alias = message.contains("alias") || message.contains("budget");
            let diagnostic = Diagnostic::new(
                Code::Syntax,
                span,
                format!("invalid YAML: {message}"),
                "here",
            )
            .help(if alias {
                "YAML aliases may expand to at most 20000 values; write the values out instead"
            } else {
                "check the indentation and quoting around this point"
            });
            Err(Box::new(diagnostic))
        }
    }
}

fn error_span(text: &str, error: &serde_saphyr::Error) -> (Span, bool) {
    match error.location() {
        Some(location) => {
            let line = usize::try_from(location.line()).unwrap_or(1);
            let column = usize::try_from(location.column()).unwrap_or(1);
            (Span::new(offset_of(text, line, column), 1), true)
        }
        None => (Span::default(), false),
    }
}

/// serde-saphyr's message without its own location prefix and snippet.
fn syntax_message(error: &serde_saphyr::Error) -> String {
    let full = error.without_snippet().to_string();
    let first = full.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 6 column 8: message" → "message"
    let stripped = first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
        .map_or(first, |(_, message)| message);
    stripped.to_owned()
}

/// The known fields of one mapping, first occurrence of each.
#[derive(Default)]
pub(crate) struct Fields<'n> {
    entries: IndexMap<&'static str, (&'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.get(name).map(|(_, v)| *v)
    }
    pub(crate) fn key(&self, name: &str) -> Option<&'n Node> {
        self.entries.get(name).map(|(k, _)| *k)
    }
}

/// Walks a node tree, collecting every problem instead of stopping at the first.
pub(crate) struct Walker<'s> {
    pub(crate) src: &'s str,
    pub(crate) diags: Vec<Diagnostic>,
    /// Jobs whose `outputs:` had a problem: a reference to one of their outputs may be
    /// right, so `validate.rs` does not report it a second time.
    pub(crate) unsure_outputs: IndexSet<JobId>,
}

impl<'s> Walker<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        Self {
            src,
            diags: Vec::new(),
            unsure_outputs: IndexSet::new(),
        }
    }

    /// Runs the checks across jobs on what was read, and gives the value if the whole
    /// document is valid, else every problem in file order.
    pub(crate) fn finish<T>(
        mut self,
        name: &str,
        value: Option<T>,
        pipeline: impl Fn(&T) -> &Pipeline,
    ) -> Result<T, SpecErrors> {
        if let Some(value) = &value {
            crate::validate::check(
                pipeline(value),
                &self.unsure_outputs,
                self.src,
                &mut self.diags,
            );
        }
        match value {
            Some(value) if self.diags.is_empty() => Ok(value),
            _ => {
                let mut diagnostics = self.diags;
                diagnostics.sort_by_key(|d| d.span.offset);
                Err(SpecErrors {
                    name: name.to_owned(),
                    source: Arc::new(self.src.to_owned()),
                    diagnostics,
                })
            }
        }
    }
}

impl Walker<'_> {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }

    pub(crate) fn wrong_type(&mut self, node: &Node, expected: &str, context: &str) {
        let found = node.value.kind();
        let mut d = Diagnostic::new(
            Code::WrongType,
            node.span,
            format!("{context}: expected {expected}, found {found}"),
            format!("this is {found}"),
        );
        let help = if expected == "a string"
            && matches!(node.value, Value::Int(_) | Value::Float(_) | Value::Bool(_))
        {
            "quote the value to make it a string".to_owned()
        } else {
            match expected {
                "a string" => "write one text value, e.g. `name: build`".to_owned(),
                "a mapping" => {
                    "write `key: value` pairs, indented below the key or as `{ key: value }`"
                        .to_owned()
                }
                "a list of strings" => "write a list, e.g. `[a, b]`".to_owned(),
                "a list of values" => "write a list, e.g. `[\"3.11\", \"3.12\"]`".to_owned(),
                "`true` or `false`" => "write `true` or `false` without quotes".to_owned(),
                other => format!("change this to {other}"),
            }
        };
        d = d.help(help);
        self.push(d);
    }

    /// Entries of a mapping (null counts as empty), reporting duplicate and unknown keys.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&'static str],
        context: &str,
    ) -> Option<Fields<'n>> {
        self.fields_hinted(node, allowed, &[], context)
    }

    /// [`Walker::fields`], where an unknown key found in `habits` gets that hint instead
    /// of a "did you mean" (a GitHub Actions key that only looks like a Cascade one).
    pub(crate) fn fields_hinted<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&'static str],
        habits: &[(&str, &str)],
        context: &str,
    ) -> Option<Fields<'n>> {
        if !matches!(node.value, Value::Map(_) | Value::Null) {
            self.wrong_type(node, "a mapping", context);
            return None;
        }
        let mut fields = Fields {
            entries: IndexMap::new(),
        };
        for (key, name, value) in self.entries(node, context) {
            match allowed.iter().find(|a| **a == name) {
                Some(known) => {
                    fields.entries.insert(known, (key, value));
                }
                None => self.push(
                    Diagnostic::new(
                        Code::UnknownField,
                        key.span,
                        format!("unknown field `{name}` in {context}"),
                        "unknown field",
                    )
                    .help(
                        habits.iter().find(|(habit, _)| *habit == name).map_or_else(
                            || suggest(name, allowed, "the fields"),
                            |(_, hint)| (*hint).to_owned(),
                        ),
                    ),
                ),
            }
        }
        Some(fields)
    }

    /// Entries of a mapping in file order (null counts as empty), reporting non-text and
    /// duplicate keys; the first of duplicates is kept.
    pub(crate) fn entries<'n>(
        &mut self,
        node: &'n Node,
        context: &str,
    ) -> Vec<(&'n Node, &'n str, &'n Node)> {
        let entries = match &node.value {
            Value::Map(entries) => entries.as_slice(),
            Value::Null => &[],
            _ => {
                self.wrong_type(node, "a mapping", context);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut seen: IndexMap<&str, Span> = IndexMap::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.wrong_type(key, "a string key", context);
                continue;
            };
            if let Some(first) = seen.get(name) {
                self.push(
                    Diagnostic::new(
                        Code::DuplicateKey,
                        key.span,
                        format!("duplicate key `{name}` in {context}"),
                        "defined again here",
                    )
                    .related(*first, "first defined here")
                    .help("remove one of them; YAML keys must be unique"),
                );
                continue;
            }
            seen.insert(name, key.span);
            out.push((key, name, value));
        }
        out
    }

    /// An expression that does not parse, pointed at inside its scalar.
    pub(crate) fn bad_expression(
        &mut self,
        node: Span,
        raw: &str,
        e: expr::ExprError,
        context: &str,
    ) {
        let span = locate(self.src, node, raw, e.span);
        self.push(
            Diagnostic::new(
                Code::BadExpression,
                span,
                format!("invalid expression in {context}: {}", e.message),
                "here",
            )
            .maybe_help(e.help),
        );
    }

    pub(crate) fn string(&mut self, node: &Node, context: &str) -> Option<String> {
        if let Some(s) = node.as_str() {
            Some(s.to_owned())
        } else {
            self.wrong_type(node, "a string", context);
            None
        }
    }

    /// One of the `choices` words (`priority`, an input's `type`): an unknown word (with a
    /// did-you-mean or the list) or a non-string (`context` names it) is reported, and
    /// gives `None`.
    pub(crate) fn one_of<T: Copy>(
        &mut self,
        node: &Node,
        context: &str,
        noun: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let word = self.string(node, context)?;
        if let Some((_, value)) = choices.iter().find(|(w, _)| *w == word) {
            return Some(*value);
        }
        let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
        self.push(
            Diagnostic::new(
                Code::BadValue,
                node.span,
                format!("unknown {noun} `{word}`"),
                format!("unknown {noun}"),
            )
            .help(suggest(&word, &words, &format!("the {noun} words"))),
        );
        None
    }

    pub(crate) fn bool(&mut self, node: &Node, context: &str) -> Option<bool> {
        if let Value::Bool(b) = node.value {
            Some(b)
        } else {
            self.wrong_type(node, "`true` or `false`", context);
            None
        }
    }

    /// A list of strings; a single string is accepted as a list of one when `single_ok`.
    pub(crate) fn strings(
        &mut self,
        node: &Node,
        context: &str,
        single_ok: bool,
    ) -> Vec<Located<String>> {
        match &node.value {
            Value::Str(s) if single_ok => vec![Located {
                value: s.clone(),
                span: node.span,
            }],
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| {
                    self.string(item, context).map(|value| Located {
                        value,
                        span: item.span,
                    })
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(node, "a list of strings", context);
                Vec::new()
            }
        }
    }

    pub(crate) fn plain_strings(&mut self, node: Option<&Node>, context: &str) -> Vec<String> {
        node.map(|n| {
            self.strings(n, context, true)
                .into_iter()
                .map(|l| l.value)
                .collect()
        })
        .unwrap_or_default()
    }

    pub(crate) fn duration(&mut self, node: &Node, context: &str) -> Option<std::time::Duration> {
        let Some(text) = node.as_str() else {
            let mut d = Diagnostic::new(
                Code::BadDuration,
                node.span,
                format!(
                    "{context}: expected a duration like `30s`, `10m` or `1h30m`, found {}",
                    node.value.kind()
                ),
                "not a duration",
            );
            if let Value::Int(n) = node.value {
                d = d.help(format!("add a unit: `{n}s`"));
            }
            self.push(d);
            return None;
        };
        match duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(
                    Diagnostic::new(
                        Code::BadDuration,
                        node.span,
                        format!("{context}: invalid duration `{text}`: {e}"),
                        "invalid duration",
                    )
                    .help("write a number and a unit (ms, s, m, h, d), e.g. `30s`, `10m`, `1h30m`"),
                );
                None
            }
        }
    }

    /// Text that may contain `${{ }}`; bad expressions are reported with file spans and
    /// left out, the good ones kept (so their scopes are checked too).
    pub(crate) fn text(&mut self, node: &Node, context: &str) -> Option<Text> {
        self.text_and_errors(node, context).map(|(text, _)| text)
    }

    /// [`Walker::text`], but `None` when any expression is bad: for values that must be
    /// exactly one expression (`if:`, `for_each:`).
    pub(crate) fn checked_text(&mut self, node: &Node, context: &str) -> Option<Text> {
        self.text_and_errors(node, context)
            .and_then(|(text, bad)| (!bad).then_some(text))
    }

    fn text_and_errors(&mut self, node: &Node, context: &str) -> Option<(Text, bool)> {
        let raw = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                node.scalar_text().unwrap_or_default()
            }
            _ => {
                self.wrong_type(node, "a string", context);
                return None;
            }
        };
        let (template, errors) = expr::parse_template_partial(&raw);
        let bad = !errors.is_empty();
        for e in errors {
            self.bad_expression(node.span, &raw, e, context);
        }
        Some((
            Text {
                raw,
                template,
                span: node.span,
            },
            bad,
        ))
    }

    fn pipeline(&mut self, root: &Node) -> Option<Pipeline> {
        let fields = self.fields_hinted(root, TOP_FIELDS, TOP_HABITS, "the pipeline")?;
        let name = fields.get("name").and_then(|n| self.string(n, "`name`"));
        let on = fields
            .get("on")
            .map(|n| self.triggers(n))
            .unwrap_or_default();
        let env = fields
            .get("env")
            .map(|n| self.env(n, "the pipeline's `env`"))
            .unwrap_or_default();
        let Some(jobs_node) = fields.get("jobs") else {
            self.push(
                Diagnostic::new(
                    Code::MissingField,
                    root.span,
                    "missing field `jobs`",
                    "the pipeline starts here",
                )
                .help("add `jobs:` with at least one job, e.g. `jobs: { build: { run: make } }`"),
            );
            return None;
        };
        let mut jobs = IndexMap::new();
        let entries = self.entries(jobs_node, "`jobs`");
        if entries.is_empty() && !matches!(&jobs_node.value, Value::Map(m) if !m.is_empty()) {
            let span = fields.key("jobs").map_or(jobs_node.span, |k| k.span);
            self.push(
                Diagnostic::new(Code::MissingField, span, "`jobs` is empty", "no jobs here")
                    .help("a pipeline needs at least one job, e.g. `build: { run: make }`"),
            );
        }
        for (key, id, value) in entries {
            let Some(job_id) = JobId::new(id) else {
                self.push(
                    Diagnostic::new(
                        Code::InvalidJobId,
                        key.span,
                        format!("invalid job id `{id}`"),
                        "invalid job id",
                    )
                    .help(format!(
                        "a job id starts with a letter or `_` and has only letters, digits, `-` and `_` (at most {} characters)",
                        JobId::MAX_LEN
                    )),
                );
                continue;
            };
            let context = format!("job `{job_id}`");
            let fields =
                self.fields_hinted(value, PIPELINE_JOB.fields, PIPELINE_JOB.habits, &context);
            let job = self.job(&PIPELINE_JOB, job_id.clone(), key.span, fields.as_ref());
            jobs.insert(job_id, job);
        }
        Some(Pipeline {
            name,
            on,
            env,
            jobs,
        })
    }

    fn triggers(&mut self, node: &Node) -> Triggers {
        let mut triggers = Triggers::default();
        // `on: push` and `on: [push, pull_request]` are shorthands for empty filters.
        let names: Vec<(&str, Span)> = match &node.value {
            Value::Str(s) => vec![(s.as_str(), node.span)],
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| {
                    let name = i.as_str();
                    if name.is_none() {
                        self.wrong_type(i, "an event name", "`on`");
                    }
                    name.map(|n| (n, i.span))
                })
                .collect(),
            _ => {
                let Some(fields) = self.fields(node, ON_FIELDS, "`on`") else {
                    return triggers;
                };
                if let Some(n) = fields.get("push") {
                    triggers.push = self.push_filter(n);
                }
                if let Some(n) = fields.get("pull_request") {
                    triggers.pull_request = self.pull_request(n);
                }
                if let Some(n) = fields.get("schedule") {
                    triggers.schedule = self.schedules(n);
                }
                if let Some(n) = fields.get("workflow_dispatch") {
                    triggers.workflow_dispatch = self.workflow_dispatch(n);
                }
                if let Some(n) = fields.get("repository_dispatch") {
                    triggers.repository_dispatch = self
                        .fields(n, REPOSITORY_DISPATCH_FIELDS, "`on.repository_dispatch`")
                        .map(|f| RepositoryDispatch {
                            types: self
                                .plain_strings(f.get("types"), "`on.repository_dispatch.types`"),
                        });
                }
                return triggers;
            }
        };
        for (name, span) in names {
            match name {
                "push" => triggers.push = Some(RefFilter::default()),
                "pull_request" => triggers.pull_request = Some(PullRequestTrigger::default()),
                "workflow_dispatch" => {
                    triggers.workflow_dispatch = Some(WorkflowDispatch::default());
                }
                "repository_dispatch" => {
                    triggers.repository_dispatch = Some(RepositoryDispatch::default());
                }
                "schedule" => self.push(
                    Diagnostic::new(
                        Code::BadValue,
                        span,
                        "`schedule` needs a cron line",
                        "no cron given",
                    )
                    .help("write `on: { schedule: [{ cron: \"0 3 * * *\" }] }`"),
                ),
                other => self.push(
                    Diagnostic::new(
                        Code::BadValue,
                        span,
                        format!("unknown event `{other}` in `on`"),
                        "unknown event",
                    )
                    .help(suggest(other, ON_FIELDS, "the events")),
                ),
            }
        }
        triggers
    }

    fn push_filter(&mut self, node: &Node) -> Option<RefFilter> {
        let f = self.fields(node, PUSH_FIELDS, "`on.push`")?;
        Some(RefFilter {
            branches: self.plain_strings(f.get("branches"), "`on.push.branches`"),
            branches_ignore: self
                .plain_strings(f.get("branches-ignore"), "`on.push.branches-ignore`"),
            tags: self.plain_strings(f.get("tags"), "`on.push.tags`"),
            tags_ignore: self.plain_strings(f.get("tags-ignore"), "`on.push.tags-ignore`"),
            paths: self.plain_strings(f.get("paths"), "`on.push.paths`"),
            paths_ignore: self.plain_strings(f.get("paths-ignore"), "`on.push.paths-ignore`"),
        })
    }

    fn pull_request(&mut self, node: &Node) -> Option<PullRequestTrigger> {
        let f = self.fields(node, PULL_REQUEST_FIELDS, "`on.pull_request`")?;
        let types = f
            .get("types")
            .map(|n| self.strings(n, "`on.pull_request.types`", true))
            .unwrap_or_default();
        for t in &types {
            if !PULL_REQUEST_TYPES.contains(&t.value.as_str()) {
                self.push(
                    Diagnostic::new(
                        Code::BadValue,
                        t.span,
                        format!("unknown pull request activity type `{}`", t.value),
                        "unknown type",
                    )
                    .help(suggest(&t.value, PULL_REQUEST_TYPES, "the types")),
                );
            }
        }
        Some(PullRequestTrigger {
            branches: self.plain_strings(f.get("branches"), "`on.pull_request.branches`"),
            branches_ignore: self.plain_strings(
                f.get("branches-ignore"),
                "`on.pull_request.branches-ignore`",
            ),
            paths: self.plain_strings(f.get("paths"), "`on.pull_request.paths`"),
            paths_ignore: self
                .plain_strings(f.get("paths-ignore"), "`on.pull_request.paths-ignore`"),
            types: types.into_iter().map(|t| t.value).collect(),
        })
    }

    fn schedules(&mut self, node: &Node) -> Vec<Schedule> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, "a list of `{ cron: ... }` entries", "`on.schedule`");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(f) = self.fields(item, SCHEDULE_FIELDS, "a schedule entry") else {
                continue;
            };
            let Some(cron_node) = f.get("cron") else {
                self.push(
                    Diagnostic::new(
                        Code::MissingField,
                        item.span,
                        "missing field `cron` in a schedule entry",
                        "this entry",
                    )
                    .help("add e.g. `cron: \"0 3 * * *\"` (minute hour day month weekday)"),
                );
                continue;
            };
            let Some(cron) = self.string(cron_node, "`cron`") else {
                continue;
            };
            if let Err(e) = crate::schedule::check_cron(&cron) {
                self.push(
                    Diagnostic::new(Code::BadCron, cron_node.span, format!("invalid cron line `{cron}`: {e}"), "invalid cron")
                        .help("use 5 fields (minute hour day-of-month month day-of-week), e.g. `0 3 * * *`, or a nickname such as `@daily`"),
                );
            }
            let timezone = f.get("timezone").and_then(|n| {
                let tz = self.string(n, "`timezone`")?;
                if crate::schedule::check_timezone(&tz) {
                    Some(tz)
                } else {
                    self.push(
                        Diagnostic::new(Code::BadTimezone, n.span, format!("unknown time zone `{tz}`"), "unknown time zone")
                            .help("use an IANA zone name such as `UTC`, `Europe/Berlin` or `America/New_York`"),
                    );
                    None
                }
            });
            out.push(Schedule {
                cron,
                timezone,
                span: cron_node.span,
            });
        }
        out
    }

    fn workflow_dispatch(&mut self, node: &Node) -> Option<WorkflowDispatch> {
        let f = self.fields(node, WORKFLOW_DISPATCH_FIELDS, "`on.workflow_dispatch`")?;
        let mut inputs = IndexMap::new();
        if let Some(n) = f.get("inputs") {
            for (key, name, value) in self.entries(n, "`on.workflow_dispatch.inputs`") {
                if !is_identifier(name) {
                    self.bad_name(key, name, "input");
                    continue;
                }
                let Some(fi) = self.fields(value, INPUT_FIELDS, &format!("input `{name}`")) else {
                    continue;
                };
                let kind = fi
                    .get("type")
                    .and_then(|t| self.one_of(t, "`type`", "input type", INPUT_TYPES))
                    .unwrap_or(InputKind::String);
                let input = Input {
                    description: fi
                        .get("description")
                        .and_then(|n| self.string(n, "`description`")),
                    default: fi.get("default").and_then(|n| {
                        let text = n.scalar_text();
                        if text.is_none() {
                            self.wrong_type(n, "a scalar", "`default`");
                        }
                        text
                    }),
                    required: fi
                        .get("required")
                        .and_then(|n| self.bool(n, "`required`"))
                        .unwrap_or(false),
                    kind,
                    options: self.plain_strings(fi.get("options"), "`options`"),
                };
                inputs.insert(name.to_owned(), input);
            }
        }
        Some(WorkflowDispatch { inputs })
    }

    pub(crate) fn bad_name(&mut self, key: &Node, name: &str, what: &str) {
        self.push(
            Diagnostic::new(
                Code::BadName,
                key.span,
                format!("invalid {what} name `{name}`"),
                "invalid name",
            )
            .help("a name starts with a letter or `_` and has only letters, digits, `-` and `_`"),
        );
    }

    pub(crate) fn env(&mut self, node: &Node, context: &str) -> IndexMap<String, Text> {
        let mut env = IndexMap::new();
        for (key, name, value) in self.entries(node, context) {
            if !is_env_name(name) {
                self.push(
                    Diagnostic::new(Code::BadName, key.span, format!("invalid environment variable name `{name}`"), "invalid name")
                        .help("an environment variable name has only letters, digits and `_`, and does not start with a digit"),
                );
                continue;
            }
            if name.starts_with("CASCADE_") {
                self.push(
                    Diagnostic::new(
                        Code::BadName,
                        key.span,
                        format!("`{name}` is reserved"),
                        "reserved name",
                    )
                    .help("names starting with `CASCADE_` are set by Cascade; pick another name"),
                );
                continue;
            }
            if matches!(value.value, Value::Seq(_) | Value::Map(_) | Value::Null) {
                self.wrong_type(value, "a string", &format!("env `{name}`"));
                continue;
            }
            if let Some(text) = self.text(value, &format!("env `{name}`")) {
                env.insert(name.to_owned(), text);
            }
        }
        env
    }
}

pub(crate) fn is_identifier(name: &str) -> bool {
    JobId::new(name).is_some()
}

pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Maps a span inside a scalar's value back to the file.
///
/// Exact for plain and simply quoted scalars; for block and escaped scalars it finds the
/// same text in the file after the scalar's start; otherwise it points at the scalar.
pub(crate) fn locate(src: &str, node: Span, value: &str, inner: expr::Span) -> Span {
    let start = node.offset.min(src.len());
    let rest = &src[crate::diagnostic::floor_char_boundary(src, start)..];
    let end = (inner.offset + inner.len).min(value.len());
    let Some(target) = value.get(inner.offset..end) else {
        return node;
    };
    if rest.starts_with(value) {
        return Span::new(start + inner.offset, inner.len);
    }
    if (rest.starts_with('"') || rest.starts_with('\'')) && rest[1..].starts_with(value) {
        return Span::new(start + 1 + inner.offset, inner.len);
    }
    if target.is_empty() {
        return node;
    }
    let nth = value
        .get(..inner.offset)
        .map_or(0, |before| before.matches(target).count());
    let window = rest
        .get(..(value.len() * 2 + 256).min(rest.len()))
        .unwrap_or(rest);
    window
        .match_indices(target)
        .nth(nth)
        .map_or(node, |(i, _)| Span::new(start + i, inner.len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_expressions_in_plain_quoted_and_block_scalars() {
        let src = "run: echo ${{ x }}\n";
        assert_eq!(
            locate(
                src,
                Span::new(5, 13),
                "echo ${{ x }}",
                expr::Span { offset: 9, len: 1 }
            ),
            Span::new(14, 1)
        );
        let src = "run: \"echo ${{ x }}\"\n";
        assert_eq!(
            locate(
                src,
                Span::new(5, 15),
                "echo ${{ x }}",
                expr::Span { offset: 9, len: 1 }
            ),
            Span::new(15, 1)
        );
        let src = "run: |\n  a ${{ x }}\n  b ${{ x }}\n";
        let value = "a ${{ x }}\nb ${{ x }}\n";
        let second = value.rfind('x').unwrap_or_default();
        let at = locate(
            src,
            Span::new(5, 1),
            value,
            expr::Span {
                offset: second,
                len: 1,
            },
        );
        assert_eq!(&src[at.offset..=at.offset], "x");
        assert_eq!(at.offset, src.rfind('x').unwrap_or_default());
    }

    #[test]
    fn identifiers_and_env_names() {
        assert!(is_identifier("build-linux_2"));
        assert!(!is_identifier("2build"));
        assert!(is_env_name("RUST_LOG"));
        assert!(!is_env_name("RUST-LOG"));
    }
}
