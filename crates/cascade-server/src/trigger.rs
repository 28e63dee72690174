//! `on:` against an event: whether a push, tag or pull request starts a pipeline, and
//! if not, why. Branch, tag and path filters are globs (globset, `**` across `/`), as on
//! GitHub: `branches` and `branches-ignore` (or `tags`…) pick refs; `paths` needs one
//! changed file to match, `paths-ignore` one file not ignored. A path filter that
//! leaves nothing to do is reported (the forge shows the pipeline skipped, so required
//! checks never stay pending); a ref or action that does not match is not.

use crate::orchestrator::{Incoming, Skip};
use cascade_spec::model::{PullRequestTrigger, RefFilter};
use globset::{Glob, GlobSetBuilder};

fn any_match(patterns: &[String], value: &str) -> bool {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        if let Ok(g) = Glob::new(p) {
            builder.add(g);
        }
    }
    builder.build().is_ok_and(|set| set.is_match(value))
}

/// `Some(why)` when a ref is filtered out by an include list and an ignore list.
fn ref_skip(kind: &str, value: &str, include: &[String], ignore: &[String]) -> Option<String> {
    if !include.is_empty() && !any_match(include, value) {
        return Some(format!("{kind} `{value}` matches none of {include:?}"));
    }
    if any_match(ignore, value) {
        return Some(format!("{kind} `{value}` is ignored by {ignore:?}"));
    }
    None
}

fn paths_skip(
    paths: &[String],
    ignore: &[String],
    changed: Option<&Vec<String>>,
) -> Option<String> {
    let changed = changed?;
    if !paths.is_empty() && !changed.iter().any(|c| any_match(paths, c)) {
        return Some(format!("no changed file matches paths {paths:?}"));
    }
    if !ignore.is_empty() && !changed.is_empty() && changed.iter().all(|c| any_match(ignore, c)) {
        return Some(format!(
            "every changed file matches paths-ignore {ignore:?}"
        ));
    }
    None
}

fn quiet(text: String) -> Skip {
    Skip {
        text,
        reported: false,
    }
}

/// Why `on.push` does not start the pipeline for this push (or tag), if it does not.
pub fn push_skip(filter: &RefFilter, incoming: &Incoming) -> Option<Skip> {
    let has_refs = !(filter.branches.is_empty()
        && filter.branches_ignore.is_empty()
        && filter.tags.is_empty()
        && filter.tags_ignore.is_empty());
    if let Some(tag) = &incoming.tag {
        // With only branch filters, tags do not count (and the other way round).
        if has_refs && filter.tags.is_empty() && filter.tags_ignore.is_empty() {
            return Some(quiet(format!(
                "tag `{tag}`: `on.push` filters branches only"
            )));
        }
        if let Some(why) = ref_skip("tag", tag, &filter.tags, &filter.tags_ignore) {
            return Some(quiet(why));
        }
        // Path filters do not apply to tags.
        return None;
    }
    let branch = incoming.branch.as_deref().unwrap_or_default();
    if has_refs && filter.branches.is_empty() && filter.branches_ignore.is_empty() {
        return Some(quiet(format!(
            "branch `{branch}`: `on.push` filters tags only"
        )));
    }
    if let Some(why) = ref_skip("branch", branch, &filter.branches, &filter.branches_ignore) {
        return Some(quiet(why));
    }
    paths_skip(
        &filter.paths,
        &filter.paths_ignore,
        incoming.changed_paths.as_ref(),
    )
    .map(|text| Skip {
        text,
        reported: true,
    })
}

/// Why `on.pull_request` does not start the pipeline for this pull request, if it does not.
pub fn pull_request_skip(filter: &PullRequestTrigger, incoming: &Incoming) -> Option<Skip> {
    let Some(pr) = &incoming.pull_request else {
        return Some(quiet("the event has no pull request".to_owned()));
    };
    let wanted: &[&str] = &["opened", "synchronize", "reopened"];
    let counts = if filter.types.is_empty() {
        wanted.contains(&pr.action.as_str())
    } else {
        filter.types.contains(&pr.action)
    };
    if !counts {
        return Some(quiet(format!(
            "pull request action `{}` is not one of the types",
            pr.action
        )));
    }
    if let Some(why) = ref_skip(
        "base branch",
        &pr.base_ref,
        &filter.branches,
        &filter.branches_ignore,
    ) {
        return Some(quiet(why));
    }
    paths_skip(
        &filter.paths,
        &filter.paths_ignore,
        incoming.changed_paths.as_ref(),
    )
    .map(|text| Skip {
        text,
        reported: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::PullRequest;

    fn push(branch: &str, changed: &[&str]) -> Incoming {
        Incoming {
            kind: "push".into(),
            branch: Some(branch.into()),
            changed_paths: Some(changed.iter().map(|s| (*s).to_owned()).collect()),
            ..Incoming::default()
        }
    }

    fn filter(branches: &[&str], paths: &[&str]) -> RefFilter {
        RefFilter {
            branches: branches.iter().map(|s| (*s).to_owned()).collect(),
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
            ..RefFilter::default()
        }
    }

    #[test]
    fn a_push_touching_only_docs_does_not_start_a_src_pipeline_and_is_reported() {
        let skip = push_skip(
            &filter(&["main"], &["src/**"]),
            &push("main", &["docs/a.md"]),
        )
        .unwrap();
        assert!(skip.reported);
        assert_eq!(skip.text, r#"no changed file matches paths ["src/**"]"#);
        assert!(
            push_skip(
                &filter(&["main"], &["src/**"]),
                &push("main", &["src/x/y.rs"])
            )
            .is_none()
        );
    }

    #[test]
    fn branch_and_tag_filters_are_quiet() {
        let skip = push_skip(&filter(&["main", "release/*"], &[]), &push("dev", &[])).unwrap();
        assert!(!skip.reported);
        assert!(push_skip(&filter(&["release/*"], &[]), &push("release/1.2", &[])).is_none());
        let tag = Incoming {
            kind: "tag".into(),
            tag: Some("v1.0".into()),
            ..Incoming::default()
        };
        assert!(
            push_skip(&filter(&["main"], &[]), &tag).is_some(),
            "branch-only filters skip tags"
        );
        let tags = RefFilter {
            tags: vec!["v*".into()],
            ..RefFilter::default()
        };
        assert!(push_skip(&tags, &tag).is_none());
        assert!(
            push_skip(&tags, &push("main", &[])).is_some(),
            "tag-only filters skip branches"
        );
        assert!(push_skip(&RefFilter::default(), &tag).is_none());
    }

    #[test]
    fn paths_ignore_skips_only_when_everything_is_ignored() {
        let f = RefFilter {
            paths_ignore: vec!["docs/**".into()],
            ..RefFilter::default()
        };
        assert!(push_skip(&f, &push("main", &["docs/a", "docs/b"])).is_some_and(|s| s.reported));
        assert!(push_skip(&f, &push("main", &["docs/a", "src/b"])).is_none());
        let unknown = Incoming {
            changed_paths: None,
            ..push("main", &[])
        };
        assert!(
            push_skip(&filter(&[], &["src/**"]), &unknown).is_none(),
            "unknown changes run"
        );
    }

    #[test]
    fn pull_requests_count_opened_synchronize_and_reopened_by_default() {
        let pr = |action: &str| Incoming {
            kind: "pull_request".into(),
            pull_request: Some(PullRequest {
                action: action.into(),
                base_ref: "main".into(),
                ..PullRequest::default()
            }),
            ..Incoming::default()
        };
        let f = PullRequestTrigger::default();
        assert!(pull_request_skip(&f, &pr("opened")).is_none());
        assert!(pull_request_skip(&f, &pr("synchronize")).is_none());
        assert!(pull_request_skip(&f, &pr("closed")).is_some());
        let closed = PullRequestTrigger {
            types: vec!["closed".into()],
            branches: vec!["main".into()],
            ..PullRequestTrigger::default()
        };
        assert!(pull_request_skip(&closed, &pr("closed")).is_none());
        let other_base = PullRequestTrigger {
            branches: vec!["release".into()],
            ..PullRequestTrigger::default()
        };
        assert!(pull_request_skip(&other_base, &pr("opened")).is_some());
    }
}
