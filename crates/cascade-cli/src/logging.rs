//! Logs of the long-running commands (`serve`, `worker run`): `tracing` events on stderr,
//! as text or one JSON object per line; the level from `CASCADE_LOG` (default `info`).

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// `text` or `json` (one object per line) logs on stderr
    #[arg(long, value_enum, default_value_t, env = "CASCADE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the subscriber (once per process).
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("CASCADE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(crate::output::color(crate::output::Stream::Stderr));
        let _ = match self.log_format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
    }
}
