//! From a validated pipeline and a trigger to a [`Plan`] every backend can run, and the
//! run vocabulary they share: [`RunId`], [`TaskId`], [`RunStatus`], [`TaskState`],
//! [`Event`], and its mappings to Argo phases and telemetry words.
//!
//! No IO: values in, values out.

pub mod context;
pub mod document;
pub mod error;
pub mod event;
pub mod plan;
pub mod run;
pub mod script;
pub mod trigger;

pub use error::PlanError;
pub use event::{Event, EventKind, RunOutcome, Stream};
pub use plan::{FanOut, Plan, PlannedJob, plan};
pub use run::{JobResult, RunId, RunStatus, TaskId, TaskState, TelemetryState};
pub use trigger::Trigger;
