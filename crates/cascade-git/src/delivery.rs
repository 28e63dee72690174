//! The normaliser: a webhook delivery (headers + raw body) from GitHub, Gitea or GitLab
//! becomes one [`Delivery`] with a forge-independent [`ForgeEvent`], and from there a
//! [`cascade_plan::Trigger`].
//!
//! Bodies are read with serde into raw structs that default every field a forge may omit
//! or send as `null` (`hub.rs` for GitHub and Gitea, whose payloads share a shape;
//! `gitlab.rs`). Nothing here panics on a body, and every string stays data: nothing is
//! ever given to a shell.
//!
//! Decisions:
//! - **Delivery id** (for deduplication by the caller): `X-GitHub-Delivery`,
//!   `X-Gitea-Delivery`, GitLab's `Idempotency-Key` (the same on retries of one event)
//!   else `X-Gitlab-Webhook-UUID`. Missing → error; 1–200 printable ASCII characters.
//! - **Forge check**: a delivery whose headers name another forge than the hook it came in
//!   on is refused (Gitea posting to `/hooks/github`), so one hook has one parser.
//! - **Tags** are `EventKind::Tag` and become `event_name = "push"` with
//!   `ref = refs/tags/<name>`, as on GitHub (`on.push.tags` matches them). A tag arrives
//!   twice on GitHub and Gitea (a `push` of `refs/tags/…` and a `create` event). GitHub's
//!   `create` has no SHA, so there the push counts and `create` is ignored; Gitea's
//!   `create` has the SHA and Woodpecker builds Gitea tags from it, so there `create`
//!   counts and the push of `refs/tags/…` is ignored. GitLab sends `Tag Push Hook` only;
//!   its SHA is `checkout_sha` (the commit), not `after` (an annotated tag object).
//! - **Deletions** (a branch or tag push whose new SHA is all zeros) are ignored.
//! - **Pull request actions** are normalised to GitHub's words: Gitea `synchronized` →
//!   `synchronize`, `label_updated`/`label_cleared` → `labeled`/`unlabeled`; GitLab `open`
//!   → `opened`, `reopen` → `reopened`, `close` → `closed`, `merge` → `closed` with
//!   `merged`, `update` with `oldrev` (new commits) → `synchronize`, and `update` without
//!   `oldrev` (title, labels, description only) → `edited`. So a GitLab MR edit is
//!   recognised but does not start the default `pull_request` types (opened, synchronize,
//!   reopened); a pipeline that lists `edited` runs on it.
//! - **Forks**: a PR is from a fork when its head repository differs from its base
//!   repository (ids when both are known, else full names, case-insensitively). When the
//!   head repository is unknown (GitHub sends `null` for a deleted fork) it counts as a
//!   fork: the safe side, no secrets and ci.yaml from the base.
//! - **Changed files** from the payload (`commits[].added/modified/removed`) are given
//!   only when they can be complete: a push that is not forced, does not create the
//!   branch, and lists every commit (fewer than 20, or as many as `total_commits`). Else
//!   `None`, and the orchestrator asks git ([`crate::clone::Repos::changed_paths`]),
//!   which is the authority anyway: payload lists are a shortcut.
//! - **`event.*`** is [`Delivery::payload`], documented there.

mod gitlab;
mod hub;

use crate::error::{DeliveryError, IntakeError};
use crate::forge::{Forge, Headers};
use cascade_plan::Trigger;
use indexmap::IndexMap;
use serde_json::{Value, json};

/// Bodies larger than this are refused (GitHub caps its payloads at 25 MB).
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// The longest delivery id accepted.
pub const MAX_DELIVERY_ID: usize = 200;

/// One webhook delivery, authenticated and normalised.
///
/// It is also what the server stores in its event log and routes, as it is (serde): the
/// JSON shape is `{"forge", "delivery_id", "event": {"kind": {"type": "push", …},
/// "repository", "sha", "before", "changed_files", "sender"}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub forge: Forge,
    /// The forge's id for this delivery; the same on redeliveries, so it deduplicates.
    pub delivery_id: String,
    pub event: ForgeEvent,
}

/// What happened, in one vocabulary for every forge.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ForgeEvent {
    pub kind: EventKind,
    pub repository: Repository,
    /// The commit to build and report statuses on (the PR head for pull requests).
    /// `None` when the event names no commit (dispatches, pings, ignored events).
    pub sha: Option<String>,
    /// The previous commit of the ref (push `before`, PR `before`/`oldrev`); `None` when
    /// the ref was created or the forge does not say.
    pub before: Option<String>,
    /// Files changed, from the payload, when the payload's list is complete.
    pub changed_files: Option<Vec<String>>,
    /// The login of who caused the event.
    pub sender: Option<String>,
}

/// The kind of event, with what each kind needs. Serialised tagged by `type`
/// (`{"type": "pull_request", "action": "closed", "merged": true, …}`), the names of
/// [`EventKind::name`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Push {
        branch: String,
    },
    Tag {
        name: String,
    },
    PullRequest(PullRequest),
    RepositoryDispatch {
        event_type: String,
        /// GitHub's `branch`: the branch the dispatch runs on (the default branch).
        branch: Option<String>,
        client_payload: Value,
    },
    WorkflowDispatch {
        /// The full ref to run on (`refs/heads/main`).
        git_ref: String,
        inputs: IndexMap<String, String>,
    },
    /// The forge checking the hook works.
    Ping,
    /// A delivery that starts nothing, and why.
    Ignored {
        reason: String,
    },
}

/// A pull (GitHub, Gitea) or merge (GitLab) request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PullRequest {
    pub action: PrAction,
    /// True only for a `closed` that merged.
    pub merged: bool,
    /// GitHub/Gitea `number`, GitLab `iid`.
    pub number: u64,
    pub title: String,
    pub head_ref: String,
    pub head_sha: String,
    /// Where the head lives (a fork's URL for fork PRs), when the forge says.
    pub head_clone_url: Option<String>,
    pub base_ref: String,
    /// The base branch's commit as the forge saw it; GitLab does not send it.
    pub base_sha: Option<String>,
    pub from_fork: bool,
}

/// Pull request actions, in GitHub's words; serialised as those words
/// ([`PrAction::as_str`]), an `Other` as the forge spelled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrAction {
    Opened,
    Synchronize,
    Reopened,
    Closed,
    Edited,
    Labeled,
    Unlabeled,
    ReadyForReview,
    /// Any other action, as the forge spelled it.
    Other(String),
}

impl PrAction {
    pub fn as_str(&self) -> &str {
        match self {
            PrAction::Opened => "opened",
            PrAction::Synchronize => "synchronize",
            PrAction::Reopened => "reopened",
            PrAction::Closed => "closed",
            PrAction::Edited => "edited",
            PrAction::Labeled => "labeled",
            PrAction::Unlabeled => "unlabeled",
            PrAction::ReadyForReview => "ready_for_review",
            PrAction::Other(s) => s,
        }
    }

    /// From GitHub's or Gitea's `action` field (GitHub's words, and Gitea's spellings
    /// of them); any other word is [`PrAction::Other`]. The inverse of
    /// [`PrAction::as_str`].
    pub fn from_hub(action: &str) -> Self {
        match action {
            "opened" => PrAction::Opened,
            "synchronize" | "synchronized" => PrAction::Synchronize,
            "reopened" => PrAction::Reopened,
            "closed" => PrAction::Closed,
            "edited" => PrAction::Edited,
            "labeled" | "label_updated" => PrAction::Labeled,
            "unlabeled" | "label_cleared" => PrAction::Unlabeled,
            "ready_for_review" => PrAction::ReadyForReview,
            other => PrAction::Other(other.to_owned()),
        }
    }
}

impl serde::Serialize for PrAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for PrAction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(PrAction::from_hub(&word))
    }
}

/// The repository an event belongs to (the base repository for pull requests).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Repository {
    /// `owner/name` (GitLab: `path_with_namespace`).
    pub full_name: String,
    pub clone_url: String,
    pub html_url: String,
    /// GitLab's numeric project id (its status API wants it).
    pub project_id: Option<u64>,
    pub default_branch: Option<String>,
}

/// Where the orchestrator reads `ci.yaml` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRev {
    Sha(String),
    /// A full ref name (`refs/heads/main`) to resolve with a fetch.
    Ref(String),
}

impl Delivery {
    /// Verifies the signature, then parses: the order the gateway must keep, so no
    /// unauthenticated body is ever parsed. [`IntakeError::Signature`] means 401.
    pub fn authenticate(
        forge: Forge,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        secret: &[u8],
    ) -> Result<Self, IntakeError> {
        crate::signature::verify(forge, headers, body, secret)?;
        Ok(Self::parse(forge, headers, body)?)
    }

    /// Parses a delivery that arrived on `forge`'s hook. Does not check the signature.
    pub fn parse(
        forge: Forge,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
    ) -> Result<Self, DeliveryError> {
        if let Some(found) = crate::forge::detect(headers).filter(|f| *f != forge) {
            return Err(DeliveryError::ForgeMismatch {
                expected: forge,
                found,
            });
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(DeliveryError::TooLarge {
                found: body.len(),
                max: MAX_BODY_BYTES,
            });
        }
        let delivery_id = delivery_id(forge, headers)?;
        let event_header = crate::forge::event_header(forge);
        let event_name = headers
            .header(event_header)
            .ok_or(DeliveryError::MissingHeader {
                header: event_header,
            })?;
        let event = match forge {
            Forge::GitHub | Forge::Gitea => hub::normalise(forge, event_name, body)?,
            Forge::GitLab => gitlab::normalise(event_name, body)?,
        };
        Ok(Self {
            forge,
            delivery_id,
            event,
        })
    }

    /// The trigger for planning, or `None` for pings and ignored deliveries.
    ///
    /// `changed_paths` is the payload's list when complete; the orchestrator replaces it
    /// with git's answer when it has one.
    pub fn trigger(&self) -> Option<Trigger> {
        let (event_name, inputs) = match &self.event.kind {
            EventKind::Push { .. } | EventKind::Tag { .. } => ("push", IndexMap::new()),
            EventKind::PullRequest(_) => ("pull_request", IndexMap::new()),
            EventKind::RepositoryDispatch { .. } => ("repository_dispatch", IndexMap::new()),
            EventKind::WorkflowDispatch { inputs, .. } => ("workflow_dispatch", inputs.clone()),
            EventKind::Ping | EventKind::Ignored { .. } => return None,
        };
        Some(Trigger {
            event_name: event_name.to_owned(),
            payload: self.payload(),
            inputs,
            changed_paths: self.event.changed_files.clone(),
        })
    }

    /// The normalised event as JSON, what `event.*` expressions read:
    ///
    /// ```json
    /// {"forge": "github", "delivery": "<id>", "kind": "push|tag|pull_request|
    ///  repository_dispatch|workflow_dispatch|ping|ignored",
    ///  "ref": "refs/heads/main", "ref_name": "main", "sha": "…", "before": "…",
    ///  "sender": "octocat", "changed_files": […] | null,
    ///  "repository": {"full_name", "clone_url", "html_url", "project_id", "default_branch"},
    ///  // pull_request only:
    ///  "action": "opened", "pull_request": {"number", "title", "action", "merged",
    ///    "head": {"ref", "sha", "clone_url"}, "base": {"ref", "sha"}, "from_fork"},
    ///  // repository_dispatch only (DESIGN §4 shape):
    ///  "event_type": "agent:complete", "client_payload": {…},
    ///  // workflow_dispatch only:
    ///  "inputs": {…}}
    /// ```
    ///
    /// For a pull request `ref` is `refs/heads/<head branch>`; absent keys are `null`.
    pub fn payload(&self) -> Value {
        let e = &self.event;
        let mut v = json!({
            "forge": self.forge.as_str(),
            "delivery": self.delivery_id,
            "kind": e.kind.name(),
            "ref": e.git_ref(),
            "ref_name": e.ref_name(),
            "sha": e.sha,
            "before": e.before,
            "sender": e.sender,
            "changed_files": e.changed_files,
            "repository": {
                "full_name": e.repository.full_name,
                "clone_url": e.repository.clone_url,
                "html_url": e.repository.html_url,
                "project_id": e.repository.project_id,
                "default_branch": e.repository.default_branch,
            },
        });
        let extra = match &e.kind {
            EventKind::PullRequest(pr) => json!({
                "action": pr.action.as_str(),
                "pull_request": {
                    "number": pr.number,
                    "title": pr.title,
                    "action": pr.action.as_str(),
                    "merged": pr.merged,
                    "head": {"ref": pr.head_ref, "sha": pr.head_sha, "clone_url": pr.head_clone_url},
                    "base": {"ref": pr.base_ref, "sha": pr.base_sha},
                    "from_fork": pr.from_fork,
                },
            }),
            EventKind::RepositoryDispatch {
                event_type,
                client_payload,
                ..
            } => {
                json!({"action": event_type, "event_type": event_type, "client_payload": client_payload})
            }
            EventKind::WorkflowDispatch { inputs, .. } => json!({ "inputs": inputs }),
            EventKind::Ignored { reason } => json!({ "reason": reason }),
            _ => json!({}),
        };
        if let (Value::Object(map), Value::Object(extra)) = (&mut v, extra) {
            map.extend(extra);
        }
        v
    }
}

impl EventKind {
    /// The kind's name: `push`, `tag`, `pull_request`, `repository_dispatch`,
    /// `workflow_dispatch`, `ping`, `ignored` (the `type` it is serialised with, and
    /// the event log's `kind`).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Push { .. } => "push",
            EventKind::Tag { .. } => "tag",
            EventKind::PullRequest(_) => "pull_request",
            EventKind::RepositoryDispatch { .. } => "repository_dispatch",
            EventKind::WorkflowDispatch { .. } => "workflow_dispatch",
            EventKind::Ping => "ping",
            EventKind::Ignored { .. } => "ignored",
        }
    }
}

impl ForgeEvent {
    /// The full ref the event is about: `refs/heads/<branch>`, `refs/tags/<name>`, the PR
    /// head branch, the dispatch's branch or ref.
    pub fn git_ref(&self) -> Option<String> {
        match &self.kind {
            EventKind::Push { branch } => Some(format!("refs/heads/{branch}")),
            EventKind::Tag { name } => Some(format!("refs/tags/{name}")),
            EventKind::PullRequest(pr) => Some(format!("refs/heads/{}", pr.head_ref)),
            EventKind::RepositoryDispatch { branch, .. } => {
                branch.as_ref().map(|b| format!("refs/heads/{b}"))
            }
            EventKind::WorkflowDispatch { git_ref, .. } => Some(git_ref.clone()),
            EventKind::Ping | EventKind::Ignored { .. } => None,
        }
    }

    /// The short name of [`ForgeEvent::git_ref`] (`main`, `v1.0`).
    pub fn ref_name(&self) -> Option<String> {
        let full = self.git_ref()?;
        Some(
            full.strip_prefix("refs/heads/")
                .or_else(|| full.strip_prefix("refs/tags/"))
                .unwrap_or(&full)
                .to_owned(),
        )
    }

    /// Whether jobs may see secrets: not for pull requests from forks, whose code is
    /// not trusted.
    pub fn secrets_allowed(&self) -> bool {
        !matches!(&self.kind, EventKind::PullRequest(pr) if pr.from_fork)
    }

    /// Where to read `ci.yaml` from: the event's commit, except for a fork PR, whose
    /// pipeline comes from the base branch (the fork cannot change what runs). `None` when
    /// there is nothing to read (pings, ignored events).
    pub fn config_rev(&self) -> Option<GitRev> {
        match &self.kind {
            EventKind::PullRequest(pr) if pr.from_fork => Some(match &pr.base_sha {
                Some(sha) => GitRev::Sha(sha.clone()),
                None => GitRev::Ref(format!("refs/heads/{}", pr.base_ref)),
            }),
            EventKind::Ping | EventKind::Ignored { .. } => None,
            _ => match &self.sha {
                Some(sha) => Some(GitRev::Sha(sha.clone())),
                None => self.git_ref().map(GitRev::Ref),
            },
        }
    }
}

fn delivery_id(forge: Forge, headers: &(impl Headers + ?Sized)) -> Result<String, DeliveryError> {
    let candidates: &[&'static str] = match forge {
        Forge::GitHub => &["X-GitHub-Delivery"],
        Forge::Gitea => &["X-Gitea-Delivery"],
        Forge::GitLab => &["Idempotency-Key", "X-Gitlab-Webhook-UUID"],
    };
    let (header, id) = candidates
        .iter()
        .find_map(|h| headers.header(h).map(|v| (*h, v)))
        .ok_or(DeliveryError::MissingHeader {
            header: candidates[candidates.len() - 1],
        })?;
    let ok =
        !id.is_empty() && id.len() <= MAX_DELIVERY_ID && id.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(DeliveryError::BadDeliveryId {
            header,
            max: MAX_DELIVERY_ID,
            found: id.chars().count(),
        });
    }
    Ok(id.to_owned())
}

/// `true` for a SHA of only zeros: the ref did not exist before, or no longer does.
fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// `Some(sha)` unless empty or all zeros.
fn real_sha(sha: Option<String>) -> Option<String> {
    sha.filter(|s| !s.is_empty() && !is_zero_sha(s))
}

/// A file-list view of one pushed commit.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RawCommit {
    added: Option<Vec<String>>,
    modified: Option<Vec<String>>,
    removed: Option<Vec<String>>,
}

/// GitHub lists at most 20 commits in a push; GitLab too.
const LISTED_COMMITS_CAP: usize = 20;

/// The union of the commits' file lists, when the list can be complete (see the module
/// doc): `total` is the forge's commit count when it sends one.
fn listed_files(commits: &[RawCommit], total: Option<u64>, partial: bool) -> Option<Vec<String>> {
    let complete_count = match total {
        Some(t) => u64::try_from(commits.len()).is_ok_and(|n| n == t),
        None => commits.len() < LISTED_COMMITS_CAP,
    };
    let has_lists = commits
        .iter()
        .all(|c| c.added.is_some() || c.modified.is_some() || c.removed.is_some());
    if partial || commits.is_empty() || !complete_count || !has_lists {
        return None;
    }
    let mut files: Vec<String> = commits
        .iter()
        .flat_map(|c| [&c.added, &c.modified, &c.removed])
        .flatten()
        .flatten()
        .cloned()
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

fn ignored(repository: Repository, sender: Option<String>, reason: String) -> ForgeEvent {
    ForgeEvent {
        kind: EventKind::Ignored { reason },
        repository,
        sha: None,
        before: None,
        changed_files: None,
        sender,
    }
}

fn parse_json<'a, T: serde::Deserialize<'a>>(
    forge: Forge,
    event: &str,
    body: &'a [u8],
) -> Result<T, DeliveryError> {
    // serde reads a struct from a JSON array too; a webhook body is always an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(DeliveryError::NotAnObject {
            forge,
            event: event.to_owned(),
        });
    }
    serde_json::from_slice(body).map_err(|source| DeliveryError::Json {
        forge,
        event: event.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(added: &[&str], modified: &[&str]) -> RawCommit {
        RawCommit {
            added: Some(added.iter().map(|s| (*s).to_owned()).collect()),
            modified: Some(modified.iter().map(|s| (*s).to_owned()).collect()),
            removed: None,
        }
    }

    #[test]
    fn listed_files_only_when_complete() {
        let commits = vec![commit(&["b", "a"], &[]), commit(&[], &["a", "c"])];
        assert_eq!(
            listed_files(&commits, None, false),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            listed_files(&commits, Some(2), false).map(|f| f.len()),
            Some(3)
        );
        assert_eq!(listed_files(&commits, Some(4), false), None);
        assert_eq!(listed_files(&commits, None, true), None);
        assert_eq!(listed_files(&[], None, false), None);
        let many: Vec<RawCommit> = (0..20).map(|_| commit(&["x"], &[])).collect();
        assert_eq!(listed_files(&many, None, false), None);
        let no_lists = vec![RawCommit::default()];
        assert_eq!(listed_files(&no_lists, None, false), None);
    }

    #[test]
    fn delivery_ids() {
        assert_eq!(
            delivery_id(
                Forge::GitLab,
                &[("X-Gitlab-Webhook-UUID", "u"), ("Idempotency-Key", "k")]
            )
            .unwrap(),
            "k"
        );
        assert_eq!(
            delivery_id(Forge::GitLab, &[("X-Gitlab-Webhook-UUID", "u")]).unwrap(),
            "u"
        );
        assert!(matches!(
            delivery_id(Forge::GitHub, &[("X-Gitea-Delivery", "u")]),
            Err(DeliveryError::MissingHeader {
                header: "X-GitHub-Delivery"
            })
        ));
        for bad in ["", "a b", "x\ny", &"a".repeat(201)] {
            assert!(
                matches!(
                    delivery_id(Forge::Gitea, &[("X-Gitea-Delivery", bad)]),
                    Err(DeliveryError::BadDeliveryId { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        let h = [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d")];
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{",
            b"\xff\xfe",
            b"{\"ref\": 5}",
            b"42",
        ] {
            assert!(
                Delivery::parse(Forge::GitHub, &h, body).is_err(),
                "{body:?}"
            );
        }
        let h = [("X-Gitlab-Event", "Push Hook"), ("Idempotency-Key", "d")];
        for body in [&b""[..], b"{\"commits\": 3}", b"{\"object_kind\": []}"] {
            assert!(
                Delivery::parse(Forge::GitLab, &h, body).is_err(),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_gitea_delivery_on_the_github_hook_is_refused() {
        let h = [
            ("X-GitHub-Event", "push"),
            ("X-Gitea-Event", "push"),
            ("X-GitHub-Delivery", "d"),
        ];
        assert!(matches!(
            Delivery::parse(Forge::GitHub, &h, b"{}"),
            Err(DeliveryError::ForgeMismatch {
                expected: Forge::GitHub,
                found: Forge::Gitea
            })
        ));
    }

    #[test]
    fn unknown_events_are_ignored_with_a_reason() {
        let h = [("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "d")];
        let d = Delivery::parse(Forge::GitHub, &h, b"{\"action\": \"opened\"}").unwrap();
        assert!(
            matches!(&d.event.kind, EventKind::Ignored { reason } if reason.contains("issues"))
        );
        assert_eq!(d.trigger(), None);
    }

    #[test]
    fn trust_follows_the_fork() {
        let pr = |from_fork, base_sha: Option<&str>| ForgeEvent {
            kind: EventKind::PullRequest(PullRequest {
                action: PrAction::Opened,
                merged: false,
                number: 1,
                title: String::new(),
                head_ref: "feature".into(),
                head_sha: "h".into(),
                head_clone_url: None,
                base_ref: "main".into(),
                base_sha: base_sha.map(str::to_owned),
                from_fork,
            }),
            repository: Repository::default(),
            sha: Some("h".into()),
            before: None,
            changed_files: None,
            sender: None,
        };
        assert_eq!(
            pr(false, Some("b")).config_rev(),
            Some(GitRev::Sha("h".into()))
        );
        assert!(pr(false, None).secrets_allowed());
        assert_eq!(
            pr(true, Some("b")).config_rev(),
            Some(GitRev::Sha("b".into()))
        );
        assert_eq!(
            pr(true, None).config_rev(),
            Some(GitRev::Ref("refs/heads/main".into()))
        );
        assert!(!pr(true, None).secrets_allowed());
    }
}
