//! The event queue between the webhook gateway (and dispatches, and cron) and the
//! orchestrator: embedded SQLite by default, NATS JetStream with `--nats-url`.
//!
//! What is queued is an [`Incoming`](crate::incoming::Incoming) as its
//! [`stored`](crate::incoming::Incoming::stored) row: the event itself as the payload.
//!
//! Either way an event is acknowledged to its sender only once it is durable: committed
//! to SQLite, or acknowledged by JetStream (which keeps it until the orchestrator has
//! stored it and acked). Every event ends in the SQLite `events` table, where a delivery
//! id is recognised however long ago it was first seen (NATS's own de-duplication
//! window is two minutes).

use crate::intake::Intake;
use crate::jetstream::JetStream;
use cascade_store::{NewEvent, Recorded};
use std::sync::Arc;

/// Why an event could not be accepted; the sender should retry later (5xx).
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("the event queue is unavailable")]
    Store(#[source] cascade_store::StoreError),
    #[error("the NATS event stream is unavailable")]
    Nats(#[source] crate::jetstream::JetStreamError),
}

/// What accepting an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Queued,
    /// Seen before: nothing new was queued.
    Duplicate,
}

/// Where accepted events go.
#[derive(Debug, Clone)]
pub enum Inbox {
    /// Straight into SQLite; the orchestrator is woken.
    Local {
        intake: Intake,
        wake: Arc<tokio::sync::Notify>,
    },
    /// Into the `CASCADE_EVENTS` stream.
    Nats(Box<JetStream>),
}

impl Inbox {
    pub async fn accept(&self, event: NewEvent) -> Result<Accepted, InboxError> {
        match self {
            Inbox::Local { intake, wake } => {
                let recorded = intake.record(event).await.map_err(InboxError::Store)?;
                wake.notify_one();
                Ok(match recorded {
                    Recorded::New(_) => Accepted::Queued,
                    Recorded::Duplicate(_) => Accepted::Duplicate,
                })
            }
            Inbox::Nats(js) => js.publish(&event).await.map_err(InboxError::Nats),
        }
    }
}
