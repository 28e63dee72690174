//! The validated pipeline: what leaves this crate after parsing and validation.
//!
//! Every type here was checked: job ids are valid and unique, `needs` form a DAG,
//! expressions parsed and refer only to things in scope, durations and crons are well
//! formed. Spans are kept where a later stage (plan, engine, Argo) may need to point
//! back at the file, e.g. an unknown runner alias.

use crate::expr::{Expr, Template};
use crate::source::Span;
use indexmap::IndexMap;
use std::fmt;
use std::time::Duration;

/// A value with the span it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub span: Span,
}

/// What a job asks for (`resources: { cpu: 2, memory: 1Gi }`): its weight on the local
/// engine and its container's requests and limits on Argo. A field left out comes from the
/// job's runner alias, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// CPU in millicores (`cpu: 2` is 2000, `cpu: 500m` is 500), more than zero.
    pub cpu_milli: Option<u32>,
    /// Memory as written, a Kubernetes quantity (`512Mi`, `1Gi`) of more than zero bytes.
    pub memory: Option<String>,
}

/// A job id: `[A-Za-z_][A-Za-z0-9_-]*`, at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

impl JobId {
    pub const MAX_LEN: usize = 100;

    /// Checks the spelling; `None` when it is not a valid id.
    pub fn new(id: &str) -> Option<Self> {
        let mut chars = id.chars();
        let first = chars.next()?;
        let ok = (first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && id.len() <= Self::MAX_LEN;
        ok.then(|| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for JobId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Text that may contain `${{ }}` expressions (`run:`, env values).
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    /// The text as written in the file.
    pub raw: String,
    pub template: Template,
    pub span: Span,
}

impl Text {
    /// Where a span of the template text is in the file (for diagnostics found after
    /// parsing, such as the shell checks of `cascade_plan::script`).
    pub fn locate(&self, src: &str, span: crate::expr::Span) -> Span {
        crate::parse::locate(src, self.span, &self.raw, span)
    }
}

/// An `if:` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub expr: Expr,
    /// The value as written (`needs.a.result == 'success'` or `${{ ... }}`).
    pub raw: String,
    pub span: Span,
    /// Byte offset of the expression text inside `raw` (after `${{`, or 0).
    pub offset: usize,
}

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: Option<String>,
    pub on: Triggers,
    pub env: IndexMap<String, Text>,
    /// Jobs in file order.
    pub jobs: IndexMap<JobId, Job>,
}

impl Pipeline {
    /// The plain (expression-free) `env.PROJECT_ID` values of its jobs, in file order: what
    /// a submission's scope is inferred from (DESIGN §3).
    pub fn project_ids(&self) -> Vec<&str> {
        self.jobs
            .values()
            .filter_map(|j| j.env.get("PROJECT_ID"))
            .filter(|t| t.template.is_plain())
            .map(|t| t.raw.as_str())
            .collect()
    }

    /// Dependency edges `(dependency, dependent)` in file order.
    pub fn edges(&self) -> impl Iterator<Item = (&JobId, &JobId)> {
        self.jobs
            .values()
            .flat_map(|job| job.needs.iter().map(move |dep| (&dep.value, &job.id)))
    }
}

/// `on:` — what starts the pipeline. Empty means it only runs when asked to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Triggers {
    pub push: Option<RefFilter>,
    pub pull_request: Option<PullRequestTrigger>,
    pub schedule: Vec<Schedule>,
    pub workflow_dispatch: Option<WorkflowDispatch>,
    pub repository_dispatch: Option<RepositoryDispatch>,
}

/// Branch, tag and path filters (glob patterns) of a push.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefFilter {
    pub branches: Vec<String>,
    pub branches_ignore: Vec<String>,
    pub tags: Vec<String>,
    pub tags_ignore: Vec<String>,
    pub paths: Vec<String>,
    pub paths_ignore: Vec<String>,
}

/// `on.pull_request`: filters on the base branch and paths, and the actions that count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PullRequestTrigger {
    pub branches: Vec<String>,
    pub branches_ignore: Vec<String>,
    pub paths: Vec<String>,
    pub paths_ignore: Vec<String>,
    /// Empty means `opened`, `synchronize` and `reopened`.
    pub types: Vec<String>,
}

/// One `on.schedule` entry; the cron line was checked by croner.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cron: String,
    /// An IANA zone name; `None` means UTC.
    pub timezone: Option<String>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkflowDispatch {
    pub inputs: IndexMap<String, Input>,
}

/// A declared `workflow_dispatch` input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Input {
    pub description: Option<String>,
    pub default: Option<String>,
    pub required: bool,
    pub kind: InputKind,
    /// Allowed values of a `choice` input.
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputKind {
    #[default]
    String,
    Boolean,
    Number,
    Choice,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RepositoryDispatch {
    /// Event types that start the pipeline; empty means any.
    pub types: Vec<String>,
}

/// The shell that runs a job's script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shell {
    #[default]
    Sh,
    Bash,
}

impl Shell {
    pub fn program(self) -> &'static str {
        match self {
            Shell::Sh => "sh",
            Shell::Bash => "bash",
        }
    }
}

/// Where a declared output's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSource {
    /// A `name=value` line (or heredoc block) written to the file named by `$CASCADE_OUTPUT`.
    File,
    /// The job's standard output, trimmed.
    Stdout,
    /// The job's standard output parsed as JSON.
    StdoutJson,
}

impl OutputSource {
    pub const NAMES: &'static [&'static str] = &["file", "stdout", "stdout-json"];

    pub fn name(self) -> &'static str {
        match self {
            OutputSource::File => "file",
            OutputSource::Stdout => "stdout",
            OutputSource::StdoutJson => "stdout-json",
        }
    }
}

/// `retry:` of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Attempts after the first one.
    pub limit: u32,
    /// Delay before the first retry; doubles each time, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Option<Duration>,
    /// Retry only on these exit codes; empty means any failure.
    pub on_exit_codes: Vec<i32>,
}

impl Retry {
    pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
}

/// `for_each:` — the list a job fans out over.
#[derive(Debug, Clone, PartialEq)]
pub enum ForEach {
    /// A list written in the file.
    Static(Vec<String>),
    /// A list known at run time, from an expression (Argo `withParam`).
    Dynamic { expr: Expr, text: Text },
}

/// One job of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    /// The span of the job's key.
    pub span: Span,
    pub name: Option<String>,
    pub image: Option<String>,
    pub runner: Option<Located<String>>,
    /// `resources:`, overriding the runner alias's values field by field; `None` when
    /// the job has no `resources:` or it sets neither field.
    pub resources: Option<Resources>,
    pub run: Text,
    pub shell: Shell,
    pub needs: Vec<Located<JobId>>,
    pub env: IndexMap<String, Text>,
    pub secrets: Vec<Located<String>>,
    /// `None` means `success()`.
    pub condition: Option<Condition>,
    /// Axis name → values, in file order.
    pub matrix: IndexMap<String, Vec<String>>,
    pub for_each: Option<ForEach>,
    pub outputs: IndexMap<String, OutputSource>,
    pub retry: Option<Retry>,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
    /// Job-level path filter: skip the job when nothing under these globs changed.
    pub paths: Vec<String>,
}
