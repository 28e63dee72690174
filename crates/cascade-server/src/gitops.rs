//! Starts the GitOps loop inside `serve`: the inbox (SQLite, or NATS JetStream and its
//! consumer), the orchestrator, the reporter, cron, and the Argo watcher when a
//! repository runs on Argo, each an owned task that stops with `shutdown`.

use crate::cron::Cron;
use crate::inbox::Inbox;
use crate::intake::Intake;
use crate::jetstream::JetStream;
use crate::orchestrator::{Orchestrator, PipelineSource};
use crate::pool::PoolHandle;
use crate::reporter::{ReportError, Reporter, StatusSender};
use crate::store_thread::StoreThread;
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
    /// The server's webhook secret (`--webhook-secret`); repositories may name their own.
    pub webhook_secret: Option<String>,
    /// How often the reporter looks at runs.
    pub report_every: Duration,
    /// The clone cache the source reads through, kept from growing without end
    /// (`[orchestrator] clone_cache_max_age`).
    pub clone_cache: Option<cascade_git::clone::Repos>,
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
    #[error("cannot build the HTTP client for commit statuses and callbacks")]
    Http(#[source] cascade_git::HttpError),
    #[error(
        "the webhook secret is empty; give a non-empty --webhook-secret (or CASCADE_WEBHOOK_SECRET), or none to turn the webhook routes off"
    )]
    EmptyWebhookSecret,
    #[error(
        "repository `{repo}`: its webhook secret `{name}` is not in the secrets file or the environment"
    )]
    MissingRepoSecret { repo: String, name: String },
}

impl GitOpsOptions {
    /// A secret by name: the secrets file first, then the environment.
    fn secret(&self, name: &str) -> Option<String> {
        self.secrets
            .get(name)
            .map(str::to_owned)
            .or_else(|| std::env::var(name).ok())
    }

    /// The webhook secrets, or `None` when no webhook can be verified (the routes are
    /// off). An empty server secret is refused outright.
    pub fn hook_secrets(&self) -> Result<Option<crate::hooks::HookSecrets>, GitOpsError> {
        if self.webhook_secret.as_deref() == Some("") {
            return Err(GitOpsError::EmptyWebhookSecret);
        }
        let mut secrets = crate::hooks::HookSecrets {
            server: self.webhook_secret.clone().map(String::into_bytes),
            repos: std::collections::HashMap::new(),
        };
        for (repo, r) in &self.config.repositories {
            if let Some(name) = &r.webhook_secret {
                let value = self.secret(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                    GitOpsError::MissingRepoSecret {
                        repo: repo.clone(),
                        name: name.clone(),
                    }
                })?;
                secrets.repos.insert(repo.clone(), value.into_bytes());
            }
        }
        Ok(secrets.any().then_some(secrets))
    }

    /// The mask of every secret value the server knows: the secrets file, the
    /// environment values of every name the admin config mentions (`[secrets]`, each
    /// repository's `token_secret` and `webhook_secret`), and the webhook secret.
    /// Definitions and events are masked with it before they are stored.
    pub fn masker(&self) -> cascade_engine::mask::Masker {
        let mut values: Vec<String> = self
            .secrets
            .names()
            .filter_map(|n| self.secrets.get(n).map(str::to_owned))
            .collect();
        let named = self.config.secrets.keys().cloned().chain(
            self.config
                .repositories
                .values()
                .flat_map(|r| [r.token_secret.clone(), r.webhook_secret.clone()])
                .flatten(),
        );
        values.extend(named.filter_map(|name| std::env::var(name).ok()));
        values.extend(self.webhook_secret.clone());
        cascade_engine::mask::Masker::new(values)
    }

    /// Posts commit statuses with `cascade-git`'s reporter: the target from the run's
    /// origin, the token from the secret it names, descriptions masked.
    fn status_sender(&self) -> Result<StatusSender, GitOpsError> {
        let client = cascade_git::HttpClient::new(Duration::from_secs(30))
            .build()
            .map_err(GitOpsError::Http)?;
        let options = self.clone();
        let masker = self.secrets.masker();
        let mask: cascade_git::status::Mask = Arc::new(move |text: &str| masker.mask_str(text));
        Ok(Arc::new(move |post: crate::reporter::StatusPost| {
            let client = client.clone();
            let mask = Arc::clone(&mask);
            let target = status_target(&options, &post.target);
            Box::pin(async move {
                let Some(target) = target? else {
                    return Ok(());
                };
                let reporter = cascade_git::status::Reporter::new(client, target, mask)?;
                let state = match post.state.as_str() {
                    "success" => cascade_git::status::CommitState::Success,
                    "failure" => cascade_git::status::CommitState::Failure,
                    "error" => cascade_git::status::CommitState::Error,
                    _ => cascade_git::status::CommitState::Pending,
                };
                reporter
                    .report(&post.context, state, &post.description)
                    .await
                    .map(|_| ())
                    .map_err(ReportError::Status)
            })
        }))
    }
}

/// Where a run's statuses go, from its origin's target, with the token read from the
/// secret it names; `Ok(None)` when its repository has no status API configured.
fn status_target(
    options: &GitOpsOptions,
    target: &crate::reporter::StatusRoute,
) -> Result<Option<cascade_git::status::StatusTarget>, ReportError> {
    let Some(api) = &target.api_url else {
        return Ok(None);
    };
    let token = match &target.token_secret {
        Some(name) => options
            .secret(name)
            .ok_or_else(|| ReportError::NoToken(name.to_owned()))?,
        None => String::new(),
    };
    Ok(Some(cascade_git::status::StatusTarget {
        forge: target.forge,
        api_base_url: api.clone(),
        repo: target.api_repo().to_owned(),
        sha: target.sha.clone(),
        token,
        target_url: None,
    }))
}

/// Removes clones unused for `max_age` from the cache, at start and then hourly.
async fn evict_clones(
    cache: cascade_git::clone::Repos,
    max_age: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let evicting = cache.clone();
        let evicted = crate::store_thread::blocking(move || evicting.evict(max_age)).await;
        match evicted.unwrap_or(Ok(Vec::new())) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(
                    count = removed.len(),
                    "unused clones removed from the cache"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot evict unused clones"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_hours(1)) => {}
        }
    }
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
    // First, so no event or definition is stored before the mask is in place.
    let masker = options.masker();
    if !masker.is_empty() {
        intake
            .mask_with(cascade_store::Mask::new(move |text| masker.mask_str(text)))
            .await
            .map_err(GitOpsError::Store)?;
    }
    // Each loop's store connection lives on a thread of its own (see `store_thread`).
    let open = |name: &str| {
        Orchestration::open(db)
            .and_then(|store| StoreThread::start(name, store))
            .map_err(GitOpsError::Store)
    };
    let relaxed = |name: &str| {
        Orchestration::open_relaxed(db)
            .and_then(|store| StoreThread::start(name, store))
            .map_err(GitOpsError::Store)
    };
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
                open("cascade-nats-consumer")?,
                max_deliver,
                Arc::clone(&wake),
                shutdown.clone(),
            ));
            Inbox::Nats(Box::new(js))
        }
    };
    let secrets = Arc::clone(&options.secrets);
    let argo = crate::argo::ArgoBackend::new();
    let on_argo = options
        .config
        .repositories
        .values()
        .any(|r| r.backend == cascade_spec::config::Backend::Argo);
    if on_argo {
        let watch = crate::argo::ArgoWatch::new(
            Orchestration::open_relaxed(db).map_err(GitOpsError::Store)?,
            Arc::clone(&argo),
            options.config.argo.namespace.clone(),
        );
        tasks.spawn(watch.run(shutdown.clone()));
    }
    let orchestrator = Orchestrator {
        store: relaxed("cascade-orchestrator")?,
        intake,
        pool,
        config: Arc::clone(&options.config),
        source: Arc::clone(&options.source),
        secret_names: Arc::new(move |name| {
            secrets.get(name).is_some() || std::env::var_os(name).is_some()
        }),
        argo,
    };
    tasks.spawn(orchestrator.run(wake, shutdown.clone()));
    let http = cascade_git::HttpClient::new(Duration::from_secs(10))
        .build()
        .map_err(GitOpsError::Http)?;
    let reporter = Reporter {
        store: relaxed("cascade-reporter")?,
        inbox: inbox.clone(),
        config: Arc::clone(&options.config),
        http,
        statuses: Some(options.status_sender()?),
    };
    tasks.spawn(reporter.run(options.report_every, shutdown.clone()));
    let cron = Cron {
        store: open("cascade-cron")?,
        inbox: inbox.clone(),
        config: Arc::clone(&options.config),
        source: Arc::clone(&options.source),
        refresh: Duration::from_mins(1),
    };
    tasks.spawn(cron.run(shutdown.clone()));
    if let Some(cache) = options.clone_cache.clone() {
        let max_age = options.config.orchestrator.clone_cache_max_age();
        tasks.spawn(evict_clones(cache, max_age, shutdown.clone()));
    }
    Ok(inbox)
}
