//! Why a run could not start or the engine failed (job failures are not errors: they are
//! task states), and the reasons the engine itself finds for failing a task (a
//! `for_each` that is not a list, outputs it cannot read), kept as the task's error text.

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

/// A `for_each` value that is not a list, as the task's error names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum NotAList {
    /// The start of a string that is not a JSON array.
    #[error("the text `{0}`")]
    Text(String),
    #[error("nothing")]
    Nothing,
    #[error("`{0}`")]
    Other(serde_json::Value),
}

/// Why a task that exited 0 failed anyway: its declared outputs cannot be read. Texts
/// come from the masked output only.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputsError {
    #[error("invalid $CASCADE_OUTPUT: {detail}")]
    OutputFile { detail: String },
    /// `serde_json`'s message (a position, never the text) is the cause, in the text.
    #[error("output `{name}`: stdout is not valid JSON ({error})")]
    StdoutJson {
        name: String,
        error: serde_json::Error,
    },
}
