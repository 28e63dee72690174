//! The telemetry wire format (DESIGN §5, version `1.0`): one JSON object per event,
//!
//! ```json
//! {"header": {"v": "1.0", "ts": "2026-01-02T03:04:05.123Z", "run_id": "…", "org_id": "…",
//!             "project_id": "…", "source": "<host>-<pid>"},
//!  "body": {"type": "TaskStateEvent", …}}
//! ```
//!
//! The body's `type` names which of the three bodies it is: `LifecycleEvent`,
//! `TaskStateEvent` or `ResourceEvent`. Every field of a body is always present; a value
//! that is not known is `null` (for example `duration_ms` before a task finished). Unknown
//! fields are refused when reading, and the JSON Schema ([`schema`]) says the same.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The value of `header.v`.
pub const VERSION: &str = "1.0";

/// One telemetry message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Cascade telemetry event (v1.0)")]
pub struct Payload {
    pub header: Header,
    pub body: Body,
}

/// Where and when: the same shape for every body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Schema version, `1.0`.
    #[schemars(extend("const" = "1.0"))]
    pub v: String,
    /// When the event happened in the engine (RFC 3339, UTC), not when it was sent.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub ts: jiff::Timestamp,
    pub run_id: String,
    pub org_id: String,
    pub project_id: String,
    /// `<host>-<pid>` of the engine.
    pub source: String,
}

/// What happened; `type` says which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum Body {
    LifecycleEvent(LifecycleEvent),
    TaskStateEvent(TaskStateEvent),
    ResourceEvent(ResourceEvent),
}

/// A run started or stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleEvent {
    pub event: Lifecycle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Lifecycle {
    EngineStarted,
    EngineStopped,
}

/// A task changed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStateEvent {
    /// The task: `job`, or `job[i]` for copy `i` of a fanned-out job.
    pub task_id: String,
    /// The job's name.
    pub task_name: String,
    pub state: TelemetryState,
    /// How long the task ran, once it is final; `null` before.
    pub duration_ms: Option<u64>,
    /// Why it failed (masked), or `null`.
    pub error: Option<String>,
    pub metadata: TaskMetadata,
}

/// Task states on the wire: the seed's five upper-case words, defined (and mapped to and
/// from the run vocabulary) in cascade-plan. A cancelled task is `FAILED` with an
/// `error`; a task waiting to be retried is `PENDING` again, with the coming attempt in
/// `metadata`.
pub use cascade_plan::TelemetryState;

/// What else is known about a task state; each field is `null` when not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskMetadata {
    /// The attempt (1-based) running, finished, or coming next after a retry delay.
    pub attempt: Option<u32>,
    /// The exit code of the attempt that finished (or failed before a retry).
    pub exit_code: Option<i32>,
    /// The fan-out value of this copy (matrix combination or item).
    pub label: Option<String>,
    /// How long the engine waits before the next attempt.
    pub retry_delay_ms: Option<u64>,
}

/// A task took or gave back a share of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceEvent {
    pub resource_name: String,
    pub action: ResourceAction,
    /// How much of the resource is in use after this action.
    pub current_usage: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceAction {
    Acquire,
    Release,
}

/// The JSON Schema (draft 2020-12) of [`Payload`] as published: every field required,
/// the optional ones nullable.
pub fn schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Payload>();
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header() -> serde_json::Value {
        json!({"v": "1.0", "ts": "2026-01-02T03:04:05Z", "run_id": "r-1", "org_id": "o",
               "project_id": "p", "source": "h-1"})
    }

    #[test]
    fn the_schema_has_not_drifted() {
        insta::assert_json_snapshot!("telemetry_schema", schema());
    }

    #[test]
    fn bodies_read_back_and_validate_against_the_schema() {
        let validator = jsonschema::validator_for(&schema()).unwrap();
        let bodies = [
            json!({"type": "LifecycleEvent", "event": "ENGINE_STARTED"}),
            json!({"type": "TaskStateEvent", "task_id": "t[1]", "task_name": "t",
                   "state": "FAILED", "duration_ms": 5, "error": "boom",
                   "metadata": {"attempt": 2, "exit_code": 1, "label": null, "retry_delay_ms": null}}),
            json!({"type": "ResourceEvent", "resource_name": "cpu", "action": "RELEASE",
                   "current_usage": 0}),
        ];
        for body in bodies {
            let payload = json!({"header": header(), "body": body});
            assert!(validator.is_valid(&payload), "{payload}");
            let typed: Payload = serde_json::from_value(payload.clone()).unwrap();
            assert_eq!(serde_json::to_value(&typed).unwrap(), payload);
        }
    }

    #[test]
    fn unknown_fields_missing_fields_and_unknown_types_are_refused() {
        let validator = jsonschema::validator_for(&schema()).unwrap();
        let bad = [
            json!({"header": header(), "body": {"type": "LifecycleEvent", "event": "ENGINE_STARTED", "x": 1}}),
            json!({"header": header(), "body": {"type": "Other", "event": "ENGINE_STARTED"}}),
            json!({"header": header(), "body": {"event": "ENGINE_STARTED"}}),
            json!({"header": header(), "body": {"type": "TaskStateEvent", "task_id": "t",
                   "task_name": "t", "state": "RUNNING", "error": null,
                   "metadata": {"attempt": 1, "exit_code": null, "label": null, "retry_delay_ms": null}}}),
            json!({"header": {"v": "1.0"}, "body": {"type": "LifecycleEvent", "event": "ENGINE_STOPPED"}}),
        ];
        for payload in bad {
            assert!(!validator.is_valid(&payload), "schema accepted {payload}");
        }
        // serde refuses the same shapes, except a missing `null` field it reads as None.
        for payload in [&bad_payload_unknown_field(), &bad_payload_unknown_type()] {
            assert!(serde_json::from_value::<Payload>(payload.clone()).is_err());
        }
    }

    fn bad_payload_unknown_field() -> serde_json::Value {
        json!({"header": header(), "body": {"type": "ResourceEvent", "resource_name": "r",
               "action": "ACQUIRE", "current_usage": 1, "capacity": 2}})
    }

    fn bad_payload_unknown_type() -> serde_json::Value {
        json!({"header": header(), "body": {"type": "Lifecycle", "event": "ENGINE_STARTED"}})
    }
}
