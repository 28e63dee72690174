//! Telemetry and control over a message broker (DESIGN §5): the engine's events go out
//! as JSON on `cascade/telemetry/{org}/{project}/{run_id}/events`, and operators' commands
//! come in on `cascade/control/{org}/{project}/…`.
//!
//! - [`connector`]: the [`Connector`] trait and the broker url that picks one;
//!   [`mqtt`] (rumqttc) and [`nats`] (async-nats) implement it, and [`unix`] for a
//!   process on this machine that owns a Unix socket (JSON lines; the Python SDK's).
//! - [`telemetry`]: [`Telemetry`], the publisher that never slows a run; [`payload`], the
//!   wire format and its JSON Schema.
//! - [`control`]: [`Control`] commands, parsed strictly.
//! - [`topic`]: [`Identity`] (org, project, source) and topic matching.
//!
//! Depends on `cascade-plan` for the event vocabulary only; the engine does not know this
//! crate exists, and the binary wires the two together.

pub mod connector;
pub mod control;
pub mod error;
pub mod mqtt;
pub mod nats;
pub mod payload;
pub mod telemetry;
pub mod topic;
pub mod unix;

pub use connector::{
    BrokerUrl, Connector, Handler, Message, Qos, Scheme, Settings, connect, connector,
    connector_with,
};
pub use control::{Control, control_filter, control_topic, send_control, subscribe_control};
pub use error::{ConnectError, ControlError};
pub use payload::{Payload, schema};
pub use telemetry::{Masker, Telemetry, TelemetryOptions};
pub use topic::Identity;
