//! One module per subcommand.

pub mod argo;
pub mod changed;
pub mod completions;
pub mod control;
pub mod dag;
pub mod events;
pub mod graph;
pub mod init;
pub mod observe;
pub mod plan;
pub mod run;
pub mod runs;
pub mod schema;
pub mod serve;
pub mod token;
pub mod trigger;
pub mod validate;
pub mod worker;

use crate::output;
use cascade_spec::{Pipeline, SpecErrors};
use std::path::Path;

/// Why a pipeline file could not be loaded.
pub enum LoadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file was read but is not a valid pipeline.
    Invalid(SpecErrors),
}

/// Reads and validates a pipeline file, or a DAG JSON file (`*.json`, DESIGN §3).
pub fn load(path: &Path) -> Result<Pipeline, LoadError> {
    let bytes = read_limited(path).map_err(LoadError::Io)?;
    let name = path.display().to_string();
    if path.extension().is_some_and(|e| e == "json") {
        let text = String::from_utf8(bytes).map_err(|e| {
            LoadError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not valid UTF-8 ({e})"),
            ))
        })?;
        let dag = cascade_spec::parse_dag(&name, &text).map_err(LoadError::Invalid)?;
        let mut pipeline = dag.pipeline;
        if pipeline.name.is_none() {
            pipeline.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        return Ok(pipeline);
    }
    let pipeline = cascade_spec::parse_pipeline_bytes(&name, &bytes).map_err(LoadError::Invalid)?;
    unsafe_scripts(&name, &bytes, &pipeline)?;
    Ok(pipeline)
}

/// `${{ }}` where its value would be parsed as code a second time (`sh -c "…"`, `eval`,
/// arithmetic, `[[ ]]`, …; DESIGN §8), reported like any other problem of the file, at
/// the expression.
fn unsafe_scripts(name: &str, bytes: &[u8], pipeline: &Pipeline) -> Result<(), LoadError> {
    use cascade_spec::{Code, Diagnostic};
    let text = String::from_utf8_lossy(bytes);
    let diagnostics: Vec<Diagnostic> = cascade_plan::script::check(pipeline)
        .into_iter()
        .filter_map(|(job, e)| {
            let span = pipeline.jobs.get(job.as_str())?.run.locate(&text, e.span);
            Some(
                Diagnostic::new(
                    Code::BadExpression,
                    span,
                    format!(
                        "job `{job}`: `${{{{ {} }}}}` inside {} would be parsed as code a second time",
                        e.expr, e.context
                    ),
                    "a value here would run as code",
                )
                .help(format!(
                    "pass the value through `env:` (e.g. `env: {{ VALUE: \"${{{{ {} }}}}\" }}`) and use \"$VALUE\" in the script",
                    e.expr
                )),
            )
        })
        .collect();
    if diagnostics.is_empty() {
        return Ok(());
    }
    Err(LoadError::Invalid(SpecErrors {
        name: name.to_owned(),
        source: std::sync::Arc::new(String::from_utf8_lossy(bytes).into_owned()),
        diagnostics,
    }))
}

/// Reads at most one byte more than the size limit, so a huge file is refused cheaply.
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(u64::try_from(cascade_spec::MAX_FILE_BYTES).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The error of a file that cannot be read: not found (exit 4) when it is missing, a
/// usage error otherwise, the same for every command.
pub fn unreadable(path: &Path, error: &std::io::Error) -> crate::CliError {
    let message = format!("cannot read {}: {error}", path.display());
    if error.kind() == std::io::ErrorKind::NotFound {
        crate::CliError::not_found(message)
            .hint("check the path (it is relative to the current directory)")
    } else {
        crate::CliError::usage(message)
    }
}

/// Loads a pipeline for a command that needs a valid one; reports problems on stderr.
pub fn load_or_report(path: &Path) -> Result<Pipeline, crate::CliError> {
    match load(path) {
        Ok(p) => Ok(p),
        Err(LoadError::Io(e)) => Err(unreadable(path, &e)),
        Err(LoadError::Invalid(errors)) => {
            output::note(&output::render(&errors));
            Err(crate::CliError::failure(format!(
                "{} is not a valid pipeline ({} problem{}); run `cascade validate {}` after fixing",
                path.display(),
                errors.diagnostics.len(),
                if errors.diagnostics.len() == 1 {
                    ""
                } else {
                    "s"
                },
                path.display()
            )))
        }
    }
}
