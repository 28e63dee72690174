//! Dev-only helpers for the workspace's integration tests and benchmarks: free loopback
//! ports ([`free_port`]), [`git`] with a fixed identity and real brokers ([`Mosquitto`], [`NatsServer`]) started as child
//! processes on such a port, killed (SIGKILL) and restarted on the same port at will, and
//! always killed on drop.
//!
//! Helpers panic with a message saying what went wrong and how to fix it (which binary
//! to install, and how): in a test, the panic is the failure report. Depend on this crate
//! from `[dev-dependencies]` only.

#![expect(
    clippy::disallowed_methods,
    reason = "dev-only: starts git and brokers for tests directly; only the product's own spawns must go through its builders"
)]

mod broker;
mod git;
mod port;

pub use broker::{Mosquitto, NatsServer};
pub use git::git;
pub use port::free_port;
