//! `cascade serve`: the only crate that wires the libraries together behind HTTP: the
//! DAG API over the durable queue, the worker pool, and the worker processes it starts
//! (`cascade worker run`), and the GitOps loop: webhooks, the event queue, the
//! orchestrator, the status reporter, cron, and the Argo backend (see ARCHITECTURE.md).

pub mod api;
pub mod argo;
pub mod auth;
pub mod body;
pub mod cron;
pub mod dispatch;
pub mod error;
pub mod gitops;
pub mod hooks;
pub mod inbox;
pub mod incoming;
pub mod intake;
pub mod jetstream;
pub mod metrics;
pub mod orchestrator;
pub mod pool;
pub mod reporter;
pub mod source;
pub mod store_thread;
pub mod telemetry;
pub mod tokens;
pub mod transport;
pub mod worker;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
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
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<transport::TlsFiles>,
    /// TLS ends in a proxy in front of this server: plain HTTP may listen off loopback.
    pub behind_proxy: bool,
    /// A second, loopback-only listener serving `/metrics` without a token.
    pub metrics_listen: Option<SocketAddr>,
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
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("cannot write the admin token")]
    AdminToken(#[source] auth::AdminTokenError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The router over an app (tests can serve it on any listener). Every route but
/// `/healthz` and the signed `/hooks/*` needs a bearer token (`auth.rs`).
pub fn router(app: Arc<api::App>) -> Router {
    let authenticated = Router::new()
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
            "/api/v1/tokens",
            post(tokens::create_token).get(tokens::list_tokens),
        )
        .route("/api/v1/tokens/{id}", delete(tokens::revoke_token))
        .route("/metrics", get(metrics::render_for))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app.auth),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/hooks/{forge}",
            post(hooks::hook).layer(DefaultBodyLimit::max(hooks::MAX_HOOK_BYTES)),
        )
        .merge(authenticated)
        .layer(axum::middleware::from_fn(body::refuse_oversized))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(metrics::trace_layer())
        .with_state(app)
}

/// What makes the server safe to reach before anything listens: the listen address
/// checked, TLS loaded, the admin token and the job-token key written, the token table.
fn secure(
    options: &ServeOptions,
) -> Result<(Option<tokio_rustls::TlsAcceptor>, Arc<auth::Auth>), ServeError> {
    transport::check_listen(options.listen, options.tls.as_ref(), options.behind_proxy)?;
    if let Some(addr) = options.metrics_listen
        && !addr.ip().is_loopback()
    {
        return Err(transport::TransportError::MetricsNotLoopback { addr }.into());
    }
    let acceptor = options.tls.as_ref().map(transport::acceptor).transpose()?;
    if let Some(path) =
        auth::ensure_admin_token(&options.data_dir).map_err(ServeError::AdminToken)?
    {
        tracing::info!(path = %path.display(), "wrote the admin token");
    }
    let job_key =
        auth::JobKey::load_or_create(&options.data_dir).map_err(ServeError::AdminToken)?;
    let db = options.data_dir.join("cascade.db");
    let auth = auth::Auth::open(&db, Some(job_key)).map_err(|source| ServeError::Store {
        path: db.display().to_string(),
        source,
    })?;
    Ok((acceptor, Arc::new(auth)))
}

/// The API on its listener, over TLS when there is an acceptor, until `shutdown`.
async fn serve_api(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Arc<api::App>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    match acceptor {
        Some(acceptor) => {
            let tls = transport::TlsListener::start(listener, acceptor, shutdown.clone())
                .map_err(|source| ServeError::Listen { addr, source })?;
            transport::serve_http(tls, router(app), shutdown.clone()).await;
        }
        None => transport::serve_http(listener, router(app), shutdown.clone()).await,
    }
    Ok(())
}

/// `/metrics` without a token on a loopback listener of its own, until `shutdown`.
async fn serve_metrics(
    addr: SocketAddr,
    app: &Arc<api::App>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let router = Router::new()
        .route("/metrics", get(metrics::render))
        .with_state(Arc::clone(app));
    tasks.spawn(transport::serve_http(listener, router, shutdown.clone()));
    Ok(())
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
    let (acceptor, auth) = secure(&options)?;
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
            let pool_queue = cascade_store::Queue::open(&db)
                .and_then(|queue| store_thread::StoreThread::start("cascade-pool", queue))
                .map_err(store_error)?;
            let (handle, task) = pool::start(
                pool::PoolOptions {
                    exe: exe.clone(),
                    data_dir: options.data_dir.clone(),
                    node_id: options.node_id.clone(),
                    max_workers: options.max_workers,
                    lease: options.lease,
                    tick: Duration::from_millis(250),
                    worker_args: options.worker_args.clone(),
                    server_url: format!(
                        "{}://{addr}",
                        if acceptor.is_some() { "https" } else { "http" }
                    ),
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
        auth,
        repositories: Arc::new(
            options
                .gitops
                .as_ref()
                .map(|g| g.config.repositories.clone())
                .unwrap_or_default(),
        ),
    });
    if let Some(metrics_addr) = options.metrics_listen {
        serve_metrics(metrics_addr, &app, &shutdown, &mut tasks).await?;
    }
    ready(addr);
    let served = serve_api(listener, acceptor, app, &shutdown).await;
    // The pool stops its workers (they hand unfinished runs back to the queue).
    shutdown.cancel();
    if let Some(task) = pool_task {
        let _ = task.await;
    }
    while tasks.join_next().await.is_some() {}
    served
}
