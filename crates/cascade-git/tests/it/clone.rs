//! The clone cache against real git repositories made in temp dirs (`file://` remotes).

use cascade_git::clone::Repos;
use cascade_git::{CloneError, EventKind, ForgeEvent, GitRev, PrAction, PullRequest, Repository};
use cascade_test::git;
use std::path::PathBuf;
use std::process::Command;

/// A repository with `files` committed, one commit per call of `commit`.
struct Source {
    dir: PathBuf,
}

impl Source {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "--quiet", "--initial-branch=main"]);
        // Let partial clones filter (a real forge does).
        git(&dir, &["config", "uploadpack.allowFilter", "true"]);
        Self { dir }
    }

    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(&self.dir, &["add", "--all"]);
        git(&self.dir, &["commit", "--quiet", "-m", message]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn fetch_read_and_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Source::new(tmp.path().join("src"));
    let c1 = src.commit(
        &[("ci.yaml", "name: one\n"), ("src/a.rs", "fn a() {}\n")],
        "one",
    );
    let c2 = src.commit(&[("docs/guide.md", "# guide\n")], "two");
    let repos = Repos::new(tmp.path().join("cache"));

    let dir = repos.fetch(&src.url(), &c2).unwrap();
    assert_eq!(dir, repos.repo_dir(&src.url()));
    assert_eq!(
        git(&dir, &["config", "remote.origin.partialclonefilter"]),
        "blob:none"
    );
    assert_eq!(git(&dir, &["rev-parse", &format!("refs/cascade/{c2}")]), c2);

    assert_eq!(
        text(repos.read_file(&dir, &c2, "ci.yaml").unwrap()).as_deref(),
        Some("name: one\n")
    );
    assert_eq!(repos.read_file(&dir, &c2, "missing.yaml").unwrap(), None);
    assert_eq!(
        repos.read_file(&dir, &c2, "src").unwrap(),
        None,
        "a directory is not a file"
    );
    assert_eq!(repos.read_file(&dir, &c1, "docs/guide.md").unwrap(), None);
    assert_eq!(
        text(repos.read_file(&dir, &c2, "docs/guide.md").unwrap()).as_deref(),
        Some("# guide\n")
    );
    assert_eq!(
        repos.read_file(&dir, &c2, "*.yaml").unwrap(),
        None,
        "paths are not patterns"
    );
    assert_eq!(
        repos.changed_paths(&dir, &c1, &c2).unwrap(),
        ["docs/guide.md"]
    );

    // Again: already there, same directory.
    assert_eq!(repos.fetch(&src.url(), &c2).unwrap(), dir);
    let capped = repos.clone().with_max_file_bytes(4);
    assert!(matches!(
        capped.read_file(&dir, &c2, "ci.yaml"),
        Err(CloneError::FileTooLarge {
            size: 10,
            max: 4,
            ..
        })
    ));
    assert!(matches!(
        repos.read_file(&dir, &"f".repeat(40), "ci.yaml"),
        Err(CloneError::UnknownRev { .. })
    ));
}

#[test]
fn a_server_that_refuses_bare_shas_gets_every_ref_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Source::new(tmp.path().join("src"));
    let first = src.commit(&[("ci.yaml", "v1\n")], "one");
    let repos = Repos::new(tmp.path().join("cache"));
    let dir = repos.fetch(&src.url(), &first).unwrap();
    // Protocol v0 without allowReachableSHA1InWant: only advertised tips can be asked for.
    git(&dir, &["config", "protocol.version", "0"]);
    let middle = src.commit(&[("ci.yaml", "v2\n")], "two");
    src.commit(&[("ci.yaml", "v3\n")], "three");
    let direct = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["fetch", "--quiet", "origin", &middle])
        .output()
        .unwrap();
    assert!(
        !direct.status.success(),
        "the server must refuse an unadvertised sha"
    );

    let again = repos.fetch(&src.url(), &middle).unwrap();
    assert_eq!(again, dir);
    assert_eq!(
        text(repos.read_file(&dir, &middle, "ci.yaml").unwrap()).as_deref(),
        Some("v2\n")
    );
    // The first commit's blob was left out by the partial fetch and this server will not
    // hand it out lazily: an error, not "no such file".
    assert!(matches!(
        repos.read_file(&dir, &first, "ci.yaml"),
        Err(CloneError::Git { .. })
    ));
}

#[test]
fn an_unknown_sha_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Source::new(tmp.path().join("src"));
    src.commit(&[("a", "a")], "one");
    let repos = Repos::new(tmp.path().join("cache"));
    let missing = "0123456789abcdef0123456789abcdef01234567";
    assert!(matches!(
        repos.fetch(&src.url(), missing),
        Err(CloneError::ShaNotFound { .. })
    ));
}

#[test]
fn option_like_values_are_refused_before_git_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Source::new(tmp.path().join("src"));
    let sha = src.commit(&[("ci.yaml", "x")], "one");
    let repos = Repos::new(tmp.path().join("cache"));
    let marker = tmp.path().join("pwned");
    let evil = format!("--upload-pack=touch {}", marker.display());
    let refused = |r: Result<_, CloneError>| matches!(r, Err(CloneError::Refused { .. }));

    assert!(refused(
        repos.fetch(&src.url(), "--upload-pack=evil").map(drop)
    ));
    assert!(refused(repos.fetch(&src.url(), &evil).map(drop)));
    assert!(refused(repos.fetch(&evil, &sha).map(drop)));
    assert!(refused(
        repos
            .fetch(&format!("ext::sh -c touch% {}", marker.display()), &sha)
            .map(drop)
    ));
    assert!(refused(
        repos.fetch_ref(&src.url(), "--upload-pack=evil").map(drop)
    ));
    assert!(refused(repos.fetch_ref(&src.url(), &evil).map(drop)));
    let dir = repos.fetch(&src.url(), &sha).unwrap();
    assert!(refused(
        repos
            .read_file(&dir, "--output=/tmp/x", "ci.yaml")
            .map(drop)
    ));
    assert!(refused(
        repos.read_file(&dir, &sha, "../../etc/passwd").map(drop)
    ));
    assert!(refused(
        repos.changed_paths(&dir, "--output=/tmp/x", &sha).map(drop)
    ));
    assert!(refused(repos.changed_paths(&dir, &sha, "-p").map(drop)));
    assert!(refused(repos.worktree(
        &dir,
        "--upload-pack=evil",
        &tmp.path().join("wt")
    )));
    assert!(!marker.exists(), "a refused value ran a command");
}

#[test]
fn fetch_ref_and_worktrees() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Source::new(tmp.path().join("src"));
    let sha = src.commit(
        &[("ci.yaml", "name: wt\n"), ("src/main.rs", "fn main() {}\n")],
        "one",
    );
    let repos = Repos::new(tmp.path().join("cache"));
    let (dir, resolved) = repos.fetch_ref(&src.url(), "refs/heads/main").unwrap();
    assert_eq!(resolved, sha);
    assert!(matches!(
        repos.fetch_ref(&src.url(), "refs/heads/nope"),
        Err(CloneError::Git { .. })
    ));

    let dest = tmp.path().join("work");
    repos.worktree(&dir, &sha, &dest).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), sha);
    repos.remove_worktree(&dir, &dest).unwrap();
    assert!(!dest.exists());
}

fn fork_pr(base_sha: Option<String>, head_sha: &str) -> ForgeEvent {
    ForgeEvent {
        kind: EventKind::PullRequest(PullRequest {
            action: PrAction::Opened,
            merged: false,
            number: 1,
            title: "\"; rm -rf / #".to_owned(),
            head_ref: "feature".to_owned(),
            head_sha: head_sha.to_owned(),
            head_clone_url: None,
            base_ref: "main".to_owned(),
            base_sha,
            from_fork: true,
        }),
        repository: Repository::default(),
        sha: Some(head_sha.to_owned()),
        before: None,
        changed_files: None,
        sender: Some("mallory".to_owned()),
    }
}

/// A fork PR: the pipeline file is read from the base branch of the upstream repository,
/// never from the fork's head, and no secrets are allowed.
#[test]
fn fork_pr_reads_ci_yaml_from_the_base_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Source::new(tmp.path().join("upstream"));
    let base = upstream.commit(&[("ci.yaml", "trusted\n"), ("src/lib.rs", "\n")], "base");
    let fork_dir = tmp.path().join("fork");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            &upstream.url(),
            fork_dir.to_str().unwrap(),
        ],
    );
    let fork = Source { dir: fork_dir };
    git(&fork.dir, &["checkout", "--quiet", "-b", "feature"]);
    let head = fork.commit(
        &[("ci.yaml", "evil: steal secrets\n"), ("src/new.rs", "\n")],
        "pr",
    );
    // The forge keeps the PR head in the base repository (refs/pull/<n>/head).
    git(
        &upstream.dir,
        &["fetch", "--quiet", &fork.url(), "feature:refs/pull/1/head"],
    );

    let repos = Repos::new(tmp.path().join("cache"));
    let event = fork_pr(Some(base.clone()), &head);
    assert!(!event.secrets_allowed());
    let dir = repos.fetch(&upstream.url(), &head).unwrap();
    let Some(GitRev::Sha(config_sha)) = event.config_rev() else {
        panic!("a fork PR with a base sha reads ci.yaml at that sha");
    };
    assert_eq!(config_sha, base);
    assert_eq!(repos.fetch(&upstream.url(), &config_sha).unwrap(), dir);
    assert_eq!(
        text(repos.read_file(&dir, &config_sha, "ci.yaml").unwrap()).as_deref(),
        Some("trusted\n")
    );
    // The head's file is different: reading from the base is what keeps it out.
    assert_eq!(
        text(repos.read_file(&dir, &head, "ci.yaml").unwrap()).as_deref(),
        Some("evil: steal secrets\n")
    );
    assert_eq!(
        repos.changed_paths(&dir, &base, &head).unwrap(),
        ["ci.yaml", "src/new.rs"]
    );

    // Without a base sha (GitLab): the base branch, resolved by a fetch.
    let event = fork_pr(None, &head);
    let Some(GitRev::Ref(base_ref)) = event.config_rev() else {
        panic!("a fork PR without a base sha reads ci.yaml from the base branch");
    };
    let (dir2, resolved) = repos.fetch_ref(&upstream.url(), &base_ref).unwrap();
    assert_eq!((dir2, resolved.as_str()), (dir.clone(), base.as_str()));
    assert_eq!(
        text(repos.read_file(&dir, &resolved, "ci.yaml").unwrap()).as_deref(),
        Some("trusted\n")
    );
}

#[test]
fn repositories_unused_for_long_are_evicted_unless_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = Repos::new(tmp.path().join("cache"));
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_hours(24 * 30);
    let mut fetched = Vec::new();
    for name in ["old", "fresh", "checked-out", "fetching"] {
        let src = Source::new(tmp.path().join(name));
        let sha = src.commit(&[("ci.yaml", name)], "one");
        let dir = repos.fetch(&src.url(), &sha).unwrap();
        if name != "fresh" {
            std::fs::File::options()
                .write(true)
                .open(dir.with_extension("lock"))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        fetched.push((src, sha, dir));
    }
    // A job's worktree of the third; a fetch of the fourth under way (its lock held).
    let worktree = tmp.path().join("work");
    repos
        .worktree(&fetched[2].2, &fetched[2].1, &worktree)
        .unwrap();
    let held = std::fs::File::open(fetched[3].2.with_extension("lock")).unwrap();
    held.lock().unwrap();

    let removed = repos
        .evict(std::time::Duration::from_hours(24 * 14))
        .unwrap();
    assert_eq!(removed, vec![fetched[0].2.clone()]);
    assert!(!fetched[0].2.exists());
    for (_, _, dir) in &fetched[1..] {
        assert!(dir.join("HEAD").is_file(), "{} was kept", dir.display());
    }
    drop(held);
    // An evicted repository is fetched again on its next use.
    let (src, sha, dir) = &fetched[0];
    assert_eq!(&repos.fetch(&src.url(), sha).unwrap(), dir);
    assert_eq!(
        text(repos.read_file(dir, sha, "ci.yaml").unwrap()).as_deref(),
        Some("old")
    );
    // Nothing old is left once the worktree is gone and the fetch is over.
    repos.remove_worktree(&fetched[2].2, &worktree).unwrap();
    let removed = repos
        .evict(std::time::Duration::from_hours(24 * 14))
        .unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(repos.evict(std::time::Duration::ZERO).unwrap().len() == 2);
}
