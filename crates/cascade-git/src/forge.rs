//! The git hosts Cascade talks to ([`Forge`], defined once in `cascade-spec`, whose
//! `cascade.toml` names them, and re-exported here) and how a delivery's headers say which
//! one sent it.
//!
//! Headers come in through the small [`Headers`] trait (case-insensitive lookup), not an
//! HTTP crate's type: this crate does no HTTP serving, and the server adapts its header
//! map to a list of `(name, value)` pairs (values that are not UTF-8 are dropped there).
//!
//! Gitea sends GitHub's headers too (`X-GitHub-Event`, `X-Hub-Signature-256`, …), so
//! [`detect`] checks `X-Gitea-Event` before `X-GitHub-Event`.

pub use cascade_spec::config::Forge;

/// The header naming the event (`push`, `pull_request`, `Push Hook`, …).
pub fn event_header(forge: Forge) -> &'static str {
    match forge {
        Forge::GitHub => "X-GitHub-Event",
        Forge::Gitea => "X-Gitea-Event",
        Forge::GitLab => "X-Gitlab-Event",
    }
}

/// Which forge sent a delivery, from its headers; `None` when no forge's event header
/// is there.
pub fn detect(headers: &(impl Headers + ?Sized)) -> Option<Forge> {
    // Order matters: Gitea also sends `X-GitHub-Event`.
    [Forge::Gitea, Forge::GitHub, Forge::GitLab]
        .into_iter()
        .find(|f| headers.header(event_header(*f)).is_some())
}

/// Case-insensitive header lookup. The first header of a name wins.
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Headers for [(K, V); N] {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_takes_the_first() {
        let h = [("x-github-EVENT", "push"), ("X-GitHub-Event", "ping")];
        assert_eq!(h.header("X-GitHub-Event"), Some("push"));
        assert_eq!(h.header("x-github-delivery"), None);
    }

    #[test]
    fn gitea_is_detected_before_github() {
        let gitea = vec![
            ("X-GitHub-Event".to_owned(), "push".to_owned()),
            ("X-Gitea-Event".to_owned(), "push".to_owned()),
        ];
        assert_eq!(detect(&gitea), Some(Forge::Gitea));
        assert_eq!(detect(&[("X-GitHub-Event", "push")]), Some(Forge::GitHub));
        assert_eq!(
            detect(&[("x-gitlab-event", "Push Hook")]),
            Some(Forge::GitLab)
        );
        assert_eq!(detect(&[("Content-Type", "application/json")]), None);
    }
}
