//! `cascade validate FILE...`: every problem of every file, human or JSON.

use super::{LoadError, load};
use crate::Outcome;
use crate::output::{self, Format};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline files (ci.yaml), DAG JSON, or Python pipelines (`file.py:function`)
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// `human` (diagnostics on stderr) or `json` (one object per file on stdout)
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

pub fn run(args: &Args) -> Outcome {
    let mut outcome = Outcome::Success;
    for path in &args.files {
        let name = path.display().to_string();
        match load(path) {
            Ok(pipeline) => match args.output {
                Format::Human => {
                    output::data(&format!("ok: {name} ({} jobs)", pipeline.jobs.len()));
                }
                Format::Json => output::json(&serde_json::json!({
                    "file": name, "ok": true, "jobs": pipeline.jobs.len(), "errors": [],
                })),
            },
            Err(LoadError::Io(e)) => {
                // Exit 4 for a missing file (2 for an unreadable one), as every command.
                outcome = super::unreadable(path, &e).outcome;
                let message = format!("cannot read {name}: {e}");
                match args.output {
                    Format::Human => output::error(&message),
                    Format::Json => output::json(&serde_json::json!({
                        "file": name, "ok": false,
                        "errors": [{"message": message, "line": null, "column": null, "help": "check the path"}],
                    })),
                }
            }
            Err(LoadError::Python(e)) => {
                outcome = e.error.outcome;
                match args.output {
                    Format::Human => {
                        let text = super::report_render(e).text();
                        output::note(&text);
                    }
                    Format::Json => {
                        let mut list: Vec<serde_json::Value> = e
                            .lines()
                            .into_iter()
                            .map(|(file, line, message)| {
                                serde_json::json!({
                                    "file": file, "message": message, "line": line,
                                    "column": null, "help": null,
                                })
                            })
                            .collect();
                        if list.is_empty() {
                            list.push(serde_json::json!({
                                "file": name, "message": e.error.text().trim_start_matches("error: "),
                                "line": null, "column": null, "help": null,
                            }));
                        }
                        output::json(
                            &serde_json::json!({"file": name, "ok": false, "errors": list}),
                        );
                    }
                }
            }
            Err(LoadError::Invalid(errors)) => {
                if outcome == Outcome::Success {
                    outcome = Outcome::Failure;
                }
                let count: usize = errors.iter().map(|set| set.diagnostics.len()).sum();
                match args.output {
                    Format::Human => {
                        for set in &errors {
                            output::note(&output::render(set));
                        }
                        output::error(&format!(
                            "{name}: {count} problem{}",
                            if count == 1 { "" } else { "s" }
                        ));
                    }
                    Format::Json => {
                        let list: Vec<serde_json::Value> = errors
                            .iter()
                            .flat_map(|set| {
                                set.diagnostics.iter().map(move |d| {
                                    let at = set.line_column(d);
                                    serde_json::json!({
                                        "file": set.name, "message": d.message, "line": at.line,
                                        "column": at.column, "help": d.help, "code": d.code.as_str(),
                                    })
                                })
                            })
                            .collect();
                        output::json(
                            &serde_json::json!({"file": name, "ok": false, "errors": list}),
                        );
                    }
                }
            }
        }
    }
    outcome
}
