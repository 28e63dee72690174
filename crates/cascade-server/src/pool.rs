//! The worker pool of `serve`: one `cascade worker run` process per scope with work,
//! started on demand, reused while it lives, capped at `max_workers` (the least recently
//! used idle worker is stopped to make room), and reaped when it exits.
//!
//! The pool is a small reconciler: it is told of new submissions (`notify`), and every
//! `tick` it compares the queue (which workers have runs waiting) with the processes it
//! has, starting what is missing. So runs queued while `serve` was down, runs given back
//! by a stopped worker, and runs whose worker died (their lease runs out) all get a
//! worker without any special path.

use crate::store_thread::StoreThread;
use cascade_store::Queue;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// How the pool starts workers.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// The `cascade` binary (`worker run` is one of its commands).
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub node_id: Option<String>,
    pub max_workers: usize,
    pub lease: Duration,
    /// How often the queue is compared with the running workers.
    pub tick: Duration,
    /// More arguments for `worker run` (`--config`, `--secrets-file`, …).
    pub worker_args: Vec<OsString>,
    /// This server, for jobs that talk back (`cascade dispatch`): `CASCADE_SERVER`.
    pub server_url: String,
}

/// What a submission tells the pool.
#[derive(Debug, Clone)]
struct Wanted {
    worker_id: String,
    scope: String,
}

/// Hands notifications to the pool's task; never blocks a request.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    tx: mpsc::Sender<Wanted>,
    workers: Arc<std::sync::Mutex<HashMap<String, WorkerInfo>>>,
}

/// What the pool knows of a live worker process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerInfo {
    pub worker_id: String,
    pub scope: String,
    pub pid: u32,
}

impl PoolHandle {
    /// Work was queued for this worker: start it, or wake it.
    pub fn notify(&self, worker_id: &str, scope: &str) {
        // A full channel is fine: the next tick finds the work in the queue.
        let _ = self.tx.try_send(Wanted {
            worker_id: worker_id.to_owned(),
            scope: scope.to_owned(),
        });
    }

    /// Wakes a running worker (a cancel request for one of its runs); starts none.
    pub fn wake(&self, worker_id: &str) {
        self.notify(worker_id, "");
    }

    /// The live worker processes.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        let mut list: Vec<WorkerInfo> = self
            .workers
            .lock()
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default();
        list.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        list
    }
}

struct Slot {
    pid: u32,
    scope: String,
    last_used: Instant,
    wake: Arc<Notify>,
    /// Cancelling it closes the worker's stdin: the worker stops.
    stop: CancellationToken,
}

struct Pool {
    options: PoolOptions,
    queue: StoreThread<Queue>,
    slots: HashMap<String, Slot>,
    exited: mpsc::Sender<(String, u32)>,
    public: Arc<std::sync::Mutex<HashMap<String, WorkerInfo>>>,
}

/// Starts the pool's task; it stops its workers and ends when `shutdown` is cancelled.
pub fn start(
    options: PoolOptions,
    queue: StoreThread<Queue>,
    shutdown: CancellationToken,
) -> (PoolHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4096);
    let (exited_tx, exited_rx) = mpsc::channel(256);
    let public = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let pool = Pool {
        options,
        queue,
        slots: HashMap::new(),
        exited: exited_tx,
        public: Arc::clone(&public),
    };
    let task = tokio::spawn(pool.run(rx, exited_rx, shutdown));
    (
        PoolHandle {
            tx,
            workers: public,
        },
        task,
    )
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Pool {
    async fn run(
        mut self,
        mut wanted: mpsc::Receiver<Wanted>,
        mut exited: mpsc::Receiver<(String, u32)>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.options.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(w) = wanted.recv() => self.ensure(&w.worker_id, &w.scope).await,
                Some((id, pid)) = exited.recv() => {
                    if self.slots.get(&id).is_some_and(|s| s.pid == pid) {
                        self.slots.remove(&id);
                        self.publish();
                    }
                    self.reconcile().await;
                }
                _ = tick.tick() => self.reconcile().await,
            }
        }
        for slot in self.slots.values() {
            slot.stop.cancel();
        }
        // Give the workers a moment to hand their runs back, then make sure.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.slots.is_empty() && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), exited.recv()).await {
                Ok(Some((id, pid))) => {
                    if self.slots.get(&id).is_some_and(|s| s.pid == pid) {
                        self.slots.remove(&id);
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        for slot in self.slots.values() {
            kill(slot.pid);
        }
        self.slots.clear();
        self.publish();
    }

    /// Starts a worker for every scope with waiting runs that has none.
    async fn reconcile(&mut self) {
        let node = self.options.node_id.clone();
        let waiting = match self
            .queue
            .call(move |q| q.waiting(node.as_deref(), now_ms()))
            .await
        {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the queue");
                return;
            }
        };
        for w in waiting {
            if !self.slots.contains_key(&w.worker_id) {
                self.ensure(&w.worker_id, &w.scope).await;
            }
        }
    }

    async fn ensure(&mut self, worker_id: &str, scope: &str) {
        if let Some(slot) = self.slots.get_mut(worker_id) {
            slot.last_used = Instant::now();
            slot.wake.notify_one();
            return;
        }
        if scope.is_empty() {
            return;
        }
        if self.slots.len() >= self.options.max_workers.max(1) && !self.make_room().await {
            // Every worker is busy: the run waits in the queue for the next tick.
            return;
        }
        match self.spawn(worker_id, scope) {
            Ok(slot) => {
                self.slots.insert(worker_id.to_owned(), slot);
                self.publish();
            }
            Err(e) => tracing::warn!(worker = worker_id, error = %e, "cannot start worker"),
        }
    }

    /// Stops the least recently used worker with nothing queued or running.
    async fn make_room(&mut self) -> bool {
        let Ok(depth) = self.queue.call(|q| q.depth()).await else {
            return false;
        };
        let busy: HashMap<String, i64> = depth.into_iter().collect();
        let idle = self
            .slots
            .iter()
            .filter(|(id, _)| busy.get(id.as_str()).copied().unwrap_or(0) == 0)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, _)| id.clone());
        let Some(id) = idle else {
            return false;
        };
        if let Some(slot) = self.slots.remove(&id) {
            tracing::info!(worker = id, "stopping the least recently used idle worker");
            slot.stop.cancel();
        }
        self.publish();
        true
    }

    fn spawn(&self, worker_id: &str, scope: &str) -> std::io::Result<Slot> {
        let mut command = cascade_engine::process::new_command(&self.options.exe);
        command
            .arg("worker")
            .arg("run")
            .arg("--id")
            .arg(worker_id)
            .arg("--scope")
            .arg(scope)
            .arg("--data-dir")
            .arg(&self.options.data_dir)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .arg("--lease")
            .arg(cascade_spec::duration::format(self.options.lease))
            .args(&self.options.worker_args)
            .env("CASCADE_SERVER", &self.options.server_url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        if let Some(node) = &self.options.node_id {
            command.arg("--node-id").arg(node);
        }
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or(0);
        let mut stdin = child.stdin.take();
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (waker, stopper) = (Arc::clone(&wake), stop.clone());
        // Owns the pipe: a wake-up is one byte; dropping the pipe stops the worker.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopper.cancelled() => break,
                    () = waker.notified() => {
                        let Some(pipe) = stdin.as_mut() else { break };
                        if pipe.write_all(b"\n").await.is_err() {
                            break;
                        }
                    }
                }
            }
            drop(stdin);
        });
        let exited = self.exited.clone();
        let id = worker_id.to_owned();
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::info!(worker = id, pid, ?status, "worker exited");
            let _ = exited.send((id, pid)).await;
        });
        tracing::info!(worker = worker_id, scope, pid, "worker started");
        Ok(Slot {
            pid,
            scope: scope.to_owned(),
            last_used: Instant::now(),
            wake,
            stop,
        })
    }

    fn publish(&self) {
        if let Ok(mut public) = self.public.lock() {
            public.clear();
            for (id, slot) in &self.slots {
                public.insert(
                    id.clone(),
                    WorkerInfo {
                        worker_id: id.clone(),
                        scope: slot.scope.clone(),
                        pid: slot.pid,
                    },
                );
            }
        }
    }
}

fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
