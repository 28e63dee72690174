//! `cascade validate FILE...`: every problem of every file, human or JSON.

use super::{LoadError, load};
use crate::Outcome;
use crate::output::{self, Format};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline files to check
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
            Err(LoadError::Invalid(errors)) => {
                if outcome == Outcome::Success {
                    outcome = Outcome::Failure;
                }
                match args.output {
                    Format::Human => {
                        output::note(&output::render(&errors));
                        output::error(&format!(
                            "{name}: {} problem{}",
                            errors.diagnostics.len(),
                            if errors.diagnostics.len() == 1 {
                                ""
                            } else {
                                "s"
                            }
                        ));
                    }
                    Format::Json => {
                        let list: Vec<serde_json::Value> = errors
                            .diagnostics
                            .iter()
                            .map(|d| {
                                let at = errors.line_column(d);
                                serde_json::json!({
                                    "message": d.message, "line": at.line, "column": at.column,
                                    "help": d.help, "code": d.code.as_str(),
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
