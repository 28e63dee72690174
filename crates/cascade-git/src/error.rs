//! The errors of this crate, one enum per concern: change detection, webhook signatures,
//! delivery parsing, `on:` matching, the clone cache, commit statuses, and HTTP clients.
//!
//! Messages never carry a secret, a token or a signature value: they name the header or
//! field and say what was expected and what was found (a length, a type, a status code).

use crate::forge::Forge;

/// Building an HTTP client ([`crate::http::HttpClient`]).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
}

pub use cascade_spec::config::UnknownForge;

/// `git diff` for change detection (`cascade changed`).
#[derive(Debug, thiserror::Error)]
pub enum ChangedError {
    #[error("cannot run git; is it installed?")]
    Spawn(#[source] std::io::Error),
    #[error("git diff {range} failed: {stderr}")]
    Git { range: String, stderr: String },
    #[error("invalid package pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
}

/// Why a webhook delivery was not authenticated (the gateway answers 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no webhook secret is configured for {forge}; every delivery is refused")]
    NoSecret { forge: Forge },
    #[error("missing header `{header}`")]
    MissingHeader { header: &'static str },
    #[error("header `{header}` must start with `{prefix}`")]
    MissingPrefix {
        header: &'static str,
        prefix: &'static str,
    },
    #[error("header `{header}` must hold {expected} hex digits, found {found} characters")]
    BadLength {
        header: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("header `{header}` must hold hex digits only")]
    NotHex { header: &'static str },
    #[error("the signature in header `{header}` does not match the body")]
    Mismatch { header: &'static str },
    #[error("the token in header `{header}` does not match the configured secret")]
    TokenMismatch { header: &'static str },
}

/// Why a delivery could not be read (after its signature was checked).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the delivery looks like {found} (by its headers), but arrived on the {expected} hook")]
    ForgeMismatch { expected: Forge, found: Forge },
    #[error("missing header `{header}`")]
    MissingHeader { header: &'static str },
    #[error(
        "header `{header}` must be 1 to {max} printable ASCII characters, found {found} characters"
    )]
    BadDeliveryId {
        header: &'static str,
        max: usize,
        found: usize,
    },
    #[error("the body is {found} bytes, more than the {max} bytes accepted")]
    TooLarge { found: usize, max: usize },
    #[error("the {forge} `{event}` body is not the JSON expected")]
    Json {
        forge: Forge,
        event: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {forge} `{event}` body is not a JSON object")]
    NotAnObject { forge: Forge, event: String },
    #[error("the {forge} `{event}` body has no `{field}`")]
    MissingField {
        forge: Forge,
        event: String,
        field: &'static str,
    },
}

/// A delivery refused at the gateway: unauthenticated (401) or unreadable (400).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// A pattern of the pipeline's `on:` that globset cannot compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern `{glob}` in `{field}`: {reason}")]
pub struct FilterError {
    pub field: &'static str,
    pub glob: String,
    pub reason: String,
}

/// The clone cache and the git commands behind it.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("cannot run git; is it installed?")]
    Spawn(#[source] std::io::Error),
    #[error("git {command} failed ({status}): {stderr}")]
    Git {
        command: &'static str,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("refusing {what} `{value}`: {reason}")]
    Refused {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("commit {sha} is not in {url}, even after fetching every branch, tag and pull request")]
    ShaNotFound { url: String, sha: String },
    #[error("cannot list the changed paths")]
    Diff(#[source] ChangedError),
    #[error("`{rev}` does not name a commit in the cache")]
    UnknownRev { rev: String },
    #[error("`{path}` at {rev} is {size} bytes, more than the {max} bytes allowed")]
    FileTooLarge {
        rev: String,
        path: String,
        size: u64,
        max: u64,
    },
    #[error("cannot use the cache directory {path}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git printed {what} that is not {expected}")]
    Output {
        what: &'static str,
        expected: &'static str,
    },
}

/// Posting a commit status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Client(#[from] HttpError),
    #[error("invalid API base URL `{url}`: {reason}")]
    BadBaseUrl { url: String, reason: String },
    #[error("invalid {what} `{value}`: {reason}")]
    BadTarget {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("the status request to {url} failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{forge} answered {status} to the status request ({attempts} attempt(s)): {body}")]
    Rejected {
        forge: Forge,
        status: u16,
        attempts: u32,
        body: String,
    },
}
