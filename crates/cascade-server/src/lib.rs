//! `cascade serve`: the only crate that wires the libraries together behind HTTP: the
//! DAG API over the durable queue, the worker pool, and the worker processes it starts
//! (`cascade worker run`), and the GitOps loop: webhooks, the event queue, the
//! orchestrator, the status reporter, cron, and the Argo backend (see ARCHITECTURE.md).

pub mod api;
pub mod argo;
pub mod cron;
pub mod dispatch;
pub mod error;
pub mod gitops;
pub mod hooks;
pub mod inbox;
pub mod intake;
pub mod jetstream;
pub mod metrics;
pub mod orchestrator;
pub mod pool;
pub mod reporter;
pub mod source;
pub mod telemetry;
pub mod worker;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Submissions larger than this are refused with 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// This node's id: runs aimed at another node are left to it.
    pub node_id: Option<String>,
    /// Worker processes at most (one per scope).
    pub max_workers: usize,
    /// The lease a worker holds on a run it claimed (renewed every third of it).
    pub lease: Duration,
    /// The `cascade` binary to start workers with; `None` serves the API only.
    pub worker_exe: Option<PathBuf>,
    /// More arguments for each `worker run` (`--config`, `--secrets-file`).
    pub worker_args: Vec<std::ffi::OsString>,
    /// The GitOps loop (dispatch, events, cron; webhooks too when a secret is set);
    /// `None` serves the DAG API only.
    pub gitops: Option<gitops::GitOpsOptions>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store in {path}")]
    Store {
        path: String,
        #[source]
        source: cascade_store::StoreError,
    },
    #[error("cannot start the event loop")]
    GitOps(#[source] gitops::GitOpsError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The router over an app (tests can serve it on any listener).
pub fn router(app: Arc<api::App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/dag/execute", post(api::execute))
        .route("/api/v1/dags", get(api::dags))
        .route("/api/v1/dags/{dag_id}", get(api::dag))
        .route("/api/v1/runs/{run_id}", get(api::run))
        .route("/api/v1/runs/{run_id}/logs", get(api::run_logs))
        .route("/api/v1/runs/{run_id}/cancel", post(api::cancel))
        .route("/api/v1/workers", get(api::workers))
        .route("/api/v1/workers/{worker_id}", get(api::worker))
        .route("/api/v1/dispatch", post(dispatch::dispatch))
        .route("/api/v1/events", get(dispatch::events))
        .route(
            "/hooks/{forge}",
            post(hooks::hook).layer(DefaultBodyLimit::max(hooks::MAX_HOOK_BYTES)),
        )
        .route("/metrics", get(metrics::render))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(metrics::trace_layer())
        .with_state(app)
}

/// Opens the store and serves until `shutdown` is cancelled. `ready` gets the bound
/// address (useful with port 0).
pub async fn serve(
    options: ServeOptions,
    shutdown: tokio_util::sync::CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let db = options.data_dir.join("cascade.db");
    let store_error = |source| ServeError::Store {
        path: db.display().to_string(),
        source,
    };
    let queue = cascade_store::Queue::open_writer(&db).map_err(store_error)?;
    let reader = cascade_store::Reader::open(&db).map_err(store_error)?;
    // Bound first: the workers' jobs are told where the server is (`cascade dispatch`).
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: options.listen,
        source,
    })?;
    let mut pool_task = None;
    let pool = match &options.worker_exe {
        Some(exe) => {
            let pool_queue = cascade_store::Queue::open(&db).map_err(store_error)?;
            let (handle, task) = pool::start(
                pool::PoolOptions {
                    exe: exe.clone(),
                    data_dir: options.data_dir.clone(),
                    node_id: options.node_id.clone(),
                    max_workers: options.max_workers,
                    lease: options.lease,
                    tick: Duration::from_millis(250),
                    worker_args: options.worker_args.clone(),
                    server_url: format!("http://{addr}"),
                },
                pool_queue,
                shutdown.clone(),
            );
            pool_task = Some(task);
            Some(handle)
        }
        None => None,
    };
    let hook_secrets = match &options.gitops {
        Some(g) => g.hook_secrets().map_err(ServeError::GitOps)?,
        None => None,
    };
    if options.gitops.is_some() && hook_secrets.is_none() {
        tracing::warn!("webhook routes are off: no --webhook-secret and no repository names one");
    }
    let intake = intake::Intake::start(queue);
    let mut tasks = tokio::task::JoinSet::new();
    let inbox = match &options.gitops {
        Some(g) => Some(
            gitops::start(
                &db,
                intake.clone(),
                pool.clone(),
                g.clone(),
                &shutdown,
                &mut tasks,
            )
            .await
            .map_err(ServeError::GitOps)?,
        ),
        None => None,
    };
    let app = Arc::new(api::App {
        intake,
        reader: Mutex::new(reader),
        pool,
        inbox,
        hook_secrets,
    });
    ready(addr);
    let stop = shutdown.clone();
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|source| ServeError::Listen { addr, source });
    // The pool stops its workers (they hand unfinished runs back to the queue).
    shutdown.cancel();
    if let Some(task) = pool_task {
        let _ = task.await;
    }
    while tasks.join_next().await.is_some() {}
    served
}
