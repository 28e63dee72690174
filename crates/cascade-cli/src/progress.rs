//! The live view of a run: a multi-line view on a TTY (one line per running task and a
//! header with counts), plain lines otherwise, or one JSON event per line on stdout.

use cascade_engine::Subscriber;
use cascade_plan::{Event, EventKind, TaskState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Json,
}

#[derive(Default)]
struct Counts {
    total: usize,
    done: usize,
    failed: usize,
    skipped: usize,
}

pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    header: Option<ProgressBar>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    counts: Mutex<Counts>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        let (multi, header) = if mode == Mode::Tty {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let header = multi.add(ProgressBar::new_spinner());
            header.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            header.enable_steady_tick(Duration::from_millis(100));
            (Some(multi), Some(header))
        } else {
            (None, None)
        };
        Self {
            mode,
            multi,
            header,
            bars: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    fn update_header(&self) {
        if let (Some(h), Ok(c)) = (&self.header, self.counts.lock()) {
            let running = self.bars.lock().map_or(0, |b| b.len());
            h.set_message(format!(
                "{}/{} done · {running} running · {} failed · {} skipped",
                c.done, c.total, c.failed, c.skipped
            ));
        }
    }

    /// Clears the live view before the summary is printed.
    pub fn finish(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, b) in bars.drain() {
                b.finish_and_clear();
            }
        }
        if let Some(h) = &self.header {
            h.finish_and_clear();
        }
    }
}

impl Subscriber for Progress {
    fn on_event(&self, event: &Event) {
        if self.mode == Mode::Json {
            if let Ok(text) = serde_json::to_string(event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
            return;
        }
        match &event.kind {
            EventKind::RunStarted {
                pipeline,
                jobs,
                parallelism,
            } => {
                self.line(&format!(
                    "▶ {pipeline}: {jobs} jobs, up to {parallelism} at once"
                ));
            }
            EventKind::TaskPending { .. } => {
                if let Ok(mut c) = self.counts.lock() {
                    c.total += 1;
                }
            }
            EventKind::TaskStarted { task, attempt } => {
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(if *attempt > 1 {
                        format!("{task} (attempt {attempt})")
                    } else {
                        task.to_string()
                    });
                    bar.enable_steady_tick(Duration::from_millis(120));
                    if let Ok(mut bars) = self.bars.lock()
                        && let Some(old) = bars.insert(task.to_string(), bar)
                    {
                        old.finish_and_clear();
                    }
                } else if *attempt > 1 {
                    self.line(&format!("  {task}: attempt {attempt}"));
                }
            }
            EventKind::TaskLog { task, line, .. } => self.line(&format!("  {task} │ {line}")),
            EventKind::TaskRetrying {
                task,
                attempt,
                exit_code,
                delay_ms,
            } => {
                let code =
                    exit_code.map_or_else(|| "no exit code".to_owned(), |c| format!("exit {c}"));
                self.line(&format!(
                    "↻ {task} failed ({code}); attempt {attempt} in {}",
                    cascade_spec::duration::format(Duration::from_millis(*delay_ms))
                ));
            }
            EventKind::TaskFinished {
                task,
                state,
                duration_ms,
                error,
                ..
            } => {
                if let Ok(mut bars) = self.bars.lock()
                    && let Some(bar) = bars.remove(&task.to_string())
                {
                    bar.finish_and_clear();
                }
                if let Ok(mut c) = self.counts.lock() {
                    c.done += 1;
                    if matches!(state, TaskState::Failed | TaskState::Cancelled) {
                        c.failed += 1;
                    }
                }
                let took = crate::output::duration_ms(*duration_ms);
                match state {
                    TaskState::Succeeded => self.line(&format!("✓ {task} ({took})")),
                    _ => self.line(&format!(
                        "✗ {task} {state}: {} ({took})",
                        error.as_deref().unwrap_or("failed")
                    )),
                }
            }
            EventKind::TaskSkipped { task, reason } => {
                if let Ok(mut c) = self.counts.lock() {
                    c.done += 1;
                    c.skipped += 1;
                }
                self.line(&format!("↷ {task} skipped: {reason}"));
            }
            EventKind::ResourceAcquired { .. }
            | EventKind::ResourceReleased { .. }
            | EventKind::RunFinished { .. } => {}
        }
        self.update_header();
    }
}
