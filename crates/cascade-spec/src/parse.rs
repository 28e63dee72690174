//! Reads a ci.yaml file into a [`Pipeline`], collecting every problem on the way.
//!
//! The file is read into a [`Node`] tree first (serde-saphyr, with spans), then walked
//! here field by field. Each shape error, unknown field or bad value becomes a
//! [`Diagnostic`] and the walk goes on, so a user sees all problems of a file in one run.
//! Cross-job checks (needs, cycles, expression scopes) are in `validate.rs`.

use crate::diagnostic::{Code, Diagnostic, SpecErrors, offset_of, suggest};
use crate::duration;
use crate::expr::{self, Segment};
use crate::model::{
    Condition, ForEach, Input, InputKind, Job, JobId, Located, OutputSource, Pipeline,
    PullRequestTrigger, RefFilter, RepositoryDispatch, Retry, Schedule, Shell, Text, Triggers,
    WorkflowDispatch,
};
use crate::source::{Node, Span, Value};
use indexmap::IndexMap;
use std::sync::Arc;

/// Files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Alias replay budget: far above any real pipeline, far below an alias bomb.
const MAX_REPLAYED_EVENTS: usize = 20_000;
/// GitHub's limit, and a sane one: a matrix expands to at most this many jobs.
pub const MAX_MATRIX_JOBS: usize = 256;

pub const TOP_FIELDS: &[&str] = &["name", "on", "env", "jobs"];
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
const INPUT_TYPES: &[&str] = &["string", "boolean", "number", "choice"];

/// Parses and validates a pipeline file given as bytes (as read from disk).
pub fn parse_pipeline_bytes(name: &str, bytes: &[u8]) -> Result<Pipeline, SpecErrors> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(single(
            name,
            "",
            Diagnostic::new(
                Code::TooLarge,
                Span::default(),
                format!(
                    "the file is {} bytes; pipeline files are limited to {MAX_FILE_BYTES} bytes (1 MiB)",
                    bytes.len()
                ),
                "refused before parsing",
            )
            .help("split the pipeline into smaller files chained with repository_dispatch"),
        ));
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
    let root = match read_tree(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(single(
                name,
                text,
                Diagnostic::new(
                    Code::Empty,
                    Span::default(),
                    "the file is empty",
                    "expected a mapping with `jobs:`",
                )
                .help("start with `jobs:` and one job, e.g. `jobs: { hello: { run: echo hi } }`"),
            ));
        }
        Err(diagnostic) => return Err(single(name, text, *diagnostic)),
    };
    let mut walker = Walker {
        src: text,
        diags: Vec::new(),
    };
    let pipeline = walker.pipeline(&root);
    if let Some(pipeline) = &pipeline {
        crate::validate::check(pipeline, text, &mut walker.diags);
    }
    match pipeline {
        Some(p) if walker.diags.is_empty() => Ok(p),
        _ => {
            let mut diagnostics = walker.diags;
            diagnostics.sort_by_key(|d| d.span.offset);
            Err(SpecErrors {
                name: name.to_owned(),
                source: Arc::new(text.to_owned()),
                diagnostics,
            })
        }
    }
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

pub(crate) struct Walker<'s> {
    pub(crate) src: &'s str,
    pub(crate) diags: Vec<Diagnostic>,
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
                    .help(suggest(name, allowed, "the fields")),
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
    fn bad_expression(&mut self, node: Span, raw: &str, e: expr::ExprError, context: &str) {
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

    /// Text that may contain `${{ }}`; bad expressions are reported with file spans.
    pub(crate) fn text(&mut self, node: &Node, context: &str) -> Option<Text> {
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
        match expr::parse_template(&raw) {
            Ok(template) => Some(Text {
                raw,
                template,
                span: node.span,
            }),
            Err(errors) => {
                for e in errors {
                    self.bad_expression(node.span, &raw, e, context);
                }
                None
            }
        }
    }

    fn pipeline(&mut self, root: &Node) -> Option<Pipeline> {
        let fields = self.fields(root, TOP_FIELDS, "the pipeline")?;
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
            if let Some(job) = self.job(job_id.clone(), key, value) {
                jobs.insert(job_id, job);
            }
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
                let kind = match fi.get("type") {
                    None => InputKind::String,
                    Some(t) => match t.as_str() {
                        Some("string") => InputKind::String,
                        Some("boolean") => InputKind::Boolean,
                        Some("number") => InputKind::Number,
                        Some("choice") => InputKind::Choice,
                        Some(other) => {
                            self.push(
                                Diagnostic::new(
                                    Code::BadValue,
                                    t.span,
                                    format!("unknown input type `{other}`"),
                                    "unknown type",
                                )
                                .help(suggest(
                                    other,
                                    INPUT_TYPES,
                                    "the types",
                                )),
                            );
                            InputKind::String
                        }
                        None => {
                            self.wrong_type(t, "a string", "`type`");
                            InputKind::String
                        }
                    },
                };
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

    fn bad_name(&mut self, key: &Node, name: &str, what: &str) {
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

    #[expect(
        clippy::too_many_lines,
        reason = "one arm per job field reads best in one place"
    )]
    fn job(&mut self, id: JobId, key: &Node, node: &Node) -> Option<Job> {
        let context = format!("job `{id}`");
        let f = self.fields(node, JOB_FIELDS, &context)?;
        let Some(run_node) = f.get("run") else {
            self.push(
                Diagnostic::new(
                    Code::MissingField,
                    key.span,
                    format!("missing field `run` in {context}"),
                    "this job has no `run`",
                )
                .help("add the command to run, e.g. `run: make test`"),
            );
            return None;
        };
        let run = self.text(run_node, &format!("`run` of {context}"));
        let shell = match f.get("shell") {
            None => Shell::Sh,
            Some(n) => match n.as_str() {
                Some("sh") => Shell::Sh,
                Some("bash") => Shell::Bash,
                _ => {
                    self.push(
                        Diagnostic::new(
                            Code::BadValue,
                            n.span,
                            "`shell` must be `sh` or `bash`",
                            "unsupported shell",
                        )
                        .help("write `shell: bash` or leave it out for `sh`"),
                    );
                    Shell::Sh
                }
            },
        };
        let mut needs = Vec::new();
        if let Some(n) = f.get("needs") {
            let mut seen: IndexMap<String, Span> = IndexMap::new();
            for need in self.strings(n, &format!("`needs` of {context}"), true) {
                if let Some(first) = seen.get(&need.value) {
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateNeed,
                            need.span,
                            format!("`{}` is listed twice in `needs` of {context}", need.value),
                            "listed again",
                        )
                        .related(*first, "first listed here")
                        .help("remove the repeated entry"),
                    );
                    continue;
                }
                seen.insert(need.value.clone(), need.span);
                match JobId::new(&need.value) {
                    Some(job) => needs.push(Located {
                        value: job,
                        span: need.span,
                    }),
                    None => self.push(
                        Diagnostic::new(
                            Code::UnknownNeed,
                            need.span,
                            format!(
                                "`needs` of {context} names `{}`, which is not a valid job id",
                                need.value
                            ),
                            "not a job id",
                        )
                        .help("list the ids of the jobs this one waits for"),
                    ),
                }
            }
        }
        let env = f
            .get("env")
            .map(|n| self.env(n, &format!("`env` of {context}")))
            .unwrap_or_default();
        let mut secrets: Vec<Located<String>> = Vec::new();
        if let Some(n) = f.get("secrets") {
            for secret in self.strings(n, &format!("`secrets` of {context}"), false) {
                if !is_env_name(&secret.value) {
                    self.push(
                        Diagnostic::new(Code::BadName, secret.span, format!("invalid secret name `{}`", secret.value), "invalid name")
                            .help("a secret is passed as an environment variable: letters, digits and `_`, not starting with a digit"),
                    );
                } else if let Some(first) = secrets.iter().find(|s| s.value == secret.value) {
                    let first = first.span;
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateKey,
                            secret.span,
                            format!("secret `{}` is listed twice", secret.value),
                            "listed again",
                        )
                        .related(first, "first listed here")
                        .help("remove the repeated entry"),
                    );
                } else {
                    secrets.push(secret);
                }
            }
        }
        let condition = f.get("if").and_then(|n| self.condition(n, &context));
        let matrix = f
            .get("matrix")
            .map(|n| self.matrix(n, &context))
            .unwrap_or_default();
        let for_each = f.get("for_each").and_then(|n| self.for_each(n, &context));
        let mut outputs = IndexMap::new();
        if let Some(n) = f.get("outputs") {
            for (key, name, value) in self.entries(n, &format!("`outputs` of {context}")) {
                if !is_identifier(name) {
                    self.bad_name(key, name, "output");
                    continue;
                }
                let source = match value.as_str() {
                    Some("file") => OutputSource::File,
                    Some("stdout") => OutputSource::Stdout,
                    Some("stdout-json") => OutputSource::StdoutJson,
                    other => {
                        let found = other
                            .map_or_else(|| value.value.kind().to_owned(), |s| format!("`{s}`"));
                        self.push(
                            Diagnostic::new(Code::BadValue, value.span, format!("output `{name}` of {context}: unknown source {found}"), "unknown output source")
                                .help(suggest(other.unwrap_or_default(), OutputSource::NAMES, "the sources").replace("the sources:", "the sources (`file` reads `name=value` lines from $CASCADE_OUTPUT):")),
                        );
                        continue;
                    }
                };
                outputs.insert(name.to_owned(), source);
            }
        }
        let retry = f.get("retry").and_then(|n| self.retry(n, &context));
        let timeout = f.get("timeout").and_then(|n| {
            let d = self.duration(n, &format!("`timeout` of {context}"))?;
            if d.is_zero() {
                self.push(
                    Diagnostic::new(
                        Code::BadDuration,
                        n.span,
                        format!("`timeout` of {context} must be more than zero"),
                        "zero timeout",
                    )
                    .help("leave `timeout` out for no limit"),
                );
                return None;
            }
            Some(d)
        });
        let continue_on_error = f
            .get("continue_on_error")
            .and_then(|n| self.bool(n, "`continue_on_error`"))
            .unwrap_or(false);
        let paths = self.plain_strings(f.get("paths"), &format!("`paths` of {context}"));
        let name = f.get("name").and_then(|n| self.string(n, "`name`"));
        let image = f.get("image").and_then(|n| self.string(n, "`image`"));
        let runner = f.get("runner").and_then(|n| {
            self.string(n, "`runner`").map(|value| Located {
                value,
                span: n.span,
            })
        });
        if for_each.is_some() && !matrix.is_empty() {
            let span = f.key("for_each").map_or(key.span, |k| k.span);
            self.push(
                Diagnostic::new(
                    Code::BadValue,
                    span,
                    format!("{context} has both `matrix` and `for_each`"),
                    "second fan-out",
                )
                .help("fan out over one of them; nest with a second job if both are needed"),
            );
        }
        Some(Job {
            id,
            span: key.span,
            name,
            image,
            runner,
            run: run?,
            shell,
            needs,
            env,
            secrets,
            condition,
            matrix,
            for_each,
            outputs,
            retry,
            timeout,
            continue_on_error,
            paths,
        })
    }

    pub(crate) fn condition(&mut self, node: &Node, context: &str) -> Option<Condition> {
        let context = format!("`if` of {context}");
        match &node.value {
            Value::Bool(b) => Some(Condition {
                expr: expr::parse(if *b { "true" } else { "false" }).ok()?,
                raw: b.to_string(),
                span: node.span,
                offset: 0,
            }),
            Value::Str(s) if s.contains("${{") => {
                let text = self.text(node, &context)?;
                let single = text
                    .template
                    .segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Expr { .. }))
                    .count()
                    == 1
                    && text.template.single_expr().is_some();
                let found = text.template.segments.iter().find_map(|s| match s {
                    Segment::Expr {
                        expr, inner_offset, ..
                    } if single => Some((expr.clone(), *inner_offset)),
                    _ => None,
                });
                if let Some((expr, offset)) = found {
                    Some(Condition {
                        expr,
                        raw: text.raw,
                        span: node.span,
                        offset,
                    })
                } else {
                    self.push(
                        Diagnostic::new(
                            Code::BadExpression,
                            node.span,
                            format!("{context} must be one expression"),
                            "text around the expression",
                        )
                        .help(
                            "write the bare expression, e.g. `if: needs.build.result == 'success'`",
                        ),
                    );
                    None
                }
            }
            Value::Str(s) => match expr::parse(s) {
                Ok(e) => Some(Condition {
                    expr: e,
                    raw: s.clone(),
                    span: node.span,
                    offset: 0,
                }),
                Err(e) => {
                    self.bad_expression(node.span, s, e, &context);
                    None
                }
            },
            _ => {
                self.wrong_type(node, "an expression", &context);
                None
            }
        }
    }

    fn matrix(&mut self, node: &Node, context: &str) -> IndexMap<String, Vec<String>> {
        let mut matrix = IndexMap::new();
        let mut combinations: usize = 1;
        for (key, name, value) in self.entries(node, &format!("`matrix` of {context}")) {
            if !is_identifier(name) {
                self.bad_name(key, name, "matrix axis");
                continue;
            }
            let Value::Seq(items) = &value.value else {
                self.wrong_type(value, "a list of values", &format!("matrix axis `{name}`"));
                continue;
            };
            if items.is_empty() {
                self.push(
                    Diagnostic::new(
                        Code::BadValue,
                        value.span,
                        format!("matrix axis `{name}` is empty"),
                        "no values",
                    )
                    .help("list at least one value, or remove the axis"),
                );
                continue;
            }
            let mut values = Vec::new();
            for item in items {
                match item.scalar_text() {
                    Some(v) => values.push(v),
                    None => self.wrong_type(
                        item,
                        "a string, number or boolean",
                        &format!("matrix axis `{name}`"),
                    ),
                }
            }
            combinations = combinations.saturating_mul(values.len());
            matrix.insert(name.to_owned(), values);
        }
        if combinations > MAX_MATRIX_JOBS {
            self.push(
                Diagnostic::new(Code::BadValue, node.span, format!("`matrix` of {context} expands to {combinations} jobs; the limit is {MAX_MATRIX_JOBS}"), "too many combinations")
                    .help("split the matrix across jobs or remove values"),
            );
        }
        matrix
    }

    fn for_each(&mut self, node: &Node, context: &str) -> Option<ForEach> {
        let context = format!("`for_each` of {context}");
        match &node.value {
            Value::Seq(items) => {
                let mut values = Vec::new();
                for item in items {
                    match item.scalar_text() {
                        Some(v) => values.push(v),
                        None => self.wrong_type(item, "a string, number or boolean", &context),
                    }
                }
                Some(ForEach::Static(values))
            }
            Value::Str(_) => {
                let text = self.text(node, &context)?;
                let Some(e) = text.template.single_expr().cloned() else {
                    self.push(
                        Diagnostic::new(Code::NotAList, node.span, format!("{context} must be a list or one `${{{{ }}}}` expression that gives a list"), "not a list")
                            .help("write e.g. `for_each: ${{ needs.detect.outputs.packages }}` or a YAML list"),
                    );
                    return None;
                };
                if !could_be_list(&e) {
                    let span = locate(self.src, node.span, &text.raw, e.span());
                    self.push(
                        Diagnostic::new(Code::NotAList, span, format!("{context} must give a list, but this expression cannot"), "not a list")
                            .help("use a job output (`needs.<job>.outputs.<name>`), an input, an event field, or `fromJSON(...)`"),
                    );
                    return None;
                }
                Some(ForEach::Dynamic { expr: e, text })
            }
            _ => {
                self.push(
                    Diagnostic::new(Code::NotAList, node.span, format!("{context} must be a list or one `${{{{ }}}}` expression that gives a list, found {}", node.value.kind()), "not a list")
                        .help("write e.g. `for_each: ${{ needs.detect.outputs.packages }}` or a YAML list"),
                );
                None
            }
        }
    }

    pub(crate) fn retry(&mut self, node: &Node, context: &str) -> Option<Retry> {
        let context = format!("`retry` of {context}");
        if let Value::Int(_) = node.value {
            return self.retry_limit(node, &context).map(|limit| Retry {
                limit,
                backoff: Retry::DEFAULT_BACKOFF,
                max_backoff: None,
                on_exit_codes: Vec::new(),
            });
        }
        let f = self.fields(node, RETRY_FIELDS, &context)?;
        let Some(limit_node) = f.get("limit") else {
            self.push(
                Diagnostic::new(
                    Code::MissingField,
                    node.span,
                    format!("missing field `limit` in {context}"),
                    "no limit",
                )
                .help("add `limit: 2` (retries after the first attempt)"),
            );
            return None;
        };
        let limit = self.retry_limit(limit_node, &context)?;
        let backoff = f
            .get("backoff")
            .and_then(|n| self.duration(n, "`backoff`"))
            .unwrap_or(Retry::DEFAULT_BACKOFF);
        let max_backoff = f
            .get("max_backoff")
            .and_then(|n| self.duration(n, "`max_backoff`"));
        if let (Some(max), Some(n)) = (max_backoff, f.get("max_backoff"))
            && max < backoff
        {
            self.push(
                Diagnostic::new(
                    Code::BadDuration,
                    n.span,
                    "`max_backoff` is shorter than `backoff`",
                    "shorter than backoff",
                )
                .help("make `max_backoff` at least as long as `backoff`"),
            );
        }
        let mut on_exit_codes = Vec::new();
        if let Some(n) = f.get("on_exit_codes") {
            let items = if let Value::Seq(items) = &n.value {
                items.as_slice()
            } else {
                self.wrong_type(n, "a list of exit codes", "`on_exit_codes`");
                &[]
            };
            for item in items {
                match item.value {
                    Value::Int(code) if (1..=255).contains(&code) => {
                        on_exit_codes.push(i32::try_from(code).unwrap_or_default());
                    }
                    _ => self.push(
                        Diagnostic::new(
                            Code::BadValue,
                            item.span,
                            "an exit code to retry on must be a number from 1 to 255",
                            "not an exit code",
                        )
                        .help("list the failing exit codes worth a retry, e.g. `[1, 75]`"),
                    ),
                }
            }
        }
        Some(Retry {
            limit,
            backoff,
            max_backoff,
            on_exit_codes,
        })
    }

    pub(crate) fn retry_limit(&mut self, node: &Node, context: &str) -> Option<u32> {
        match node.value {
            Value::Int(n) if (0..=100).contains(&n) => u32::try_from(n).ok(),
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::BadValue,
                        node.span,
                        format!("{context}: `limit` must be a number from 0 to 100"),
                        "not a retry limit",
                    )
                    .help("the limit counts retries after the first attempt, e.g. `limit: 2`"),
                );
                None
            }
        }
    }
}

/// An expression that may give a list at run time.
fn could_be_list(e: &expr::Expr) -> bool {
    match e {
        expr::Expr::Ref(r) => !r.is_result(),
        expr::Expr::Call { func, .. } => *func == expr::Func::FromJson,
        expr::Expr::And { terms, .. } | expr::Expr::Or { terms, .. } => {
            terms.iter().any(could_be_list)
        }
        expr::Expr::Literal { .. } | expr::Expr::Not { .. } | expr::Expr::Binary { .. } => false,
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
