//! Runs a [`cascade_plan::Plan`] on this machine: the dispatcher, processes in their own
//! process groups (or a bubblewrap sandbox), retries, timeouts, outputs, secret masking,
//! resource limits; every task's processes die with the engine's ([`guard`]).
//!
//! The engine knows nothing of storage, terminals or connectors: it emits
//! [`cascade_plan::Event`]s on a [`Bus`] and its caller decides who listens; commands
//! (pause, resume, cancel, limit) reach it through a [`control::channel`], whoever sends
//! them.

pub mod bus;
pub mod container;
pub mod control;
pub mod engine;
pub mod error;
pub mod guard;
pub mod mask;
pub mod outputs;
pub mod process;
pub mod reaper;
pub mod resources;
pub mod sandbox;
pub mod secrets;
pub mod warm;

pub use bus::{Bus, Recorder, Subscriber};
pub use control::{Command, Commands, Controller};
pub use engine::{EnvPolicy, Options, Summary, TaskSummary, capacity, run};
pub use error::EngineError;
pub use resources::Capacity;
pub use sandbox::Sandbox;
pub use secrets::Secrets;
