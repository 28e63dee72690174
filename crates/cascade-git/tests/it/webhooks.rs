//! Every file under `shared/webhooks`, delivered as its forge would (headers, signature or
//! token), must authenticate and normalise to the expected event; one test per file, and
//! a test that fails when a file has no test. Plus the bad-signature corpus on real bodies.

use cascade_git::filter::{Verdict, evaluate};
use cascade_git::signature::{GITEA_SIGNATURE, GITHUB_SIGNATURE, GITLAB_TOKEN, sign};
use cascade_git::{
    Delivery, EventKind, Forge, GitRev, IntakeError, PrAction, PullRequest, SignatureError,
};
use cascade_spec::model::{PullRequestTrigger, RefFilter, Triggers};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/webhooks");
const SECRET: &[u8] = b"webhook-secret for tests";

fn forge_dir(forge: Forge) -> &'static str {
    forge.as_str()
}

fn body(forge: Forge, file: &str) -> Vec<u8> {
    let path = format!("{DIR}/{}/{file}", forge_dir(forge));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The headers the forge sends for this file (see shared/webhooks/README.md).
fn headers(forge: Forge, file: &str, body: &[u8]) -> Vec<(String, String)> {
    let event = file.split('.').next().unwrap().to_owned();
    let h = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    match forge {
        Forge::GitHub => vec![
            h("X-GitHub-Event", &event),
            h("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            h("User-Agent", "GitHub-Hookshot/044aadd"),
            h(GITHUB_SIGNATURE, &format!("sha256={}", sign(body, SECRET))),
        ],
        Forge::Gitea => {
            let event_type = if file.contains("synchronized") {
                "pull_request_sync".to_owned()
            } else {
                event.clone()
            };
            // Gitea sends GitHub's and Gogs' headers too.
            vec![
                h("X-Gitea-Event", &event),
                h("X-Gitea-Event-Type", &event_type),
                h("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
                h(GITEA_SIGNATURE, &sign(body, SECRET)),
                h("X-GitHub-Event", &event),
                h("X-GitHub-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
                h("X-Gogs-Event", &event),
                h(
                    "X-Hub-Signature-256",
                    &format!("sha256={}", sign(body, SECRET)),
                ),
            ]
        }
        Forge::GitLab => {
            let name = match event.as_str() {
                "push" => "Push Hook",
                "tag_push" => "Tag Push Hook",
                "merge_request" => "Merge Request Hook",
                other => panic!("no GitLab header for {other}"),
            };
            vec![
                h("X-Gitlab-Event", name),
                h("Idempotency-Key", "2d0e7c7a-2d3f-4ec4-a8f6-0c2d4e1c1b1f"),
                h(
                    "X-Gitlab-Webhook-UUID",
                    "0b7d6c1e-4d7e-4a0e-9d6e-7e1c9a1c2b3d",
                ),
                h("X-Gitlab-Token", std::str::from_utf8(SECRET).unwrap()),
                h("User-Agent", "GitLab/17.0.0"),
            ]
        }
    }
}

fn load(forge: Forge, file: &str) -> Delivery {
    let body = body(forge, file);
    let headers = headers(forge, file, &body);
    let d = Delivery::authenticate(forge, &headers, &body, SECRET)
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", forge.as_str()));
    // The server stores a delivery as JSON and routes what it reads back: nothing of it
    // may be lost on the way (a PR's `merged`, `title`, action).
    let stored = serde_json::to_string(&d).unwrap();
    let read: Delivery = serde_json::from_str(&stored).unwrap();
    assert_eq!(read, d, "{}/{file} read back from {stored}", forge.as_str());
    d
}

fn pr(d: &Delivery) -> &PullRequest {
    match &d.event.kind {
        EventKind::PullRequest(pr) => pr,
        other => panic!("expected a pull request, found {other:?}"),
    }
}

fn ignored(d: &Delivery) -> &str {
    match &d.event.kind {
        EventKind::Ignored { reason } => reason,
        other => panic!("expected an ignored event, found {other:?}"),
    }
}

fn push(d: &Delivery) -> &str {
    match &d.event.kind {
        EventKind::Push { branch } => branch,
        other => panic!("expected a branch push, found {other:?}"),
    }
}

fn tag(d: &Delivery) -> &str {
    match &d.event.kind {
        EventKind::Tag { name } => name,
        other => panic!("expected a tag, found {other:?}"),
    }
}

fn sha(d: &Delivery) -> &str {
    d.event.sha.as_deref().expect("a sha")
}

fn files(d: &Delivery) -> Option<Vec<&str>> {
    d.event
        .changed_files
        .as_ref()
        .map(|f| f.iter().map(String::as_str).collect())
}

macro_rules! fixtures {
    ($( $name:ident: $forge:ident $file:literal => |$d:ident| $check:block )*) => {
        $(
            #[test]
            fn $name() {
                let $d = load(Forge::$forge, $file);
                $check
            }
        )*
        const FIXTURES: &[(Forge, &str)] = &[$((Forge::$forge, $file)),*];
    };
}

fixtures! {
    github_create_tag: GitHub "create.tag.json" => |d| {
        assert!(ignored(&d).contains("push"), "{d:?}");
        assert_eq!(d.trigger(), None);
    }
    github_ping: GitHub "ping.json" => |d| {
        assert_eq!(d.event.kind, EventKind::Ping);
        assert_eq!(d.event.repository.full_name, "Octocoders/Hello-World");
        assert_eq!(d.trigger(), None);
    }
    github_pull_request_closed: GitHub "pull_request.closed.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.merged, pr.number), (PrAction::Closed, false, 2));
    }
    github_pull_request_closed_merged: GitHub "pull_request.closed.merged.woodpecker.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.merged, pr.number), (PrAction::Closed, true, 62));
        assert_eq!(pr.base_sha.as_deref(), Some("26fd46e0d1237cdabfe84ec6a0f37466fc716952"));
    }
    github_pull_request_opened: GitHub "pull_request.opened.json" => |d| {
        let pr = pr(&d);
        assert_eq!(pr.action, PrAction::Opened);
        assert_eq!(pr.number, 2);
        assert_eq!(pr.title, "Update the README with new information.");
        assert_eq!((pr.head_ref.as_str(), pr.base_ref.as_str()), ("changes", "master"));
        assert_eq!(pr.head_sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
        assert_eq!(pr.base_sha.as_deref(), Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e"));
        assert!(!pr.from_fork);
        assert_eq!(sha(&d), pr.head_sha);
        assert_eq!(d.event.sender.as_deref(), Some("Codertocat"));
        assert!(d.event.secrets_allowed());
        let t = d.trigger().unwrap();
        assert_eq!(t.event_name, "pull_request");
        assert_eq!(t.payload["pull_request"]["number"], 2);
        assert_eq!(t.payload["action"], "opened");
        assert_eq!(t.payload["ref"], "refs/heads/changes");
        assert_eq!(t.payload["repository"]["full_name"], "Codertocat/Hello-World");
    }
    github_pull_request_opened_null_body: GitHub "pull_request.opened.with-null-body.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.number, pr.from_fork), (PrAction::Opened, 2, false));
    }
    github_pull_request_synchronize: GitHub "pull_request.synchronize.json" => |d| {
        assert_eq!(pr(&d).action, PrAction::Synchronize);
        assert_eq!(d.event.before.as_deref(), Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e"));
        assert_eq!(sha(&d), "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    }
    github_push_tag_deleted: GitHub "push.json" => |d| {
        assert!(ignored(&d).contains("deleted"), "{d:?}");
        assert_eq!(d.trigger(), None);
    }
    github_push_new_branch: GitHub "push.with-new-branch.json" => |d| {
        assert_eq!(push(&d), "master");
        assert_eq!(sha(&d), "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert_eq!(d.event.before, None);
        // A created branch: the payload's list is not the change, git decides.
        assert_eq!(files(&d), None);
    }
    github_push_tag_created_ghes: GitHub "push.tag-created.ghes-35.json" => |d| {
        assert_eq!(tag(&d), "simple-tag");
        assert_eq!(sha(&d), "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        let t = d.trigger().unwrap();
        assert_eq!(t.event_name, "push");
        assert_eq!(t.payload["ref"], "refs/tags/simple-tag");
        assert_eq!(t.payload["kind"], "tag");
    }
    github_push_tag_created: GitHub "push.tag-created.woodpecker.json" => |d| {
        assert_eq!(tag(&d), "the-tag-v1");
        assert_eq!(sha(&d), "67012991d6c69b1c58378346fca366b864d8d1a1");
    }
    github_push_branch: GitHub "push.branch.woodpecker.json" => |d| {
        assert_eq!(push(&d), "main");
        assert_eq!(sha(&d), "366701fde727cb7a9e7f21eb88264f59f6f9b89c");
        assert_eq!(d.event.before.as_deref(), Some("2f780193b136b72bfea4eeb640786a8c4450c7a2"));
        assert_eq!(
            files(&d),
            Some(vec!["pipeline/shared/replace_secrets.go", "pipeline/shared/replace_secrets_test.go"])
        );
        assert_eq!(d.event.repository.clone_url, "https://github.com/woodpecker-ci/woodpecker.git");
        let t = d.trigger().unwrap();
        assert_eq!(t.event_name, "push");
        assert_eq!(t.changed_paths.as_ref().map(Vec::len), Some(2));
        assert_eq!(t.payload["ref_name"], "main");
    }
    github_push_forced: GitHub "push.forced.woodpecker.json" => |d| {
        assert_eq!(push(&d), "main");
        assert_eq!(sha(&d), "f7220f1f753260bf6f1c533357c70213e9fd4abe");
        assert_eq!(files(&d), None, "a forced push's list is not the change");
    }
    github_repository_dispatch: GitHub "repository_dispatch.json" => |d| {
        let EventKind::RepositoryDispatch { event_type, branch, client_payload } = &d.event.kind else {
            panic!("{d:?}");
        };
        assert_eq!(event_type, "on-demand-test");
        assert_eq!(branch.as_deref(), Some("master"));
        assert_eq!(client_payload["integration"], true);
        assert_eq!(d.event.config_rev(), Some(GitRev::Ref("refs/heads/master".into())));
        let t = d.trigger().unwrap();
        assert_eq!(t.event_name, "repository_dispatch");
        assert_eq!(t.payload["event_type"], "on-demand-test");
        assert_eq!(t.payload["client_payload"]["unit"], false);
    }
    github_workflow_dispatch: GitHub "workflow_dispatch.json" => |d| {
        let EventKind::WorkflowDispatch { git_ref, inputs } = &d.event.kind else {
            panic!("{d:?}");
        };
        assert_eq!(git_ref, "refs/heads/master");
        assert_eq!(inputs.get("name").map(String::as_str), Some("Mona the Octocat"));
        let t = d.trigger().unwrap();
        assert_eq!(t.event_name, "workflow_dispatch");
        assert_eq!(t.inputs.get("name").map(String::as_str), Some("Mona the Octocat"));
    }

    gitea_create_tag: Gitea "create.tag.json" => |d| {
        assert_eq!(tag(&d), "v1.0.0");
        assert_eq!(sha(&d), "ef98532add3b2feb7a137426bba1248724367df5");
        assert_eq!(d.trigger().unwrap().payload["ref"], "refs/tags/v1.0.0");
    }
    gitea_pull_request_closed: Gitea "pull_request.closed.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.merged, pr.number), (PrAction::Closed, false, 1));
    }
    gitea_pull_request_closed_merged: Gitea "pull_request.closed.merged.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.merged, pr.number), (PrAction::Closed, true, 1));
    }
    gitea_pull_request_opened_fork: Gitea "pull_request.opened.fork.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.number), (PrAction::Opened, 2));
        assert!(pr.from_fork);
        assert_eq!(pr.head_sha, "48e773f892a831faa47c0a160d1b7f0cd369ae2a");
        assert_eq!(pr.head_clone_url.as_deref(), Some("http://localhost:3000/example2/example.git"));
        assert_eq!(d.event.repository.clone_url, "http://localhost:3000/example/example.git");
        assert!(!d.event.secrets_allowed());
        assert_eq!(
            d.event.config_rev(),
            Some(GitRev::Sha("67b56589a45103f891bdee7c0546e5d40bc02001".into()))
        );
        assert_eq!(d.trigger().unwrap().payload["pull_request"]["from_fork"], true);
    }
    gitea_pull_request_opened: Gitea "pull_request.opened.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.number, pr.from_fork), (PrAction::Opened, 1, false));
        assert_eq!(sha(&d), "2eba238e33607c1fa49253182e9fff42baafa1eb");
        assert_eq!(d.event.config_rev(), Some(GitRev::Sha(pr.head_sha.clone())));
    }
    gitea_pull_request_synchronized_1_2x: Gitea "pull_request.synchronized.gitea-1.2x.json" => |d| {
        let pr = pr(&d);
        assert_eq!(pr.action, PrAction::Synchronize);
        assert_eq!(pr.number, 2);
        // No `repo` blocks, only `repo_id`: the same repository.
        assert!(!pr.from_fork);
        assert_eq!(sha(&d), "788ed8d02d3b7fcfcf6386dbcbca696aa1d4dc25");
    }
    gitea_pull_request_synchronized: Gitea "pull_request.synchronized.json" => |d| {
        assert_eq!(pr(&d).action, PrAction::Synchronize);
        assert_eq!(d.trigger().unwrap().payload["action"], "synchronize");
    }
    gitea_push_docs: Gitea "push.docs.json" => |d| {
        assert_eq!(push(&d), "develop");
        assert_eq!(sha(&d), "bffeb74224043ba2feb48d137756c8a9331c449a");
        // The docs example lists no files per commit.
        assert_eq!(files(&d), None);
    }
    gitea_push: Gitea "push.json" => |d| {
        assert_eq!(push(&d), "main");
        assert_eq!(sha(&d), "29be01c073851cf0db0c6a466e396b725a670453");
        assert_eq!(files(&d), Some(vec!["aa", "aaa"]));
        assert_eq!(d.event.sender.as_deref(), Some("test-user"));
    }
    gitea_push_new_branch: Gitea "push.new-branch.json" => |d| {
        assert_eq!(push(&d), "master");
        assert_eq!(d.event.before, None);
        assert_eq!(files(&d), None);
    }

    gitlab_mr_close: GitLab "merge_request.close.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.merged, pr.number), (PrAction::Closed, false, 4));
    }
    gitlab_mr_merge: GitLab "merge_request.merge.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.merged, pr.number), (PrAction::Closed, true, 4));
    }
    gitlab_mr_open_docs: GitLab "merge_request.open.docs.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.number), (PrAction::Opened, 1));
        assert_eq!((pr.head_ref.as_str(), pr.base_ref.as_str()), ("ms-viewport", "master"));
        assert_eq!(sha(&d), "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
        assert_eq!(d.event.repository.project_id, Some(1));
        assert!(!pr.from_fork);
    }
    gitlab_mr_open: GitLab "merge_request.open.json" => |d| {
        let pr = pr(&d);
        assert_eq!((pr.action.clone(), pr.number, pr.from_fork), (PrAction::Opened, 3, false));
        assert_eq!(sha(&d), "2f7670508b771e7e77839402be8b34b13787aba8");
        assert_eq!(pr.base_sha, None);
        assert_eq!(d.event.repository.full_name, "demoaccount2-commits-group/test_ci_tmp");
        assert_eq!(d.event.repository.project_id, Some(72_081_820));
        assert_eq!(d.event.sender.as_deref(), Some("real6543"));
    }
    gitlab_mr_update_new_commits: GitLab "merge_request.update.new-commits.json" => |d| {
        assert_eq!(pr(&d).action, PrAction::Synchronize);
        assert_eq!(d.event.before.as_deref(), Some("8b641937b7340066d882b9d8a8cc5b0573a207de"));
        assert_eq!(sha(&d), "c136499ec574e1034b24c5d306de9acda3005367");
        let on = Triggers { pull_request: Some(PullRequestTrigger::default()), ..Triggers::default() };
        assert_eq!(evaluate(&on, &d.event, None).unwrap(), Verdict::Run);
    }
    gitlab_mr_update_no_new_commits: GitLab "merge_request.update.no-new-commits.json" => |d| {
        // Recognised as a pull request, `edited`: the default types do not run on it.
        assert_eq!(pr(&d).action, PrAction::Edited);
        assert_eq!(d.event.before, None);
        assert_eq!(d.trigger().unwrap().event_name, "pull_request");
        let on = Triggers { pull_request: Some(PullRequestTrigger::default()), ..Triggers::default() };
        assert!(matches!(evaluate(&on, &d.event, None).unwrap(), Verdict::Skip(r) if r.contains("edited")));
        let edited = Triggers {
            pull_request: Some(PullRequestTrigger { types: vec!["edited".into()], ..PullRequestTrigger::default() }),
            ..Triggers::default()
        };
        assert_eq!(evaluate(&edited, &d.event, None).unwrap(), Verdict::Run);
    }
    gitlab_push_docs: GitLab "push.docs.json" => |d| {
        assert_eq!(push(&d), "master");
        assert_eq!(sha(&d), "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
        // 4 commits, 2 listed: incomplete.
        assert_eq!(files(&d), None);
        assert_eq!(d.event.sender.as_deref(), Some("jsmith"));
        assert_eq!(d.event.repository.project_id, Some(15));
    }
    gitlab_push: GitLab "push.json" => |d| {
        assert_eq!(push(&d), "main");
        assert_eq!(sha(&d), "16862e368d8ab812e48833b741dad720d6e2cb7f");
        assert_eq!(files(&d), Some(vec!["cmd/cli/main.go"]));
        assert_eq!(d.event.repository.clone_url, "http://10.40.8.5:3200/test/woodpecker.git");
        assert_eq!(d.delivery_id, "2d0e7c7a-2d3f-4ec4-a8f6-0c2d4e1c1b1f");
    }
    gitlab_push_new_branch: GitLab "push.new-branch.json" => |d| {
        assert_eq!(push(&d), "feature");
        assert_eq!(d.event.before, None);
        assert_eq!(files(&d), None);
    }
    gitlab_tag_push_docs: GitLab "tag_push.docs.json" => |d| {
        assert_eq!(tag(&d), "v1.0.0");
        assert_eq!(sha(&d), "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7");
    }
    gitlab_tag_push: GitLab "tag_push.json" => |d| {
        assert_eq!(tag(&d), "v22");
        // The commit (`checkout_sha`), not the annotated tag object (`after`).
        assert_eq!(sha(&d), "16862e368d8ab812e48833b741dad720d6e2cb7f");
        let t = d.trigger().unwrap();
        assert_eq!((t.event_name.as_str(), &t.payload["ref"]), ("push", &serde_json::json!("refs/tags/v22")));
    }
}

#[test]
fn every_fixture_file_has_a_test() {
    let mut missing = Vec::new();
    for forge in Forge::ALL {
        let dir = format!("{DIR}/{}", forge_dir(forge));
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let json = std::path::Path::new(&name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            if json && !FIXTURES.contains(&(forge, name.as_str())) {
                missing.push(format!("{}/{name}", forge.as_str()));
            }
        }
    }
    assert!(missing.is_empty(), "fixtures without a test: {missing:?}");
    assert_eq!(FIXTURES.len(), 36);
}

/// The bad corpus on every real GitHub and Gitea body: only the exact signature of the
/// exact bytes with the right secret passes.
#[test]
fn bad_signatures_on_real_bodies_are_refused_and_nothing_is_parsed() {
    for &(forge, file) in FIXTURES.iter().filter(|(f, _)| *f != Forge::GitLab) {
        let body = body(forge, file);
        let good = headers(forge, file, &body);
        let header = if forge == Forge::GitHub {
            GITHUB_SIGNATURE
        } else {
            GITEA_SIGNATURE
        };
        let prefix = if forge == Forge::GitHub {
            "sha256="
        } else {
            ""
        };
        let mac = sign(&body, SECRET);
        let with = |value: Option<String>| -> Vec<(String, String)> {
            let mut h: Vec<_> = good.iter().filter(|(k, _)| k != header).cloned().collect();
            if let Some(v) = value {
                h.push((header.to_owned(), v));
            }
            h
        };
        let refused = |h: &[(String, String)], b: &[u8], secret: &[u8]| {
            matches!(
                Delivery::authenticate(forge, h, b, secret),
                Err(IntakeError::Signature(_))
            )
        };
        assert!(refused(&with(None), &body, SECRET), "{file}: missing");
        assert!(
            refused(&with(Some(String::new())), &body, SECRET),
            "{file}: empty"
        );
        assert!(
            refused(&with(Some(prefix.to_owned())), &body, SECRET),
            "{file}: prefix only"
        );
        for len in 0..64 {
            let cut = format!("{prefix}{}", &mac[..len]);
            assert!(
                refused(&with(Some(cut)), &body, SECRET),
                "{file}: {len} digits"
            );
        }
        let mut flipped = mac.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(
            refused(&with(Some(format!("{prefix}{flipped}"))), &body, SECRET),
            "{file}: flipped"
        );
        // Re-serialised JSON: same data, other bytes.
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let reserialised = serde_json::to_vec(&value).unwrap();
        assert_ne!(reserialised, body);
        assert!(
            refused(&good, &reserialised, SECRET),
            "{file}: re-serialised"
        );
        let mut tampered = body.clone();
        let last = tampered
            .iter()
            .rposition(u8::is_ascii_alphanumeric)
            .unwrap();
        tampered[last] ^= 1;
        assert!(
            refused(&good, &tampered, SECRET),
            "{file}: body bit flipped"
        );
        assert!(
            refused(&good, &body, b"another secret"),
            "{file}: wrong secret"
        );
        assert!(refused(&good, &body, b""), "{file}: no secret");
    }
}

#[test]
fn gitlab_token_on_real_bodies() {
    for &(_, file) in FIXTURES.iter().filter(|(f, _)| *f == Forge::GitLab) {
        let body = body(Forge::GitLab, file);
        let good = headers(Forge::GitLab, file, &body);
        let without: Vec<_> = good
            .iter()
            .filter(|(k, _)| k != GITLAB_TOKEN)
            .cloned()
            .collect();
        assert!(matches!(
            Delivery::authenticate(Forge::GitLab, &without, &body, SECRET),
            Err(IntakeError::Signature(SignatureError::MissingHeader { .. }))
        ));
        let mut wrong = without.clone();
        wrong.push((
            GITLAB_TOKEN.to_owned(),
            "webhook-secret for test".to_owned(),
        ));
        assert!(matches!(
            Delivery::authenticate(Forge::GitLab, &wrong, &body, SECRET),
            Err(IntakeError::Signature(SignatureError::TokenMismatch { .. }))
        ));
    }
}

#[test]
fn a_gitea_delivery_on_the_github_hook_is_refused() {
    let body = body(Forge::Gitea, "push.json");
    let h = headers(Forge::Gitea, "push.json", &body);
    // Its `X-Hub-Signature-256` is valid, but it is Gitea's delivery.
    assert!(matches!(
        Delivery::authenticate(Forge::GitHub, &h, &body, SECRET),
        Err(IntakeError::Delivery(
            cascade_git::DeliveryError::ForgeMismatch { .. }
        ))
    ));
}

#[test]
fn a_docs_only_push_does_not_start_a_src_pipeline() {
    let d = load(Forge::GitHub, "push.branch.woodpecker.json");
    let on = |paths: &[&str]| Triggers {
        push: Some(RefFilter {
            branches: vec!["main".into()],
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
            ..RefFilter::default()
        }),
        ..Triggers::default()
    };
    let changed = d.event.changed_files.clone();
    assert_eq!(
        evaluate(&on(&["pipeline/**"]), &d.event, changed.as_deref()).unwrap(),
        Verdict::Run
    );
    assert!(matches!(
        evaluate(&on(&["docs/**"]), &d.event, changed.as_deref()).unwrap(),
        Verdict::Skip(_)
    ));
}
