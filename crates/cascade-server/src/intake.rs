//! The queue writer: one thread owns the queue's connection and commits every submission
//! waiting at that moment in one transaction (group commit), then answers each. A
//! submission is answered only after its commit, so a 202 means it is on disk. Cancel
//! requests go through the same thread (one writer of the queue per process).
//!
//! Once the server's mask of known secrets is set ([`Intake::mask_with`]), every
//! definition and event payload the thread writes is masked first (the store's
//! [`Queue::mask_with`]); the mask is also kept here for events that go to NATS instead.

use cascade_store::{Cancelled, Enqueued, Mask, NewEvent, Queue, Recorded, StoreError, Submission};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Request {
    Submit(Submission, Reply<Enqueued>),
    Cancel(String, Reply<Cancelled>),
    Event(Box<NewEvent>, Reply<Recorded>),
    Body(String, Vec<u8>, Reply<()>),
    Mask(Mask, Reply<()>),
}

/// Hands submissions to the writer thread.
#[derive(Debug, Clone)]
pub struct Intake {
    tx: mpsc::Sender<Request>,
    /// The mask set by [`Intake::mask_with`], shared by every clone.
    mask: Arc<OnceLock<Mask>>,
}

/// Submissions gathered into one transaction at most.
const MAX_BATCH: usize = 1024;

impl Intake {
    /// Starts the writer thread over an open queue.
    pub fn start(mut queue: Queue) -> Self {
        let (tx, mut rx) = mpsc::channel::<Request>(8192);
        std::thread::Builder::new()
            .name("cascade-intake".to_owned())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let mut submissions = Vec::new();
                    let mut replies = Vec::new();
                    let mut events = Vec::new();
                    let mut event_replies = Vec::new();
                    for request in batch {
                        match request {
                            Request::Submit(s, reply) => {
                                submissions.push(s);
                                replies.push(reply);
                            }
                            Request::Cancel(run_id, reply) => {
                                let _ = reply.send(queue.cancel(&run_id));
                            }
                            Request::Body(id, body, reply) => {
                                let _ = reply.send(queue.put_body(&id, &body));
                            }
                            Request::Mask(mask, reply) => {
                                queue.mask_with(mask);
                                let _ = reply.send(Ok(()));
                            }
                            Request::Event(event, reply) => {
                                events.push(*event);
                                event_replies.push(reply);
                            }
                        }
                    }
                    if !events.is_empty() {
                        match queue.record_events(&events) {
                            Ok(recorded) => {
                                for (reply, r) in event_replies.into_iter().zip(recorded) {
                                    let _ = reply.send(Ok(r));
                                }
                            }
                            Err(e) => {
                                let e = std::sync::Arc::new(e);
                                for reply in event_replies {
                                    let _ = reply
                                        .send(Err(StoreError::Shared(std::sync::Arc::clone(&e))));
                                }
                            }
                        }
                    }
                    if submissions.is_empty() {
                        continue;
                    }
                    for (reply, result) in replies.into_iter().zip(queue.submit_batch(&submissions))
                    {
                        let _ = reply.send(result);
                    }
                }
            })
            .ok();
        Self {
            tx,
            mask: Arc::new(OnceLock::new()),
        }
    }

    /// Masks every definition and event payload written from now on with `mask`;
    /// resolves once the writer has it, so nothing sent after this is written unmasked.
    /// The first mask set stays.
    pub async fn mask_with(&self, mask: Mask) -> Result<(), StoreError> {
        if self.mask.set(mask.clone()).is_err() {
            return Ok(());
        }
        self.ask(|reply| Request::Mask(mask, reply)).await
    }

    /// `event` as it may leave the process (to NATS): its payload masked.
    pub fn masked(&self, event: &NewEvent) -> NewEvent {
        match self.mask.get() {
            Some(mask) => NewEvent {
                payload: mask.json(&event.payload),
                ..event.clone()
            },
            None => event.clone(),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues one submission; resolves after its commit.
    pub async fn submit(&self, submission: Submission) -> Result<Enqueued, StoreError> {
        self.ask(|reply| Request::Submit(submission, reply)).await
    }

    /// Stores an event (group-committed with whatever else waits); resolves after the
    /// commit, telling whether the delivery was new.
    pub async fn record(&self, event: NewEvent) -> Result<Recorded, StoreError> {
        self.ask(|reply| Request::Event(Box::new(event), reply))
            .await
    }

    /// Stores an event body for a claim check; resolves after the commit.
    pub async fn put_body(&self, id: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.ask(|reply| Request::Body(id, body, reply)).await
    }

    /// Cancels a run (see [`Queue::cancel`]); resolves after its commit.
    pub async fn cancel(&self, run_id: &str) -> Result<Cancelled, StoreError> {
        let run_id = run_id.to_owned();
        self.ask(|reply| Request::Cancel(run_id, reply)).await
    }
}
