//! Starts the GitOps loop inside `serve`: the inbox (SQLite, or NATS JetStream and its
//! consumer), the orchestrator, the reporter and cron, each an owned task that stops
//! with `shutdown`.

use crate::cron::Cron;
use crate::inbox::Inbox;
use crate::intake::Intake;
use crate::jetstream::JetStream;
use crate::orchestrator::{Orchestrator, PipelineSource};
use crate::pool::PoolHandle;
use crate::reporter::{Reporter, StatusSender};
use cascade_engine::Secrets;
use cascade_spec::config::AdminConfig;
use cascade_store::{Orchestration, Reader};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the loop needs beyond the store.
#[derive(Clone)]
pub struct GitOpsOptions {
    pub config: Arc<AdminConfig>,
    /// NATS JetStream as the event queue; the embedded SQLite queue when `None`.
    pub nats_url: Option<String>,
    /// Secrets the server knows (file); names not in it are looked up in the environment.
    pub secrets: Arc<Secrets>,
    pub source: Arc<dyn PipelineSource>,
    /// Posts commit statuses; `None` reports none.
    pub statuses: Option<StatusSender>,
    /// How often the reporter looks at runs.
    pub report_every: Duration,
}

impl std::fmt::Debug for GitOpsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitOpsOptions")
            .field("nats_url", &self.nats_url)
            .finish_non_exhaustive()
    }
}

/// Why the loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    #[error("cannot open the event store")]
    Store(#[source] cascade_store::StoreError),
    #[error(transparent)]
    Nats(#[from] crate::jetstream::JetStreamError),
    #[error("cannot build the HTTP client for callbacks: {0}")]
    Http(String),
}

/// Starts every task of the loop; returns the inbox the routes accept events into.
pub async fn start(
    db: &Path,
    intake: Intake,
    pool: Option<PoolHandle>,
    options: GitOpsOptions,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Inbox, GitOpsError> {
    let open = || Orchestration::open(db).map_err(GitOpsError::Store);
    let wake = Arc::new(tokio::sync::Notify::new());
    let inbox = match &options.nats_url {
        None => Inbox::Local {
            intake: intake.clone(),
            wake: Arc::clone(&wake),
        },
        Some(url) => {
            let reader = Reader::open(db).map_err(GitOpsError::Store)?;
            let js = JetStream::connect(url, intake.clone(), reader).await?;
            let max_deliver = i64::from(options.config.orchestrator.max_deliver.max(1));
            tasks.spawn(js.clone().consume(
                open()?,
                max_deliver,
                Arc::clone(&wake),
                shutdown.clone(),
            ));
            Inbox::Nats(Box::new(js))
        }
    };
    let secrets = Arc::clone(&options.secrets);
    let orchestrator = Orchestrator {
        store: open()?,
        intake,
        pool,
        config: Arc::clone(&options.config),
        source: Arc::clone(&options.source),
        secret_names: Arc::new(move |name| {
            secrets.get(name).is_some() || std::env::var_os(name).is_some()
        }),
    };
    tasks.spawn(orchestrator.run(wake, shutdown.clone()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| GitOpsError::Http(e.to_string()))?;
    let reporter = Reporter {
        store: open()?,
        inbox: inbox.clone(),
        config: Arc::clone(&options.config),
        http,
        statuses: options.statuses.clone(),
    };
    tasks.spawn(reporter.run(options.report_every, shutdown.clone()));
    let cron = Cron {
        store: open()?,
        inbox: inbox.clone(),
        config: Arc::clone(&options.config),
        source: Arc::clone(&options.source),
        refresh: Duration::from_mins(1),
    };
    tasks.spawn(cron.run(shutdown.clone()));
    Ok(inbox)
}
