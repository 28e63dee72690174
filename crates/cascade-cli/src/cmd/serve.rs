//! `cascade serve`: the HTTP API over the durable queue.

use crate::Outcome;
use crate::output;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the database and worker state live
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let result = runtime.block_on(async {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
        let options = cascade_server::ServeOptions {
            listen: args.listen,
            data_dir: args.data_dir.clone(),
        };
        cascade_server::serve(options, shutdown, |addr| {
            output::note(&format!(
                "listening on http://{addr} (data in {})",
                args.data_dir.display()
            ));
        })
        .await
    });
    match result {
        Ok(()) => Ok(Outcome::Success),
        Err(e) => {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            output::error(&format!("{e}{cause}"));
            Ok(Outcome::Failure)
        }
    }
}
