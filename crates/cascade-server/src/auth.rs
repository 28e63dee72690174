//! Who is asking (DESIGN §8): bearer tokens on every API route, roles and scopes.
//!
//! - [`authenticate`] is the middleware of every route but `/healthz` and the signed
//!   `/hooks/*`: it reads `Authorization: Bearer <token>`, checks it against the store's
//!   token table (hash, expiry, revocation) and puts the [`Principal`] in the request's
//!   extensions. A failure is logged (the reason, never the token) and counted in
//!   `cascade_auth_failures_total{reason}`, and the client gets 401 saying what to do.
//! - Handlers then ask the principal: [`Principal::require`] a role (403 otherwise) and
//!   [`Principal::check_scope`] for what they touch. A token limited to scopes can
//!   neither see nor act on anything of another scope.
//! - Verified tokens are remembered for [`CACHE_FOR`], so a busy client costs one hash,
//!   not one query, per request; a revoked token stops working within that time.
//! - [`ensure_admin_token`] writes the first admin token to `DATA_DIR/admin.token` (0600).
//! - Job tokens: a job the server runs gets `CASCADE_TOKEN` (as GitHub's `GITHUB_TOKEN`)
//!   so it can dispatch the next step of a chain: `casj_<run>_<HMAC-SHA256 of the run id
//!   under DATA_DIR/job.key>`, a `submit` token of the run's scope, good only while that
//!   run has not ended. Nothing is stored per job; the key never leaves the data dir,
//!   which jobs cannot read. Fork pull requests' jobs get none.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cascade_store::{Refusal, Role, Tokens};
use sha2::Digest as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a verified token is trusted without asking the store again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// The file `serve` writes its first admin token to, in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The key job tokens are signed with, in the data dir (0600).
pub const JOB_KEY_FILE: &str = "job.key";

/// The prefix of job tokens.
pub const JOB_PREFIX: &str = "casj_";

/// The metric counting refused requests, by reason.
pub const AUTH_FAILURES: &str = "cascade_auth_failures_total";

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (for logs and audit).
    pub name: String,
    pub role: Role,
    /// The scopes it may see and act in; empty: every scope.
    pub scopes: Vec<String>,
    /// A job token: its dispatches are routed to every pipeline that listens (the next
    /// step of a chain may live in another repository), though it reads and submits
    /// only in its run's scope.
    pub job: bool,
}

impl Principal {
    /// The whole server (the admin token, `--data-dir` commands).
    pub fn admin(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            role: Role::Admin,
            scopes: Vec::new(),
            job: false,
        }
    }

    /// Whether it is limited to some scopes.
    pub fn restricted(&self) -> bool {
        !self.scopes.is_empty()
    }

    /// Whether it may see and act on `scope`. A thing of no known scope (`None`) is for
    /// unrestricted tokens only.
    pub fn sees(&self, scope: Option<&str>) -> bool {
        !self.restricted() || scope.is_some_and(|s| self.scopes.iter().any(|mine| mine == s))
    }

    /// 403 unless the token has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token `{}` has role `{}`; this needs `{role}` (create one with `cascade token create --role {role}`)",
                self.name, self.role
            )))
        }
    }

    /// 403 unless it may act on `scope` (`what` names the thing, for the message).
    pub fn check_scope(&self, scope: Option<&str>, what: &str) -> Result<(), ApiError> {
        if self.sees(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token `{}` is limited to {}; {what} is in {}",
                self.name,
                self.scopes.join(", "),
                scope.map_or_else(|| "no scope of these".to_owned(), |s| format!("`{s}`"))
            )))
        }
    }
}

/// The token table and the cache of tokens verified a moment ago.
#[derive(Debug)]
pub struct Auth {
    tokens: Mutex<Tokens>,
    /// Signs job tokens (`None`: job tokens are refused).
    job_key: Option<JobKey>,
    /// SHA-256 of a token → who it is, and when that was checked.
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl Auth {
    pub fn open(db: &Path, job_key: Option<JobKey>) -> Result<Self, cascade_store::StoreError> {
        Ok(Self {
            tokens: Mutex::new(Tokens::open(db)?),
            job_key,
            cache: Mutex::default(),
        })
    }

    /// Who a job token is: a `submit` token of its run's scope while the run lives.
    fn verify_job(&self, token: &str) -> Result<Principal, Refusal> {
        let Some(key) = &self.job_key else {
            return Err(Refusal::Unknown);
        };
        let rest = token.strip_prefix(JOB_PREFIX).ok_or(Refusal::Malformed)?;
        let (run_id, mac) = rest.rsplit_once('_').ok_or(Refusal::Malformed)?;
        if !key.verifies(run_id, mac) {
            return Err(Refusal::Mismatch);
        }
        let scope = {
            let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            tokens.live_run_scope(run_id)
        };
        match scope {
            Ok(Some(scope)) => Ok(Principal {
                name: format!("job:{run_id}"),
                role: Role::Submit,
                scopes: vec![scope],
                job: true,
            }),
            Ok(None) => Err(Refusal::Expired),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the run of a job token");
                Err(Refusal::Unknown)
            }
        }
    }

    /// Who `token` is if it was verified a moment ago (no store access: fine on an
    /// async thread).
    pub fn cached(&self, token: &str) -> Option<Principal> {
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(&key)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(principal, _)| principal.clone())
    }

    /// Who `token` is, or why not.
    pub fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        if let Some(principal) = self.cached(token) {
            return Ok(principal);
        }
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        let principal = if token.starts_with(JOB_PREFIX) {
            self.verify_job(token)?
        } else {
            let checked = {
                let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
                tokens.verify(token, jiff::Timestamp::now())
            };
            let row = match checked {
                Ok(result) => result?,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the token table");
                    return Err(Refusal::Unknown);
                }
            };
            Principal {
                name: row.name,
                role: row.role,
                scopes: row.scopes,
                job: false,
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: a flood of distinct valid tokens cannot grow it without end.
        if cache.len() > 10_000 {
            cache.retain(|_, (_, at)| now.duration_since(*at) < CACHE_FOR);
        }
        cache.insert(key, (principal.clone(), now));
        Ok(principal)
    }

    /// Forgets every cached verification (after a revocation through the API).
    pub fn forget(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The token table, for the token routes.
    pub fn with_tokens<T>(&self, f: impl FnOnce(&Tokens) -> T) -> T {
        f(&self.tokens.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Counts and logs one refused request.
fn refused(reason: &'static str, path: &str) {
    crate::metrics::handle();
    ::metrics::counter!(AUTH_FAILURES, "reason" => reason).increment(1);
    tracing::warn!(reason, path, "authentication failed");
}

/// The middleware: 401 without a valid bearer token, else the request goes on with its
/// [`Principal`].
pub async fn authenticate(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(header) = header else {
        refused("missing", request.uri().path());
        return ApiError::Unauthorized(
            "no token; send `Authorization: Bearer <token>` (`--token` or `CASCADE_TOKEN` on the command line; the admin token is in DATA_DIR/admin.token)".to_owned(),
        )
        .into_response();
    };
    let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
    else {
        refused("scheme", request.uri().path());
        return ApiError::Unauthorized("expected `Authorization: Bearer <token>`".to_owned())
            .into_response();
    };
    if let Some(principal) = auth.cached(token) {
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    }
    let token = token.to_owned();
    let checking = Arc::clone(&auth);
    let verified = tokio::task::spawn_blocking(move || checking.verify(&token)).await;
    match verified {
        Ok(Ok(principal)) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Ok(Err(reason)) => {
            refused(reason.as_str(), request.uri().path());
            let what = match reason {
                Refusal::Expired => {
                    "the token has expired; create a new one with `cascade token create`"
                }
                Refusal::Revoked => {
                    "the token was revoked; create a new one with `cascade token create`"
                }
                _ => {
                    "the token is not valid; check `--token` / `CASCADE_TOKEN`, or list tokens with `cascade token list`"
                }
            };
            ApiError::Unauthorized(what.to_owned()).into_response()
        }
        Err(_) => ApiError::Unavailable.into_response(),
    }
}

/// The key of job tokens.
#[derive(Clone)]
pub struct JobKey([u8; 32]);

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobKey(..)")
    }
}

impl JobKey {
    /// Reads `DATA_DIR/job.key`, writing a new random one (0600) when there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AdminTokenError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = data_dir.join(JOB_KEY_FILE);
        let io = |source| AdminTokenError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(key) = Self::load(data_dir) {
            return Ok(key);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.write_all(&key).map_err(io)?;
        Ok(Self(key))
    }

    /// Reads `DATA_DIR/job.key` (a worker signs its runs' tokens with it).
    pub fn load(data_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(data_dir.join(JOB_KEY_FILE)).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Self)
    }

    /// What a run's tag signs: a fixed context, so the key signs nothing else by accident.
    fn message(run_id: &str) -> Vec<u8> {
        [b"cascade job token\0".as_slice(), run_id.as_bytes()].concat()
    }

    /// The token of one run's jobs.
    pub fn token(&self, run_id: &str) -> String {
        let tag = cascade_git::signature::sign(&Self::message(run_id), &self.0);
        format!("{JOB_PREFIX}{run_id}_{tag}")
    }

    /// Whether `mac_hex` is the run's tag (compared in constant time).
    fn verifies(&self, run_id: &str, mac_hex: &str) -> bool {
        cascade_git::signature::verify_hex(mac_hex, &Self::message(run_id), &self.0)
    }
}

/// Writes a new admin token to `DATA_DIR/admin.token` (mode 0600) unless the file is
/// there; returns its path when it was written now. The data dir is made private (0700)
/// too: the database holds logs and the token table.
pub fn ensure_admin_token(data_dir: &Path) -> Result<Option<PathBuf>, AdminTokenError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| AdminTokenError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(data_dir))?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if path.exists() {
        return Ok(None);
    }
    let tokens = Tokens::open(&data_dir.join("cascade.db")).map_err(AdminTokenError::Store)?;
    let mut name = "admin".to_owned();
    let mut n = 1;
    while tokens.has_active(&name).map_err(AdminTokenError::Store)? {
        n += 1;
        name = format!("admin-{n}");
    }
    let issued = tokens
        .create(&name, Role::Admin, &[], None)
        .map_err(AdminTokenError::Store)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    writeln!(file, "{}", issued.token).map_err(io(&path))?;
    Ok(Some(path))
}

/// Why the admin token could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("cannot write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the admin token")]
    Store(#[source] cascade_store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below_and_scopes_limit_what_is_seen() {
        let p = Principal {
            name: "ci".to_owned(),
            role: Role::Submit,
            scopes: vec!["project:a".to_owned()],
            job: false,
        };
        assert!(p.require(Role::Read).is_ok() && p.require(Role::Submit).is_ok());
        assert!(matches!(
            p.require(Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
        assert!(p.sees(Some("project:a")));
        assert!(!p.sees(Some("project:b")) && !p.sees(None));
        let all = Principal::admin("admin");
        assert!(all.sees(None) && all.sees(Some("project:b")));
    }

    #[test]
    fn the_admin_token_file_is_written_once_private_and_verifies() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let path = ensure_admin_token(&data).unwrap().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(ensure_admin_token(&data).unwrap(), None);
        let token = std::fs::read_to_string(&path).unwrap();
        let auth = Auth::open(&data.join("cascade.db"), None).unwrap();
        assert_eq!(
            auth.verify(token.trim()).unwrap(),
            Principal::admin("admin")
        );
        assert_eq!(auth.verify("cas_x"), Err(Refusal::Malformed));
        // A deleted file gets a new token, under a new name.
        std::fs::remove_file(&path).unwrap();
        ensure_admin_token(&data).unwrap().unwrap();
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(auth.verify(token.trim()).unwrap().name, "admin-2");
    }

    #[test]
    fn a_job_token_is_its_runs_and_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = JobKey::load_or_create(dir.path()).unwrap();
        let again = JobKey::load_or_create(dir.path()).unwrap();
        let token = key.token("run-1");
        assert_eq!(again.token("run-1"), token);
        let (run, mac) = token
            .strip_prefix(JOB_PREFIX)
            .unwrap()
            .rsplit_once('_')
            .unwrap();
        assert!(key.verifies(run, mac));
        assert!(!key.verifies("run-2", mac));
        let other = JobKey([7; 32]);
        assert!(!other.verifies(run, mac));
        let auth = Auth::open(&dir.path().join("cascade.db"), Some(key)).unwrap();
        // No such run here: the token has nothing to act on.
        assert_eq!(auth.verify(&token), Err(Refusal::Expired));
        assert_eq!(auth.verify(&other.token("run-1")), Err(Refusal::Mismatch));
    }
}
