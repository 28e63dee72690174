//! The one error type of the API: every failure becomes a status code and a JSON body
//! that names what was wrong; internals never leak to clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (400), with where it broke.
    #[error("the body is not valid JSON at line {line}, column {column}: {message}")]
    BadJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// The JSON is not a valid DAG or pipeline (422), every problem with its position.
    #[error("the submission is not valid")]
    Invalid { errors: Vec<serde_json::Value> },
    /// One field is wrong (422).
    #[error("`{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    /// The same worker is bound to another node (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is not authenticated (401); says what was wrong, never the secret.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The body did not arrive in time (408).
    #[error("the body took longer than {seconds} s to arrive")]
    SlowBody { seconds: u64 },
    /// Authenticated, but the token may not do this (403); says what it would need.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    /// The body is larger than the route takes (413), known from its `Content-Length`
    /// or as it streamed.
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// Too many large bodies are being read at once (503); the client may retry.
    #[error("too many large requests at once; retry later")]
    Busy,
    /// Storage failed; the client may retry (503). The cause is logged, not sent.
    #[error("the queue is unavailable; retry later")]
    Unavailable,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadJson { line, column, .. } => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": self.to_string(), "line": line, "column": column}),
            ),
            ApiError::Invalid { errors } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"error": self.to_string(), "errors": errors}),
            ),
            ApiError::Field { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"error": self.to_string(), "field": field}),
            ),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                serde_json::json!({"error": self.to_string()}),
            ),
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": self.to_string()}),
            ),
            ApiError::SlowBody { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                serde_json::json!({"error": self.to_string()}),
            ),
            ApiError::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                serde_json::json!({"error": self.to_string()}),
            ),
            ApiError::NotFound { .. } => (
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": self.to_string()}),
            ),
            ApiError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"error": self.to_string()}),
            ),
            ApiError::Busy | ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": self.to_string()}),
            ),
        };
        (status, Json(body)).into_response()
    }
}

/// An error and its causes on one line (`a: b: c`), for logs, notes and a run's status
/// where only text travels.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
