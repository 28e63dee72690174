//! The webhook gateway: `POST /hooks/github`, `/hooks/gitea`, `/hooks/gitlab`.
//!
//! Order matters: the signature (GitHub's `X-Hub-Signature-256`, Gitea's
//! `X-Gitea-Signature`, GitLab's `X-Gitlab-Token`, all compared in constant time) is
//! checked on the raw body before anything parses it; a missing or wrong one is `401`
//! and nothing is queued. A request without the forge's signature (or token) header at
//! all is refused before its body is read, and so is one whose `Content-Length` is over
//! 25 MiB (`413`); other bodies are read in bounded memory (`body.rs`: a running cap,
//! at most [`crate::body::MAX_LARGE_BODIES`] large ones at a time, `503` past a wait). The answer is `202` only once the event is durable (committed to SQLite, or
//! acknowledged by JetStream); `200` for a delivery seen before (by its delivery id,
//! kept in SQLite for good); `503` when the queue is down, so the forge sends it again.
//!
//! The secret is the server's (`--webhook-secret`, `CASCADE_WEBHOOK_SECRET`) unless the
//! repository registered in `cascade.toml` names its own. To find that repository the
//! body's repository name is read before the signature is checked — only that name,
//! from a size-capped body, and only to pick which secret to check against.

use crate::api::App;
use crate::error::ApiError;
use crate::inbox::Accepted;
use crate::incoming::Incoming;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cascade_git::delivery::Delivery;
use cascade_git::error::IntakeError;
use cascade_git::forge::Forge;
use cascade_store::NewEvent;
use std::sync::Arc;

/// Webhook bodies larger than this are refused (GitHub caps payloads at 25 MB).
pub const MAX_HOOK_BYTES: usize = cascade_git::delivery::MAX_BODY_BYTES;

/// Webhook secrets: the server's, and per repository.
#[derive(Clone, Default)]
pub struct HookSecrets {
    pub server: Option<Vec<u8>>,
    /// Repository full name → its own secret.
    pub repos: std::collections::HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for HookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSecrets")
            .field("server", &self.server.as_ref().map(|_| "***"))
            .field("repos", &self.repos.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HookSecrets {
    /// Whether any webhook can be verified at all.
    pub fn any(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.is_empty()) || !self.repos.is_empty()
    }

    fn for_body(&self, forge: Forge, body: &[u8]) -> Option<&[u8]> {
        // The body is read for its repository only when some repository has a secret.
        let own = if self.repos.is_empty() {
            None
        } else {
            repository_name(forge, body).and_then(|name| self.repos.get(&name))
        };
        own.or(self.server.as_ref())
            .map(Vec::as_slice)
            .filter(|s| !s.is_empty())
    }
}

/// Counts a webhook by forge and result (`queued`, `duplicate`, `unauthorized`,
/// `invalid`, `unavailable`) for `/metrics`.
fn count(forge: Forge, result: &'static str) {
    crate::metrics::webhook(forge.as_str(), result);
}

/// The request's headers as `cascade-git` reads them, looked up in place: nothing is
/// copied before the signature is checked. A value that is not text reads as absent.
struct HookHeaders<'a>(&'a HeaderMap);

impl cascade_git::forge::Headers for HookHeaders<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        // `HeaderMap` names are lowercase; `get` with a `&str` ignores case.
        self.0.get(name)?.to_str().ok()
    }
}

/// The repository's full name, read only to choose a secret. Every other field is
/// skipped unread (serde's `IgnoredAny`): the body is not yet authenticated, so nothing of
/// it is built in memory but this one name.
fn repository_name(forge: Forge, body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Hub<'a> {
        #[serde(borrow)]
        repository: Option<HubRepository<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct HubRepository<'a> {
        #[serde(borrow)]
        full_name: Option<std::borrow::Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct GitLab<'a> {
        #[serde(borrow)]
        project: Option<GitLabProject<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct GitLabProject<'a> {
        #[serde(borrow)]
        path_with_namespace: Option<std::borrow::Cow<'a, str>>,
    }
    let name = match forge {
        Forge::GitHub | Forge::Gitea => {
            serde_json::from_slice::<Hub<'_>>(body)
                .ok()?
                .repository?
                .full_name?
        }
        Forge::GitLab => {
            serde_json::from_slice::<GitLab<'_>>(body)
                .ok()?
                .project?
                .path_with_namespace?
        }
    };
    Some(name.into_owned())
}

/// Everything the gateway does before the enqueue: the secret chosen, the signature
/// checked on the raw body (a wrong one is refused before anything parses the body or
/// touches the store), then the body normalised into the event to store: the
/// [`Delivery`] itself, as [`Incoming::Forge`].
pub fn verified_event(
    forge: Forge,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &HookSecrets,
) -> Result<NewEvent, ApiError> {
    let Some(secret) = secrets.for_body(forge, body) else {
        count(forge, "unauthorized");
        return Err(ApiError::Unauthorized(
            "no webhook secret is configured for this repository".to_owned(),
        ));
    };
    let delivery = match Delivery::authenticate(forge, &HookHeaders(headers), body, secret) {
        Ok(d) => d,
        Err(IntakeError::Signature(e)) => {
            count(forge, "unauthorized");
            return Err(ApiError::Unauthorized(e.to_string()));
        }
        Err(IntakeError::Delivery(e)) => {
            count(forge, "invalid");
            return Err(ApiError::Field {
                field: "body",
                message: e.to_string(),
            });
        }
    };
    // Stored as it is: the orchestrator reads back this very delivery.
    Ok(Incoming::Forge(delivery).stored())
}

/// The header that authenticates a delivery of `forge`.
fn signature_header(forge: Forge) -> &'static str {
    match forge {
        Forge::GitHub => cascade_git::signature::GITHUB_SIGNATURE,
        Forge::Gitea => cascade_git::signature::GITEA_SIGNATURE,
        Forge::GitLab => cascade_git::signature::GITLAB_TOKEN,
    }
}

/// `POST /hooks/{forge}`.
pub async fn hook(
    State(app): State<Arc<App>>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Ok(forge) = forge.parse::<Forge>() else {
        return Err(ApiError::NotFound {
            what: "webhook route",
            id: forge,
        });
    };
    let (Some(inbox), Some(secrets)) = (app.inbox.as_ref(), app.hook_secrets.as_ref()) else {
        return Err(ApiError::NotFound {
            what: "webhook route",
            id: forge.as_str().to_owned(),
        });
    };
    // Nothing could verify a delivery without the header: refuse it unread.
    let header = signature_header(forge);
    if headers.get(header).is_none() {
        count(forge, "unauthorized");
        return Err(ApiError::Unauthorized(format!("missing header `{header}`")));
    }
    let body = match crate::body::read_capped(&headers, body, MAX_HOOK_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            count(
                forge,
                if matches!(e, ApiError::Busy) {
                    "unavailable"
                } else {
                    "invalid"
                },
            );
            return Err(e);
        }
    };
    let event = verified_event(forge, &headers, &body, secrets)?;
    let (delivery_id, kind) = (event.delivery_id.clone(), event.kind.clone());
    match inbox.accept(event).await {
        Ok(Accepted::Queued) => {
            count(forge, "queued");
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    serde_json::json!({"delivery": delivery_id, "kind": kind, "duplicate": false}),
                ),
            ))
        }
        Ok(Accepted::Duplicate) => {
            count(forge, "duplicate");
            Ok((
                StatusCode::OK,
                Json(serde_json::json!({"delivery": delivery_id, "kind": kind, "duplicate": true})),
            ))
        }
        Err(e) => {
            count(forge, "unavailable");
            tracing::warn!(error = %crate::error::chain(&e), "webhook not queued");
            Err(ApiError::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn secrets(repo: Option<(&str, &[u8])>) -> HookSecrets {
        HookSecrets {
            server: Some(b"server".to_vec()),
            repos: repo
                .map(|(name, s)| (name.to_owned(), s.to_vec()))
                .into_iter()
                .collect(),
        }
    }

    fn headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-github-event", HeaderValue::from_static("push"));
        h.insert("x-github-delivery", HeaderValue::from_static("d-1"));
        h.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(&format!("sha256={signature}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_bad_signature_is_refused_before_the_body_is_parsed() {
        // Not JSON at all: a parse would answer 400; the signature answers first.
        let body = b"{ this is not json";
        let refused = verified_event(
            Forge::GitHub,
            &headers(&"0".repeat(64)),
            body,
            &secrets(None),
        );
        assert!(matches!(refused, Err(ApiError::Unauthorized(_))));
        // The same body correctly signed is parsed, and refused as a body.
        let signed = cascade_git::signature::sign(body, b"server");
        let invalid = verified_event(Forge::GitHub, &headers(&signed), body, &secrets(None));
        assert!(matches!(
            invalid,
            Err(ApiError::Field { field: "body", .. })
        ));
    }

    #[test]
    fn a_repositorys_own_secret_is_found_by_its_name_alone() {
        let body = br#"{"ref": "x", "repository": {"id": 1, "full_name": "o\/r", "owner": {"login": "o"}}}"#;
        let s = secrets(Some(("o/r", b"own")));
        assert_eq!(s.for_body(Forge::GitHub, body), Some(&b"own"[..]));
        assert_eq!(s.for_body(Forge::Gitea, body), Some(&b"own"[..]));
        let other = br#"{"repository": {"full_name": "o/other"}}"#;
        assert_eq!(s.for_body(Forge::GitHub, other), Some(&b"server"[..]));
        let gitlab = br#"{"project": {"path_with_namespace": "o/r", "id": 7}}"#;
        assert_eq!(s.for_body(Forge::GitLab, gitlab), Some(&b"own"[..]));
        assert_eq!(s.for_body(Forge::GitHub, b"not json"), Some(&b"server"[..]));
    }
}
