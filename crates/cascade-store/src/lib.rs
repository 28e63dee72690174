//! `SQLite` storage: migrations, runs, tasks, logs. Writes go through a group-committing
//! writer thread; reads through [`Reader`].

pub mod db;
pub mod error;
pub mod queue;
pub mod runs;
pub mod writer;

pub use error::StoreError;
pub use queue::{Enqueued, Lease, Queue, Submission};
pub use runs::{DagRow, LogRow, Reader, RunRow, TaskRow};
pub use writer::{RunMeta, Writer};
