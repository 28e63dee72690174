//! Scopes of DAG submissions and their worker ids (DESIGN §3).
//!
//! A scope is `global`, `project:<id>`, `user:<id>` or `type:<id>`; its worker id is
//! `worker-<type>-<id>` (`worker-global`). When a submission names none, the scope is
//! inferred, first match wins: any task's `env.PROJECT_ID` → a `dag_id` matching
//! `proj-(\w+)-` → `global`.

use std::fmt;

/// Where a DAG runs: which worker process owns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Project(String),
    User(String),
    Type(String),
}

/// Why a scope could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "unknown scope kind `{0}` (expected `global`, `project:<id>`, `user:<id>` or `type:<id>`)"
    )]
    Kind(String),
    #[error("invalid scope id `{0}` (letters, digits, `_`, `.` and `-`, at most 64 characters)")]
    Id(String),
}

/// How a scope was decided, for logs and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeSource {
    Explicit,
    ProjectEnv,
    DagId,
    Default,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Scope {
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        if text == "global" {
            return Ok(Scope::Global);
        }
        let (kind, id) = text
            .split_once(':')
            .ok_or_else(|| ScopeError::Kind(text.to_owned()))?;
        if !valid_id(id) {
            return Err(ScopeError::Id(id.to_owned()));
        }
        let id = id.to_owned();
        match kind {
            "project" => Ok(Scope::Project(id)),
            "user" => Ok(Scope::User(id)),
            "type" => Ok(Scope::Type(id)),
            other => Err(ScopeError::Kind(other.to_owned())),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Project(_) => "project",
            Scope::User(_) => "user",
            Scope::Type(_) => "type",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Project(id) | Scope::User(id) | Scope::Type(id) => Some(id),
        }
    }

    /// `worker-<type>-<id>`, or `worker-global`.
    pub fn worker_id(&self) -> WorkerId {
        WorkerId(match self.id() {
            None => "worker-global".to_owned(),
            Some(id) => format!("worker-{}-{id}", self.kind()),
        })
    }

    /// Infers the scope of a submission (see the module docs).
    pub fn infer<'a>(
        explicit: Option<&Scope>,
        project_ids: impl IntoIterator<Item = &'a str>,
        dag_id: Option<&str>,
    ) -> (Scope, ScopeSource) {
        if let Some(s) = explicit {
            return (s.clone(), ScopeSource::Explicit);
        }
        if let Some(p) = project_ids.into_iter().find(|p| valid_id(p)) {
            return (Scope::Project(p.to_owned()), ScopeSource::ProjectEnv);
        }
        if let Some(p) = dag_id.and_then(project_in_dag_id) {
            return (Scope::Project(p), ScopeSource::DagId);
        }
        (Scope::Global, ScopeSource::Default)
    }
}

/// The first `proj-(\w+)-` in a DAG id (`\w` is ASCII letters, digits and `_`).
fn project_in_dag_id(dag_id: &str) -> Option<String> {
    let mut rest = dag_id;
    while let Some(at) = rest.find("proj-") {
        let after = &rest[at + 5..];
        let word_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if word_len > 0 && after[word_len..].starts_with('-') {
            return Some(after[..word_len].to_owned());
        }
        rest = &rest[at + 5..];
    }
    None
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            None => f.write_str("global"),
            Some(id) => write!(f, "{}:{id}", self.kind()),
        }
    }
}

/// A worker process's id, derived from its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_scope_wins() {
        let s = Scope::parse("user:ana").unwrap();
        assert_eq!(
            Scope::infer(Some(&s), ["p1"], Some("proj-x-1")),
            (s, ScopeSource::Explicit)
        );
    }

    #[test]
    fn project_env_comes_next() {
        assert_eq!(
            Scope::infer(None, ["proj-b"], Some("proj-x-1")),
            (Scope::Project("proj-b".into()), ScopeSource::ProjectEnv)
        );
    }

    #[test]
    fn dag_id_pattern_comes_third() {
        assert_eq!(
            Scope::infer(None, [], Some("proj-alpha_2-nightly")),
            (Scope::Project("alpha_2".into()), ScopeSource::DagId)
        );
        assert_eq!(
            Scope::infer(None, [], Some("x-proj-a-b")),
            (Scope::Project("a".into()), ScopeSource::DagId)
        );
        // `proj-a` without the trailing dash does not match.
        assert_eq!(
            Scope::infer(None, [], Some("proj-a")).1,
            ScopeSource::Default
        );
    }

    #[test]
    fn global_is_the_default() {
        assert_eq!(
            Scope::infer(None, [], Some("nightly")),
            (Scope::Global, ScopeSource::Default)
        );
        assert_eq!(
            Scope::infer(None, [], None).0.worker_id().as_str(),
            "worker-global"
        );
    }

    #[test]
    fn parse_display_and_worker_ids() {
        for text in ["global", "project:proj-a", "user:u1", "type:gpu"] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Scope::parse("project:proj-a").unwrap().worker_id().as_str(),
            "worker-project-proj-a"
        );
        assert_eq!(
            Scope::parse("team:x").unwrap_err().to_string(),
            "unknown scope kind `team` (expected `global`, `project:<id>`, `user:<id>` or `type:<id>`)"
        );
        assert!(Scope::parse("project:").is_err());
        assert!(Scope::parse("project:a/b").is_err());
    }
}
