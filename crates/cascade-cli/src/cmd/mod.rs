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

use crate::{output, python};
use cascade_spec::{Pipeline, SpecErrors};
use std::path::Path;

/// Why a pipeline file could not be loaded.
pub enum LoadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file was read but is not a valid pipeline: its problems, one set per file
    /// they are shown in (a Python pipeline's are in its Python files).
    Invalid(Vec<SpecErrors>),
    /// A Python pipeline could not be rendered.
    Python(python::RenderError),
}

/// What a pipeline was written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A ci.yaml-shaped document (YAML, or the same mapping as JSON).
    Pipeline,
    /// DAG JSON (DESIGN §3).
    Dag,
    /// `path/file.py:function`, rendered by the Python package.
    Python,
}

/// A loaded pipeline and the text it was read from (for a Python pipeline, the rendered
/// document as JSON).
pub struct Loaded {
    pub pipeline: Pipeline,
    pub text: String,
    pub form: Form,
}

/// Reads and validates a pipeline file, a DAG JSON file (`*.json`, DESIGN §3), or a
/// Python pipeline (`path/file.py:function`, DESIGN §7).
pub fn load(path: &Path) -> Result<Pipeline, LoadError> {
    load_source(path).map(|loaded| loaded.pipeline)
}

/// [`load`], keeping the text and what it was written as.
pub fn load_source(path: &Path) -> Result<Loaded, LoadError> {
    if let Some(target) = python::target(path).map_err(LoadError::Python)? {
        // A missing file is said as for any other command, before Python starts.
        std::fs::metadata(&target.file).map_err(LoadError::Io)?;
        let rendered = python::render(&target).map_err(LoadError::Python)?;
        let pipeline = parse_document(&rendered.name, rendered.text.as_bytes())
            .map_err(|errors| LoadError::Invalid(python::locate(&rendered, errors)))?;
        return Ok(Loaded {
            pipeline,
            text: rendered.text,
            form: Form::Python,
        });
    }
    let bytes = read_limited(path).map_err(LoadError::Io)?;
    let name = path.display().to_string();
    if path.extension().is_some_and(|e| e == "json") && !is_pipeline_document(&bytes) {
        let text = String::from_utf8(bytes).map_err(|e| {
            LoadError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not valid UTF-8 ({e})"),
            ))
        })?;
        let dag = cascade_spec::parse_dag(&name, &text)
            .map_err(|errors| LoadError::Invalid(vec![errors]))?;
        let mut pipeline = dag.pipeline;
        if pipeline.name.is_none() {
            pipeline.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        return Ok(Loaded {
            pipeline,
            text,
            form: Form::Dag,
        });
    }
    let pipeline =
        parse_document(&name, &bytes).map_err(|errors| LoadError::Invalid(vec![errors]))?;
    Ok(Loaded {
        pipeline,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        form: Form::Pipeline,
    })
}

/// A ci.yaml-shaped document: parsed, validated, its scripts checked.
fn parse_document(name: &str, bytes: &[u8]) -> Result<Pipeline, SpecErrors> {
    let pipeline = cascade_spec::parse_pipeline_bytes(name, bytes)?;
    unsafe_scripts(name, bytes, &pipeline)?;
    Ok(pipeline)
}

/// A JSON file holding the mapping of a ci.yaml (`jobs`, no `tasks`), as the Python SDK
/// saves a rendered pipeline, rather than a DAG.
fn is_pipeline_document(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(fields)) => {
            fields.contains_key("jobs") && !fields.contains_key("tasks")
        }
        _ => false,
    }
}

/// `${{ }}` where its value would be parsed as code a second time (`sh -c "…"`, `eval`,
/// arithmetic, `[[ ]]`, …; DESIGN §8), reported like any other problem of the file, at
/// the expression.
fn unsafe_scripts(name: &str, bytes: &[u8], pipeline: &Pipeline) -> Result<(), SpecErrors> {
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
    Err(SpecErrors {
        name: name.to_owned(),
        source: std::sync::Arc::new(String::from_utf8_lossy(bytes).into_owned()),
        diagnostics,
    })
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
    load_source_or_report(path).map(|loaded| loaded.pipeline)
}

/// [`load_or_report`], keeping the text and what it was written as.
pub fn load_source_or_report(path: &Path) -> Result<Loaded, crate::CliError> {
    match load_source(path) {
        Ok(loaded) => Ok(loaded),
        Err(LoadError::Io(e)) => Err(unreadable(path, &e)),
        Err(LoadError::Python(e)) => Err(report_render(e)),
        Err(LoadError::Invalid(errors)) => {
            for set in &errors {
                output::note(&output::render(set));
            }
            let count: usize = errors.iter().map(|set| set.diagnostics.len()).sum();
            Err(crate::CliError::failure(format!(
                "{} is not a valid pipeline ({count} problem{}); run `cascade validate {}` after fixing",
                path.display(),
                if count == 1 { "" } else { "s" },
                path.display()
            )))
        }
    }
}

/// Shows what the Python renderer said, as it said it, and gives the error to end with.
pub fn report_render(error: python::RenderError) -> crate::CliError {
    if !error.shown.trim().is_empty() {
        output::note(error.shown.trim_end());
    }
    error.error
}
