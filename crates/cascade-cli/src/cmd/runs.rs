//! `cascade runs` and `cascade logs RUN [JOB] [--raw]`: what ran, read back from the store.

use crate::output::{self, ListFormat};
use crate::{CliError, CliResult, Outcome};
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
#[command(
    after_help = "Each attempt of a task starts with a line `── TASK · attempt N ──`; stdout lines \
read `TASK │ text`, stderr lines `TASK ! text` (red when colour is on)."
)]
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
    #[command(flatten)]
    show: Show,
}

/// How log lines are shown, by `logs` and `dag logs`. Each attempt of a task starts with a
/// header line; stderr lines are marked `!` where stdout lines have `│` (and are red
/// when colour is on).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Show {
    /// Keep printing lines as they are written until the run ends
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Start each line with the time it was written
    #[arg(long, short = 't')]
    pub(crate) timestamps: bool,
}

fn reader(data_dir: &std::path::Path) -> CliResult<Reader> {
    let db = data_dir.join("cascade.db");
    if !db.exists() {
        return Err(
            CliError::not_found(format!("no runs recorded in {} yet", data_dir.display()))
                .hint("`cascade run FILE` records one"),
        );
    }
    Reader::open(&db).map_err(|e| CliError::caused(Outcome::Internal, &e))
}

pub fn runs(args: &RunsArgs) -> CliResult {
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
    let reader = reader(&args.data_dir)?;
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

/// A run that may still write lines: `--follow` keeps reading while it is one of these.
pub(crate) fn still_going(status: &str) -> bool {
    cascade_plan::RunStatus::parse(status).is_some_and(|s| !s.is_final())
}

/// How often `--follow` looks for new lines.
pub(crate) const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub fn logs(args: &LogsArgs) -> CliResult {
    let reader = reader(&args.data_dir)?;
    let run = reader.run(&args.run).map_err(|e| match e {
        cascade_store::StoreError::NoRun(_) => CliError::not_found(e.to_string()),
        other => CliError::caused(Outcome::Internal, &other),
    })?;
    if let Some(job) = &args.job {
        let tasks = reader.tasks(&run.run_id)?;
        // A job (all its copies, `lint[0]`…) or one task of it.
        let known = tasks.iter().any(|t| {
            t.task_id == *job
                || cascade_plan::TaskId::parse(&t.task_id).is_some_and(|t| t.job.as_str() == job)
        });
        if !known {
            let names: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
            return Err(CliError::not_found(format!(
                "run {} has no job `{job}`; its tasks are {}",
                run.run_id,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        }
    }
    let job = args.job.as_deref();
    if args.output == ListFormat::Json {
        output::json(&serde_json::json!({
            "run": run, "tasks": reader.tasks(&run.run_id)?, "logs": reader.logs(&run.run_id, job)?,
        }));
        return Ok(Outcome::Success);
    }
    let mut printer = Printer::new(args.show, args.raw);
    let mut seen = 0;
    let mut running = still_going(run.status.as_str());
    loop {
        let lines = reader.logs_after(&run.run_id, job, seen)?;
        for l in &lines {
            printer.print(&Line {
                task: &l.task_id,
                stderr: l.stream == "stderr",
                text: &l.line,
                ts: &l.ts,
                attempt: l.attempt,
            });
        }
        seen = lines.last().map_or(seen, |l| l.seq);
        if !(args.show.follow && running) {
            break;
        }
        std::thread::sleep(FOLLOW_EVERY);
        // One more read after the run ended: the lines of its last moments.
        running = still_going(reader.run(&run.run_id)?.status.as_str());
    }
    if printer.printed == 0 {
        output::note(&format!(
            "no log lines for run {}{}",
            run.run_id,
            job.map(|j| format!(" job {j}")).unwrap_or_default()
        ));
    }
    Ok(Outcome::Success)
}

/// One log line, from the store or the API.
pub(crate) struct Line<'a> {
    pub task: &'a str,
    pub stderr: bool,
    pub text: &'a str,
    pub ts: &'a str,
    pub attempt: Option<u32>,
}

/// Prints log lines on stdout: a header before the first line of each attempt of a task,
/// `│` after the task of a stdout line and `!` after that of a stderr line.
pub(crate) struct Printer {
    show: Show,
    raw: bool,
    color: bool,
    /// The (task, attempt) pairs whose header was printed.
    headed: std::collections::HashSet<(String, u32)>,
    pub printed: usize,
}

impl Printer {
    pub(crate) fn new(show: Show, raw: bool) -> Self {
        Printer {
            show,
            raw,
            color: output::color(output::Stream::Stdout),
            headed: std::collections::HashSet::new(),
            printed: 0,
        }
    }

    pub(crate) fn print(&mut self, line: &Line<'_>) {
        let mut out = String::new();
        let safe = |text: &str| -> String {
            if self.raw {
                text.to_owned()
            } else {
                output::escape_controls(text).into_owned()
            }
        };
        let task = output::escape_controls(line.task);
        if let Some(attempt) = line.attempt
            && self.headed.insert((line.task.to_owned(), attempt))
        {
            let header = format!("── {task} · attempt {attempt} ──");
            if self.color {
                let _ = writeln!(out, "\x1b[1m{header}\x1b[0m");
            } else {
                let _ = writeln!(out, "{header}");
            }
        }
        if self.show.timestamps {
            out.push_str(&safe(line.ts));
            out.push(' ');
        }
        let mark = if line.stderr { '!' } else { '│' };
        let text = safe(line.text);
        if self.color && line.stderr {
            let _ = write!(out, "{task} \x1b[31m{mark} {text}\x1b[0m");
        } else {
            let _ = write!(out, "{task} {mark} {text}");
        }
        output::data(&out);
        self.printed += 1;
    }
}
