//! `cascade serve`: the only crate that wires the libraries together behind HTTP.
//! This part: the DAG API over the durable queue. Workers, webhooks and the
//! orchestrator come next (see ARCHITECTURE.md).

pub mod api;
pub mod error;
pub mod intake;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Submissions larger than this are refused with 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
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
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
    let queue = cascade_store::Queue::open(&db).map_err(store_error)?;
    let reader = cascade_store::Reader::open(&db).map_err(store_error)?;
    let app = Arc::new(api::App {
        intake: intake::Intake::start(queue),
        reader: Mutex::new(reader),
    });
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
    ready(addr);
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}
