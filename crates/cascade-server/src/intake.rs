//! The queue writer: one thread owns the queue's connection and commits every submission
//! waiting at that moment in one transaction (group commit), then answers each. A
//! submission is answered only after its commit, so a 202 means it is on disk.

use cascade_store::{Enqueued, Queue, StoreError, Submission};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Enqueued, StoreError>>;

/// Hands submissions to the writer thread.
#[derive(Debug, Clone)]
pub struct Intake {
    tx: mpsc::Sender<(Submission, Reply)>,
}

/// Submissions gathered into one transaction at most.
const MAX_BATCH: usize = 1024;

impl Intake {
    /// Starts the writer thread over an open queue.
    pub fn start(mut queue: Queue) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Submission, Reply)>(8192);
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
                    let (submissions, replies): (Vec<Submission>, Vec<Reply>) =
                        batch.into_iter().unzip();
                    for (reply, result) in replies.into_iter().zip(queue.submit_batch(&submissions))
                    {
                        let _ = reply.send(result);
                    }
                }
            })
            .ok();
        Self { tx }
    }

    /// Queues one submission; resolves after its commit.
    pub async fn submit(&self, submission: Submission) -> Result<Enqueued, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((submission, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}
