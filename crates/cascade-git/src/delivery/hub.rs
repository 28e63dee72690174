//! GitHub and Gitea payloads. Gitea's webhook bodies copy GitHub's shape (with a few
//! fields missing or renamed), so one set of raw structs, all fields optional, reads both;
//! the differences (tag events, PR action names, `repo_id`) are handled by `forge`.

use super::{
    EventKind, ForgeEvent, PrAction, PullRequest, RawCommit, Repository, ignored, is_zero_sha,
    listed_files, parse_json, real_sha,
};
use crate::error::DeliveryError;
use crate::forge::Forge;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRepo {
    id: Option<u64>,
    full_name: Option<String>,
    clone_url: Option<String>,
    html_url: Option<String>,
    default_branch: Option<String>,
}

impl RawRepo {
    fn normalise(self) -> Repository {
        Repository {
            full_name: self.full_name.unwrap_or_default(),
            clone_url: self.clone_url.unwrap_or_default(),
            html_url: self.html_url.unwrap_or_default(),
            project_id: None,
            default_branch: self.default_branch,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawUser {
    login: Option<String>,
    username: Option<String>,
}

fn sender(user: Option<RawUser>) -> Option<String> {
    user.and_then(|u| u.login.or(u.username))
        .filter(|s| !s.is_empty())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHeadCommit {
    id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    before: Option<String>,
    after: Option<String>,
    created: Option<bool>,
    deleted: Option<bool>,
    forced: Option<bool>,
    commits: Option<Vec<RawCommit>>,
    /// Gitea only.
    total_commits: Option<u64>,
    head_commit: Option<RawHeadCommit>,
    repository: Option<RawRepo>,
    sender: Option<RawUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawCreate {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    ref_type: Option<String>,
    /// Gitea only.
    sha: Option<String>,
    repository: Option<RawRepo>,
    sender: Option<RawUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSide {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
    repo: Option<RawRepo>,
    /// Gitea sends the repository id beside (or instead of) `repo`.
    repo_id: Option<u64>,
}

impl RawSide {
    fn repo_id(&self) -> Option<u64> {
        self.repo.as_ref().and_then(|r| r.id).or(self.repo_id)
    }

    fn full_name(&self) -> Option<&str> {
        self.repo.as_ref().and_then(|r| r.full_name.as_deref())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPr {
    number: Option<u64>,
    title: Option<String>,
    merged: Option<bool>,
    head: RawSide,
    base: RawSide,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPrEvent {
    action: Option<String>,
    number: Option<u64>,
    pull_request: Option<RawPr>,
    before: Option<String>,
    repository: Option<RawRepo>,
    sender: Option<RawUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRepositoryDispatch {
    action: Option<String>,
    branch: Option<String>,
    client_payload: Option<Value>,
    repository: Option<RawRepo>,
    sender: Option<RawUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawWorkflowDispatch {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    inputs: Option<IndexMap<String, Value>>,
    repository: Option<RawRepo>,
    sender: Option<RawUser>,
}

/// Reads a GitHub or Gitea body for the event named by its event header.
pub(super) fn normalise(
    forge: Forge,
    event: &str,
    body: &[u8],
) -> Result<ForgeEvent, DeliveryError> {
    match event {
        "push" => Ok(push(forge, parse_json(forge, event, body)?)),
        "create" => Ok(create(forge, parse_json(forge, event, body)?)),
        "pull_request" => pull_request(forge, parse_json(forge, event, body)?),
        "repository_dispatch" => Ok(repository_dispatch(parse_json(forge, event, body)?)),
        "workflow_dispatch" => Ok(workflow_dispatch(parse_json(forge, event, body)?)),
        "ping" => {
            let raw: RawCreate = parse_json(forge, event, body)?;
            Ok(ForgeEvent {
                kind: EventKind::Ping,
                ..ignored(repo(raw.repository), sender(raw.sender), String::new())
            })
        }
        other => {
            // Still JSON: an unreadable body is an error whatever the event.
            let _: Value = parse_json(forge, event, body)?;
            Ok(ignored(
                Repository::default(),
                None,
                format!("`{other}` events start nothing"),
            ))
        }
    }
}

fn repo(raw: Option<RawRepo>) -> Repository {
    raw.map(RawRepo::normalise).unwrap_or_default()
}

fn push(forge: Forge, raw: RawPush) -> ForgeEvent {
    let repository = repo(raw.repository);
    let sender = sender(raw.sender);
    let git_ref = raw.git_ref.unwrap_or_default();
    let after = raw.after.unwrap_or_default();
    if raw.deleted.unwrap_or(false) || is_zero_sha(&after) {
        return ignored(repository, sender, format!("`{git_ref}` was deleted"));
    }
    if after.is_empty() {
        return ignored(repository, sender, "the push names no commit".to_owned());
    }
    let before = real_sha(raw.before);
    let kind = if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        EventKind::Push {
            branch: branch.to_owned(),
        }
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        if forge == Forge::Gitea {
            return ignored(
                repository,
                sender,
                "Gitea tags are taken from the `create` event".to_owned(),
            );
        }
        EventKind::Tag {
            name: tag.to_owned(),
        }
    } else {
        return ignored(
            repository,
            sender,
            format!("`{git_ref}` is not a branch or tag"),
        );
    };
    // For an annotated tag `after` is the tag object; `head_commit` is the commit.
    let head = raw.head_commit.and_then(|c| c.id).filter(|s| !s.is_empty());
    let sha = match kind {
        EventKind::Tag { .. } => head.or(Some(after)),
        _ => Some(after),
    };
    let partial = raw.forced.unwrap_or(false) || raw.created.unwrap_or(false) || before.is_none();
    let changed_files = match kind {
        EventKind::Tag { .. } => None,
        _ => listed_files(&raw.commits.unwrap_or_default(), raw.total_commits, partial),
    };
    ForgeEvent {
        kind,
        repository,
        sha,
        before,
        changed_files,
        sender,
    }
}

fn create(forge: Forge, raw: RawCreate) -> ForgeEvent {
    let repository = repo(raw.repository);
    let sender = sender(raw.sender);
    let name = raw.git_ref.unwrap_or_default();
    let sha = real_sha(raw.sha);
    match (forge, raw.ref_type.as_deref(), sha) {
        (Forge::Gitea, Some("tag"), Some(sha)) => ForgeEvent {
            kind: EventKind::Tag { name },
            repository,
            sha: Some(sha),
            before: None,
            changed_files: None,
            sender,
        },
        (Forge::GitHub, Some("tag"), _) => ignored(
            repository,
            sender,
            "GitHub tags are taken from the push of `refs/tags/…`".to_owned(),
        ),
        (_, kind, _) => ignored(
            repository,
            sender,
            format!(
                "a `create` of a {} starts nothing (its push does)",
                kind.unwrap_or("ref")
            ),
        ),
    }
}

fn pull_request(forge: Forge, raw: RawPrEvent) -> Result<ForgeEvent, DeliveryError> {
    let pr = raw.pull_request.ok_or(DeliveryError::MissingField {
        forge,
        event: "pull_request".to_owned(),
        field: "pull_request",
    })?;
    let repository = repo(raw.repository);
    let from_fork = is_fork(&pr.head, &pr.base, &repository);
    let head_sha = pr.head.sha.clone().unwrap_or_default();
    let action = PrAction::from_hub(raw.action.as_deref().unwrap_or_default());
    let before = real_sha(raw.before).filter(|_| action == PrAction::Synchronize);
    let head_clone_url = pr.head.repo.as_ref().and_then(|r| r.clone_url.clone());
    let normalised = PullRequest {
        merged: action == PrAction::Closed && pr.merged.unwrap_or(false),
        action,
        number: pr.number.or(raw.number).unwrap_or_default(),
        title: pr.title.unwrap_or_default(),
        head_ref: pr.head.git_ref.unwrap_or_default(),
        head_clone_url,
        base_ref: pr.base.git_ref.unwrap_or_default(),
        base_sha: real_sha(pr.base.sha),
        from_fork,
        head_sha: head_sha.clone(),
    };
    Ok(ForgeEvent {
        kind: EventKind::PullRequest(normalised),
        repository,
        sha: real_sha(Some(head_sha)),
        before,
        changed_files: None,
        sender: sender(raw.sender),
    })
}

/// A fork unless the head's repository is known to be the base's.
fn is_fork(head: &RawSide, base: &RawSide, repository: &Repository) -> bool {
    if let (Some(h), Some(b)) = (head.repo_id(), base.repo_id()) {
        return h != b;
    }
    let base_name = base.full_name().unwrap_or(&repository.full_name);
    match head.full_name() {
        Some(h) => base_name.is_empty() || !h.eq_ignore_ascii_case(base_name),
        None => true,
    }
}

fn repository_dispatch(raw: RawRepositoryDispatch) -> ForgeEvent {
    ForgeEvent {
        kind: EventKind::RepositoryDispatch {
            event_type: raw.action.unwrap_or_default(),
            branch: raw.branch.filter(|b| !b.is_empty()),
            client_payload: raw.client_payload.unwrap_or(Value::Null),
        },
        repository: repo(raw.repository),
        sha: None,
        before: None,
        changed_files: None,
        sender: sender(raw.sender),
    }
}

fn workflow_dispatch(raw: RawWorkflowDispatch) -> ForgeEvent {
    let inputs = raw
        .inputs
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    ForgeEvent {
        kind: EventKind::WorkflowDispatch {
            git_ref: raw.git_ref.unwrap_or_default(),
            inputs,
        },
        repository: repo(raw.repository),
        sha: None,
        before: None,
        changed_files: None,
        sender: sender(raw.sender),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(id: Option<u64>, name: Option<&str>) -> RawSide {
        RawSide {
            repo: name.map(|n| RawRepo {
                id,
                full_name: Some(n.to_owned()),
                ..RawRepo::default()
            }),
            repo_id: if name.is_none() { id } else { None },
            ..RawSide::default()
        }
    }

    #[test]
    fn fork_detection() {
        let r = Repository {
            full_name: "o/r".into(),
            ..Repository::default()
        };
        assert!(!is_fork(
            &side(Some(1), Some("o/r")),
            &side(Some(1), Some("o/r")),
            &r
        ));
        assert!(is_fork(
            &side(Some(2), Some("f/r")),
            &side(Some(1), Some("o/r")),
            &r
        ));
        // Only `repo_id` (trimmed Gitea payloads).
        assert!(!is_fork(&side(Some(6), None), &side(Some(6), None), &r));
        // Names only, compared case-insensitively.
        assert!(!is_fork(&side(None, Some("O/R")), &side(None, None), &r));
        assert!(is_fork(&side(None, Some("f/r")), &side(None, None), &r));
        // A deleted fork (`repo: null`) counts as a fork.
        assert!(is_fork(&side(None, None), &side(Some(1), Some("o/r")), &r));
    }

    #[test]
    fn workflow_dispatch_inputs_become_text() {
        let raw: RawWorkflowDispatch = serde_json::from_str(
            r#"{"ref": "refs/heads/main", "inputs": {"a": "x", "b": true, "c": 3, "d": null}}"#,
        )
        .unwrap();
        let EventKind::WorkflowDispatch { inputs, git_ref } = workflow_dispatch(raw).kind else {
            panic!("not a workflow_dispatch");
        };
        assert_eq!(git_ref, "refs/heads/main");
        assert_eq!(
            inputs.into_iter().collect::<Vec<_>>(),
            [
                ("a".into(), "x".into()),
                ("b".into(), "true".into()),
                ("c".into(), "3".into()),
                ("d".into(), String::new())
            ]
        );
    }

    #[test]
    fn nulls_everywhere_are_tolerated() {
        let body = br#"{"action": null, "number": null, "pull_request": {"number": null,
            "title": null, "merged": null, "head": {"ref": null, "sha": null, "repo": null},
            "base": {"ref": null, "sha": null, "repo": null}}, "repository": null, "sender": null}"#;
        let e = normalise(Forge::GitHub, "pull_request", body).unwrap();
        let EventKind::PullRequest(pr) = e.kind else {
            panic!("not a pull request");
        };
        assert!(pr.from_fork);
        assert_eq!(e.sha, None);
        let body = br#"{"ref": null, "before": null, "after": null, "commits": null}"#;
        assert!(matches!(
            normalise(Forge::GitHub, "push", body).unwrap().kind,
            EventKind::Ignored { .. }
        ));
    }
}
