//! The run vocabulary shared by the engine, the store, Argo and telemetry: ids, states
//! and results.

use cascade_spec::JobId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A run's id: time-ordered, unique on this machine, safe in file names and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// `<unix millis, base 36>-<random, base 36>`: sorts by start time.
    pub fn generate(unix_millis: u64, random: u64) -> Self {
        Self(format!(
            "{}-{}",
            base36(unix_millis),
            base36(random % 36u64.pow(6))
        ))
    }

    /// Accepts an id read back from storage or a user (`[0-9a-z-]`, at most 64 chars).
    pub fn parse(text: &str) -> Option<Self> {
        (!text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == '-'))
        .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[usize::try_from(n % 36).unwrap_or(0)]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One runnable unit: a job, or one copy of a fanned-out job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub job: JobId,
    /// Position in the job's fan-out (matrix combination or `for_each` item).
    pub index: Option<u32>,
}

impl TaskId {
    pub fn job(job: JobId) -> Self {
        Self { job, index: None }
    }

    /// Reads `job` or `job[3]`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once('[') {
            None => JobId::new(text).map(Self::job),
            Some((job, rest)) => Some(Self {
                job: JobId::new(job)?,
                index: Some(rest.strip_suffix(']')?.parse().ok()?),
            }),
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            None => write!(f, "{}", self.job),
            Some(i) => write!(f, "{}[{i}]", self.job),
        }
    }
}

impl Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a task id like `build` or `lint[2]`, found `{text}`"
            ))
        })
    }
}

/// The words of a vocabulary enum, each spelled once (in its `as_str`): what serde writes
/// and reads, and what `parse` accepts. `read` also accepts the words of earlier
/// versions, so stored data and old event files still read.
macro_rules! vocabulary {
    ($ty:ident, $what:literal, [$($variant:ident => $word:literal),+ $(,)?], legacy: [$($old:literal => $new:ident),* $(,)?]) => {
        impl $ty {
            /// Every value, in lifecycle order.
            pub const ALL: &[$ty] = &[$($ty::$variant),+];

            /// The word, as every surface shows it (API, CLI, store, events).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }

            /// One of the current words (what a user types or the API sends).
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|s| s.as_str() == text)
            }

            /// A current word or one an earlier version wrote (stored rows, event files,
            /// an older server's answers).
            pub fn read(text: &str) -> Option<Self> {
                Self::parse(text).or(match text {
                    $($old => Some($ty::$new),)*
                    _ => None,
                })
            }

            /// The current words, for help texts and errors: `a`, `b` or `c`.
            pub fn words() -> String {
                let words: Vec<String> =
                    Self::ALL.iter().map(|s| format!("`{}`", s.as_str())).collect();
                match words.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => words.concat(),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                Self::parse(text).ok_or_else(|| {
                    format!(concat!("expected a ", $what, ": {}; found `{}`"), Self::words(), text)
                })
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::read(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        concat!("expected a ", $what, ": {}; found `{}`"),
                        Self::words(),
                        text
                    ))
                })
            }
        }
    };
}

/// A run's status (DESIGN §6). In flight: `queued` → `running` (→ `cancelling` when a
/// cancel was asked for and the run has not stopped yet). A run ends `succeeded`,
/// `failed` or `cancelled` — including a run whose every task was skipped, which
/// `succeeded` — or `skipped`: the server was sent an event whose `on:` path filters
/// ruled the pipeline out, and records the run only so the forge is told (a skipped
/// check); no task of it ever existed. Calling that `succeeded` would show a run that
/// never ran as passed in `cascade runs`; GitHub's API has the same `skipped` conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Cancelling,
    Succeeded,
    Failed,
    Cancelled,
    Skipped,
}

vocabulary!(RunStatus, "run status", [
    Queued => "queued",
    Running => "running",
    Cancelling => "cancelling",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
    Skipped => "skipped",
], legacy: ["completed" => Succeeded]);

impl RunStatus {
    /// Whether the run ended: nothing changes its status any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Skipped
        )
    }

    /// The run's status from an Argo `Workflow`'s phase (`Pending`, `Running`,
    /// `Succeeded`, `Failed`, `Error`; none yet: queued). A terminated workflow is
    /// `Failed` to Argo; the store turns it into `cancelled` when a cancel was asked for.
    pub fn from_argo_phase(phase: &str) -> Self {
        match phase {
            "Running" => RunStatus::Running,
            "Succeeded" => RunStatus::Succeeded,
            "Failed" | "Error" => RunStatus::Failed,
            _ => RunStatus::Queued,
        }
    }
}

/// Task states: `pending` → `running` → `succeeded` | `failed` | `skipped` | `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

vocabulary!(TaskState, "task state", [
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Skipped => "skipped",
    Cancelled => "cancelled",
], legacy: ["completed" => Succeeded]);

impl TaskState {
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running)
    }

    /// A task's state from the phase of its Argo node (`Pending`, `Running`,
    /// `Succeeded`, `Failed`, `Error`, `Skipped`, `Omitted`; anything else is pending).
    pub fn from_argo_phase(phase: &str) -> Self {
        match phase {
            "Running" => TaskState::Running,
            "Succeeded" => TaskState::Succeeded,
            "Failed" | "Error" => TaskState::Failed,
            "Skipped" | "Omitted" => TaskState::Skipped,
            _ => TaskState::Pending,
        }
    }

    /// The state's telemetry word (DESIGN §5) and the error sent with it. Telemetry keeps
    /// the seed's five words, which have no `CANCELLED`: a cancelled task is `FAILED`
    /// with the error `cancelled` unless it has one of its own
    /// ([`TelemetryState::task_state`] reads it back).
    pub fn telemetry(self, error: Option<&str>) -> (TelemetryState, Option<String>) {
        let state = match self {
            TaskState::Pending => TelemetryState::Pending,
            TaskState::Running => TelemetryState::Running,
            TaskState::Succeeded => TelemetryState::Completed,
            TaskState::Failed | TaskState::Cancelled => TelemetryState::Failed,
            TaskState::Skipped => TelemetryState::Skipped,
        };
        let error = match (self, error) {
            (TaskState::Cancelled, None) => Some(TaskState::Cancelled.as_str()),
            (_, error) => error,
        };
        (state, error.map(str::to_owned))
    }
}

/// Task states on the wire (telemetry, DESIGN §5): the seed's upper-case words. A
/// cancelled task is `FAILED` with an `error`; a task waiting to be retried is `PENDING`
/// again. Mapped from and to [`TaskState`] by [`TaskState::telemetry`] and
/// [`TelemetryState::task_state`], nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
// Its name and description in the published telemetry schema (v1.0), which stay as
// they were.
#[schemars(
    rename = "TaskStatus",
    description = "Task states on the wire. A cancelled task is `FAILED` with an `error`; a task waiting\nto be retried is `PENDING` again, with the coming attempt in `metadata`."
)]
pub enum TelemetryState {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
}

impl TelemetryState {
    /// The task state a telemetry state (and its error) stands for: `FAILED` with the
    /// error `cancelled` is a cancelled task (see [`TaskState::telemetry`]).
    pub fn task_state(self, error: Option<&str>) -> TaskState {
        match self {
            TelemetryState::Pending => TaskState::Pending,
            TelemetryState::Running => TaskState::Running,
            TelemetryState::Completed => TaskState::Succeeded,
            TelemetryState::Failed if error == Some(TaskState::Cancelled.as_str()) => {
                TaskState::Cancelled
            }
            TelemetryState::Failed => TaskState::Failed,
            TelemetryState::Skipped => TaskState::Skipped,
        }
    }
}

/// A job's result as expressions see it (`needs.<job>.result`), GitHub's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl JobResult {
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Success => "success",
            JobResult::Failure => "failure",
            JobResult::Cancelled => "cancelled",
            JobResult::Skipped => "skipped",
        }
    }

    /// The result of a job from the final states of its tasks (all copies of a fan-out).
    /// A failed copy fails the job unless the job continues on error; all skipped (or no
    /// copies at all, as for `for_each` over an empty list) is skipped.
    pub fn of_tasks(states: &[TaskState], continue_on_error: bool) -> Self {
        if states.contains(&TaskState::Failed) && !continue_on_error {
            JobResult::Failure
        } else if states.contains(&TaskState::Cancelled) {
            JobResult::Cancelled
        } else if states.iter().all(|s| *s == TaskState::Skipped) {
            JobResult::Skipped
        } else {
            JobResult::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_round_trip() {
        let a = RunId::generate(1_700_000_000_000, 42);
        let b = RunId::generate(1_700_000_000_001, 7);
        assert!(a < b);
        assert_eq!(RunId::parse(a.as_str()), Some(a));
        assert_eq!(RunId::parse("../etc"), None);
    }

    #[test]
    fn task_ids_round_trip() {
        for text in ["build", "lint[0]", "test-linux[12]"] {
            assert_eq!(TaskId::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(TaskId::parse("lint[x]"), None);
        assert_eq!(TaskId::parse("1bad"), None);
    }

    #[test]
    fn job_results_from_task_states() {
        use TaskState::{Cancelled, Failed, Skipped, Succeeded};
        assert_eq!(
            JobResult::of_tasks(&[Succeeded, Failed], false),
            JobResult::Failure
        );
        assert_eq!(
            JobResult::of_tasks(&[Succeeded, Failed], true),
            JobResult::Success
        );
        assert_eq!(
            JobResult::of_tasks(&[Skipped, Skipped], false),
            JobResult::Skipped
        );
        assert_eq!(
            JobResult::of_tasks(&[Succeeded, Skipped], false),
            JobResult::Success
        );
        assert_eq!(
            JobResult::of_tasks(&[Succeeded, Cancelled], false),
            JobResult::Cancelled
        );
        assert_eq!(JobResult::of_tasks(&[], false), JobResult::Skipped);
    }

    #[test]
    fn every_word_round_trips_and_the_old_word_still_reads() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(serde_json::from_value::<RunStatus>(json).unwrap(), *s);
        }
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(*s));
            assert_eq!(s.to_string().parse::<TaskState>(), Ok(*s));
        }
        // `completed` was the word for `succeeded` before: read, never written or typed.
        assert_eq!(RunStatus::parse("completed"), None);
        assert_eq!(RunStatus::read("completed"), Some(RunStatus::Succeeded));
        assert_eq!(TaskState::read("completed"), Some(TaskState::Succeeded));
        assert_eq!(
            serde_json::from_str::<TaskState>("\"completed\"").unwrap(),
            TaskState::Succeeded
        );
        assert_eq!(
            "bogus".parse::<RunStatus>().unwrap_err(),
            "expected a run status: `queued`, `running`, `cancelling`, `succeeded`, `failed`, `cancelled` or `skipped`; found `bogus`"
        );
        let error = serde_json::from_str::<TaskState>("\"done\"")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("expected a task state: `pending`, `running`"),
            "{error}"
        );
    }

    #[test]
    fn argo_phases_map_to_the_vocabulary() {
        use RunStatus as R;
        use TaskState as T;
        let runs: Vec<RunStatus> = ["", "Pending", "Running", "Succeeded", "Failed", "Error"]
            .into_iter()
            .map(RunStatus::from_argo_phase)
            .collect();
        assert_eq!(
            runs,
            [
                R::Queued,
                R::Queued,
                R::Running,
                R::Succeeded,
                R::Failed,
                R::Failed
            ]
        );
        let nodes: Vec<TaskState> = [
            "Pending",
            "Running",
            "Succeeded",
            "Failed",
            "Error",
            "Skipped",
            "Omitted",
        ]
        .into_iter()
        .map(TaskState::from_argo_phase)
        .collect();
        assert_eq!(
            nodes,
            [
                T::Pending,
                T::Running,
                T::Succeeded,
                T::Failed,
                T::Failed,
                T::Skipped,
                T::Skipped
            ]
        );
    }

    #[test]
    fn telemetry_words_map_there_and_back() {
        use TelemetryState as W;
        for (state, error, word, sent) in [
            (TaskState::Pending, None, W::Pending, None),
            (TaskState::Running, None, W::Running, None),
            (TaskState::Succeeded, None, W::Completed, None),
            (
                TaskState::Failed,
                Some("exit code 2"),
                W::Failed,
                Some("exit code 2"),
            ),
            (TaskState::Skipped, None, W::Skipped, None),
            (TaskState::Cancelled, None, W::Failed, Some("cancelled")),
        ] {
            let (got, got_error) = state.telemetry(error);
            assert_eq!((got, got_error.as_deref()), (word, sent), "{state}");
            assert_eq!(got.task_state(got_error.as_deref()), state);
        }
        // A cancelled task with an error of its own reads back as failed: telemetry has
        // no word for it.
        assert_eq!(
            TaskState::Cancelled.telemetry(Some("timed out")).0,
            W::Failed
        );
        assert_eq!(
            serde_json::to_value(W::Completed).unwrap(),
            serde_json::json!("COMPLETED")
        );
    }
}
