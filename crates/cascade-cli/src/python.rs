//! Pipelines written in Python, named `path/file.py:function` (DESIGN §7).
//!
//! The `cascade` Python package renders one: `$CASCADE_PYTHON -m cascade render
//! path/file.py:function` (else `python3`), in the current directory, prints one JSON object
//! `{"document": {…}, "sources": {"<job id>": {"file", "line"}}}` — the document a ci.yaml
//! holds, and where each job's task was called (the pipeline itself under `""`). The
//! document is then parsed like any pipeline file, and each problem inside job X is
//! reported at the Python line of X ([`locate`]), the rendered document's line in the help.

use crate::CliError;
use cascade_spec::diagnostic::offset_of;
use cascade_spec::source::{Node, Span, Value};
use cascade_spec::{Diagnostic, SpecErrors};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The interpreter that renders, when `CASCADE_PYTHON` does not name one.
const DEFAULT_PYTHON: &str = "python3";
/// The environment variable naming the interpreter.
pub const PYTHON_VAR: &str = "CASCADE_PYTHON";
/// How long a render may take: building a graph imports the user's modules, nothing more.
const RENDER_TIMEOUT: Duration = Duration::from_mins(1);
/// The most the render may print on stdout: the document is limited to
/// [`cascade_spec::MAX_FILE_BYTES`], the sources are small beside it.
const MAX_RENDER_BYTES: usize = 8 * cascade_spec::MAX_FILE_BYTES;
/// The most of its stderr that is kept and shown.
const MAX_STDERR_BYTES: usize = 64 * 1024;

/// `path/file.py:function`, as given on the command line.
#[derive(Debug, Clone)]
pub struct Target {
    /// The Python file.
    pub file: PathBuf,
    /// The argument as given (`path/file.py:function`), passed on to the renderer.
    pub spec: String,
}

/// Whether `path` names a Python pipeline: `Ok(Some)` for `file.py:function`, `Ok(None)`
/// for any other file, an error for a `.py` file without its function.
pub fn target(path: &Path) -> Result<Option<Target>, RenderError> {
    let Some(text) = path.to_str() else {
        return Ok(None);
    };
    if Path::new(text).extension().is_some_and(|e| e == "py") {
        return Err(RenderError::quiet(
            CliError::usage(format!(
                "{text} is a Python file: name the function that builds the pipeline"
            ))
            .hint(format!("write `{text}:FUNCTION`, e.g. `{text}:main`")),
        ));
    }
    let Some((file, function)) = text.rsplit_once(':') else {
        return Ok(None);
    };
    if Path::new(file).extension().is_none_or(|e| e != "py") {
        return Ok(None);
    }
    if !is_identifier(function) {
        return Err(RenderError::quiet(
            CliError::usage(format!(
                "`{function}` after `{file}:` is not a Python function name"
            ))
            .hint(format!(
                "write `{file}:FUNCTION` with the name of the function that builds the pipeline"
            )),
        ));
    }
    Ok(Some(Target {
        file: PathBuf::from(file),
        spec: text.to_owned(),
    }))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Where a job's task was called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

/// A rendered Python pipeline.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The name its problems are shown under: `path/file.py:function (rendered)`.
    pub name: String,
    /// The document as pretty JSON (JSON is YAML: the pipeline parser reads it).
    pub text: String,
    /// Job id (`""`: the pipeline) → where it was written.
    pub sources: BTreeMap<String, Source>,
}

/// Why a Python pipeline could not be rendered: what the renderer said on stderr, shown
/// as it is, and the error that ends the command.
#[derive(Debug)]
pub struct RenderError {
    /// The renderer's own messages (`path/file.py:LINE: error: MESSAGE` lines).
    pub shown: String,
    pub error: CliError,
}

impl RenderError {
    fn quiet(error: CliError) -> Self {
        Self {
            shown: String::new(),
            error,
        }
    }

    /// The renderer's `path/file.py:LINE: error: MESSAGE` lines, for `--output json`:
    /// (file, line, message); other lines are left out.
    pub fn lines(&self) -> Vec<(String, usize, String)> {
        self.shown
            .lines()
            .filter_map(|l| {
                let (place, message) = l.split_once(": error: ")?;
                let (file, line) = place.rsplit_once(':')?;
                Some((file.to_owned(), line.parse().ok()?, message.to_owned()))
            })
            .collect()
    }
}

/// Renders `target` with the Python package.
pub fn render(target: &Target) -> Result<Rendered, RenderError> {
    let program = std::env::var_os(PYTHON_VAR)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| OsString::from(DEFAULT_PYTHON));
    let shown_program = program.to_string_lossy().into_owned();
    let command = format!("{shown_program} -m cascade render {}", target.spec);
    let install_hint = format!(
        "install the `cascade` Python package for this interpreter (`{shown_program} -m pip install cascade`, or `pip install .` in a Cascade checkout), or set {PYTHON_VAR} to a Python (3.10 or later) that has it"
    );
    let finished = capture(&program, &target.spec).map_err(|e| {
        let error = if e.kind() == std::io::ErrorKind::NotFound {
            CliError::usage(format!(
                "cannot render {}: the Python interpreter `{shown_program}` was not found",
                target.spec
            ))
        } else {
            CliError::usage(format!(
                "cannot render {}: cannot start `{shown_program}`: {e}",
                target.spec
            ))
        };
        RenderError::quiet(error.hint(format!(
            "install Python 3.10 or later and the `cascade` package (`pip install cascade`, or `pip install .` in a Cascade checkout), or set {PYTHON_VAR} to an interpreter that has it"
        )))
    })?;
    // Shown as written, line by line, but never able to drive the terminal.
    let stderr: String = String::from_utf8_lossy(&finished.stderr)
        .lines()
        .map(|line| crate::output::escape_controls(line) + "\n")
        .collect();
    match finished.ending {
        Ending::TimedOut => {
            return Err(RenderError {
                shown: stderr,
                error: CliError::failure(format!(
                    "`{command}` did not finish in {}s",
                    RENDER_TIMEOUT.as_secs()
                ))
                .hint("building the graph should only import modules and call the function; move slow work into tasks"),
            });
        }
        Ending::TooLarge => {
            return Err(RenderError {
                shown: stderr,
                error: CliError::failure(format!(
                    "`{command}` printed more than {MAX_RENDER_BYTES} bytes"
                ))
                .hint("a pipeline document is limited to 1 MiB; build fewer tasks, or map over a list computed by a task"),
            });
        }
        Ending::Exited(status) if !status.success() => {
            if missing_package(&stderr) {
                return Err(RenderError {
                    shown: stderr,
                    error: CliError::usage(format!(
                        "cannot render {}: the `cascade` Python package is not importable by `{shown_program}`",
                        target.spec
                    ))
                    .hint(install_hint),
                });
            }
            return Err(RenderError {
                shown: stderr,
                error: CliError::failure(format!(
                    "{} could not be built into a pipeline ({})",
                    target.spec,
                    status.code().map_or_else(
                        || "killed by a signal".to_owned(),
                        |c| format!("exit code {c}")
                    )
                ))
                .hint(format!(
                    "fix the Python lines above and run `cascade validate {}` again",
                    target.spec
                )),
            });
        }
        Ending::Exited(_) => {}
    }
    if !stderr.trim().is_empty() {
        // Warnings of the user's code or of Python: theirs to read.
        crate::output::note(stderr.trim_end());
    }
    parse_output(&finished.stdout, target).map_err(|message| {
        RenderError::quiet(
            CliError::internal(format!("`{command}` printed {message}")).hint(
                "the `cascade` Python package and this `cascade` binary may be of different versions; install both from one wheel",
            ),
        )
    })
}

/// `python3: No module named cascade` (and its variants: a `cascade` without `__main__`).
fn missing_package(stderr: &str) -> bool {
    stderr.contains("No module named cascade")
        || stderr.contains("No module named 'cascade'")
        || stderr.contains("'cascade' is a package and cannot be directly executed")
}

fn parse_output(stdout: &[u8], target: &Target) -> Result<Rendered, String> {
    let value: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("no JSON object on stdout ({e})"))?;
    let document = value
        .get("document")
        .filter(|d| d.is_object())
        .ok_or("no `document` object")?;
    let mut sources = BTreeMap::new();
    if let Some(map) = value.get("sources") {
        let map = map.as_object().ok_or("`sources` that is not an object")?;
        for (job, at) in map {
            let file = at.get("file").and_then(serde_json::Value::as_str);
            let line = at.get("line").and_then(serde_json::Value::as_u64);
            let (Some(file), Some(line)) = (file, line) else {
                return Err(format!(
                    "`sources.{job}` that is not `{{\"file\": …, \"line\": …}}`"
                ));
            };
            sources.insert(
                job.clone(),
                Source {
                    file: file.to_owned(),
                    line: usize::try_from(line).unwrap_or(usize::MAX),
                },
            );
        }
    }
    let text = serde_json::to_string_pretty(document)
        .map_err(|e| format!("a document that cannot be written back ({e})"))?;
    Ok(Rendered {
        name: format!("{} (rendered)", target.spec),
        text,
        sources,
    })
}

enum Ending {
    Exited(std::process::ExitStatus),
    TimedOut,
    TooLarge,
}

struct Finished {
    ending: Ending,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs the renderer with a time limit, keeping at most [`MAX_RENDER_BYTES`] of stdout.
/// It runs in a process group of its own, killed whole when it ends, times out or says
/// too much: a helper the pipeline module started at import (holding the pipes open)
/// must not keep `cascade` waiting for their end.
fn capture(program: &std::ffi::OsStr, spec: &str) -> std::io::Result<Finished> {
    use std::os::unix::process::CommandExt as _;
    let mut child = cascade_engine::process::new_std_command(program)
        .args(["-m", "cascade", "render", spec])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let kill_group = || {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    };
    let over = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().map(|pipe| {
        let over = Arc::clone(&over);
        std::thread::spawn(move || read_capped(pipe, MAX_RENDER_BYTES, Some(&over)))
    });
    let stderr = child
        .stderr
        .take()
        .map(|pipe| std::thread::spawn(move || read_capped(pipe, MAX_STDERR_BYTES, None)));
    let deadline = Instant::now() + RENDER_TIMEOUT;
    let ending = loop {
        if let Some(status) = child.try_wait()? {
            // What it left running in its group ends with it.
            kill_group();
            break Ending::Exited(status);
        }
        let ending = if over.load(Ordering::Relaxed) {
            Ending::TooLarge
        } else if Instant::now() >= deadline {
            Ending::TimedOut
        } else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        kill_group();
        let _ = child.wait();
        break ending;
    };
    let join = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
        handle.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (stdout, stderr) = (join(stdout), join(stderr));
    // It may have exited as its output ran over (the reader says so only at the end).
    let ending = match ending {
        Ending::Exited(_) if over.load(Ordering::Relaxed) => Ending::TooLarge,
        other => other,
    };
    Ok(Finished {
        ending,
        stdout,
        stderr,
    })
}

/// Reads a pipe to its end, keeping the first `limit` bytes; `over` is set when there
/// was more (the rest is read and dropped, so the writer is never blocked).
fn read_capped(mut pipe: impl Read, limit: usize, over: Option<&AtomicBool>) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                if n > room
                    && let Some(over) = over
                {
                    over.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    kept
}

/// The problems of a rendered document, each moved to the Python line of the job it is
/// in (or of the pipeline function, for the document's other fields): one [`SpecErrors`]
/// per Python file, and the rendered document's own for what has no Python line.
pub fn locate(rendered: &Rendered, errors: SpecErrors) -> Vec<SpecErrors> {
    let jobs = job_ranges(&rendered.text);
    let mut files: Vec<SpecErrors> = Vec::new();
    let mut unplaced = Vec::new();
    for diagnostic in errors.diagnostics {
        let job = jobs
            .iter()
            .find(|(_, start, end)| (*start..*end).contains(&diagnostic.span.offset))
            .map_or("", |(job, _, _)| job.as_str());
        let Some(source) = rendered.sources.get(job) else {
            unplaced.push(diagnostic);
            continue;
        };
        let index = if let Some(i) = files.iter().position(|f| f.name == source.file) {
            i
        } else {
            // A Python file that cannot be read keeps the problem on the rendered line.
            let Ok(text) = std::fs::read_to_string(&source.file) else {
                unplaced.push(diagnostic);
                continue;
            };
            files.push(SpecErrors {
                name: source.file.clone(),
                source: Arc::new(text),
                diagnostics: Vec::new(),
            });
            files.len() - 1
        };
        let file = &mut files[index];
        let moved = at_python_line(&file.source, source.line, job, &rendered.text, diagnostic);
        file.diagnostics.push(moved);
    }
    if !unplaced.is_empty() {
        files.push(SpecErrors {
            name: errors.name,
            source: errors.source,
            diagnostics: unplaced,
        });
    }
    files
}

/// `diagnostic` of the rendered `document`, pointing at `line` of the Python `text`
/// instead; the job is named in the message and the rendered line quoted in the help.
fn at_python_line(
    text: &str,
    line: usize,
    job: &str,
    document: &str,
    diagnostic: Diagnostic,
) -> Diagnostic {
    let start = offset_of(text, line, 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let indent = text[start..end].len() - text[start..end].trim_start().len();
    let span = Span::new(start + indent, end - start - indent);
    let message = if job.is_empty() || diagnostic.message.contains(&format!("`{job}`")) {
        diagnostic.message
    } else {
        format!("job `{job}`: {}", diagnostic.message)
    };
    let at = cascade_spec::LineColumn::of(document, diagnostic.span.offset);
    let rendered_line = document
        .lines()
        .nth(at.line.saturating_sub(1))
        .unwrap_or_default()
        .trim();
    let rendered_line: String = rendered_line.chars().take(120).collect();
    let note = if job.is_empty() {
        format!(
            "in the rendered document, line {}: {rendered_line}",
            at.line
        )
    } else {
        format!(
            "in the rendered document, job `{job}`, line {}: {rendered_line}",
            at.line
        )
    };
    let help = match diagnostic.help {
        Some(help) => format!("{help}\n{note}"),
        None => note,
    };
    Diagnostic {
        code: diagnostic.code,
        message,
        span,
        label: diagnostic.label,
        help: Some(help),
        related: Vec::new(),
    }
}

/// Each job of the document and the byte range it covers: from its key to the next
/// job's key, or to the next field of the document after `jobs`.
fn job_ranges(text: &str) -> Vec<(String, usize, usize)> {
    let Ok(Some(Node {
        value: Value::Map(fields),
        ..
    })) = cascade_spec::parse::read_tree(text)
    else {
        return Vec::new();
    };
    let mut ranges = Vec::new();
    for (index, (key, value)) in fields.iter().enumerate() {
        let (Some("jobs"), Value::Map(jobs)) = (key.as_str(), &value.value) else {
            continue;
        };
        let end = fields
            .get(index + 1)
            .map_or(text.len(), |(next, _)| next.span.offset);
        let mut starts: Vec<(String, usize)> = jobs
            .iter()
            .filter_map(|(k, _)| Some((k.scalar_text()?, k.span.offset)))
            .collect();
        starts.sort_by_key(|(_, offset)| *offset);
        for (i, (job, start)) in starts.iter().enumerate() {
            let until = starts.get(i + 1).map_or(end, |(_, next)| *next);
            ranges.push((job.clone(), *start, until));
        }
    }
    ranges
}
