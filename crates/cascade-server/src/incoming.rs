//! The one event the GitOps loop carries end to end: [`Incoming`], made by the webhook
//! gateway (`hooks.rs`, a forge's [`Delivery`] as `cascade-git` normalised it), the
//! dispatch route (`dispatch.rs`) and the reporter's retries ([`Dispatch`]), and cron
//! ([`Tick`]); stored as it is (JSON, tagged by `"from"`) as the payload of the event
//! log, through the inbox; read back by the orchestrator and the reporter with
//! [`Incoming::read`], nothing rebuilt from strings on the way.
//!
//! It lives here, not in a library: it wraps `cascade-git`'s `Delivery` and carries what
//! only the server knows (a dispatch's token scopes, a cron tick), and the store, a
//! sibling of `cascade-git`, cannot name it — the store keeps the JSON it is given, and
//! the event log's other columns (`source`, `kind`, `repo`, `task_id`, `event_type`) are
//! all derived from the event here ([`Incoming::stored`]).
//!
//! Events stored before this type existed (one flat object with a `kind` string and a
//! `raw` payload, no `"from"`) still read: [`Incoming::read`] converts them, taking a
//! pull request's title and `merged` from the forge payload they kept.

use cascade_git::delivery::{Delivery, EventKind, ForgeEvent};
use cascade_store::{EventRow, NewEvent};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An event for the orchestrator, whatever sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "events are handled one at a time and a few at most are held; a box would only add a hop to every forge event"
)]
pub enum Incoming {
    /// A webhook delivery (`/hooks/{github,gitea,gitlab}`): a push, tag, pull request,
    /// the forge's own `repository_dispatch` or `workflow_dispatch`, a ping, or an event
    /// that starts nothing.
    Forge(Delivery),
    /// A `repository_dispatch` sent to the API (`POST /api/v1/dispatch`, `cascade
    /// dispatch`, a job's next step), or the reporter starting a failed one again.
    Dispatch(Dispatch),
    /// A tick of one pipeline's `on.schedule`.
    Schedule(Tick),
}

/// A dispatch sent to the API, in GitHub's shape (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub event_type: String,
    /// A JSON object; `task_id` (text) and `retry_count` are always set.
    pub client_payload: Value,
    /// The scopes its sender may act in (its token's); empty: any. Only repositories of
    /// these scopes are started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// One tick of one schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// The registered repository (`owner/name`).
    pub repo: String,
    /// The pipeline file whose `on.schedule` this is.
    pub pipeline: String,
    pub cron: String,
    pub timezone: Option<String>,
    /// When it fired (RFC 3339).
    pub tick: String,
}

/// A schedule's key, stable across restarts and edits of other schedules: what cron
/// records fired ticks under, and (with the tick) the event's delivery id.
pub fn schedule_key(repo: &str, pipeline: &str, cron: &str, timezone: Option<&str>) -> String {
    format!("{repo}/{pipeline}#{cron}@{}", timezone.unwrap_or("UTC"))
}

impl Dispatch {
    /// The dispatch's task id (text, or a number written as text).
    pub fn task_id(&self) -> Option<String> {
        task_id(&self.client_payload)
    }

    /// `client_payload.retry_count`, 0 when absent.
    pub fn retry_count(&self) -> i64 {
        self.client_payload
            .get("retry_count")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// `<task_id>:<event_type>:<retry_count>`, so the same dispatch sent twice is queued
    /// once. A sender limited to scopes has delivery ids of its own: it cannot take (and
    /// so silently drop) the dispatch another scope's chain will send.
    pub fn delivery_id(&self) -> String {
        let id = format!(
            "{}:{}:{}",
            self.task_id().unwrap_or_default(),
            self.event_type,
            self.retry_count()
        );
        if self.scopes.is_empty() {
            id
        } else {
            format!("{}|{id}", self.scopes.join(","))
        }
    }
}

fn task_id(client_payload: &Value) -> Option<String> {
    client_payload
        .get("task_id")
        .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned))
}

/// Why a stored event cannot be read as an [`Incoming`].
#[derive(Debug, thiserror::Error)]
#[error("not a normalised event")]
pub struct NotAnEvent(#[source] pub serde_json::Error);

impl Incoming {
    /// The event log's `kind`: `push`, `tag`, `pull_request`, `repository_dispatch`,
    /// `workflow_dispatch`, `ping`, `ignored` (a forge's, [`EventKind::name`]) or
    /// `schedule`.
    pub fn kind(&self) -> &'static str {
        match self {
            Incoming::Forge(d) => d.event.kind.name(),
            Incoming::Dispatch(_) => "repository_dispatch",
            Incoming::Schedule(_) => "schedule",
        }
    }

    /// The event's name as `on:` and `cascade runs` know it: a tag is a `push` (as on
    /// GitHub), everything else its [`Incoming::kind`].
    pub fn event_name(&self) -> &'static str {
        match self.kind() {
            "tag" => "push",
            other => other,
        }
    }

    /// The event log's `source`: the forge's name, `dispatch` or `cron`.
    pub fn source(&self) -> &'static str {
        match self {
            Incoming::Forge(d) => d.forge.as_str(),
            Incoming::Dispatch(_) => "dispatch",
            Incoming::Schedule(_) => "cron",
        }
    }

    /// The forge's event, for a delivery.
    pub fn forge_event(&self) -> Option<&ForgeEvent> {
        match self {
            Incoming::Forge(d) => Some(&d.event),
            _ => None,
        }
    }

    /// The repository (`owner/name`) the event belongs to; `None` for an API dispatch,
    /// which goes to every repository listening.
    pub fn repo(&self) -> Option<&str> {
        match self {
            Incoming::Forge(d) => Some(&d.event.repository.full_name),
            Incoming::Dispatch(_) => None,
            Incoming::Schedule(t) => Some(&t.repo),
        }
    }

    /// The commit the event is about, when it names one.
    pub fn sha(&self) -> Option<&str> {
        self.forge_event().and_then(|e| e.sha.as_deref())
    }

    /// A dispatch's type (an API dispatch, or a forge's `repository_dispatch`).
    pub fn event_type(&self) -> Option<&str> {
        match self {
            Incoming::Dispatch(d) => Some(&d.event_type),
            Incoming::Forge(d) => match &d.event.kind {
                EventKind::RepositoryDispatch { event_type, .. } => Some(event_type),
                _ => None,
            },
            Incoming::Schedule(_) => None,
        }
    }

    /// A dispatch's `client_payload`.
    pub fn client_payload(&self) -> Option<&Value> {
        match self {
            Incoming::Dispatch(d) => Some(&d.client_payload),
            Incoming::Forge(d) => match &d.event.kind {
                EventKind::RepositoryDispatch { client_payload, .. } => Some(client_payload),
                _ => None,
            },
            Incoming::Schedule(_) => None,
        }
    }

    /// A dispatch's task id.
    pub fn task_id(&self) -> Option<String> {
        self.client_payload().and_then(task_id)
    }

    /// A dispatch's `retry_count`, 0 when absent.
    pub fn retry_count(&self) -> i64 {
        self.client_payload()
            .and_then(|p| p.get("retry_count"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// The scopes the sender of an API dispatch may act in; empty: any.
    pub fn scopes(&self) -> &[String] {
        match self {
            Incoming::Dispatch(d) => &d.scopes,
            _ => &[],
        }
    }

    /// A `workflow_dispatch`'s inputs.
    pub fn inputs(&self) -> IndexMap<String, String> {
        match self.forge_event().map(|e| &e.kind) {
            Some(EventKind::WorkflowDispatch { inputs, .. }) => inputs.clone(),
            _ => IndexMap::new(),
        }
    }

    /// What `event.*` reads in the pipeline: the forge's normalised payload
    /// ([`Delivery::payload`]), a dispatch's `{action, event_type, client_payload}`, a
    /// tick's `{schedule, timezone, tick}`.
    pub fn payload(&self) -> Value {
        match self {
            Incoming::Forge(d) => d.payload(),
            Incoming::Dispatch(d) => json!({
                "action": d.event_type,
                "event_type": d.event_type,
                "client_payload": d.client_payload,
            }),
            Incoming::Schedule(t) => {
                json!({"schedule": t.cron, "timezone": t.timezone, "tick": t.tick})
            }
        }
    }

    /// The event as the event log stores it: this value as its payload, every other
    /// column derived from it. `delivery_id` is unique per source: the forge's, a
    /// dispatch's [`Dispatch::delivery_id`], a schedule's key and tick.
    pub fn stored(&self) -> NewEvent {
        let delivery_id = match self {
            Incoming::Forge(d) => d.delivery_id.clone(),
            Incoming::Dispatch(d) => d.delivery_id(),
            Incoming::Schedule(t) => format!(
                "{}@{}",
                schedule_key(&t.repo, &t.pipeline, &t.cron, t.timezone.as_deref()),
                t.tick
            ),
        };
        NewEvent {
            source: self.source().to_owned(),
            delivery_id,
            kind: self.kind().to_owned(),
            repo: self.repo().map(str::to_owned),
            task_id: self.task_id(),
            event_type: self.event_type().map(str::to_owned),
            // Strings, numbers and objects with text keys only: serialising cannot fail.
            payload: serde_json::to_value(self).unwrap_or_default(),
        }
    }

    /// A stored event read back: the shape [`Incoming::stored`] writes, or the one
    /// written before it (see the module doc).
    pub fn read(row: &EventRow) -> Result<Self, NotAnEvent> {
        if row.payload.get("from").is_some() {
            Self::deserialize(&row.payload).map_err(NotAnEvent)
        } else {
            let old = legacy::Legacy::deserialize(&row.payload).map_err(NotAnEvent)?;
            Ok(old.into_incoming(row))
        }
    }
}

/// The event log's payload before [`Incoming`]: one flat object for every source.
mod legacy {
    use super::{Dispatch, Incoming, Tick};
    use cascade_git::delivery::{
        Delivery, EventKind, ForgeEvent, PrAction, PullRequest, Repository,
    };
    use cascade_spec::config::Forge;
    use cascade_store::EventRow;
    use indexmap::IndexMap;
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Debug, Deserialize)]
    pub(super) struct Legacy {
        kind: String,
        #[serde(default)]
        repo: Option<String>,
        #[serde(default)]
        sha: Option<String>,
        #[serde(default)]
        before: Option<String>,
        #[serde(default)]
        branch: Option<String>,
        #[serde(default)]
        tag: Option<String>,
        #[serde(default)]
        pull_request: Option<LegacyPr>,
        #[serde(default)]
        changed_paths: Option<Vec<String>>,
        #[serde(default)]
        event_type: Option<String>,
        #[serde(default)]
        client_payload: Option<Value>,
        #[serde(default)]
        inputs: IndexMap<String, String>,
        #[serde(default)]
        pipeline: Option<String>,
        #[serde(default)]
        raw: Value,
        #[serde(default)]
        scopes: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    struct LegacyPr {
        number: u64,
        action: String,
        head_sha: String,
        #[serde(default)]
        base_sha: String,
        base_ref: String,
        head_ref: String,
        from_fork: bool,
    }

    fn text(v: &Value) -> Option<String> {
        v.as_str().map(str::to_owned)
    }

    impl Legacy {
        /// The same event in today's shape. A forge's event gets back what the flat shape
        /// dropped (a PR's title, `merged`, head clone URL; the repository's URLs) from
        /// the forge payload it kept in `raw`.
        pub(super) fn into_incoming(self, row: &EventRow) -> Incoming {
            let Legacy {
                kind,
                repo,
                sha,
                before,
                branch,
                tag,
                pull_request,
                changed_paths,
                event_type,
                client_payload,
                inputs,
                pipeline,
                raw,
                scopes,
            } = self;
            let raw = &raw;
            let forge = raw["forge"]
                .as_str()
                .unwrap_or(&row.source)
                .parse::<Forge>()
                .ok();
            let Some(forge) = forge else {
                return match kind.as_str() {
                    "schedule" => Incoming::Schedule(Tick {
                        repo: repo.unwrap_or_default(),
                        pipeline: pipeline.unwrap_or_default(),
                        cron: text(&raw["schedule"]).unwrap_or_default(),
                        timezone: text(&raw["timezone"]),
                        tick: text(&raw["tick"]).unwrap_or_else(|| row.received_at.clone()),
                    }),
                    _ => Incoming::Dispatch(Dispatch {
                        event_type: event_type.unwrap_or_default(),
                        client_payload: client_payload
                            .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
                        scopes,
                    }),
                };
            };
            let repository = Repository::deserialize(&raw["repository"]).unwrap_or_default();
            let repository = Repository {
                full_name: repo.unwrap_or(repository.full_name),
                ..repository
            };
            let kind = match (kind.as_str(), pull_request) {
                ("push", _) => EventKind::Push {
                    branch: branch.unwrap_or_default(),
                },
                ("tag", _) => EventKind::Tag {
                    name: tag.unwrap_or_default(),
                },
                ("pull_request", Some(pr)) => {
                    let raw_pr = &raw["pull_request"];
                    EventKind::PullRequest(PullRequest {
                        action: PrAction::from_hub(&pr.action),
                        merged: raw_pr["merged"].as_bool().unwrap_or(false),
                        number: pr.number,
                        title: text(&raw_pr["title"]).unwrap_or_default(),
                        head_ref: pr.head_ref,
                        head_sha: pr.head_sha,
                        head_clone_url: text(&raw_pr["head"]["clone_url"]),
                        base_ref: pr.base_ref,
                        base_sha: Some(pr.base_sha).filter(|s| !s.is_empty()),
                        from_fork: pr.from_fork,
                    })
                }
                ("repository_dispatch", _) => EventKind::RepositoryDispatch {
                    event_type: event_type.unwrap_or_default(),
                    branch,
                    client_payload: client_payload.unwrap_or(Value::Null),
                },
                ("workflow_dispatch", _) => EventKind::WorkflowDispatch {
                    git_ref: text(&raw["ref"])
                        .unwrap_or_else(|| format!("refs/heads/{}", branch.unwrap_or_default())),
                    inputs,
                },
                ("ping", _) => EventKind::Ping,
                (other, _) => EventKind::Ignored {
                    reason: text(&raw["reason"])
                        .unwrap_or_else(|| format!("`{other}` events start nothing")),
                },
            };
            Incoming::Forge(Delivery {
                forge,
                delivery_id: text(&raw["delivery"]).unwrap_or_else(|| row.delivery_id.clone()),
                event: ForgeEvent {
                    kind,
                    repository,
                    sha,
                    before,
                    changed_files: changed_paths,
                    sender: text(&raw["sender"]),
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_git::delivery::{PrAction, PullRequest};

    fn row(source: &str, delivery_id: &str, payload: Value) -> EventRow {
        EventRow {
            event_id: 1,
            source: source.into(),
            delivery_id: delivery_id.into(),
            kind: String::new(),
            repo: None,
            task_id: None,
            event_type: None,
            payload,
            status: "queued".into(),
            attempts: 0,
            note: None,
            received_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// The shape the gateway wrote before `Incoming` was a type, for GitHub's published
    /// `pull_request.closed.merged` delivery (as the old `hooks::incoming` made it).
    fn old_pull_request() -> Value {
        json!({
            "kind": "pull_request",
            "repo": "anbraten/test-ready-release-go",
            "sha": "c88b9ee719285134957cbc698c9b7ef9b78007bf",
            "before": null,
            "branch": "anbraten-patch-1",
            "tag": null,
            "pull_request": {
                "number": 62, "action": "closed",
                "head_sha": "c88b9ee719285134957cbc698c9b7ef9b78007bf",
                "base_sha": "26fd46e0d1237cdabfe84ec6a0f37466fc716952",
                "base_ref": "main", "head_ref": "anbraten-patch-1", "from_fork": false
            },
            "changed_paths": null,
            "event_type": null,
            "client_payload": null,
            "inputs": {},
            "pipeline": null,
            "raw": {
                "forge": "github", "delivery": "d-7", "kind": "pull_request",
                "ref": "refs/heads/anbraten-patch-1", "ref_name": "anbraten-patch-1",
                "sha": "c88b9ee719285134957cbc698c9b7ef9b78007bf", "before": null,
                "sender": "anbraten", "changed_files": null,
                "repository": {
                    "full_name": "anbraten/test-ready-release-go",
                    "clone_url": "https://github.com/anbraten/test-ready-release-go.git",
                    "html_url": "https://github.com/anbraten/test-ready-release-go",
                    "project_id": null, "default_branch": "main"
                },
                "action": "closed",
                "pull_request": {
                    "number": 62, "title": "Change file", "action": "closed", "merged": true,
                    "head": {"ref": "anbraten-patch-1", "sha": "c88b9ee719285134957cbc698c9b7ef9b78007bf", "clone_url": "https://github.com/anbraten/test-ready-release-go.git"},
                    "base": {"ref": "main", "sha": "26fd46e0d1237cdabfe84ec6a0f37466fc716952"},
                    "from_fork": false
                }
            }
        })
    }

    #[test]
    fn an_old_pull_request_row_reads_with_what_the_flat_shape_dropped() {
        let incoming = Incoming::read(&row("github", "d-7", old_pull_request())).unwrap();
        let Incoming::Forge(d) = &incoming else {
            panic!("a forge event: {incoming:?}");
        };
        assert_eq!(
            (d.forge, d.delivery_id.as_str()),
            (cascade_spec::config::Forge::GitHub, "d-7")
        );
        assert_eq!(
            d.event.kind,
            EventKind::PullRequest(PullRequest {
                action: PrAction::Closed,
                merged: true,
                number: 62,
                title: "Change file".into(),
                head_ref: "anbraten-patch-1".into(),
                head_sha: "c88b9ee719285134957cbc698c9b7ef9b78007bf".into(),
                head_clone_url: Some(
                    "https://github.com/anbraten/test-ready-release-go.git".into()
                ),
                base_ref: "main".into(),
                base_sha: Some("26fd46e0d1237cdabfe84ec6a0f37466fc716952".into()),
                from_fork: false,
            })
        );
        assert_eq!(d.event.sender.as_deref(), Some("anbraten"));
        assert_eq!(d.event.repository.default_branch.as_deref(), Some("main"));
        // What jobs read as `event.*` is what the old row kept.
        assert_eq!(incoming.payload(), old_pull_request()["raw"]);
        // Written again, it is today's shape, and reads back the same.
        let again = incoming.stored();
        assert_eq!(again.payload["from"], "forge");
        assert_eq!(
            Incoming::read(&row("github", "d-7", again.payload)).unwrap(),
            incoming
        );
    }

    #[test]
    fn old_pushes_tags_dispatches_and_ticks_read() {
        let push = json!({"kind": "push", "repo": "acme/app", "sha": "abc", "before": "0000", "branch": "main",
            "changed_paths": ["src/a"], "inputs": {}, "raw": {"forge": "gitlab", "delivery": "g-1", "sender": "root",
            "repository": {"full_name": "acme/app", "clone_url": "file:///app", "html_url": "h", "project_id": 7, "default_branch": "main"}}});
        let i = Incoming::read(&row("gitlab", "g-1", push)).unwrap();
        assert_eq!(
            (i.kind(), i.source(), i.repo(), i.sha()),
            ("push", "gitlab", Some("acme/app"), Some("abc"))
        );
        let e = i.forge_event().unwrap();
        assert_eq!(
            e.kind,
            EventKind::Push {
                branch: "main".into()
            }
        );
        assert_eq!(
            (e.before.as_deref(), e.repository.project_id),
            (Some("0000"), Some(7))
        );
        assert_eq!(e.changed_files.as_deref(), Some(&["src/a".to_owned()][..]));

        let tag = json!({"kind": "tag", "repo": "acme/app", "sha": "abc", "tag": "v1", "raw": {"forge": "github"}});
        let i = Incoming::read(&row("github", "t", tag)).unwrap();
        assert_eq!((i.kind(), i.event_name()), ("tag", "push"));

        // The API's dispatch, with its sender's scopes.
        let dispatch = json!({"kind": "repository_dispatch", "event_type": "agent:complete",
            "client_payload": {"task_id": "42", "retry_count": 1, "status": "success"}, "inputs": {},
            "raw": {"action": "agent:complete", "event_type": "agent:complete", "client_payload": {"task_id": "42", "retry_count": 1, "status": "success"}},
            "scopes": ["project:acme-app"]});
        let i = Incoming::read(&row(
            "dispatch",
            "project:acme-app|42:agent:complete:1",
            dispatch.clone(),
        ))
        .unwrap();
        assert_eq!(
            (i.kind(), i.source(), i.repo()),
            ("repository_dispatch", "dispatch", None)
        );
        assert_eq!(
            (i.task_id().as_deref(), i.retry_count(), i.event_type()),
            (Some("42"), 1, Some("agent:complete"))
        );
        assert_eq!(i.scopes(), ["project:acme-app".to_owned()]);
        assert_eq!(i.payload(), dispatch["raw"]);
        assert_eq!(
            i.stored().delivery_id,
            "project:acme-app|42:agent:complete:1"
        );

        let tick = json!({"kind": "schedule", "repo": "acme/app", "pipeline": "ci.yaml", "inputs": {},
            "raw": {"schedule": "0 3 * * *", "timezone": "Europe/Berlin", "tick": "2026-01-01T02:00:00Z"}});
        let i = Incoming::read(&row("cron", "k", tick.clone())).unwrap();
        assert_eq!(
            i,
            Incoming::Schedule(Tick {
                repo: "acme/app".into(),
                pipeline: "ci.yaml".into(),
                cron: "0 3 * * *".into(),
                timezone: Some("Europe/Berlin".into()),
                tick: "2026-01-01T02:00:00Z".into(),
            })
        );
        assert_eq!(i.payload(), tick["raw"]);
        assert_eq!(
            i.stored().delivery_id,
            "acme/app/ci.yaml#0 3 * * *@Europe/Berlin@2026-01-01T02:00:00Z"
        );

        let ping = json!({"kind": "ping", "repo": "acme/app", "raw": {"forge": "gitea"}});
        assert_eq!(
            Incoming::read(&row("gitea", "p", ping)).unwrap().kind(),
            "ping"
        );
        let bad = Incoming::read(&row("dead-letter", "x", json!({"reason": "not an event"})))
            .unwrap_err();
        assert_eq!(bad.to_string(), "not a normalised event");
        assert!(
            bad.0.to_string().starts_with("missing field `kind`"),
            "{}",
            bad.0
        );
    }

    #[test]
    fn the_stored_columns_come_from_the_event() {
        let i = Incoming::Dispatch(Dispatch {
            event_type: "build".into(),
            client_payload: json!({"task_id": 7, "retry_count": 2}),
            scopes: Vec::new(),
        });
        let e = i.stored();
        assert_eq!(
            (
                e.source.as_str(),
                e.kind.as_str(),
                e.delivery_id.as_str(),
                e.task_id.as_deref(),
                e.event_type.as_deref(),
                e.repo
            ),
            (
                "dispatch",
                "repository_dispatch",
                "7:build:2",
                Some("7"),
                Some("build"),
                None
            )
        );
        assert_eq!(e.payload["from"], "dispatch");
        assert_eq!(e.payload["client_payload"]["retry_count"], 2);
        assert!(e.payload.get("scopes").is_none());
    }
}
