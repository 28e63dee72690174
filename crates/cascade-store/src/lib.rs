//! `SQLite` storage: migrations, runs, tasks, logs. Writes go through a group-committing
//! writer thread; reads through [`Reader`].

pub mod checkpoint;
pub mod db;
pub mod error;
pub mod events;
pub mod external;
pub mod ledger;
pub mod mask;
pub mod queue;
pub mod runs;
pub mod status;
pub mod tokens;
pub mod writer;

pub use checkpoint::Checkpointer;
pub use error::StoreError;
pub use events::{EventRow, EventStatus, NewEvent, Orchestration, Origin, OriginState, Recorded};
pub use external::{ExternalRun, ExternalTask, RunPlace};
pub use ledger::{Ledger, LedgerConfig, Signal};
pub use mask::Mask;
pub use queue::{Cancelled, Claimed, Enqueued, Lease, Queue, Submission, Waiting};
pub use runs::{Counts, DagFilter, DagRow, LogRow, Reader, RunRow, TaskRow, WorkerRow};
pub use tokens::{Issued, Refusal, Role, TokenRow, Tokens};
pub use writer::{RunMeta, Writer};
