//! `cascade plan FILE`: what a run of the file would do, without running it — jobs, edges,
//! conditions, fan-outs, env, secrets, limits, outputs, triggers. `--output json` prints
//! the stable document of `cascade_plan::document` (its schema:
//! `crates/cascade-plan/plan.schema.json`).

use crate::output::{self, Format};
use crate::{CliError, CliResult, Outcome};
use cascade_plan::document::{self, FanOutDoc, JobDoc, PlanDocument, ResourcesDoc, RetryDoc};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline file (ci.yaml), DAG JSON, or Python pipeline (`file.py:function`)
    file: PathBuf,
    /// Plan only these jobs and what they need (repeatable)
    #[arg(long = "job", value_name = "JOB")]
    jobs_selected: Vec<String>,
    #[command(flatten)]
    trigger: super::trigger::TriggerArgs,
    /// `human` (a summary) or `json` (the stable plan document, `"version": 1`)
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

pub fn run(args: &Args) -> CliResult {
    let loaded = super::load_source_or_report(&args.file)?;
    let pipeline = loaded.pipeline;
    // The DAG's submission fields (scope, priority) are not part of the pipeline; the
    // text was just read and validated, so this second parse cannot fail differently.
    let dag = if loaded.form == super::Form::Dag {
        cascade_spec::parse_dag(&args.file.display().to_string(), &loaded.text).ok()
    } else {
        None
    };
    let trigger = args.trigger.trigger(None, None).map_err(CliError::usage)?;
    let plan = match cascade_plan::plan(&pipeline, &trigger, &args.jobs_selected) {
        Ok(p) => p,
        Err(e) => {
            let hint = match e {
                cascade_plan::PlanError::UnknownInput { .. }
                | cascade_plan::PlanError::MissingInput { .. }
                | cascade_plan::PlanError::BadInput { .. } => {
                    "; give inputs as `--input NAME=VALUE`"
                }
                _ => "",
            };
            return Err(CliError::failure(format!("{e}{hint}")));
        }
    };
    let doc = document::document(&pipeline, &plan, dag.as_ref());
    match args.output {
        Format::Json => match serde_json::to_string_pretty(&doc) {
            Ok(text) => output::data(&text),
            Err(e) => {
                return Err(CliError::internal(format!(
                    "cannot write the plan as JSON: {e}"
                )));
            }
        },
        Format::Human => {
            let order: Vec<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
            output::data(&human(&doc, &order));
        }
    }
    Ok(Outcome::Success)
}

/// The summary: the triggers, then each job in the order it can run.
fn human(doc: &PlanDocument, order: &[&str]) -> String {
    let mut out = format!(
        "{} — {} job{}\n",
        doc.name,
        doc.jobs.len(),
        if doc.jobs.len() == 1 { "" } else { "s" }
    );
    if let Some(dag) = &doc.dag {
        let _ = writeln!(
            out,
            "dag: scope {}, priority {}{}",
            dag.scope.as_deref().unwrap_or("(server default)"),
            dag.priority,
            dag.target_node
                .as_ref()
                .map(|n| format!(", node {n}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "on: {}", triggers(doc));
    if !doc.trigger.inputs.is_empty() {
        let inputs: Vec<String> = doc
            .trigger
            .inputs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "inputs: {}", inputs.join(", "));
    }
    for id in order {
        if let Some(job) = doc.jobs.iter().find(|j| j.id == *id) {
            out.push('\n');
            job_lines(&mut out, job);
        }
    }
    out
}

fn triggers(doc: &PlanDocument) -> String {
    let on = &doc.on;
    let mut parts = Vec::new();
    if let Some(p) = &on.push {
        parts.push(filtered(
            "push",
            &[
                ("branches", &p.branches),
                ("tags", &p.tags),
                ("paths", &p.paths),
            ],
        ));
    }
    if let Some(p) = &on.pull_request {
        parts.push(filtered(
            "pull_request",
            &[("branches", &p.branches), ("paths", &p.paths)],
        ));
    }
    for s in &on.schedule {
        parts.push(format!("schedule `{}` ({})", s.cron, s.timezone));
    }
    if let Some(w) = &on.workflow_dispatch {
        let inputs: Vec<&str> = w.inputs.keys().map(String::as_str).collect();
        parts.push(filtered(
            "workflow_dispatch",
            &[(
                "inputs",
                &inputs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )],
        ));
    }
    if let Some(r) = &on.repository_dispatch {
        parts.push(filtered("repository_dispatch", &[("types", &r.types)]));
    }
    if parts.is_empty() {
        "nothing (runs only when asked)".to_owned()
    } else {
        parts.join("; ")
    }
}

fn filtered(name: &str, filters: &[(&str, &Vec<String>)]) -> String {
    let shown: Vec<String> = filters
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {}", v.join(", ")))
        .collect();
    if shown.is_empty() {
        name.to_owned()
    } else {
        format!("{name} ({})", shown.join("; "))
    }
}

fn job_lines(out: &mut String, job: &JobDoc) {
    let _ = write!(out, "{}", job.id);
    if let Some(name) = &job.name {
        let _ = write!(out, " ({name})");
    }
    if !job.needs.is_empty() {
        let _ = write!(out, " ← {}", job.needs.join(", "));
    }
    out.push('\n');
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "  {key:<9} {value}");
    };
    if job.condition != "success()" {
        line("if", job.condition.clone());
    }
    if let Some((key, value)) = fan_out(&job.fan_out) {
        line(key, value);
    }
    let mut script = job.run.script.lines();
    let first = script.next().unwrap_or_default().to_owned();
    let more = script.count();
    line(
        job.shell.as_str(),
        if more == 0 {
            first
        } else {
            format!(
                "{first} … (+{more} line{})",
                if more == 1 { "" } else { "s" }
            )
        },
    );
    for b in &job.run.bindings {
        line("", format!("{} = ${{{{ {} }}}}", b.var, b.expr));
    }
    for (k, v) in &job.env {
        line("env", format!("{k}={v}"));
    }
    if !job.secrets.is_empty() {
        line("secrets", job.secrets.join(", "));
    }
    if !job.outputs.is_empty() {
        let outputs: Vec<String> = job
            .outputs
            .iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect();
        line("outputs", outputs.join(", "));
    }
    if let Some(r) = &job.retry {
        line("retry", retry(r));
    }
    if let Some(ms) = job.timeout_ms {
        line("timeout", output::duration_ms(ms));
    }
    if job.continue_on_error {
        line("failure", "allowed (continue_on_error)".to_owned());
    }
    if let Some(r) = &job.runner {
        line("runner", r.clone());
    }
    if let Some(r) = &job.resources {
        line("resources", resources(r));
    }
    if let Some(i) = &job.image {
        line("image", i.clone());
    }
    if !job.paths.is_empty() {
        line("paths", job.paths.join(", "));
    }
}

/// `cpu 500m, memory 1Gi` (the fields the job sets; the rest come from its runner).
fn resources(r: &ResourcesDoc) -> String {
    let mut parts = Vec::new();
    if let Some(m) = r.cpu_milli {
        parts.push(if m.is_multiple_of(1000) {
            format!("cpu {}", m / 1000)
        } else {
            format!("cpu {m}m")
        });
    }
    if let Some(bytes) = r.memory_bytes {
        let units = [
            (1 << 40, "Ti"),
            (1 << 30, "Gi"),
            (1 << 20, "Mi"),
            (1 << 10, "Ki"),
            (1_000_000_000_000, "T"),
            (1_000_000_000, "G"),
            (1_000_000, "M"),
            (1_000, "k"),
        ];
        let text = units
            .iter()
            .find(|(size, _)| bytes.is_multiple_of(*size))
            .map_or_else(
                || bytes.to_string(),
                |(size, unit)| format!("{}{unit}", bytes / size),
            );
        parts.push(format!("memory {text}"));
    }
    parts.join(", ")
}

fn fan_out(fan_out: &FanOutDoc) -> Option<(&'static str, String)> {
    Some(match fan_out {
        FanOutDoc::Single => return None,
        FanOutDoc::Matrix { axes, combinations } => {
            let axes: Vec<String> = axes
                .iter()
                .map(|a| format!("{} [{}]", a.name, a.values.join(", ")))
                .collect();
            (
                "matrix",
                format!("{} ({} copies)", axes.join(" × "), combinations.len()),
            )
        }
        FanOutDoc::Items { items } => (
            "for_each",
            format!(
                "{} ({} copies)",
                items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                items.len()
            ),
        ),
        FanOutDoc::Dynamic { expr } => ("for_each", format!("${{{{ {expr} }}}} (at run time)")),
    })
}

fn retry(r: &RetryDoc) -> String {
    format!(
        "{} more attempt{}, backoff {}{}{}",
        r.limit,
        if r.limit == 1 { "" } else { "s" },
        output::duration_ms(r.backoff_ms),
        r.max_backoff_ms
            .map(|ms| format!(" (at most {})", output::duration_ms(ms)))
            .unwrap_or_default(),
        if r.on_exit_codes.is_empty() {
            String::new()
        } else {
            format!(
                ", on exit codes {}",
                r.on_exit_codes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    )
}
