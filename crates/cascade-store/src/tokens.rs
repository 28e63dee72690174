//! API tokens (DESIGN §8): who may do what, and in which scopes.
//!
//! A token reads `cas_<id>_<secret>`: the id finds its row, the secret (32 random bytes,
//! hex) is checked against the SHA-256 stored there. The token itself is shown once, when
//! it is created, and never stored; a token with 256 random bits needs no slow password
//! hash (as GitHub's and Buildkite's API tokens). Expiry and revocation are checked on
//! every use.

use crate::db;
use crate::error::StoreError;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Digest as _;
use std::path::Path;
use std::sync::LazyLock;

/// What a token may do. Each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees runs, logs, DAGs and events of its scopes.
    Read,
    /// Also submits, dispatches and cancels in its scopes.
    Submit,
    /// Everything: workers, metrics, tokens, every scope.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "submit" => Ok(Role::Submit),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}`; expected `read`, `submit` or `admin`"
            )),
        }
    }
}

/// A token as listed: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The scopes it is limited to; empty: every scope.
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A token just created: the row, and the token text, shown once.
#[derive(Clone)]
pub struct Issued {
    pub row: TokenRow,
    pub token: String,
}

impl Issued {
    /// What its creator is shown, once: the row and the token text.
    pub fn shown(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(&self.row).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("token".to_owned(), self.token.clone().into());
        }
        value
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

/// Why a presented token was not accepted (logged and counted; the client is told only
/// that it is not authenticated, and what to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not of the form `cas_<id>_<secret>`.
    Malformed,
    /// No token has that id.
    Unknown,
    /// The secret does not match.
    Mismatch,
    Revoked,
    Expired,
}

impl Refusal {
    /// A stable word for logs and the `reason` label of the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Mismatch => "mismatch",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
        }
    }
}

/// The prefix every token starts with (so secret scanners can find leaked ones).
pub const PREFIX: &str = "cas_";

/// The token table.
/// The scope of a run that has not ended (`?1`: the run).
static LIVE_RUN_SCOPE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT CASE WHEN d.scope_id IS NULL THEN d.scope_type ELSE d.scope_type || ':' || d.scope_id END
         FROM dag_runs r JOIN dag_definitions d ON d.dag_id = r.dag_id
         WHERE r.run_id = ?1 AND r.status IN {}",
        crate::status::runs_live()
    )
});

#[derive(Debug)]
pub struct Tokens {
    conn: Connection,
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(StoreError::Random)?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn hash(secret: &str) -> String {
    hex(&sha2::Sha256::digest(secret.as_bytes()))
}

/// Compares two equal-length strings without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Splits `cas_<id>_<secret>`.
fn parts(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 12) && hex_of(secret, 64)).then_some((id, secret))
}

impl Tokens {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: db::open(path)?,
        })
    }

    /// Creates a token; its text is in the answer and nowhere else.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        scopes: &[String],
        expires_at: Option<jiff::Timestamp>,
    ) -> Result<Issued, StoreError> {
        let id = random_hex(6)?;
        let secret = random_hex(32)?;
        let row = TokenRow {
            id: id.clone(),
            name: name.to_owned(),
            role,
            scopes: scopes.to_vec(),
            created_at: jiff::Timestamp::now().to_string(),
            expires_at: expires_at.map(|t| t.to_string()),
            revoked_at: None,
        };
        let scopes_json = serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_owned());
        let inserted = self.conn.execute(
            "INSERT INTO api_tokens (id, name, role, scopes, hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.id,
                row.name,
                role.as_str(),
                scopes_json,
                hash(&secret),
                row.created_at,
                row.expires_at
            ],
        );
        match inserted {
            Ok(_) => Ok(Issued {
                token: format!("{PREFIX}{id}_{secret}"),
                row,
            }),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::TokenNameTaken(name.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every token, newest first (revoked ones too, marked).
    pub fn list(&self) -> Result<Vec<TokenRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, role, scopes, created_at, expires_at, revoked_at
             FROM api_tokens ORDER BY created_at DESC, id",
        )?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Whether a token with this name is in force.
    pub fn has_active(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM api_tokens WHERE name = ?1 AND revoked_at IS NULL",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Revokes the token in force with this id or name.
    pub fn revoke(&self, id_or_name: &str) -> Result<TokenRow, StoreError> {
        let found: Option<TokenRow> = self
            .conn
            .query_row(
                "SELECT id, name, role, scopes, created_at, expires_at, revoked_at FROM api_tokens
                 WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
                [id_or_name],
                row,
            )
            .optional()?;
        let Some(mut found) = found else {
            return Err(StoreError::NoToken(id_or_name.to_owned()));
        };
        let now = jiff::Timestamp::now().to_string();
        self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1",
            params![found.id, now],
        )?;
        found.revoked_at = Some(now);
        Ok(found)
    }

    /// The scope of a run that has not ended yet (`queued`, `running`, `cancelling`):
    /// what a job token of that run may act in. `None` once it ended, or for a run
    /// with no DAG definition here.
    pub fn live_run_scope(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> = self
            .conn
            .prepare_cached(&LIVE_RUN_SCOPE)?
            .query_row([run_id], |r| r.get(0))
            .optional()?;
        Ok(found.flatten())
    }

    /// The token's row if it is in force at `now`, or why not.
    pub fn verify(
        &self,
        token: &str,
        now: jiff::Timestamp,
    ) -> Result<Result<TokenRow, Refusal>, StoreError> {
        let Some((id, secret)) = parts(token) else {
            return Ok(Err(Refusal::Malformed));
        };
        let found: Option<(TokenRow, String)> = self
            .conn
            .prepare_cached(
                "SELECT id, name, role, scopes, created_at, expires_at, revoked_at, hash
                 FROM api_tokens WHERE id = ?1",
            )?
            .query_row([id], |r| Ok((row(r)?, r.get::<_, String>(7)?)))
            .optional()?;
        let Some((found, stored)) = found else {
            return Ok(Err(Refusal::Unknown));
        };
        if !same(&hash(secret), &stored) {
            return Ok(Err(Refusal::Mismatch));
        }
        if found.revoked_at.is_some() {
            return Ok(Err(Refusal::Revoked));
        }
        let expired = found
            .expires_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t <= now);
        if expired {
            return Ok(Err(Refusal::Expired));
        }
        Ok(Ok(found))
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    let role: String = r.get(2)?;
    let scopes: String = r.get(3)?;
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        // Only this module writes the column.
        role: role.parse().unwrap_or(Role::Read),
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::open(&dir.path().join("cascade.db")).unwrap();
        (dir, t)
    }

    /// A job token acts in its run's scope while the run is queued, running or
    /// cancelling, and in none once it ended.
    #[test]
    fn a_run_has_a_scope_for_its_tokens_until_it_ends() {
        let (dir, t) = tokens();
        let mut q = crate::Queue::open(&dir.path().join("cascade.db")).unwrap();
        q.submit(&crate::Submission {
            dag_id: "d".into(),
            run_id: "r1".into(),
            definition: serde_json::json!({}),
            scope: cascade_spec::Scope::parse("project:web").unwrap(),
            target_node: None,
            priority: cascade_spec::dag::Priority::Normal,
            trigger: "api".into(),
            source: None,
        })
        .unwrap();
        let scope = |t: &Tokens| t.live_run_scope("r1").unwrap();
        assert_eq!(scope(&t).as_deref(), Some("project:web"), "queued");
        let lease = q
            .claim(
                "worker-project-web",
                None,
                0,
                std::time::Duration::from_mins(1),
            )
            .unwrap()
            .unwrap()
            .lease;
        assert_eq!(scope(&t).as_deref(), Some("project:web"), "running");
        q.cancel("r1").unwrap();
        assert_eq!(scope(&t).as_deref(), Some("project:web"), "cancelling");
        q.finish(&lease, 1, cascade_plan::RunOutcome::Cancelled)
            .unwrap();
        assert_eq!(scope(&t), None, "ended");
        assert_eq!(t.live_run_scope("nope").unwrap(), None);
    }

    #[test]
    fn a_token_is_shown_once_stored_as_a_hash_and_verified() {
        let (dir, t) = tokens();
        let issued = t
            .create("ci", Role::Submit, &["project:web".to_owned()], None)
            .unwrap();
        assert!(issued.token.starts_with("cas_"), "{}", issued.token);
        let now = jiff::Timestamp::now();
        let ok = t.verify(&issued.token, now).unwrap().unwrap();
        assert_eq!((ok.name.as_str(), ok.role), ("ci", Role::Submit));
        assert_eq!(ok.scopes, ["project:web"]);
        // The secret is nowhere in the database file.
        let (_, secret) = parts(&issued.token).unwrap();
        drop(t);
        let bytes = std::fs::read(dir.path().join("cascade.db")).unwrap();
        let wal = std::fs::read(dir.path().join("cascade.db-wal")).unwrap_or_default();
        for file in [bytes, wal] {
            assert!(!file.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }

    #[test]
    fn wrong_revoked_expired_and_malformed_tokens_are_refused_with_their_reason() {
        let (_dir, t) = tokens();
        let now = jiff::Timestamp::now();
        let issued = t.create("a", Role::Read, &[], None).unwrap();
        let mut wrong = issued.token.clone();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        assert_eq!(t.verify(&wrong, now).unwrap(), Err(Refusal::Mismatch));
        assert_eq!(t.verify("nope", now).unwrap(), Err(Refusal::Malformed));
        let unknown = format!("cas_{}_{}", "0".repeat(12), "0".repeat(64));
        assert_eq!(t.verify(&unknown, now).unwrap(), Err(Refusal::Unknown));
        let soon = now + jiff::SignedDuration::from_secs(60);
        let short = t.create("short", Role::Read, &[], Some(soon)).unwrap();
        assert!(t.verify(&short.token, now).unwrap().is_ok());
        let later = soon + jiff::SignedDuration::from_secs(1);
        assert_eq!(
            t.verify(&short.token, later).unwrap(),
            Err(Refusal::Expired)
        );
        t.revoke("a").unwrap();
        assert_eq!(t.verify(&issued.token, now).unwrap(), Err(Refusal::Revoked));
        assert!(matches!(t.revoke("a"), Err(StoreError::NoToken(_))));
    }

    #[test]
    fn a_name_is_unique_among_tokens_in_force() {
        let (_dir, t) = tokens();
        t.create("ci", Role::Read, &[], None).unwrap();
        assert!(matches!(
            t.create("ci", Role::Admin, &[], None),
            Err(StoreError::TokenNameTaken(_))
        ));
        t.revoke("ci").unwrap();
        t.create("ci", Role::Admin, &[], None).unwrap();
        let listed = t.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed.iter().filter(|r| r.revoked_at.is_none()).count(), 1);
    }
}
