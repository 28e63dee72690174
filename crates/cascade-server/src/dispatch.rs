//! `POST /api/v1/dispatch` and `GET /api/v1/events`: starting `repository_dispatch`
//! pipelines by hand or from a job (`cascade dispatch TYPE --payload JSON`), and the
//! event log.
//!
//! A dispatch keeps GitHub's shape (DESIGN §4): `{"event_type", "client_payload": {"task_id",
//! …, "retry_count"}}`. Its delivery id is `<task_id>:<event_type>:<retry_count>`, so
//! sending the same dispatch twice queues it once.

use crate::api::App;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::inbox::Accepted;
use crate::incoming::{Dispatch, Incoming};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cascade_store::NewEvent;
use std::sync::Arc;

/// The longest `event_type` accepted (GitHub allows 100).
const MAX_EVENT_TYPE: usize = 100;

/// Reads a dispatch body into its event; `scopes` are those its sender may act in
/// (empty: any), carried with the event to the orchestrator.
pub fn dispatch_event(body: &[u8], scopes: &[String]) -> Result<NewEvent, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::BadJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let object = crate::api::body_object(&value, ["event_type", "client_payload"])?;
    let event_type = object
        .get("event_type")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= MAX_EVENT_TYPE)
        .ok_or(ApiError::Field {
            field: "event_type",
            message: format!("expected a non-empty string of at most {MAX_EVENT_TYPE} characters"),
        })?
        .to_owned();
    let mut payload = match object.get("client_payload") {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(ApiError::Field {
                field: "client_payload",
                message: "expected a JSON object".to_owned(),
            });
        }
    };
    let task_id = match payload.get("task_id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        None => crate::api::new_run_id().to_string(),
        Some(_) => {
            return Err(ApiError::Field {
                field: "client_payload.task_id",
                message: "expected a non-empty string".to_owned(),
            });
        }
    };
    let retry_count = match payload.get("retry_count") {
        None => 0,
        Some(v) => v.as_u64().ok_or(ApiError::Field {
            field: "client_payload.retry_count",
            message: "expected a whole number".to_owned(),
        })?,
    };
    payload.insert("task_id".to_owned(), task_id.into());
    payload.insert("retry_count".to_owned(), retry_count.into());
    Ok(Incoming::Dispatch(Dispatch {
        event_type,
        client_payload: serde_json::Value::Object(payload),
        scopes: scopes.to_vec(),
    })
    .stored())
}

/// `POST /api/v1/dispatch`: queues a `repository_dispatch` event; `202` once durable,
/// `200` with `"duplicate": true` when the same dispatch was queued before.
pub async fn dispatch(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    who.require(cascade_store::Role::Submit)?;
    // A job's dispatch is the next step of its chain, wherever that pipeline lives; the
    // orchestrator routes it by the pipelines' own `on:` (fork PRs' jobs get no token).
    let scopes: &[String] = if who.job { &[] } else { &who.scopes };
    let event = dispatch_event(&body, scopes)?;
    let (task_id, event_type) = (event.task_id.clone(), event.event_type.clone());
    let inbox = app.inbox.as_ref().ok_or(ApiError::Unavailable)?;
    match inbox.accept(event).await {
        Ok(Accepted::Queued) => Ok((
            StatusCode::ACCEPTED,
            Json(
                serde_json::json!({"task_id": task_id, "event_type": event_type, "duplicate": false}),
            ),
        )),
        Ok(Accepted::Duplicate) => Ok((
            StatusCode::OK,
            Json(
                serde_json::json!({"task_id": task_id, "event_type": event_type, "duplicate": true}),
            ),
        )),
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "dispatch not queued");
            Err(ApiError::Unavailable)
        }
    }
}

/// Filters of `GET /api/v1/events`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    task_id: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/events[?task_id=ID]`: stored events, oldest first (one task's chain).
pub async fn events(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Query(query): Query<EventQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let wanted = query.limit.unwrap_or(200).min(10_000);
    // A token of some scopes reads more rows and keeps those of its scopes.
    let limit = if who.restricted() { 10_000 } else { wanted };
    let rows = tokio::task::spawn_blocking(move || {
        let reader = app
            .reader
            .lock()
            .map_err(|_| cascade_store::StoreError::WriterGone)?;
        reader.events(query.task_id.as_deref(), limit)
    })
    .await
    .map_err(|_| ApiError::Unavailable)?
    .map_err(|_| ApiError::Unavailable)?;
    let mut rows: Vec<_> = rows.into_iter().filter(|e| sees_event(&who, e)).collect();
    let skip = rows.len().saturating_sub(wanted);
    rows.drain(..skip);
    Ok(Json(serde_json::json!({"events": rows})))
}

/// Whether a token sees an event: a repository's events are in that repository's scope;
/// a dispatch is in the scopes its sender was limited to (an unlimited sender's, in none).
fn sees_event(who: &Principal, event: &cascade_store::EventRow) -> bool {
    if !who.restricted() {
        return true;
    }
    if let Some(repo) = &event.repo {
        return who.sees(Some(&crate::orchestrator::repo_scope(repo).to_string()));
    }
    Incoming::read(event).is_ok_and(|i| i.scopes().iter().any(|s| who.sees(Some(s))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatch_keeps_its_task_id_and_counts_retries_in_its_delivery_id() {
        let e = dispatch_event(
            br#"{"event_type": "agent:complete", "client_payload": {"task_id": "1735560000", "status": "success"}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(e.delivery_id, "1735560000:agent:complete:0");
        assert_eq!(e.task_id.as_deref(), Some("1735560000"));
        assert_eq!(e.payload["client_payload"]["retry_count"], 0);
        assert_eq!(e.payload["client_payload"]["status"], "success");
        assert_eq!(
            (e.kind.as_str(), e.source.as_str()),
            ("repository_dispatch", "dispatch")
        );
        let scoped = dispatch_event(
            br#"{"event_type": "agent:complete", "client_payload": {"task_id": 9}}"#,
            &["project:a".to_owned(), "project:b".to_owned()],
        )
        .unwrap();
        assert_eq!(scoped.delivery_id, "project:a,project:b|9:agent:complete:0");
        assert_eq!(
            scoped.payload["scopes"],
            serde_json::json!(["project:a", "project:b"])
        );
        let generated = dispatch_event(br#"{"event_type": "task:start"}"#, &[]).unwrap();
        assert!(generated.task_id.is_some_and(|t| !t.is_empty()));
    }

    #[test]
    fn bad_dispatches_name_the_field() {
        for (body, field) in [
            (&br#"{"client_payload": {}}"#[..], "event_type"),
            (br#"{"event_type": ""}"#, "event_type"),
            (
                br#"{"event_type": "x", "client_payload": []}"#,
                "client_payload",
            ),
            (
                br#"{"event_type": "x", "client_payload": {"task_id": {}}}"#,
                "client_payload.task_id",
            ),
            (
                br#"{"event_type": "x", "client_payload": {"retry_count": -1}}"#,
                "client_payload.retry_count",
            ),
            (br#"{"event_type": "x", "extra": 1}"#, "body"),
        ] {
            match dispatch_event(body, &[]) {
                Err(ApiError::Field { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(matches!(
            dispatch_event(b"{", &[]),
            Err(ApiError::BadJson { .. })
        ));
    }
}
