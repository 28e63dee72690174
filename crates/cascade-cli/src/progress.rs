//! The live view of a run: a multi-line view on a TTY (one line per running task and a
//! header with counts out of the planned total), plain lines otherwise, or one JSON
//! event per line on stdout; and, at the end, the last lines of every failed task.

use crate::output::{self, Stream, Tone, paint};
use cascade_engine::Subscriber;
use cascade_plan::{Event, EventKind, FanOut, JobResult, Plan, TaskId, TaskState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// How many lines of a failed task the end of a run shows again.
pub const REPLAY_LINES: usize = 20;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Json,
}

/// How many tasks a job has, as far as is known.
#[derive(Debug, Clone, Copy)]
struct JobCount {
    /// From the plan: the fan-out's size, 1 for a dynamic one until it expands.
    planned: usize,
    dynamic: bool,
    /// Tasks seen so far (the highest copy index + 1).
    seen: usize,
    /// It became one task (a single job, or a fan-out skipped or failed before fanning
    /// out, or an empty list).
    single: bool,
}

impl JobCount {
    fn total(self) -> usize {
        if self.single {
            1
        } else if self.dynamic {
            self.seen.max(1)
        } else {
            self.planned.max(self.seen)
        }
    }
}

/// The counts of the header: the total is every planned task from the start, and grows
/// only when a dynamic fan-out expands.
#[derive(Debug)]
struct Counts {
    jobs: HashMap<String, JobCount>,
    done: usize,
    failed: usize,
    skipped: usize,
    cancelled: usize,
}

impl Counts {
    fn new(plan: &Plan) -> Self {
        let jobs = plan
            .jobs
            .iter()
            .map(|job| {
                let (planned, dynamic) = match &job.fan_out {
                    _ if job.skip.is_some() => (1, false),
                    FanOut::Single => (1, false),
                    FanOut::Matrix(combos) => (combos.len().max(1), false),
                    FanOut::Items(items) => (items.len().max(1), false),
                    FanOut::Dynamic(_) => (1, true),
                };
                let count = JobCount {
                    planned,
                    dynamic,
                    seen: 0,
                    single: false,
                };
                (job.id.to_string(), count)
            })
            .collect();
        Self {
            jobs,
            done: 0,
            failed: 0,
            skipped: 0,
            cancelled: 0,
        }
    }

    fn pending(&mut self, task: &TaskId) {
        let job = self.jobs.entry(task.job.to_string()).or_insert(JobCount {
            planned: 1,
            dynamic: true,
            seen: 0,
            single: false,
        });
        match task.index {
            None => job.single = true,
            Some(i) => job.seen = job.seen.max(usize::try_from(i).unwrap_or(usize::MAX) + 1),
        }
    }

    fn total(&self) -> usize {
        self.jobs.values().map(|j| j.total()).sum()
    }

    fn finished(&mut self, state: TaskState) {
        self.done += 1;
        match state {
            TaskState::Failed => self.failed += 1,
            TaskState::Skipped => self.skipped += 1,
            TaskState::Cancelled => self.cancelled += 1,
            _ => {}
        }
    }

    fn header(&self, running: usize) -> String {
        let mut text = format!(
            "{}/{} done · {running} running · {} failed · {} skipped",
            self.done,
            self.total(),
            self.failed,
            self.skipped
        );
        if self.cancelled > 0 {
            let _ = std::fmt::Write::write_fmt(
                &mut text,
                format_args!(" · {} cancelled", self.cancelled),
            );
        }
        text
    }
}

/// The last lines of a task's latest attempt.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    /// Lines of that attempt in all.
    count: usize,
}

pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    header: Option<ProgressBar>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    counts: Mutex<Counts>,
    tails: Mutex<HashMap<String, Tail>>,
    /// Printed under the first line: what the user can do while the run goes.
    follow_up: Vec<String>,
    /// Jobs with `continue_on_error`: their failures are shown as allowed.
    allowed: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// `follow_up`: lines printed at the start, under the run's id.
    pub fn new(mode: Mode, plan: &Plan, follow_up: Vec<String>) -> Self {
        let counts = Counts::new(plan);
        let (multi, header) = if mode == Mode::Tty {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let header = multi.add(ProgressBar::new_spinner());
            header.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            header.set_message(counts.header(0));
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
            counts: Mutex::new(counts),
            tails: Mutex::new(HashMap::new()),
            follow_up,
            allowed: plan
                .jobs
                .iter()
                .filter(|j| j.continue_on_error)
                .map(|j| j.id.to_string())
                .collect(),
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
            h.set_message(c.header(running));
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

    /// Every failed task again, with the last [`REPLAY_LINES`] lines of its last
    /// attempt, so nobody has to run `logs` to see why (empty if none failed, or with
    /// `--output json`). `logs` is the command that prints all of a task's lines.
    pub fn replay(&self, summary: &cascade_engine::Summary, logs: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if self.mode == Mode::Json {
            return out;
        }
        let Ok(mut tails) = self.tails.lock() else {
            return out;
        };
        for task in summary
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
        {
            let id = task.id.to_string();
            let allowed = summary.jobs.get(task.id.job.as_str()) == Some(&JobResult::Success);
            let mut head = format!(
                "✗ {id} failed: {}",
                task.error.as_deref().unwrap_or("failed")
            );
            if allowed {
                head.push_str(" (allowed by continue_on_error)");
            }
            if task.attempts > 1 {
                let _ = write!(head, ", attempt {}", task.attempts);
            }
            let tail = tails.remove(&id).unwrap_or_default();
            let heading = match (tail.lines.len(), tail.count) {
                (0, _) => format!("{head}; it printed nothing"),
                (s, c) if s == c => format!("{head}; its output:"),
                (s, c) => format!("{head}; the last {s} of its {c} lines (all: {logs} {id}):"),
            };
            let tone = if allowed { Tone::Warn } else { Tone::Bad };
            let _ = writeln!(out, "{}", paint(&heading, tone, Stream::Stderr));
            for line in &tail.lines {
                let _ = writeln!(out, "  {id} │ {line}");
            }
        }
        if !out.is_empty() {
            out.insert(0, '\n');
        }
        out
    }

    /// An attempt started: its own spinner on a TTY, and a fresh tail.
    fn started(&self, task: &TaskId, attempt: u32) {
        if let Ok(mut tails) = self.tails.lock() {
            tails.insert(task.to_string(), Tail::default());
        }
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(if attempt > 1 {
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
        } else if attempt > 1 {
            self.line(&format!("  {task}: attempt {attempt}"));
        }
    }

    /// One line of a task's output: shown now, and kept for the replay.
    fn log(&self, task: &TaskId, line: &str) {
        // A job's output may not drive the terminal (title, cursor, screen).
        let line = output::escape_controls(line);
        self.line(&format!("  {task} │ {line}"));
        if let Ok(mut tails) = self.tails.lock() {
            let tail = tails.entry(task.to_string()).or_default();
            tail.count += 1;
            if tail.lines.len() == REPLAY_LINES {
                tail.lines.pop_front();
            }
            tail.lines.push_back(line.into_owned());
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
                    "▶ run {}: {pipeline}, {jobs} jobs, up to {parallelism} at once",
                    event.run_id
                ));
                for line in &self.follow_up {
                    self.line(line);
                }
            }
            EventKind::TaskPending { task, .. } => {
                if let Ok(mut c) = self.counts.lock() {
                    c.pending(task);
                }
            }
            EventKind::TaskStarted { task, attempt } => self.started(task, *attempt),
            EventKind::TaskLog { task, line, .. } => self.log(task, line),
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
                    output::duration_ms(*delay_ms)
                ));
            }
            EventKind::TaskFinished {
                task,
                state,
                attempt,
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
                    c.finished(*state);
                }
                self.line(&finished_line(
                    task,
                    *state,
                    *attempt,
                    *duration_ms,
                    error.as_deref(),
                    self.allowed.contains(task.job.as_str()),
                ));
            }
            EventKind::TaskSkipped { task, reason } => {
                if let Ok(mut c) = self.counts.lock() {
                    c.finished(TaskState::Skipped);
                }
                self.line(&paint(
                    &format!("↷ {task} skipped: {reason}"),
                    Tone::Quiet,
                    Stream::Stderr,
                ));
            }
            EventKind::ResourceAcquired { .. }
            | EventKind::ResourceReleased { .. }
            | EventKind::RunFinished { .. } => {}
        }
        self.update_header();
    }
}

/// `✓ build (0.42s)`, `✗ test failed: exited with code 1 (3.05s)`, `⊘ deploy cancelled:
/// the run was cancelled` (no time: it never started); a failure a job's
/// `continue_on_error` allows is yellow and says so.
fn finished_line(
    task: &TaskId,
    state: TaskState,
    attempt: u32,
    duration_ms: u64,
    error: Option<&str>,
    allowed: bool,
) -> String {
    let took = if attempt == 0 {
        String::new()
    } else {
        format!(" ({})", output::duration_ms(duration_ms))
    };
    let (mark, text) = match state {
        TaskState::Failed if allowed => (
            "✗",
            format!(
                " failed (allowed by continue_on_error): {}",
                error.unwrap_or("failed")
            ),
        ),
        TaskState::Failed => ("✗", format!(" failed: {}", error.unwrap_or("failed"))),
        TaskState::Cancelled => ("⊘", format!(" cancelled: {}", error.unwrap_or("cancelled"))),
        TaskState::Skipped => ("↷", " skipped".to_owned()),
        _ => ("✓", String::new()),
    };
    let tone = match output::Tone::of(state) {
        Some(Tone::Bad) if allowed => Tone::Warn,
        tone => tone.unwrap_or(Tone::Good),
    };
    format!(
        "{}{text}{took}",
        paint(&format!("{mark} {task}"), tone, Stream::Stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::Counts;
    use cascade_plan::{TaskId, TaskState, Trigger};

    fn plan(yaml: &str) -> cascade_plan::Plan {
        let pipeline = cascade_spec::parse_pipeline("ci.yaml", yaml).unwrap();
        cascade_plan::plan(&pipeline, &Trigger::manual(), &[]).unwrap()
    }

    fn task(text: &str) -> TaskId {
        TaskId::parse(text).unwrap()
    }

    #[test]
    fn the_total_is_known_from_the_start_and_grows_only_with_a_dynamic_fan_out() {
        let plan = plan(
            "jobs:\n  detect: { run: \"echo '[1,2,3]'\", outputs: { p: stdout-json } }\n  test: { matrix: { os: [a, b] }, run: echo }\n  each: { needs: [detect], for_each: '${{ needs.detect.outputs.p }}', run: echo }\n  last: { needs: [each], run: echo }\n",
        );
        let mut counts = Counts::new(&plan);
        // detect + test (2) + each (1 until it expands) + last.
        assert_eq!(
            counts.header(0),
            "0/5 done · 0 running · 0 failed · 0 skipped"
        );
        for t in ["detect", "test[0]", "test[1]"] {
            counts.pending(&task(t));
        }
        assert_eq!(counts.total(), 5, "known tasks do not change the total");
        counts.finished(TaskState::Failed);
        for t in ["each[0]", "each[1]", "each[2]"] {
            counts.pending(&task(t));
        }
        assert_eq!(counts.total(), 7, "the dynamic fan-out expanded to 3");
        counts.pending(&task("last"));
        counts.finished(TaskState::Cancelled);
        assert_eq!(
            counts.header(2),
            "2/7 done · 2 running · 1 failed · 0 skipped · 1 cancelled"
        );
    }

    #[test]
    fn a_fan_out_that_never_fans_out_counts_once() {
        let plan = plan(
            "jobs:\n  build: { run: exit 1, outputs: { x: stdout-json } }\n  test: { needs: [build], matrix: { os: [a, b, c] }, run: echo }\n  each: { needs: [build], for_each: '${{ needs.build.outputs.x }}', run: echo }\n",
        );
        let mut counts = Counts::new(&plan);
        assert_eq!(counts.total(), 5);
        // build failed: the matrix is skipped as one task, the list too.
        for t in ["build", "test", "each"] {
            counts.pending(&task(t));
        }
        assert_eq!(counts.total(), 3);
    }
}
