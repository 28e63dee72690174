//! `cascade serve`: the HTTP API over the durable queue, and the worker pool.

use crate::output;
use crate::{CliError, CliResult, Outcome};
use anyhow::Context as _;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (off loopback it needs --tls-cert/--tls-key or --behind-proxy)
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS ends in a proxy in front of this server, so plain HTTP may listen off loopback
    #[arg(long)]
    behind_proxy: bool,
    /// Also serve /metrics without a token on this loopback address (for a local
    /// Prometheus agent); on --listen it takes an admin token
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Where the database and worker state live
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Worker processes at most, one per scope (the least recently used idle one is
    /// stopped to make room)
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_workers: usize,
    /// This node's id: DAGs with another `target_node` are not run here [default: the
    /// host name]
    #[arg(long, value_name = "ID", env = "CASCADE_NODE_ID")]
    node_id: Option<String>,
    /// How long a worker's claim on a run holds without renewal; a run whose worker
    /// died is taken over after it
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::worker::parse_duration)]
    lease: Duration,
    /// Admin config for the workers [default: ./cascade.toml if present]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Secrets file for the workers and the server (others come from the environment)
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,
    /// The secret webhooks are signed with; repositories in cascade.toml may name their
    /// own. Without any, the webhook routes are off
    #[arg(
        long,
        value_name = "SECRET",
        env = "CASCADE_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    webhook_secret: Option<String>,
    /// NATS server for the event queue (JetStream); the embedded SQLite queue without it
    #[arg(long, value_name = "URL", env = "CASCADE_NATS_URL")]
    nats_url: Option<String>,
    /// The workers publish every run's events to this broker and obey its control
    /// commands (`mqtt://host:port` or `nats://host:port`)
    #[arg(long, value_name = "URL", value_parser = super::control::broker_url)]
    telemetry: Option<cascade_connect::BrokerUrl>,
    #[command(flatten)]
    log: crate::logging::LogArgs,
}

/// What every worker is started with besides its id and scope: logging, config,
/// secrets and telemetry, as the server has them.
fn worker_args(args: &Args) -> Result<Vec<OsString>, CliError> {
    let mut worker_args: Vec<OsString> = vec![
        "--log-format".into(),
        match args.log.log_format {
            crate::logging::LogFormat::Text => "text",
            crate::logging::LogFormat::Json => "json",
        }
        .into(),
    ];
    for (flag, path) in [
        ("--config", &args.config),
        ("--secrets-file", &args.secrets_file),
    ] {
        if let Some(path) = path {
            let path = std::path::absolute(path)
                .map_err(|e| CliError::usage(format!("cannot resolve {}: {e}", path.display())))?;
            worker_args.push(flag.into());
            worker_args.push(path.into());
        }
    }
    if let Some(url) = &args.telemetry {
        // Checked here, so a bad org or project stops `serve`, not each worker.
        super::control::broker(url).map_err(CliError::usage)?;
        worker_args.push("--telemetry".into());
        worker_args.push(url.to_string().into());
    }
    Ok(worker_args)
}

pub fn run(args: &Args) -> CliResult {
    args.log.init();
    let (config, secrets) =
        super::trigger::load_admin(args.config.as_deref(), args.secrets_file.as_deref())?;
    // Every job runs sandboxed: a server that could not isolate them does not start.
    cascade_server::worker::sandbox(&config).map_err(|e| CliError::caused(Outcome::Failure, &e))?;
    let data_dir = std::path::absolute(&args.data_dir).unwrap_or_else(|_| args.data_dir.clone());
    let repos = cascade_git::clone::Repos::new(data_dir.join("repos"));
    let gitops = cascade_server::gitops::GitOpsOptions {
        config: std::sync::Arc::new(config),
        nats_url: args.nats_url.clone(),
        secrets: std::sync::Arc::new(secrets),
        source: std::sync::Arc::new(cascade_server::source::GitSource {
            repos: repos.clone(),
        }),
        webhook_secret: args.webhook_secret.clone(),
        report_every: Duration::from_millis(300),
        clone_cache: Some(repos),
    };
    let exe = std::env::current_exe().context("cannot find the cascade binary to start workers")?;
    let node_id = args.node_id.clone().or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
    });
    let worker_args = worker_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let result = runtime.block_on(async {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = term => {}
            }
            stop.cancel();
        });
        let options = cascade_server::ServeOptions {
            listen: args.listen,
            data_dir,
            node_id,
            max_workers: args.max_workers,
            lease: args.lease,
            worker_exe: Some(exe),
            worker_args,
            gitops: Some(gitops),
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(cascade_server::transport::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            behind_proxy: args.behind_proxy,
            metrics_listen: args.metrics_listen,
        };
        let scheme = if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        cascade_server::serve(options, shutdown, |addr| {
            output::note(&format!(
                "listening on {scheme}://{addr} (data in {}; admin token in {})",
                args.data_dir.display(),
                args.data_dir
                    .join(cascade_server::auth::ADMIN_TOKEN_FILE)
                    .display()
            ));
        })
        .await
    });
    result.map_err(|e| CliError::caused(Outcome::Failure, &e))?;
    Ok(Outcome::Success)
}
