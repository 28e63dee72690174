//! `cascade runs` and `cascade logs RUN [JOB] [--raw]`: what ran, read back from the store.

use crate::Outcome;
use crate::output::{self, ListFormat};
use cascade_store::Reader;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// How many runs to list, newest first
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    output: ListFormat,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A run id from `cascade runs`, or `last`
    run: String,
    /// Only this job (all its copies) or task (`lint[2]`)
    job: Option<String>,
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    output: ListFormat,
    /// Print job output as it was written, terminal control sequences included (by
    /// default they are shown as text such as `\x1b`, so a log cannot drive the terminal)
    #[arg(long)]
    raw: bool,
}

fn reader(data_dir: &std::path::Path) -> Result<Reader, Outcome> {
    let db = data_dir.join("cascade.db");
    if !db.exists() {
        output::error(&format!(
            "no runs recorded in {} yet; `cascade run FILE` records one",
            data_dir.display()
        ));
        return Err(Outcome::Failure);
    }
    Reader::open(&db).map_err(|e| {
        output::error(&format!("{e:#}"));
        Outcome::Failure
    })
}

pub fn runs(args: &RunsArgs) -> anyhow::Result<Outcome> {
    if !args.data_dir.join("cascade.db").exists() {
        // Nothing ran here yet: an empty listing (DESIGN §6), with a hint.
        match args.output {
            ListFormat::Json => output::json(&serde_json::Value::Array(Vec::new())),
            ListFormat::Table => output::note(&format!(
                "no runs recorded in {} yet; `cascade run FILE` records one",
                args.data_dir.display()
            )),
        }
        return Ok(Outcome::Success);
    }
    let reader = match reader(&args.data_dir) {
        Ok(r) => r,
        Err(o) => return Ok(o),
    };
    let runs = reader.runs(args.limit)?;
    match args.output {
        ListFormat::Json => output::json(&serde_json::to_value(&runs)?),
        ListFormat::Table => {
            let rows: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    vec![
                        r.run_id.clone(),
                        r.dag_id.clone(),
                        r.status.to_string(),
                        format!("{}/{}/{}", r.passed, r.failed, r.skipped),
                        r.duration_ms.map_or_else(
                            || "-".to_owned(),
                            |d| crate::output::duration_ms(u64::try_from(d).unwrap_or(0)),
                        ),
                        r.created_at.clone(),
                    ]
                })
                .collect();
            output::data(&output::table(
                &[
                    "RUN",
                    "PIPELINE",
                    "STATUS",
                    "PASS/FAIL/SKIP",
                    "TIME",
                    "STARTED",
                ],
                &rows,
            ));
        }
    }
    Ok(Outcome::Success)
}

pub fn logs(args: &LogsArgs) -> anyhow::Result<Outcome> {
    let reader = match reader(&args.data_dir) {
        Ok(r) => r,
        Err(o) => return Ok(o),
    };
    let run = match reader.run(&args.run) {
        Ok(r) => r,
        Err(e) => {
            output::error(&e.to_string());
            return Ok(Outcome::Failure);
        }
    };
    if let Some(job) = &args.job {
        let tasks = reader.tasks(&run.run_id)?;
        // A job (all its copies, `lint[0]`…) or one task of it.
        let known = tasks.iter().any(|t| {
            t.task_id == *job
                || cascade_plan::TaskId::parse(&t.task_id).is_some_and(|t| t.job.as_str() == job)
        });
        if !known {
            let names: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
            output::error(&format!(
                "run {} has no job `{job}`; its tasks are {}",
                run.run_id,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ));
            return Ok(Outcome::Failure);
        }
    }
    let logs = reader.logs(&run.run_id, args.job.as_deref())?;
    match args.output {
        ListFormat::Json => output::json(&serde_json::json!({
            "run": run, "tasks": reader.tasks(&run.run_id)?, "logs": logs,
        })),
        ListFormat::Table => {
            let mut text = String::new();
            for l in &logs {
                if args.raw {
                    let _ = writeln!(text, "{} │ {}", l.task_id, l.line);
                } else {
                    let _ = writeln!(
                        text,
                        "{} │ {}",
                        output::escape_controls(&l.task_id),
                        output::escape_controls(&l.line)
                    );
                }
            }
            if logs.is_empty() {
                output::note(&format!(
                    "no log lines for run {}{}",
                    run.run_id,
                    args.job
                        .as_ref()
                        .map(|j| format!(" job {j}"))
                        .unwrap_or_default()
                ));
            } else {
                output::data(&text);
            }
        }
    }
    Ok(Outcome::Success)
}
