//! Why a run could not start or the engine failed (job failures are not errors: they are
//! task states).

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "job `{job}` asks for runner `{runner}`, which the admin config does not define (known runners: {known})"
    )]
    UnknownRunner {
        job: String,
        runner: String,
        known: String,
    },
    #[error(
        "secrets not set: {names}; export them or put them in a --secrets-file (NAME=value lines)"
    )]
    MissingSecrets { names: String },
    #[error("cannot read secrets file {path}: {reason}")]
    SecretsFile { path: String, reason: String },
    #[error("cannot prepare the run directory {path}")]
    RunDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
