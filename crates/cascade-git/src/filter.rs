//! Does a normalised event start this pipeline? The pipeline's `on:` (branches, tags,
//! paths, paths-ignore, types) against a [`ForgeEvent`] and its changed paths, with the
//! reason when it does not, so the caller can report the run as skipped.
//!
//! The rules are GitHub Actions' where it has one:
//! - Patterns are globs (globset) in which `*` stops at `/` and `**` crosses it; a
//!   pattern starting with `!` excludes what earlier patterns included (the last matching
//!   pattern decides).
//! - `on.push` with only branch filters does not run for tags, and with only tag filters
//!   not for branches; with neither, it runs for every branch and tag.
//! - `*-ignore` lists skip what they match; beside an include list both apply.
//! - Path filters do not apply to tags. With `paths:`, at least one changed file must
//!   match; with `paths-ignore:`, at least one changed file must be outside it. When the
//!   changed files are unknown (`None`), path filters let the event through, as the
//!   planner does for job-level `paths:`.
//! - `pull_request.types` defaults to `opened`, `synchronize`, `reopened`; branch
//!   filters of `pull_request` look at the base branch.
//! - `repository_dispatch.types` empty means any event type.

use crate::delivery::{EventKind, ForgeEvent};
use crate::error::FilterError;
use cascade_spec::model::Triggers;
use globset::{GlobBuilder, GlobMatcher};

/// Pull request actions that count when `on.pull_request.types` is not given.
pub const DEFAULT_PULL_REQUEST_TYPES: &[&str] = &["opened", "synchronize", "reopened"];

/// Whether an event starts the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Not started, and why (reported as "skipped").
    Skip(String),
}

/// Matches an event against the pipeline's `on:`. `changed` are the changed paths when
/// known (from git, or the payload).
pub fn evaluate(
    on: &Triggers,
    event: &ForgeEvent,
    changed: Option<&[String]>,
) -> Result<Verdict, FilterError> {
    match &event.kind {
        EventKind::Push { branch } => push(on, RefKind::Branch, branch, changed),
        EventKind::Tag { name } => push(on, RefKind::Tag, name, changed),
        EventKind::PullRequest(pr) => {
            let Some(f) = &on.pull_request else {
                return Ok(skip("the pipeline has no `on.pull_request`"));
            };
            let action = pr.action.as_str();
            let types: Vec<&str> = if f.types.is_empty() {
                DEFAULT_PULL_REQUEST_TYPES.to_vec()
            } else {
                f.types.iter().map(String::as_str).collect()
            };
            if !types.contains(&action) {
                return Ok(Verdict::Skip(format!(
                    "pull request action `{action}` is not one of on.pull_request.types ({})",
                    types.join(", ")
                )));
            }
            let verdict = refs(
                &pr.base_ref,
                "base branch",
                &Patterns::new("on.pull_request.branches", &f.branches)?,
                &Patterns::new("on.pull_request.branches-ignore", &f.branches_ignore)?,
            );
            if verdict != Verdict::Run {
                return Ok(verdict);
            }
            Ok(paths(
                changed,
                &Patterns::new("on.pull_request.paths", &f.paths)?,
                &Patterns::new("on.pull_request.paths-ignore", &f.paths_ignore)?,
            ))
        }
        EventKind::RepositoryDispatch { event_type, .. } => {
            let Some(f) = &on.repository_dispatch else {
                return Ok(skip("the pipeline has no `on.repository_dispatch`"));
            };
            if f.types.is_empty() || f.types.iter().any(|t| t == event_type) {
                Ok(Verdict::Run)
            } else {
                Ok(Verdict::Skip(format!(
                    "event type `{event_type}` is not one of on.repository_dispatch.types ({})",
                    f.types.join(", ")
                )))
            }
        }
        EventKind::WorkflowDispatch { .. } => Ok(if on.workflow_dispatch.is_some() {
            Verdict::Run
        } else {
            skip("the pipeline has no `on.workflow_dispatch`")
        }),
        EventKind::Ping => Ok(skip("a ping starts nothing")),
        EventKind::Ignored { reason } => Ok(Verdict::Skip(reason.clone())),
    }
}

fn skip(reason: &str) -> Verdict {
    Verdict::Skip(reason.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Branch,
    Tag,
}

fn push(
    on: &Triggers,
    kind: RefKind,
    name: &str,
    changed: Option<&[String]>,
) -> Result<Verdict, FilterError> {
    let Some(f) = &on.push else {
        return Ok(skip("the pipeline has no `on.push`"));
    };
    let branch_filters = !f.branches.is_empty() || !f.branches_ignore.is_empty();
    let tag_filters = !f.tags.is_empty() || !f.tags_ignore.is_empty();
    let verdict = match kind {
        RefKind::Branch if tag_filters && !branch_filters => Verdict::Skip(format!(
            "`on.push` filters tags only, and `{name}` is a branch"
        )),
        RefKind::Tag if branch_filters && !tag_filters => Verdict::Skip(format!(
            "`on.push` filters branches only, and `{name}` is a tag"
        )),
        RefKind::Branch => refs(
            name,
            "branch",
            &Patterns::new("on.push.branches", &f.branches)?,
            &Patterns::new("on.push.branches-ignore", &f.branches_ignore)?,
        ),
        RefKind::Tag => refs(
            name,
            "tag",
            &Patterns::new("on.push.tags", &f.tags)?,
            &Patterns::new("on.push.tags-ignore", &f.tags_ignore)?,
        ),
    };
    if verdict != Verdict::Run || kind == RefKind::Tag {
        return Ok(verdict);
    }
    Ok(paths(
        changed,
        &Patterns::new("on.push.paths", &f.paths)?,
        &Patterns::new("on.push.paths-ignore", &f.paths_ignore)?,
    ))
}

fn refs(name: &str, what: &str, include: &Patterns, ignore: &Patterns) -> Verdict {
    if !include.is_empty() && !include.matches(name) {
        return Verdict::Skip(format!(
            "{what} `{name}` matches none of {}: {}",
            include.field,
            include.text()
        ));
    }
    if !ignore.is_empty() && ignore.matches(name) {
        return Verdict::Skip(format!(
            "{what} `{name}` matches {}: {}",
            ignore.field,
            ignore.text()
        ));
    }
    Verdict::Run
}

fn paths(changed: Option<&[String]>, include: &Patterns, ignore: &Patterns) -> Verdict {
    let Some(changed) = changed else {
        return Verdict::Run;
    };
    if include.is_empty() && ignore.is_empty() {
        return Verdict::Run;
    }
    let mut relevant = changed
        .iter()
        .filter(|p| ignore.is_empty() || !ignore.matches(p))
        .peekable();
    if relevant.peek().is_none() {
        return Verdict::Skip(if ignore.is_empty() {
            "no file changed".to_owned()
        } else {
            format!(
                "every changed file matches {}: {}",
                ignore.field,
                ignore.text()
            )
        });
    }
    if include.is_empty() || relevant.any(|p| include.matches(p)) {
        return Verdict::Run;
    }
    Verdict::Skip(format!(
        "no changed file matches {}: {}",
        include.field,
        include.text()
    ))
}

/// An ordered list of globs, some negated with `!`.
struct Patterns<'a> {
    field: &'static str,
    raw: &'a [String],
    compiled: Vec<(bool, GlobMatcher)>,
}

impl<'a> Patterns<'a> {
    fn new(field: &'static str, raw: &'a [String]) -> Result<Self, FilterError> {
        let compiled = raw
            .iter()
            .map(|p| {
                let (negated, glob) = match p.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, p.as_str()),
                };
                GlobBuilder::new(glob)
                    .literal_separator(true)
                    .build()
                    .map(|g| (negated, g.compile_matcher()))
                    .map_err(|e| FilterError {
                        field,
                        glob: p.clone(),
                        reason: e.kind().to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            field,
            raw,
            compiled,
        })
    }

    fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }

    /// The last pattern that matches decides; none matching means no.
    fn matches(&self, text: &str) -> bool {
        self.compiled
            .iter()
            .rfind(|(_, g)| g.is_match(text))
            .is_some_and(|(negated, _)| !negated)
    }

    fn text(&self) -> String {
        self.raw.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{PrAction, PullRequest, Repository};
    use cascade_spec::model::{
        PullRequestTrigger, RefFilter, RepositoryDispatch, WorkflowDispatch,
    };
    use indexmap::IndexMap;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn event(kind: EventKind) -> ForgeEvent {
        ForgeEvent {
            kind,
            repository: Repository::default(),
            sha: Some("a".repeat(40)),
            before: None,
            changed_files: None,
            sender: None,
        }
    }

    fn push_to(branch: &str) -> ForgeEvent {
        event(EventKind::Push {
            branch: branch.to_owned(),
        })
    }

    fn tag(name: &str) -> ForgeEvent {
        event(EventKind::Tag {
            name: name.to_owned(),
        })
    }

    fn pr(action: PrAction, base: &str) -> ForgeEvent {
        event(EventKind::PullRequest(PullRequest {
            action,
            merged: false,
            number: 1,
            title: String::new(),
            head_ref: "feature".into(),
            head_sha: "a".repeat(40),
            head_clone_url: None,
            base_ref: base.into(),
            base_sha: None,
            from_fork: false,
        }))
    }

    fn on_push(f: RefFilter) -> Triggers {
        Triggers {
            push: Some(f),
            ..Triggers::default()
        }
    }

    fn run(on: &Triggers, e: &ForgeEvent, changed: Option<&[&str]>) -> Verdict {
        let changed = changed.map(strings);
        evaluate(on, e, changed.as_deref()).unwrap()
    }

    #[test]
    fn push_without_filters_runs_for_branches_and_tags() {
        let on = on_push(RefFilter::default());
        assert_eq!(run(&on, &push_to("any/branch"), None), Verdict::Run);
        assert_eq!(run(&on, &tag("v1"), None), Verdict::Run);
        let none = Triggers::default();
        assert!(
            matches!(run(&none, &push_to("main"), None), Verdict::Skip(r) if r.contains("on.push"))
        );
    }

    #[test]
    fn branch_globs() {
        let on = on_push(RefFilter {
            branches: strings(&["main", "release/*", "feature/**"]),
            ..RefFilter::default()
        });
        assert_eq!(run(&on, &push_to("main"), None), Verdict::Run);
        assert_eq!(run(&on, &push_to("release/1.0"), None), Verdict::Run);
        assert_eq!(run(&on, &push_to("feature/a/b"), None), Verdict::Run);
        let Verdict::Skip(reason) = run(&on, &push_to("release/1.0/hotfix"), None) else {
            panic!("`*` must not cross `/`");
        };
        assert!(reason.contains("on.push.branches"), "{reason}");
        assert!(matches!(
            run(&on, &push_to("mainline"), None),
            Verdict::Skip(_)
        ));
        // Branch filters only: tags do not run.
        assert!(matches!(run(&on, &tag("v1"), None), Verdict::Skip(r) if r.contains("is a tag")));
    }

    #[test]
    fn branches_ignore_and_negation() {
        let on = on_push(RefFilter {
            branches_ignore: strings(&["wip/**"]),
            ..RefFilter::default()
        });
        assert_eq!(run(&on, &push_to("main"), None), Verdict::Run);
        assert!(
            matches!(run(&on, &push_to("wip/x"), None), Verdict::Skip(r) if r.contains("branches-ignore"))
        );
        let on = on_push(RefFilter {
            branches: strings(&["release/**", "!release/**-alpha"]),
            ..RefFilter::default()
        });
        assert_eq!(run(&on, &push_to("release/2"), None), Verdict::Run);
        assert!(matches!(
            run(&on, &push_to("release/2-alpha"), None),
            Verdict::Skip(_)
        ));
    }

    #[test]
    fn tag_filters() {
        let on = on_push(RefFilter {
            tags: strings(&["v*"]),
            tags_ignore: strings(&["v*-rc*"]),
            ..RefFilter::default()
        });
        assert_eq!(run(&on, &tag("v1.2.0"), None), Verdict::Run);
        assert!(
            matches!(run(&on, &tag("v1.2.0-rc1"), None), Verdict::Skip(r) if r.contains("tags-ignore"))
        );
        assert!(matches!(run(&on, &tag("nightly"), None), Verdict::Skip(_)));
        // Tag filters only: branches do not run.
        assert!(
            matches!(run(&on, &push_to("main"), None), Verdict::Skip(r) if r.contains("is a branch"))
        );
        // Path filters do not apply to tags.
        let on = on_push(RefFilter {
            tags: strings(&["v*"]),
            paths: strings(&["src/**"]),
            ..RefFilter::default()
        });
        assert_eq!(run(&on, &tag("v1"), Some(&["docs/a.md"])), Verdict::Run);
    }

    #[test]
    fn a_docs_only_push_does_not_match_src_paths() {
        let on = on_push(RefFilter {
            branches: strings(&["main"]),
            paths: strings(&["src/**"]),
            ..RefFilter::default()
        });
        let Verdict::Skip(reason) =
            run(&on, &push_to("main"), Some(&["docs/guide.md", "README.md"]))
        else {
            panic!("a docs-only push must not run");
        };
        assert_eq!(reason, "no changed file matches on.push.paths: src/**");
        assert_eq!(
            run(
                &on,
                &push_to("main"),
                Some(&["docs/guide.md", "src/lib/a.rs"])
            ),
            Verdict::Run
        );
        // Unknown changes: path filters let it through.
        assert_eq!(run(&on, &push_to("main"), None), Verdict::Run);
        assert!(matches!(
            run(&on, &push_to("main"), Some(&[])),
            Verdict::Skip(_)
        ));
        // `*` in a path does not cross directories.
        let on = on_push(RefFilter {
            paths: strings(&["src/*.rs"]),
            ..RefFilter::default()
        });
        assert!(matches!(
            run(&on, &push_to("main"), Some(&["src/a/b.rs"])),
            Verdict::Skip(_)
        ));
    }

    #[test]
    fn paths_ignore() {
        let on = on_push(RefFilter {
            paths_ignore: strings(&["docs/**", "*.md"]),
            ..RefFilter::default()
        });
        assert!(matches!(
            run(&on, &push_to("main"), Some(&["docs/a.md", "README.md"])),
            Verdict::Skip(r) if r.contains("paths-ignore")
        ));
        assert_eq!(
            run(&on, &push_to("main"), Some(&["docs/a.md", "src/a.rs"])),
            Verdict::Run
        );
        // Both lists: a file outside the ignored ones must match the included ones.
        let on = on_push(RefFilter {
            paths: strings(&["src/**"]),
            paths_ignore: strings(&["src/generated/**"]),
            ..RefFilter::default()
        });
        assert!(matches!(
            run(
                &on,
                &push_to("main"),
                Some(&["src/generated/x.rs", "docs/y.md"])
            ),
            Verdict::Skip(_)
        ));
        assert_eq!(
            run(&on, &push_to("main"), Some(&["src/x.rs"])),
            Verdict::Run
        );
    }

    #[test]
    fn pull_request_types_and_base_branches() {
        let on = Triggers {
            pull_request: Some(PullRequestTrigger {
                branches: strings(&["main"]),
                ..PullRequestTrigger::default()
            }),
            ..Triggers::default()
        };
        for action in [PrAction::Opened, PrAction::Synchronize, PrAction::Reopened] {
            assert_eq!(run(&on, &pr(action, "main"), None), Verdict::Run);
        }
        for action in [
            PrAction::Closed,
            PrAction::Edited,
            PrAction::Other("assigned".into()),
        ] {
            assert!(
                matches!(run(&on, &pr(action, "main"), None), Verdict::Skip(r) if r.contains("types"))
            );
        }
        assert!(
            matches!(run(&on, &pr(PrAction::Opened, "develop"), None), Verdict::Skip(r) if r.contains("base branch"))
        );
        let on = Triggers {
            pull_request: Some(PullRequestTrigger {
                types: strings(&["closed", "edited"]),
                paths: strings(&["src/**"]),
                ..PullRequestTrigger::default()
            }),
            ..Triggers::default()
        };
        assert_eq!(run(&on, &pr(PrAction::Edited, "x"), None), Verdict::Run);
        assert!(matches!(
            run(&on, &pr(PrAction::Opened, "x"), None),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            run(&on, &pr(PrAction::Closed, "x"), Some(&["README"])),
            Verdict::Skip(_)
        ));
        assert!(
            matches!(run(&on_push(RefFilter::default()), &pr(PrAction::Opened, "main"), None), Verdict::Skip(r) if r.contains("pull_request"))
        );
    }

    #[test]
    fn dispatches() {
        let dispatch = |t: &str| {
            event(EventKind::RepositoryDispatch {
                event_type: t.to_owned(),
                branch: None,
                client_payload: serde_json::Value::Null,
            })
        };
        let any = Triggers {
            repository_dispatch: Some(RepositoryDispatch::default()),
            ..Triggers::default()
        };
        assert_eq!(run(&any, &dispatch("x"), None), Verdict::Run);
        let typed = Triggers {
            repository_dispatch: Some(RepositoryDispatch {
                types: strings(&["agent:complete"]),
            }),
            ..Triggers::default()
        };
        assert_eq!(run(&typed, &dispatch("agent:complete"), None), Verdict::Run);
        assert!(matches!(
            run(&typed, &dispatch("agent:started"), None),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            run(&Triggers::default(), &dispatch("x"), None),
            Verdict::Skip(_)
        ));

        let wd = event(EventKind::WorkflowDispatch {
            git_ref: "refs/heads/main".into(),
            inputs: IndexMap::new(),
        });
        assert!(matches!(
            run(&Triggers::default(), &wd, None),
            Verdict::Skip(_)
        ));
        let on = Triggers {
            workflow_dispatch: Some(WorkflowDispatch::default()),
            ..Triggers::default()
        };
        assert_eq!(run(&on, &wd, None), Verdict::Run);
    }

    #[test]
    fn pings_and_ignored_events_skip_with_their_reason() {
        let on = on_push(RefFilter::default());
        assert!(matches!(
            run(&on, &event(EventKind::Ping), None),
            Verdict::Skip(_)
        ));
        let e = event(EventKind::Ignored {
            reason: "`refs/heads/x` was deleted".into(),
        });
        assert_eq!(
            run(&on, &e, None),
            Verdict::Skip("`refs/heads/x` was deleted".into())
        );
    }

    #[test]
    fn a_bad_glob_is_an_error_naming_the_field() {
        let on = on_push(RefFilter {
            branches: strings(&["main", "feat/[x"]),
            ..RefFilter::default()
        });
        let err = evaluate(&on, &push_to("main"), None).unwrap_err();
        assert_eq!(err.field, "on.push.branches");
        assert_eq!(err.glob, "feat/[x");
    }
}
