//! `/api/v1/tokens` (admin only) and the one way a token is made, shared with
//! `cascade token create --data-dir`: the name, role, scopes and expiry checked, then
//! the store's [`cascade_store::Tokens::create`].

use crate::api::{App, blocking};
use crate::auth::Principal;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cascade_store::{Issued, Role, StoreError, Tokens};
use std::sync::Arc;

/// What a new token is asked for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
    /// `project:web`, `global`, …; none: every scope.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How long it is valid (`30d`, `12h`); never expires when unset.
    #[serde(default)]
    pub expires: Option<String>,
}

/// Why a token was not made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("`name`: expected 1 to 64 letters, digits, `-`, `_` or `.`, found `{0}`")]
    Name(String),
    #[error(
        "`scopes`: an admin token acts on every scope; limit a `read` or `submit` token instead"
    )]
    AdminScopes,
    #[error("`scopes`: {0}")]
    Scope(cascade_spec::scope::ScopeError),
    #[error("`expires`: {0}")]
    Expires(cascade_spec::duration::DurationError),
    #[error("`expires`: `{0}` is too long")]
    TooLong(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a request and creates its token.
pub fn create(tokens: &Tokens, request: &TokenRequest) -> Result<Issued, TokenError> {
    let name_ok = !request.name.is_empty()
        && request.name.len() <= 64
        && request
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(TokenError::Name(request.name.clone()));
    }
    // An admin can make any token, so an admin limited to scopes would not be limited.
    if request.role == Role::Admin && !request.scopes.is_empty() {
        return Err(TokenError::AdminScopes);
    }
    let mut scopes = Vec::new();
    for scope in &request.scopes {
        let parsed = cascade_spec::Scope::parse(scope).map_err(TokenError::Scope)?;
        scopes.push(parsed.to_string());
    }
    let expires_at = match &request.expires {
        None => None,
        Some(text) => {
            let d = cascade_spec::duration::parse(text).map_err(TokenError::Expires)?;
            let d =
                jiff::SignedDuration::try_from(d).map_err(|_| TokenError::TooLong(text.clone()))?;
            Some(
                jiff::Timestamp::now()
                    .checked_add(d)
                    .map_err(|_| TokenError::TooLong(text.clone()))?,
            )
        }
    };
    Ok(tokens.create(&request.name, request.role, &scopes, expires_at)?)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::TokenNameTaken(_) => ApiError::Conflict(e.to_string()),
        StoreError::NoToken(id) => ApiError::NotFound { what: "token", id },
        _ => ApiError::Unavailable,
    }
}

/// `POST /api/v1/tokens` `{name, role, scopes, expires}`: the new token, shown once.
pub async fn create_token(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    who.require(Role::Admin)?;
    let request: TokenRequest = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let issued = blocking(move || app.auth.with_tokens(|t| create(t, &request)))
        .await?
        .map_err(|e| match e {
            TokenError::Store(e) => store_error(e),
            TokenError::Name(_) => ApiError::Field {
                field: "name",
                message: e.to_string(),
            },
            TokenError::AdminScopes | TokenError::Scope(_) => ApiError::Field {
                field: "scopes",
                message: e.to_string(),
            },
            TokenError::Expires(_) | TokenError::TooLong(_) => ApiError::Field {
                field: "expires",
                message: e.to_string(),
            },
        })?;
    tracing::info!(by = who.name, name = issued.row.name, role = %issued.row.role, "token created");
    Ok((StatusCode::CREATED, Json(issued.shown())))
}

/// `GET /api/v1/tokens`: every token, without secrets.
pub async fn list_tokens(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(Role::Admin)?;
    let rows = blocking(move || app.auth.with_tokens(Tokens::list))
        .await?
        .map_err(store_error)?;
    Ok(Json(serde_json::json!({"tokens": rows})))
}

/// `DELETE /api/v1/tokens/{id}` (an id or a name): revoked at once.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(Role::Admin)?;
    let auth = Arc::clone(&app.auth);
    let row = blocking(move || auth.with_tokens(|t| t.revoke(&id)))
        .await?
        .map_err(store_error)?;
    app.auth.forget();
    tracing::info!(by = who.name, name = row.name, "token revoked");
    Ok(Json(serde_json::to_value(row).unwrap_or_default()))
}
