//! The run vocabulary shared by the engine, the store, Argo and telemetry: ids, states
//! and results.

use cascade_spec::JobId;
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

/// Task states: Pending → Running → Completed | Failed | Skipped | Cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Cancelled,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            TaskState::Pending,
            TaskState::Running,
            TaskState::Completed,
            TaskState::Failed,
            TaskState::Skipped,
            TaskState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        use TaskState::{Cancelled, Completed, Failed, Skipped};
        assert_eq!(
            JobResult::of_tasks(&[Completed, Failed], false),
            JobResult::Failure
        );
        assert_eq!(
            JobResult::of_tasks(&[Completed, Failed], true),
            JobResult::Success
        );
        assert_eq!(
            JobResult::of_tasks(&[Skipped, Skipped], false),
            JobResult::Skipped
        );
        assert_eq!(
            JobResult::of_tasks(&[Completed, Skipped], false),
            JobResult::Success
        );
        assert_eq!(
            JobResult::of_tasks(&[Completed, Cancelled], false),
            JobResult::Cancelled
        );
        assert_eq!(JobResult::of_tasks(&[], false), JobResult::Skipped);
    }
}
