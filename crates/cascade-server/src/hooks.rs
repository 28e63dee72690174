//! The webhook gateway: `POST /hooks/github`, `/hooks/gitea`, `/hooks/gitlab`.
//!
//! Order matters: the signature (GitHub's `X-Hub-Signature-256`, Gitea's
//! `X-Gitea-Signature`, GitLab's `X-Gitlab-Token`, all compared in constant time) is
//! checked on the raw body before anything parses it; a missing or wrong one is `401`
//! and nothing is queued. Bodies over 25 MiB are refused with `413` before they are read
//! further. The answer is `202` only once the event is durable (committed to SQLite, or
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
use crate::orchestrator::{Incoming, PullRequest};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cascade_git::delivery::{Delivery, EventKind};
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
fn count(forge: &str, result: &str) {
    crate::metrics::webhook(forge, result);
}

/// The repository's full name, read only to choose a secret.
fn repository_name(forge: Forge, body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let name = match forge {
        Forge::GitHub | Forge::Gitea => value.get("repository")?.get("full_name")?,
        Forge::GitLab => value.get("project")?.get("path_with_namespace")?,
    };
    name.as_str().map(str::to_owned)
}

/// The orchestrator's event from a forge delivery.
pub fn incoming(delivery: &Delivery) -> Incoming {
    let event = &delivery.event;
    let mut incoming = Incoming {
        kind: String::new(),
        repo: Some(event.repository.full_name.clone()),
        sha: event.sha.clone(),
        before: event.before.clone(),
        changed_paths: event.changed_files.clone(),
        raw: delivery.payload(),
        ..Incoming::default()
    };
    match &event.kind {
        EventKind::Push { branch } => {
            "push".clone_into(&mut incoming.kind);
            incoming.branch = Some(branch.clone());
        }
        EventKind::Tag { name } => {
            "tag".clone_into(&mut incoming.kind);
            incoming.tag = Some(name.clone());
        }
        EventKind::PullRequest(pr) => {
            "pull_request".clone_into(&mut incoming.kind);
            incoming.branch = Some(pr.head_ref.clone());
            incoming.pull_request = Some(PullRequest {
                number: pr.number,
                action: pr.action.as_str().to_owned(),
                head_sha: pr.head_sha.clone(),
                base_sha: pr.base_sha.clone().unwrap_or_default(),
                base_ref: pr.base_ref.clone(),
                head_ref: pr.head_ref.clone(),
                from_fork: pr.from_fork,
            });
        }
        EventKind::RepositoryDispatch {
            event_type,
            branch,
            client_payload,
        } => {
            "repository_dispatch".clone_into(&mut incoming.kind);
            incoming.event_type = Some(event_type.clone());
            incoming.branch.clone_from(branch);
            incoming.client_payload = Some(client_payload.clone());
        }
        EventKind::WorkflowDispatch { git_ref, inputs } => {
            "workflow_dispatch".clone_into(&mut incoming.kind);
            incoming.branch = event.ref_name();
            if incoming.sha.is_none() {
                incoming.branch = Some(
                    git_ref
                        .strip_prefix("refs/heads/")
                        .unwrap_or(git_ref)
                        .to_owned(),
                );
            }
            incoming.inputs.clone_from(inputs);
        }
        EventKind::Ping => "ping".clone_into(&mut incoming.kind),
        EventKind::Ignored { .. } => "ignored".clone_into(&mut incoming.kind),
    }
    incoming
}

/// `POST /hooks/{forge}`.
pub async fn hook(
    State(app): State<Arc<App>>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Bytes,
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
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let Some(secret) = secrets.for_body(forge, &body) else {
        count(forge.as_str(), "unauthorized");
        return Err(ApiError::Unauthorized(
            "no webhook secret is configured for this repository".to_owned(),
        ));
    };
    let delivery = match Delivery::authenticate(forge, pairs.as_slice(), &body, secret) {
        Ok(d) => d,
        Err(IntakeError::Signature(e)) => {
            count(forge.as_str(), "unauthorized");
            return Err(ApiError::Unauthorized(e.to_string()));
        }
        Err(IntakeError::Delivery(e)) => {
            count(forge.as_str(), "invalid");
            return Err(ApiError::Field {
                field: "body",
                message: e.to_string(),
            });
        }
    };
    let incoming = incoming(&delivery);
    let event = NewEvent {
        source: forge.as_str().to_owned(),
        delivery_id: delivery.delivery_id.clone(),
        kind: incoming.kind.clone(),
        repo: incoming.repo.clone(),
        task_id: incoming
            .client_payload
            .as_ref()
            .and_then(|p| p.get("task_id"))
            .and_then(|t| t.as_str().map(str::to_owned)),
        event_type: incoming.event_type.clone(),
        payload: serde_json::to_value(&incoming).unwrap_or_default(),
    };
    match inbox.accept(event).await {
        Ok(Accepted::Queued) => {
            count(forge.as_str(), "queued");
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    serde_json::json!({"delivery": delivery.delivery_id, "kind": incoming.kind, "duplicate": false}),
                ),
            ))
        }
        Ok(Accepted::Duplicate) => {
            count(forge.as_str(), "duplicate");
            Ok((
                StatusCode::OK,
                Json(
                    serde_json::json!({"delivery": delivery.delivery_id, "kind": incoming.kind, "duplicate": true}),
                ),
            ))
        }
        Err(e) => {
            count(forge.as_str(), "unavailable");
            tracing::warn!(error = %e, "webhook not queued");
            Err(ApiError::Unavailable)
        }
    }
}
