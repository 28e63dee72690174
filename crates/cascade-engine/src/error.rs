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
    /// Names the secret, never its value (nor its length, which would narrow it down).
    #[error(
        "secret `{name}` is shorter than {min} characters; a value that short cannot be masked in logs, so it is refused: use a longer one"
    )]
    ShortSecret { name: String, min: usize },
    #[error("cannot read secrets file {path}: {reason}")]
    SecretsFile { path: String, reason: String },
    #[error("cannot prepare the run directory {path}")]
    RunDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "job isolation needs bubblewrap, and `bwrap` is not on PATH: install it (`apt-get install bubblewrap`)"
    )]
    NoBwrap,
    #[error(
        "running jobs as another user needs `setpriv`, which is not on PATH: install util-linux (`apt-get install util-linux`)"
    )]
    NoSetpriv,
    #[error("sandbox.user: no user `{0}` on this machine (expected a user name or a numeric uid)")]
    UnknownUser(String),
}
