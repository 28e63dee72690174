//! The fields of one job, read by one walker for both forms a job comes in: a ci.yaml
//! job (`jobs.<id>`, DESIGN §2) and a DAG JSON task (`tasks[]`, DESIGN §3).
//!
//! Only what a [`Form`] lists differs: the allowed field sets, the word for a job in
//! messages, and how examples in help lines are written. Every check — secret names,
//! duplicate `needs` and secrets, zero timeouts, durations, expressions — is written
//! once here, so the two parsers cannot drift apart again.

use crate::diagnostic::{Code, Diagnostic, suggest};
use crate::expr::{self, Segment, Template};
use crate::model::{
    Condition, ForEach, Job, JobId, Located, OutputSource, Resources, Retry, Shell, Text,
};
use crate::parse::{
    Fields, MAX_MATRIX_JOBS, RESOURCE_FIELDS, Walker, is_env_name, is_identifier, locate,
};
use crate::source::{Node, Span, Value};
use indexmap::IndexMap;

/// What differs between the two forms of a job.
pub(crate) struct Form {
    /// What a job is called in messages: `job` or `task`.
    pub(crate) noun: &'static str,
    /// The fields a job may have; a field not listed reads as absent.
    pub(crate) fields: &'static [&'static str],
    /// Hints for unknown fields that users of GitHub Actions reach for.
    pub(crate) habits: &'static [(&'static str, &'static str)],
    /// The fields of a `retry:` mapping, and the names of its delay and delay cap.
    pub(crate) retry_fields: &'static [&'static str],
    pub(crate) backoff: &'static str,
    pub(crate) max_backoff: &'static str,
    /// Examples in help lines are JSON (`"run": "make"`), not YAML (`run: make`).
    pub(crate) json: bool,
}

impl Form {
    /// `key: value` as this form writes it.
    pub(crate) fn example(&self, key: &str, value: &str) -> String {
        if !self.json {
            return format!("{key}: {value}");
        }
        let literal = value.parse::<f64>().is_ok() || matches!(value, "true" | "false");
        if literal {
            format!("\"{key}\": {value}")
        } else {
            format!("\"{key}\": \"{value}\"")
        }
    }
}

/// A ci.yaml job.
pub(crate) const PIPELINE_JOB: Form = Form {
    noun: "job",
    fields: crate::parse::JOB_FIELDS,
    habits: JOB_HABITS,
    retry_fields: crate::parse::RETRY_FIELDS,
    backoff: "backoff",
    max_backoff: "max_backoff",
    json: false,
};

/// What a GitHub Actions user writes in a job, and what Cascade does instead (DESIGN §2;
/// the keys of pipeline version 1.1, §2.1, are said to be planned, not suggested away).
const JOB_HABITS: &[(&str, &str)] = &[
    (
        "runs-on",
        "Cascade has no `runs-on`: the same job runs on the local engine, a server worker or Argo; pick resources with `runner:` (an alias from cascade.toml, e.g. `runner: small`) or `resources: { cpu: 2, memory: 4Gi }`, and a container with `image:`",
    ),
    (
        "environment",
        "`environment` (deployments that wait for approval) is not supported in pipeline version 1; it is planned for version 1.1. Variables for the job go in `env:`",
    ),
    (
        "services",
        "`services` (sidecar containers) is not supported in pipeline version 1; it is planned for version 1.1. Until then, start what the job needs in its `run:` script",
    ),
    (
        "steps",
        "`steps` is not supported in pipeline version 1; it is planned for version 1.1. Write the commands as one script: `run: |` with one command a line",
    ),
    (
        "uses",
        "`uses` (reusable pipelines and actions) is not supported in pipeline version 1; reusable pipelines are planned for version 1.1. Write the commands in `run:`",
    ),
    (
        "with",
        "`with` (inputs of a reusable pipeline) is not supported in pipeline version 1; it is planned for version 1.1 together with `uses`",
    ),
    (
        "container",
        "write the job's container image as `image:`, e.g. `image: rust:1.95`",
    ),
    (
        "strategy",
        "write the matrix on the job itself, e.g. `matrix: { os: [linux, macos] }`; a job with a failing combination fails",
    ),
    (
        "timeout-minutes",
        "write `timeout:` with a unit, e.g. `timeout: 10m`",
    ),
    (
        "continue-on-error",
        "write `continue_on_error: true` (with underscores)",
    ),
    (
        "working-directory",
        "`working_directory` is not supported in pipeline version 1; it is planned for version 1.1. Until then, `cd` in the `run:` script",
    ),
    (
        "working_directory",
        "`working_directory` is not supported in pipeline version 1; it is planned for version 1.1. Until then, `cd` in the `run:` script",
    ),
    (
        "concurrency",
        "`concurrency` is not supported in pipeline version 1; it is planned for version 1.1 (at the top of the file)",
    ),
    (
        "cache",
        "`cache` is not supported in pipeline version 1; it is planned for version 1.1",
    ),
    (
        "artifacts",
        "`artifacts` is not supported in pipeline version 1; it is planned for version 1.1. Pass small values between jobs with `outputs:`",
    ),
    (
        "permissions",
        "Cascade gives jobs no forge token to scope: a job gets only the secrets it lists in `secrets:`",
    ),
];

impl Walker<'_> {
    /// One job of either form, from its known fields (`None`: the job was not a mapping,
    /// already reported). A job is returned even when some of its fields are wrong, so
    /// `needs` and expressions elsewhere may still refer to it (only a valid document
    /// leaves the crate, so the stand-ins for wrong fields are never used).
    #[expect(
        clippy::too_many_lines,
        reason = "one block per job field reads best in one place"
    )]
    pub(crate) fn job(
        &mut self,
        form: &Form,
        id: JobId,
        span: Span,
        fields: Option<&Fields<'_>>,
    ) -> Job {
        let none = Fields::default();
        let f = fields.unwrap_or(&none);
        let noun = form.noun;
        let context = format!("{noun} `{id}`");
        let run = f
            .get("run")
            .and_then(|n| self.text(n, &format!("`run` of {context}")));
        if f.get("run").is_none() && fields.is_some() {
            self.push(
                Diagnostic::new(
                    Code::MissingField,
                    span,
                    format!("missing field `run` in {context}"),
                    format!("this {noun} has no `run`"),
                )
                .help(format!(
                    "add the command to run, e.g. `{}`",
                    form.example("run", "make test")
                )),
            );
        }
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
                        .help(format!(
                            "write `{}` or leave it out for `sh`",
                            form.example("shell", "bash")
                        )),
                    );
                    Shell::Sh
                }
            },
        };
        let needs = f
            .get("needs")
            .map(|n| self.needs(form, n, &context))
            .unwrap_or_default();
        let env = f
            .get("env")
            .map(|n| self.env(n, &format!("`env` of {context}")))
            .unwrap_or_default();
        let secrets = f
            .get("secrets")
            .map(|n| self.secrets(n, &context))
            .unwrap_or_default();
        let condition = f.get("if").and_then(|n| self.condition(n, &context));
        let matrix = f
            .get("matrix")
            .map(|n| self.matrix(n, &context))
            .unwrap_or_default();
        let for_each = f.get("for_each").and_then(|n| self.for_each(n, &context));
        let before_outputs = self.diags.len();
        let outputs = f
            .get("outputs")
            .map(|n| self.outputs(n, &context))
            .unwrap_or_default();
        if self.diags.len() > before_outputs {
            self.unsure_outputs.insert(id.clone());
        }
        let retry = f.get("retry").and_then(|n| self.retry(form, n, &context));
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
        let resources = f
            .get("resources")
            .and_then(|n| self.resources(form, n, &context));
        if for_each.is_some() && !matrix.is_empty() {
            let span = f.key("for_each").map_or(span, |k| k.span);
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
        Job {
            id,
            span,
            name,
            image,
            runner,
            resources,
            // Only a job with no problem leaves the crate, and such a job has a `run`.
            run: run.unwrap_or_else(|| Text {
                raw: String::new(),
                template: Template::default(),
                span,
            }),
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
        }
    }

    /// `resources`: `{ cpu, memory }`, each optional; `None` when neither is given.
    fn resources(&mut self, form: &Form, node: &Node, context: &str) -> Option<Resources> {
        let context = format!("`resources` of {context}");
        let f = self.fields(node, RESOURCE_FIELDS, &context)?;
        let cpu_milli = f.get("cpu").and_then(|n| self.cpu(form, n, &context));
        let memory = f.get("memory").and_then(|n| self.memory(form, n, &context));
        (cpu_milli.is_some() || memory.is_some()).then_some(Resources { cpu_milli, memory })
    }

    /// `cpu`: cores (`2`, `0.5`, `"1.5"`) or millicores (`"500m"`), in millicores.
    fn cpu(&mut self, form: &Form, node: &Node, context: &str) -> Option<u32> {
        let example = format!(
            "write cores or millicores, e.g. `{}` or `{}`",
            form.example("cpu", "2"),
            form.example("cpu", "500m")
        );
        let parsed = match &node.value {
            #[expect(
                clippy::cast_precision_loss,
                reason = "a core count beyond 2^52 is refused as too large anyway"
            )]
            Value::Int(n) => Ok(*n as f64 * 1000.0),
            Value::Float(f) => Ok(f * 1000.0),
            Value::Str(s) => cpu_text_millis(s.trim()),
            _ => {
                self.wrong_type(
                    node,
                    "a number of cores or a quantity like `500m`",
                    &format!("`cpu` of {context}"),
                );
                return None;
            }
        };
        let problem = match parsed {
            Err(()) => "is not a CPU quantity".to_owned(),
            Ok(m) if m.is_nan() || m <= 0.0 => "must be more than zero".to_owned(),
            Ok(m) if (m - m.round()).abs() > 1e-6 => {
                "is finer than a millicore (`1m`, 0.001 cores)".to_owned()
            }
            Ok(m) if m > f64::from(u32::MAX) => "is more CPU than any machine has".to_owned(),
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked positive, whole and within u32 above"
            )]
            Ok(m) => return Some(m.round() as u32),
        };
        let shown = node.scalar_text().unwrap_or_default();
        self.push(
            Diagnostic::new(
                Code::BadValue,
                node.span,
                format!("`cpu` of {context}: `{shown}` {problem}"),
                "invalid cpu",
            )
            .help(example),
        );
        None
    }

    /// `memory`: a Kubernetes quantity (`512Mi`, `1Gi`, `1G`) or a number of bytes, kept as
    /// written.
    fn memory(&mut self, form: &Form, node: &Node, context: &str) -> Option<String> {
        let text = match &node.value {
            Value::Int(n) => n.to_string(),
            Value::Str(s) => s.trim().to_owned(),
            _ => {
                self.wrong_type(
                    node,
                    "a quantity like `512Mi` or `1Gi`",
                    &format!("`memory` of {context}"),
                );
                return None;
            }
        };
        let problem = match crate::config::memory_bytes(&text) {
            Some(0) => "must be more than zero",
            Some(_) => return Some(text),
            None if text.starts_with('-') => "must be more than zero",
            None => "is not a memory quantity",
        };
        self.push(
            Diagnostic::new(
                Code::BadValue,
                node.span,
                format!("`memory` of {context}: `{text}` {problem}"),
                "invalid memory",
            )
            .help(format!(
                "write a number with a unit (Ki, Mi, Gi, Ti, or k, M, G, T), e.g. `{}`",
                form.example("memory", "512Mi")
            )),
        );
        None
    }

    /// `needs`: one id or a list of ids, each once.
    fn needs(&mut self, form: &Form, node: &Node, context: &str) -> Vec<Located<JobId>> {
        let noun = form.noun;
        let mut needs: Vec<Located<JobId>> = Vec::new();
        let mut seen: IndexMap<String, Span> = IndexMap::new();
        for need in self.strings(node, &format!("`needs` of {context}"), true) {
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
                            "`needs` of {context} names `{}`, which is not a valid {noun} id",
                            need.value
                        ),
                        format!("not a {noun} id"),
                    )
                    .help(format!("list the ids of the {noun}s this one waits for")),
                ),
            }
        }
        needs
    }

    /// `secrets`: a list of names, each a valid environment variable name, each once.
    fn secrets(&mut self, node: &Node, context: &str) -> Vec<Located<String>> {
        let mut secrets: Vec<Located<String>> = Vec::new();
        for secret in self.strings(node, &format!("`secrets` of {context}"), false) {
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
        secrets
    }

    /// `outputs`: name → source. A name whose source is wrong is kept (as `stdout`), so a
    /// job reading it is not told that the output does not exist.
    fn outputs(&mut self, node: &Node, context: &str) -> IndexMap<String, OutputSource> {
        let mut outputs = IndexMap::new();
        for (key, name, value) in self.entries(node, &format!("`outputs` of {context}")) {
            if !is_identifier(name) {
                self.bad_name(key, name, "output");
                continue;
            }
            let source = match value.as_str() {
                Some("file") => OutputSource::File,
                Some("stdout") => OutputSource::Stdout,
                Some("stdout-json") => OutputSource::StdoutJson,
                other => {
                    let found =
                        other.map_or_else(|| value.value.kind().to_owned(), |s| format!("`{s}`"));
                    self.push(
                        Diagnostic::new(Code::BadValue, value.span, format!("output `{name}` of {context}: unknown source {found}"), "unknown output source")
                            .help(suggest(other.unwrap_or_default(), OutputSource::NAMES, "the sources").replace("the sources:", "the sources (`file` reads `name=value` lines from $CASCADE_OUTPUT):")),
                    );
                    OutputSource::Stdout
                }
            };
            outputs.insert(name.to_owned(), source);
        }
        outputs
    }

    fn condition(&mut self, node: &Node, context: &str) -> Option<Condition> {
        let context = format!("`if` of {context}");
        match &node.value {
            Value::Bool(b) => Some(Condition {
                expr: expr::parse(if *b { "true" } else { "false" }).ok()?,
                raw: b.to_string(),
                span: node.span,
                offset: 0,
            }),
            Value::Str(s) if s.contains("${{") => {
                let text = self.checked_text(node, &context)?;
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
                let text = self.checked_text(node, &context)?;
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

    /// `retry`: a limit, or `{ limit, <backoff>, <max_backoff>, on_exit_codes }` with the
    /// form's names for the delays.
    fn retry(&mut self, form: &Form, node: &Node, context: &str) -> Option<Retry> {
        let context = format!("`retry` of {context}");
        if let Value::Int(_) = node.value {
            return self.retry_limit(form, node, &context).map(|limit| Retry {
                limit,
                backoff: Retry::DEFAULT_BACKOFF,
                max_backoff: None,
                on_exit_codes: Vec::new(),
            });
        }
        let f = self.fields(node, form.retry_fields, &context)?;
        let Some(limit_node) = f.get("limit") else {
            self.push(
                Diagnostic::new(
                    Code::MissingField,
                    node.span,
                    format!("missing field `limit` in {context}"),
                    "no limit",
                )
                .help(format!(
                    "add `{}` (retries after the first attempt)",
                    form.example("limit", "2")
                )),
            );
            return None;
        };
        let limit = self.retry_limit(form, limit_node, &context)?;
        let (backoff_name, max_name) = (form.backoff, form.max_backoff);
        let backoff = f
            .get(backoff_name)
            .and_then(|n| self.duration(n, &format!("`{backoff_name}`")))
            .unwrap_or(Retry::DEFAULT_BACKOFF);
        let max_backoff = f
            .get(max_name)
            .and_then(|n| self.duration(n, &format!("`{max_name}`")));
        if let (Some(max), Some(n)) = (max_backoff, f.get(max_name))
            && max < backoff
        {
            self.push(
                Diagnostic::new(
                    Code::BadDuration,
                    n.span,
                    format!("`{max_name}` is shorter than `{backoff_name}`"),
                    format!("shorter than {backoff_name}"),
                )
                .help(format!(
                    "make `{max_name}` at least as long as `{backoff_name}`"
                )),
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

    fn retry_limit(&mut self, form: &Form, node: &Node, context: &str) -> Option<u32> {
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
                    .help(format!(
                        "the limit counts retries after the first attempt, e.g. `{}`",
                        form.example("limit", "2")
                    )),
                );
                None
            }
        }
    }
}

/// Millicores of a CPU text: `500m`, or cores (`2`, `0.5`, `-1`: sign kept for the check).
fn cpu_text_millis(text: &str) -> Result<f64, ()> {
    let (number, factor) = match text.strip_suffix('m') {
        Some(milli) => (milli, 1.0),
        None => (text, 1000.0),
    };
    let digits = number.strip_prefix('-').unwrap_or(number);
    if digits.is_empty()
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        || !digits.chars().any(|c| c.is_ascii_digit())
    {
        return Err(());
    }
    number.parse::<f64>().map(|n| n * factor).map_err(|_| ())
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

#[cfg(test)]
mod tests {
    use crate::model::Resources;
    use crate::{parse_dag, parse_pipeline};

    fn yaml_resources(value: &str) -> Option<Resources> {
        let text = format!("jobs:\n  a:\n    run: make\n    resources: {value}\n");
        parse_pipeline("ci.yaml", &text).unwrap().jobs["a"]
            .resources
            .clone()
    }

    #[test]
    fn cpu_in_cores_or_millicores_and_memory_as_written() {
        let r = |cpu_milli, memory: Option<&str>| {
            Some(Resources {
                cpu_milli,
                memory: memory.map(str::to_owned),
            })
        };
        assert_eq!(
            yaml_resources("{ cpu: 2, memory: 512Mi }"),
            r(Some(2000), Some("512Mi"))
        );
        assert_eq!(yaml_resources("{ cpu: 500m }"), r(Some(500), None));
        assert_eq!(yaml_resources("{ cpu: 0.25 }"), r(Some(250), None));
        assert_eq!(yaml_resources("{ cpu: \"1.5\" }"), r(Some(1500), None));
        assert_eq!(yaml_resources("{ memory: 1Gi }"), r(None, Some("1Gi")));
        assert_eq!(
            yaml_resources("{ memory: 1048576 }"),
            r(None, Some("1048576"))
        );
        // Neither field: nothing to override, the same as no `resources:`.
        assert_eq!(yaml_resources("{}"), None);
    }

    #[test]
    fn a_dag_task_takes_resources_with_json_help() {
        let dag = parse_dag(
            "d.json",
            r#"{"tasks": [{"id": "a", "run": "make", "resources": {"cpu": "500m", "memory": "1Gi"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            dag.pipeline.jobs["a"].resources,
            Some(Resources {
                cpu_milli: Some(500),
                memory: Some("1Gi".to_owned()),
            })
        );
        let e = parse_dag(
            "d.json",
            "{\"tasks\": [\n {\"id\": \"a\", \"run\": \"make\",\n  \"resources\": {\"cpu\": -1, \"memroy\": \"1Gi\"}}]}",
        )
        .unwrap_err();
        let found: Vec<String> = e
            .diagnostics
            .iter()
            .map(|d| {
                let at = e.line_column(d);
                format!(
                    "{}:{} {} | {}",
                    at.line,
                    at.column,
                    d.message,
                    d.help.as_deref().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                "3:24 `cpu` of `resources` of task `a`: `-1` must be more than zero | write cores or millicores, e.g. `\"cpu\": 2` or `\"cpu\": \"500m\"`",
                "3:28 unknown field `memroy` in `resources` of task `a` | did you mean `memory`?",
            ]
        );
    }
}
