//! The events a run emits, in order. The engine produces them; the CLI, the store and
//! telemetry connectors subscribe. Serialised as one JSON object per event
//! (`cascade run --output json`).

use crate::run::{RunId, RunStatus, TaskId, TaskState};
use serde::{Deserialize, Serialize};

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run_id: RunId,
    /// When it happened (RFC 3339, UTC).
    pub ts: jiff::Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a run the engine carried out ended: the final [`RunStatus`]es a run that started
/// can reach. Written and read as those words (one spelling, [`RunStatus::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RunStatus", try_from = "RunStatus")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        RunStatus::from(self).as_str()
    }
}

impl From<RunOutcome> for RunStatus {
    fn from(outcome: RunOutcome) -> Self {
        match outcome {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            RunOutcome::Failed => RunStatus::Failed,
            RunOutcome::Cancelled => RunStatus::Cancelled,
        }
    }
}

impl TryFrom<RunStatus> for RunOutcome {
    type Error = String;

    /// The outcome a status is; an error for a status a started run does not end with.
    fn try_from(status: RunStatus) -> Result<Self, String> {
        match status {
            RunStatus::Succeeded => Ok(RunOutcome::Succeeded),
            RunStatus::Failed => Ok(RunOutcome::Failed),
            RunStatus::Cancelled => Ok(RunOutcome::Cancelled),
            other => Err(format!(
                "expected how a run ended: `succeeded`, `failed` or `cancelled`; found `{other}`"
            )),
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        pipeline: String,
        jobs: usize,
        parallelism: usize,
    },
    /// A task became known: at plan time, or when a dynamic fan-out was expanded.
    TaskPending {
        task: TaskId,
        /// The fan-out value of this copy (matrix combination or item), if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    TaskStarted {
        task: TaskId,
        attempt: u32,
    },
    /// One line of a task's output, masked.
    TaskLog {
        task: TaskId,
        stream: Stream,
        line: String,
    },
    TaskRetrying {
        task: TaskId,
        attempt: u32,
        exit_code: Option<i32>,
        delay_ms: u64,
    },
    TaskFinished {
        task: TaskId,
        state: TaskState,
        attempt: u32,
        exit_code: Option<i32>,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    TaskSkipped {
        task: TaskId,
        reason: String,
    },
    ResourceAcquired {
        task: TaskId,
        resource: String,
        amount: u32,
        in_use: u32,
        capacity: u32,
    },
    ResourceReleased {
        task: TaskId,
        resource: String,
        amount: u32,
        in_use: u32,
        capacity: u32,
    },
    RunFinished {
        outcome: RunOutcome,
        passed: usize,
        failed: usize,
        skipped: usize,
        duration_ms: u64,
    },
}

impl EventKind {
    /// The task an event is about, if any.
    pub fn task(&self) -> Option<&TaskId> {
        match self {
            EventKind::TaskPending { task, .. }
            | EventKind::TaskStarted { task, .. }
            | EventKind::TaskLog { task, .. }
            | EventKind::TaskRetrying { task, .. }
            | EventKind::TaskFinished { task, .. }
            | EventKind::TaskSkipped { task, .. }
            | EventKind::ResourceAcquired { task, .. }
            | EventKind::ResourceReleased { task, .. } => Some(task),
            EventKind::RunStarted { .. } | EventKind::RunFinished { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_flat_with_a_type_tag() {
        let event = Event {
            run_id: RunId::generate(0, 0),
            ts: jiff::Timestamp::UNIX_EPOCH,
            kind: EventKind::TaskStarted {
                task: TaskId::parse("lint[1]").unwrap(),
                attempt: 1,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"run_id": "0-0", "ts": "1970-01-01T00:00:00Z", "event": "task_started", "task": "lint[1]", "attempt": 1})
        );
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn outcomes_are_the_final_run_statuses_and_read_the_old_word() {
        for outcome in [
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Cancelled,
        ] {
            let json = serde_json::to_value(outcome).unwrap();
            assert_eq!(json, serde_json::json!(RunStatus::from(outcome).as_str()));
            assert_eq!(serde_json::from_value::<RunOutcome>(json).unwrap(), outcome);
        }
        assert_eq!(
            serde_json::from_value::<RunOutcome>(serde_json::json!("completed")).unwrap(),
            RunOutcome::Succeeded
        );
        let error = serde_json::from_value::<RunOutcome>(serde_json::json!("running"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("found `running`"), "{error}");
    }
}
