//! Who is publishing ([`Identity`]: org, project, source) and the topic layout of DESIGN
//! §5, MQTT-style:
//!
//! - telemetry: `cascade/telemetry/{org}/{project}/{run_id}/events`
//! - control: `cascade/control/{org}/{project}/{command}`, subscribed as
//!   `cascade/control/{org}/{project}/#`
//!
//! Org and project become topic levels (and NATS subject tokens), so they are limited to
//! `A-Z a-z 0-9 _ -`: no `/`, `.`, wildcards or spaces that would change the topic's shape.

use crate::error::ConnectError;
use cascade_plan::RunId;

/// Environment variable naming the organisation (default `local`).
pub const ORG_VAR: &str = "CASCADE_ORG_ID";
/// Environment variable naming the project (default `default`).
pub const PROJECT_VAR: &str = "CASCADE_PROJECT_ID";

/// Who publishes: the org and project every topic and header carries, and the `source`
/// (`<host>-<pid>`) that tells engines apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    org: String,
    project: String,
    source: String,
}

impl Identity {
    pub fn new(org: &str, project: &str, source: &str) -> Result<Self, ConnectError> {
        Ok(Self {
            org: name("org id", org)?.to_owned(),
            project: name("project id", project)?.to_owned(),
            source: source.to_owned(),
        })
    }

    /// From `CASCADE_ORG_ID` and `CASCADE_PROJECT_ID` (unset or empty: `local` and
    /// `default`), with [`default_source`].
    pub fn from_env() -> Result<Self, ConnectError> {
        Self::from_vars(|var| std::env::var(var).ok())
    }

    /// As [`Identity::from_env`], reading variables through `lookup`.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConnectError> {
        let var = |name, default: &str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self::new(
            &var(ORG_VAR, "local"),
            &var(PROJECT_VAR, "default"),
            &default_source(),
        )
    }

    pub fn org(&self) -> &str {
        &self.org
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// `cascade/telemetry/{org}/{project}/{run_id}/events`
    pub fn telemetry_topic(&self, run_id: &RunId) -> String {
        format!(
            "cascade/telemetry/{}/{}/{run_id}/events",
            self.org, self.project
        )
    }
}

/// `<host>-<pid>` of this process (`unknown` when the host name cannot be read).
pub fn default_source() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Checks one topic level: 1 to 64 characters from `A-Z a-z 0-9 _ -`.
pub(crate) fn name<'a>(what: &'static str, text: &'a str) -> Result<&'a str, ConnectError> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then_some(text).ok_or_else(|| ConnectError::BadName {
        what,
        found: text.to_owned(),
    })
}

/// Whether an MQTT topic `filter` (`+` one level, `#` as the last level: all the rest)
/// matches `topic`.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        match (f, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_from_variables_with_defaults() {
        let id = Identity::from_vars(|_| None).unwrap();
        assert_eq!((id.org(), id.project()), ("local", "default"));
        assert!(id.source().ends_with(&format!("-{}", std::process::id())));
        let id = Identity::from_vars(|v| match v {
            ORG_VAR => Some("acme".into()),
            PROJECT_VAR => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!((id.org(), id.project()), ("acme", "default"));
    }

    #[test]
    fn names_that_would_change_a_topic_are_refused() {
        for bad in ["a/b", "a.b", "+", "#", "*", ">", "a b", "", &"x".repeat(65)] {
            let err = Identity::new(bad, "p", "s").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("org id `{bad}`: expected 1 to 64 characters from `A-Z a-z 0-9 _ -`")
            );
        }
        assert!(Identity::new("acme-1", "web_app", "h-1").is_ok());
    }

    #[test]
    fn telemetry_topic_layout() {
        let id = Identity::new("acme", "web", "h-1").unwrap();
        let run = RunId::parse("abc-12").unwrap();
        assert_eq!(
            id.telemetry_topic(&run),
            "cascade/telemetry/acme/web/abc-12/events"
        );
    }

    #[test]
    fn mqtt_filters_match_like_the_spec() {
        let yes = [
            ("a/b/c", "a/b/c"),
            ("a/+/c", "a/b/c"),
            ("a/#", "a/b/c"),
            ("a/#", "a"),
            ("#", "a/b"),
            ("+/+", "a/b"),
            ("a/+", "a/"),
        ];
        let no = [
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("a/+", "a/b/c"),
            ("a/+/c", "a/b/d"),
            ("b/#", "a/b"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} should match {t}");
        }
        for (f, t) in no {
            assert!(!matches(f, t), "{f} should not match {t}");
        }
    }
}
