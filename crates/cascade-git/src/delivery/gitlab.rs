//! GitLab payloads: `Push Hook`, `Tag Push Hook` and `Merge Request Hook`. The body's
//! `object_kind` says what it is (it is also there for system hooks, whose header does
//! not); the header is the fallback.

use super::{
    EventKind, ForgeEvent, PrAction, PullRequest, RawCommit, Repository, ignored, listed_files,
    parse_json, real_sha,
};
use crate::error::DeliveryError;
use crate::forge::Forge;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Probe {
    object_kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawProject {
    id: Option<u64>,
    path_with_namespace: Option<String>,
    git_http_url: Option<String>,
    web_url: Option<String>,
    default_branch: Option<String>,
}

/// The older `repository` block, read when `project` lacks something.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRepository {
    git_http_url: Option<String>,
    homepage: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPush {
    before: Option<String>,
    after: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    checkout_sha: Option<String>,
    user_username: Option<String>,
    project_id: Option<u64>,
    project: Option<RawProject>,
    repository: Option<RawRepository>,
    commits: Option<Vec<RawCommit>>,
    total_commits_count: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawUser {
    username: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawLastCommit {
    id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMrAttributes {
    iid: Option<u64>,
    action: Option<String>,
    oldrev: Option<String>,
    title: Option<String>,
    source_branch: Option<String>,
    target_branch: Option<String>,
    source_project_id: Option<u64>,
    target_project_id: Option<u64>,
    last_commit: Option<RawLastCommit>,
    source: Option<RawProject>,
    target: Option<RawProject>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMergeRequest {
    user: Option<RawUser>,
    project: Option<RawProject>,
    repository: Option<RawRepository>,
    object_attributes: Option<RawMrAttributes>,
}

pub(super) fn normalise(event: &str, body: &[u8]) -> Result<ForgeEvent, DeliveryError> {
    let probe: Probe = parse_json(Forge::GitLab, event, body)?;
    let kind = match probe.object_kind.as_deref() {
        Some(kind) => kind,
        None => match event {
            "Push Hook" => "push",
            "Tag Push Hook" => "tag_push",
            "Merge Request Hook" => "merge_request",
            _ => "",
        },
    };
    match kind {
        "push" | "tag_push" => Ok(push(parse_json(Forge::GitLab, event, body)?)),
        "merge_request" => merge_request(event, parse_json(Forge::GitLab, event, body)?),
        other => Ok(ignored(
            Repository::default(),
            None,
            format!("`{event}` ({other}) events start nothing"),
        )),
    }
}

fn repository(
    project: Option<RawProject>,
    project_id: Option<u64>,
    old: Option<RawRepository>,
) -> Repository {
    let p = project.unwrap_or_default();
    let old = old.unwrap_or_default();
    Repository {
        full_name: p.path_with_namespace.unwrap_or_default(),
        clone_url: p.git_http_url.or(old.git_http_url).unwrap_or_default(),
        html_url: p.web_url.or(old.homepage).unwrap_or_default(),
        project_id: p.id.or(project_id),
        default_branch: p.default_branch,
    }
}

fn push(raw: RawPush) -> ForgeEvent {
    let repository = repository(raw.project, raw.project_id, raw.repository);
    let sender = raw.user_username.filter(|s| !s.is_empty());
    let git_ref = raw.git_ref.unwrap_or_default();
    // `checkout_sha` is the commit (for an annotated tag `after` is the tag object); it
    // is null when the ref was deleted.
    let Some(sha) = real_sha(raw.checkout_sha).or_else(|| real_sha(raw.after)) else {
        return ignored(repository, sender, format!("`{git_ref}` was deleted"));
    };
    let before = real_sha(raw.before);
    let (kind, changed_files) = if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        let files = listed_files(
            &raw.commits.unwrap_or_default(),
            raw.total_commits_count,
            before.is_none(),
        );
        (
            EventKind::Push {
                branch: branch.to_owned(),
            },
            files,
        )
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        (
            EventKind::Tag {
                name: tag.to_owned(),
            },
            None,
        )
    } else {
        return ignored(
            repository,
            sender,
            format!("`{git_ref}` is not a branch or tag"),
        );
    };
    ForgeEvent {
        kind,
        repository,
        sha: Some(sha),
        before,
        changed_files,
        sender,
    }
}

fn action(raw: Option<&str>, has_oldrev: bool) -> (PrAction, bool) {
    match raw.unwrap_or_default() {
        "open" => (PrAction::Opened, false),
        "reopen" => (PrAction::Reopened, false),
        "close" => (PrAction::Closed, false),
        "merge" => (PrAction::Closed, true),
        // New commits come with the previous head in `oldrev`; without it only the
        // title, description, labels or similar changed.
        "update" if has_oldrev => (PrAction::Synchronize, false),
        "update" => (PrAction::Edited, false),
        other => (PrAction::Other(other.to_owned()), false),
    }
}

fn merge_request(event: &str, raw: RawMergeRequest) -> Result<ForgeEvent, DeliveryError> {
    let attrs = raw.object_attributes.ok_or(DeliveryError::MissingField {
        forge: Forge::GitLab,
        event: event.to_owned(),
        field: "object_attributes",
    })?;
    let oldrev = real_sha(attrs.oldrev);
    let (action, merged) = action(attrs.action.as_deref(), oldrev.is_some());
    let from_fork = if let (Some(s), Some(t)) = (attrs.source_project_id, attrs.target_project_id) {
        s != t
    } else {
        let name = |p: &Option<RawProject>| p.as_ref().and_then(|p| p.path_with_namespace.clone());
        name(&attrs.source).is_none() || name(&attrs.source) != name(&attrs.target)
    };
    let head_sha = attrs.last_commit.and_then(|c| c.id).unwrap_or_default();
    let before = oldrev.filter(|_| action == PrAction::Synchronize);
    let pr = PullRequest {
        action,
        merged,
        number: attrs.iid.unwrap_or_default(),
        title: attrs.title.unwrap_or_default(),
        head_ref: attrs.source_branch.unwrap_or_default(),
        head_sha: head_sha.clone(),
        head_clone_url: attrs.source.and_then(|s| s.git_http_url),
        base_ref: attrs.target_branch.unwrap_or_default(),
        base_sha: None,
        from_fork,
    };
    let project_id = attrs.target_project_id;
    Ok(ForgeEvent {
        kind: EventKind::PullRequest(pr),
        repository: repository(raw.project.or(attrs.target), project_id, raw.repository),
        sha: real_sha(Some(head_sha)),
        before,
        changed_files: None,
        sender: raw.user.and_then(|u| u.username).filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mr_actions() {
        assert_eq!(action(Some("open"), false), (PrAction::Opened, false));
        assert_eq!(action(Some("update"), true), (PrAction::Synchronize, false));
        assert_eq!(action(Some("update"), false), (PrAction::Edited, false));
        assert_eq!(action(Some("merge"), false), (PrAction::Closed, true));
        assert_eq!(action(Some("close"), false), (PrAction::Closed, false));
        assert_eq!(action(Some("reopen"), false), (PrAction::Reopened, false));
        assert_eq!(
            action(Some("approved"), false),
            (PrAction::Other("approved".into()), false)
        );
        assert_eq!(action(None, false), (PrAction::Other(String::new()), false));
    }

    #[test]
    fn fork_mr_and_branch_deletion() {
        let body = br#"{"object_kind": "merge_request", "object_attributes": {"iid": 7,
            "action": "open", "source_project_id": 2, "target_project_id": 1,
            "source_branch": "f", "target_branch": "main", "last_commit": {"id": "abc"}}}"#;
        let e = normalise("Merge Request Hook", body).unwrap();
        let EventKind::PullRequest(pr) = &e.kind else {
            panic!("not a merge request");
        };
        assert!(pr.from_fork);
        assert_eq!((pr.number, e.sha.as_deref()), (7, Some("abc")));
        assert_eq!(e.repository.project_id, Some(1));

        let body = br#"{"object_kind": "push", "ref": "refs/heads/gone",
            "before": "1111111111111111111111111111111111111111",
            "after": "0000000000000000000000000000000000000000", "checkout_sha": null}"#;
        assert!(matches!(
            normalise("Push Hook", body).unwrap().kind,
            EventKind::Ignored { .. }
        ));
        let body = br#"{"object_kind": "merge_request"}"#;
        assert!(matches!(
            normalise("Merge Request Hook", body),
            Err(DeliveryError::MissingField { .. })
        ));
        let body = br#"{"object_kind": "note"}"#;
        assert!(matches!(
            normalise("Note Hook", body).unwrap().kind,
            EventKind::Ignored { .. }
        ));
    }
}
