//! Control commands for an engine, received on `cascade/control/{org}/{project}/#`.
//!
//! A command is published on `cascade/control/{org}/{project}/{command}` with a JSON
//! object whose `command` names it again; the two must agree (so a broker ACL on the topic
//! means what it says). The exact shapes:
//!
//! ```json
//! {"command": "pause"}
//! {"command": "resume"}
//! {"command": "cancel", "run_id": "lz1k2m3n-4a5b6c"}
//! {"command": "limit", "jobs": 4}
//! ```
//!
//! `pause` stops starting new tasks (running ones go on), `resume` undoes it, `cancel`
//! cancels one run, `limit` sets how many tasks run at once (at least 1). Anything else —
//! another command, an unknown or missing field, a wrong type, more than 64 KiB — is
//! refused with a [`ControlError`] saying what was expected, and the message is ignored.

use crate::connector::{Connector, Handler, Qos};
use crate::error::{ConnectError, ControlError};
use crate::topic::name;
use cascade_plan::RunId;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Control messages larger than this are refused unread.
pub const MAX_CONTROL_BYTES: usize = 64 * 1024;
/// Commands received but not yet taken by the engine; more are dropped (and logged).
const QUEUE: usize = 64;

/// What an operator asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel { run_id: RunId },
    Limit { jobs: u32 },
}

impl Control {
    /// The command's name, as in the payload and the last topic level.
    pub fn command(&self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Cancel { .. } => "cancel",
            Control::Limit { .. } => "limit",
        }
    }

    /// The JSON payload.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("command".into(), self.command().into());
        match self {
            Control::Pause | Control::Resume => {}
            Control::Cancel { run_id } => {
                map.insert("run_id".into(), run_id.as_str().into());
            }
            Control::Limit { jobs } => {
                map.insert("jobs".into(), (*jobs).into());
            }
        }
        Value::Object(map)
    }

    /// Reads a payload; never panics, whatever the bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, ControlError> {
        if payload.len() > MAX_CONTROL_BYTES {
            return Err(ControlError::TooLarge {
                size: payload.len(),
                limit: MAX_CONTROL_BYTES,
            });
        }
        let value: Value = serde_json::from_slice(payload).map_err(ControlError::NotJson)?;
        let Value::Object(mut map) = value else {
            return Err(ControlError::NotAnObject {
                found: kind(&value),
            });
        };
        let command = match map.remove("command") {
            None => return Err(ControlError::MissingCommand),
            Some(Value::String(c)) => c,
            Some(other) => {
                return Err(ControlError::UnknownCommand {
                    found: other.to_string(),
                });
            }
        };
        let (command, fields): (&'static str, &'static [&'static str]) = match command.as_str() {
            "pause" => ("pause", &[]),
            "resume" => ("resume", &[]),
            "cancel" => ("cancel", &["run_id"]),
            "limit" => ("limit", &["jobs"]),
            _ => return Err(ControlError::UnknownCommand { found: command }),
        };
        if let Some(field) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(ControlError::UnknownField {
                command,
                field: field.clone(),
                expected: match command {
                    "cancel" => "`command`, `run_id`",
                    "limit" => "`command`, `jobs`",
                    _ => "only `command`",
                },
            });
        }
        let field = |name: &'static str| {
            map.get(name).ok_or(ControlError::MissingField {
                command,
                field: name,
            })
        };
        let bad =
            |field: &'static str, expected: &'static str, found: &Value| ControlError::BadField {
                command,
                field,
                expected,
                found: found.to_string(),
            };
        Ok(match command {
            "pause" => Control::Pause,
            "resume" => Control::Resume,
            "cancel" => {
                const EXPECTED: &str = "a run id (`[0-9a-z-]`, at most 64 characters)";
                let value = field("run_id")?;
                let run_id = value
                    .as_str()
                    .and_then(RunId::parse)
                    .ok_or_else(|| bad("run_id", EXPECTED, value))?;
                Control::Cancel { run_id }
            }
            _ => {
                const EXPECTED: &str = "a whole number from 1 to 4294967295";
                let value = field("jobs")?;
                let jobs = value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("jobs", EXPECTED, value))?;
                Control::Limit { jobs }
            }
        })
    }

    /// Reads a message received on `topic`: the payload, and the topic that must be the
    /// command's own under `org` and `project`.
    pub fn from_message(
        org: &str,
        project: &str,
        topic: &str,
        payload: &[u8],
    ) -> Result<Self, ControlError> {
        let control = Self::parse(payload)?;
        let expected = control_topic(org, project, control.command());
        if topic == expected {
            Ok(control)
        } else {
            Err(ControlError::WrongTopic {
                topic: topic.to_owned(),
                expected,
                command: control.command(),
            })
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `cascade/control/{org}/{project}/{command}`
pub fn control_topic(org: &str, project: &str, command: &str) -> String {
    format!("cascade/control/{org}/{project}/{command}")
}

/// `cascade/control/{org}/{project}/#`: every command for this project.
pub fn control_filter(org: &str, project: &str) -> String {
    format!("cascade/control/{org}/{project}/#")
}

/// Subscribes to the project's control topics; the receiver yields every valid command
/// in arrival order. Invalid messages are logged and skipped; when the engine falls 64
/// commands behind, newer ones are dropped (and logged).
pub async fn subscribe_control(
    connector: &dyn Connector,
    org: &str,
    project: &str,
) -> Result<mpsc::Receiver<Control>, ConnectError> {
    let (org, project) = (
        name("org id", org)?.to_owned(),
        name("project id", project)?.to_owned(),
    );
    let (tx, rx) = mpsc::channel(QUEUE);
    let filter = control_filter(&org, &project);
    let handler: Handler = Arc::new(move |message| {
        match Control::from_message(&org, &project, &message.topic, &message.payload) {
            Ok(control) => {
                if tx.try_send(control).is_err() {
                    tracing::warn!(topic = %message.topic, "control command dropped: the engine is not keeping up");
                }
            }
            Err(error) => {
                tracing::warn!(topic = %message.topic, %error, "control message ignored");
            }
        }
    });
    connector.subscribe(&filter, handler).await?;
    Ok(rx)
}

/// Publishes `control` for the engines of `org`/`project` (at least once on MQTT).
pub async fn send_control(
    connector: &dyn Connector,
    org: &str,
    project: &str,
    control: &Control,
) -> Result<(), ConnectError> {
    let topic = control_topic(
        name("org id", org)?,
        name("project id", project)?,
        control.command(),
    );
    let payload = serde_json::to_vec(&control.to_json()).map_err(ConnectError::Serialise)?;
    connector.publish(&topic, payload, Qos::AtLeastOnce).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of parsing `text`, which must fail.
    fn refusal(text: &str) -> String {
        Control::parse(text.as_bytes())
            .expect_err("the payload is refused")
            .to_string()
    }

    #[test]
    fn every_command_round_trips() {
        for control in [
            Control::Pause,
            Control::Resume,
            Control::Cancel {
                run_id: RunId::parse("lz1k2m3n-4a5b6c").unwrap(),
            },
            Control::Limit { jobs: 4 },
        ] {
            let bytes = serde_json::to_vec(&control.to_json()).unwrap();
            assert_eq!(Control::parse(&bytes).unwrap(), control);
        }
        assert_eq!(
            Control::Limit { jobs: 4 }.to_json(),
            serde_json::json!({"command": "limit", "jobs": 4})
        );
    }

    #[test]
    fn bad_payloads_say_what_was_expected() {
        for (text, message) in [
            (
                "[1]",
                "control payload: expected a JSON object, found an array",
            ),
            (
                "{}",
                "control payload has no `command` (expected one of: pause, resume, cancel, limit)",
            ),
            (
                r#"{"command":"stop"}"#,
                "unknown control command `stop` (expected one of: pause, resume, cancel, limit)",
            ),
            (
                r#"{"command":7}"#,
                "unknown control command `7` (expected one of: pause, resume, cancel, limit)",
            ),
            (
                r#"{"command":"pause","now":true}"#,
                "control `pause`: unknown field `now` (expected: only `command`)",
            ),
            (
                r#"{"command":"limit","jobs":4,"x":1}"#,
                "control `limit`: unknown field `x` (expected: `command`, `jobs`)",
            ),
            (
                r#"{"command":"cancel"}"#,
                "control `cancel`: missing field `run_id`",
            ),
            (
                r#"{"command":"cancel","run_id":"../x"}"#,
                "control `cancel`: field `run_id`: expected a run id (`[0-9a-z-]`, at most 64 characters), found `\"../x\"`",
            ),
            (
                r#"{"command":"limit","jobs":0}"#,
                "control `limit`: field `jobs`: expected a whole number from 1 to 4294967295, found `0`",
            ),
            (
                r#"{"command":"limit","jobs":-1}"#,
                "control `limit`: field `jobs`: expected a whole number from 1 to 4294967295, found `-1`",
            ),
            (
                r#"{"command":"limit","jobs":2.5}"#,
                "control `limit`: field `jobs`: expected a whole number from 1 to 4294967295, found `2.5`",
            ),
            (
                r#"{"command":"limit","jobs":"4"}"#,
                "control `limit`: field `jobs`: expected a whole number from 1 to 4294967295, found `\"4\"`",
            ),
            (
                r#"{"command":"limit","jobs":4294967296}"#,
                "control `limit`: field `jobs`: expected a whole number from 1 to 4294967295, found `4294967296`",
            ),
        ] {
            assert_eq!(refusal(text), message, "{text}");
        }
        assert_eq!(refusal("{not json"), "control payload is not JSON");
        let huge = vec![b' '; MAX_CONTROL_BYTES + 1];
        assert!(matches!(
            Control::parse(&huge),
            Err(ControlError::TooLarge { .. })
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz over prefixes and byte flips of valid payloads.
        let seeds = [
            r#"{"command":"cancel","run_id":"abc-1"}"#,
            r#"{"command":"limit","jobs":4}"#,
        ];
        for seed in seeds {
            let bytes = seed.as_bytes();
            for cut in 0..bytes.len() {
                let _ = Control::parse(&bytes[..cut]);
                for flip in [0x00, 0x22, 0x5c, 0x7b, 0xff] {
                    let mut b = bytes.to_vec();
                    b[cut] = flip;
                    let _ = Control::parse(&b);
                }
            }
        }
    }

    #[test]
    fn the_topic_must_name_the_payloads_command() {
        let topic = control_topic("o", "p", "pause");
        assert_eq!(topic, "cascade/control/o/p/pause");
        assert_eq!(control_filter("o", "p"), "cascade/control/o/p/#");
        let cancel = br#"{"command":"cancel","run_id":"r-1"}"#;
        assert_eq!(
            Control::from_message("o", "p", &topic, cancel)
                .unwrap_err()
                .to_string(),
            "control on topic `cascade/control/o/p/pause`: expected the topic `cascade/control/o/p/cancel` for command `cancel`"
        );
        assert_eq!(
            Control::from_message("o", "p", &topic, br#"{"command":"pause"}"#).unwrap(),
            Control::Pause
        );
    }
}
