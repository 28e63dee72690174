//! A long-lived loop's store connection on a thread of its own. The orchestrator, the
//! reporter, cron, the Argo watch and the pool each own one: their SQLite calls block, and
//! a blocking call on an async worker thread stalls every task scheduled there (or, with
//! `block_in_place`, moves them all to another thread on each call). The loop sends a
//! closure; the thread runs it with the store and answers; the thread ends when its
//! [`StoreThread`] is dropped, after the closure it is running.
//!
//! [`blocking`] is the same for one-off work that owns what it needs (a git fetch of the
//! pipeline source): a thread of tokio's blocking pool.

use cascade_store::StoreError;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// A store (or any state a loop's blocking work needs) owned by its own thread.
pub struct StoreThread<S> {
    tx: Option<mpsc::Sender<Job<S>>>,
    thread: Option<JoinHandle<()>>,
}

impl<S> std::fmt::Debug for StoreThread<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreThread").finish_non_exhaustive()
    }
}

impl<S: Send + 'static> StoreThread<S> {
    /// Moves `store` to a new thread called `name`.
    pub fn start(name: &str, mut store: S) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job<S>>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut store);
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` with the store on its thread; `None` if the thread is gone (an earlier
    /// closure panicked).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job<S> = Box::new(move |store| {
            let _ = reply.send(f(store));
        });
        self.tx.as_ref()?.send(job).ok()?;
        answer.await.ok()
    }

    /// [`StoreThread::run`] for store calls: a thread that is gone is
    /// [`StoreError::WriterGone`].
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(f).await.unwrap_or(Err(StoreError::WriterGone))
    }
}

impl<S> Drop for StoreThread<S> {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the closure it runs (a short SQLite
        // call); joining closes the connection before the owner is gone.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `f` on tokio's blocking pool; `None` if it panicked.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn runs_closures_in_order_on_its_own_thread() {
        let thread = StoreThread::start("test-store", Vec::<u32>::new()).unwrap();
        let here = std::thread::current().id();
        let there = thread.run(|_| std::thread::current().id()).await.unwrap();
        assert_ne!(here, there, "the closure ran on the async thread");
        for i in 0..3 {
            thread.run(move |v| v.push(i)).await.unwrap();
        }
        let seen = thread.call(|v| Ok(v.clone())).await.unwrap();
        assert_eq!(seen, [0, 1, 2]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicked_closure_leaves_a_gone_thread() {
        let thread = StoreThread::start("test-store", 0u8).unwrap();
        assert_eq!(thread.run(|_| -> u8 { panic!("boom") }).await, None);
        let gone = thread.call(|n| Ok(*n)).await.unwrap_err();
        assert!(matches!(gone, StoreError::WriterGone), "{gone:?}");
    }
}
