//! The clone cache: one bare, partial (`--filter=blob:none`) repository per remote URL
//! under a cache directory, fetched at exactly the commits the orchestrator needs; reading
//! `ci.yaml` at a commit; changed paths between two commits; worktrees to run jobs in.
//!
//! Every git call is a [`std::process::Command`] with separate arguments (never a shell
//! string), with `GIT_TERMINAL_PROMPT=0` (a missing credential fails instead of waiting
//! on a prompt) and `GIT_ALLOW_PROTOCOL=file:git:http:https:ssh` (no `ext::` transport
//! that runs commands). Values from webhooks (SHAs, refs, URLs) are validated first: a
//! SHA is 40 or 64 hex digits, a ref starts with `refs/` and passes
//! `git check-ref-format`, nothing starts with `-`, and `--end-of-options` (or `--`)
//! separates them from options wherever git takes it, so `--upload-pack=evil` is data.
//!
//! Decisions:
//! - The cache is `cache_dir/<first 32 hex digits of SHA-256(url)>`, made with
//!   `git init --bare` and an `origin` remote, not `git clone`: a fetch of one SHA then
//!   brings that commit's history and trees only, never every branch.
//! - `fetch(url, sha)` asks for the SHA itself. A server that refuses unadvertised
//!   objects (protocol v0 without `allowReachableSHA1InWant`) gets a second fetch of all
//!   branches, tags, `refs/pull/*/head` (GitHub, Gitea) and
//!   `refs/merge-requests/*/head` (GitLab), which is where a fork PR's head lives in the
//!   base repository. That fetch is not filtered: such a server refuses lazy blob
//!   fetches as well, which ask for unadvertised objects. Presence checks set `GIT_NO_LAZY_FETCH=1`, so they never fetch.
//! - Each fetched commit gets a ref `refs/cascade/<sha>` so that `git gc` keeps it.
//! - One fetch per cache repository at a time: an exclusive lock on
//!   `cache_dir/<hash>.lock` (`std::fs::File::lock`).
//! - Files are found with `git ls-tree` (trees are in the partial clone, so a missing
//!   path is told apart from a blob that cannot be fetched) and read with `git cat-file`
//!   (plumbing: no pager, no textconv) after a size check: larger than the cap (default
//!   [`MAX_FILE_BYTES`], the pipeline file limit) is an error; a path that is missing,
//!   a directory, a submodule or a symbolic link is `None`.

use crate::error::CloneError;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The largest file [`Repos::read_file`] returns by default (ci.yaml's cap, 1 MiB).
pub const MAX_FILE_BYTES: u64 = cascade_spec::MAX_FILE_BYTES as u64;

/// Refs fetched when a server will not hand out a bare SHA.
const ALL_REFS: &[&str] = &[
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
    "+refs/pull/*/head:refs/remotes/origin/pull/*",
    "+refs/merge-requests/*/head:refs/remotes/origin/merge-requests/*",
];

/// The clone cache.
#[derive(Debug, Clone)]
pub struct Repos {
    cache_dir: PathBuf,
    max_file_bytes: u64,
}

impl Repos {
    /// A cache rooted at `cache_dir` (made on first use).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            max_file_bytes: MAX_FILE_BYTES,
        }
    }

    /// The same cache with another cap for [`Repos::read_file`].
    #[must_use]
    pub fn with_max_file_bytes(mut self, max: u64) -> Self {
        self.max_file_bytes = max;
        self
    }

    /// The cache repository of `url` (which may not exist yet).
    pub fn repo_dir(&self, url: &str) -> PathBuf {
        let digest = Sha256::digest(url.as_bytes());
        let name = digest[..16].iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        self.cache_dir.join(name)
    }

    /// Makes sure commit `sha` of `url` is in the cache, and returns the cache
    /// repository (a bare git directory).
    pub fn fetch(&self, url: &str, sha: &str) -> Result<PathBuf, CloneError> {
        check_url(url)?;
        check_sha(sha)?;
        let dir = self.repo_dir(url);
        let _lock = self.lock(&dir)?;
        Self::init(&dir, url)?;
        if !has_commit(&dir, sha)? {
            let direct = git(Some(&dir))
                .args([
                    "fetch",
                    "--quiet",
                    "--filter=blob:none",
                    "--no-tags",
                    "--no-write-fetch-head",
                ])
                .args(["origin", "--end-of-options", sha])
                .output()
                .map_err(CloneError::Spawn)?;
            if !direct.status.success() || !has_commit(&dir, sha)? {
                // Such a server refuses lazy blob fetches too (they ask for
                // unadvertised objects), so this fetch takes the blobs as well.
                run(
                    "fetch",
                    git(Some(&dir))
                        .args(["fetch", "--quiet", "--no-filter", "--no-write-fetch-head"])
                        .args(["origin", "--end-of-options"])
                        .args(ALL_REFS),
                )?;
            }
            if !has_commit(&dir, sha)? {
                return Err(CloneError::ShaNotFound {
                    url: url.to_owned(),
                    sha: sha.to_owned(),
                });
            }
        }
        keep(&dir, sha)?;
        Ok(dir)
    }

    /// Fetches a full ref (`refs/heads/main`) of `url` and returns the cache repository
    /// and the commit it points to. For events that name a branch but no commit
    /// (dispatches) and for the base branch of a GitLab merge request.
    pub fn fetch_ref(&self, url: &str, git_ref: &str) -> Result<(PathBuf, String), CloneError> {
        check_url(url)?;
        check_ref(git_ref)?;
        let dir = self.repo_dir(url);
        let _lock = self.lock(&dir)?;
        Self::init(&dir, url)?;
        let local = format!("refs/cascade/fetched/{}", &git_ref["refs/".len()..]);
        run(
            "fetch",
            git(Some(&dir))
                .args([
                    "fetch",
                    "--quiet",
                    "--filter=blob:none",
                    "--no-tags",
                    "--no-write-fetch-head",
                ])
                .args(["origin", "--end-of-options"])
                .arg(format!("+{git_ref}:{local}")),
        )?;
        let sha = resolve(&dir, &local)?.ok_or_else(|| CloneError::UnknownRev {
            rev: git_ref.to_owned(),
        })?;
        keep(&dir, &sha)?;
        Ok((dir, sha))
    }

    /// The bytes of `path` at commit `rev`, `None` when there is no such file there.
    pub fn read_file(
        &self,
        repo: &Path,
        rev: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, CloneError> {
        check_rev(rev)?;
        check_path(path)?;
        let sha = resolve(repo, rev)?.ok_or_else(|| CloneError::UnknownRev {
            rev: rev.to_owned(),
        })?;
        // Trees are in the partial clone: ls-tree answers without fetching, and tells a
        // missing path (`None`) from a blob that cannot be fetched (an error below).
        let listing = run(
            "ls-tree",
            git(Some(repo)).args(["ls-tree", "-z", "--end-of-options", &sha, "--", path]),
        )?;
        let Some(object) = blob_id(&listing.stdout, path) else {
            return Ok(None);
        };
        let size = run(
            "cat-file",
            git(Some(repo)).args(["cat-file", "-s", "--end-of-options", &object]),
        )?;
        let size: u64 = std::str::from_utf8(size.stdout.trim_ascii())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(CloneError::Output {
                what: "an object size",
                expected: "a number",
            })?;
        if size > self.max_file_bytes {
            return Err(CloneError::FileTooLarge {
                rev: rev.to_owned(),
                path: path.to_owned(),
                size,
                max: self.max_file_bytes,
            });
        }
        let out = run(
            "cat-file",
            git(Some(repo)).args(["cat-file", "blob", "--end-of-options", &object]),
        )?;
        Ok(Some(out.stdout))
    }

    /// Files changed on `head` since it forked from `base` (`git diff base...head`).
    pub fn changed_paths(
        &self,
        repo: &Path,
        base: &str,
        head: &str,
    ) -> Result<Vec<String>, CloneError> {
        check_rev(base)?;
        check_rev(head)?;
        crate::changed::changed_files(repo, base, Some(head)).map_err(|e| match e {
            crate::error::ChangedError::Spawn(e) => CloneError::Spawn(e),
            other => CloneError::Diff(other),
        })
    }

    /// Checks commit `sha` out into `dest` (a new directory) as a detached worktree of the
    /// cache repository, to run jobs in. Remove it with [`Repos::remove_worktree`].
    pub fn worktree(&self, repo: &Path, sha: &str, dest: &Path) -> Result<(), CloneError> {
        check_sha(sha)?;
        run(
            "worktree add",
            git(Some(repo))
                .args(["worktree", "add", "--quiet", "--detach", "--end-of-options"])
                .arg(dest)
                .arg(sha),
        )?;
        Ok(())
    }

    /// Removes a worktree made by [`Repos::worktree`], files and bookkeeping.
    pub fn remove_worktree(&self, repo: &Path, dest: &Path) -> Result<(), CloneError> {
        run(
            "worktree remove",
            git(Some(repo))
                .args(["worktree", "remove", "--force", "--end-of-options"])
                .arg(dest),
        )?;
        Ok(())
    }

    /// Removes the cache repositories of URLs not fetched for `max_age` (a fetch
    /// rewrites the repository's lock file, whose modification time is its last use).
    /// A repository being fetched (its lock held) or with a job's worktree checked out
    /// is kept. Returns the repositories removed.
    pub fn evict(&self, max_age: std::time::Duration) -> Result<Vec<PathBuf>, CloneError> {
        let cache_err = |source| CloneError::Cache {
            path: self.cache_dir.clone(),
            source,
        };
        let entries = match std::fs::read_dir(&self.cache_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(cache_err(e)),
        };
        let now = std::time::SystemTime::now();
        let mut removed = Vec::new();
        for entry in entries {
            let lock_path = entry.map_err(cache_err)?.path();
            if lock_path.extension().is_none_or(|e| e != "lock") {
                continue;
            }
            let last_use = std::fs::metadata(&lock_path)
                .and_then(|m| m.modified())
                .map_err(cache_err)?;
            if now.duration_since(last_use).unwrap_or_default() < max_age {
                continue;
            }
            let dir = lock_path.with_extension("");
            let has_worktrees =
                std::fs::read_dir(dir.join("worktrees")).is_ok_and(|mut w| w.next().is_some());
            if has_worktrees {
                continue;
            }
            let lock = File::open(&lock_path).map_err(cache_err)?;
            if lock.try_lock().is_err() {
                continue;
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(cache_err)?;
            }
            std::fs::remove_file(&lock_path).map_err(cache_err)?;
            removed.push(dir);
        }
        Ok(removed)
    }

    fn lock(&self, dir: &Path) -> Result<File, CloneError> {
        let cache_err = |source| CloneError::Cache {
            path: self.cache_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(cache_err)?;
        let file = File::create(dir.with_extension("lock")).map_err(cache_err)?;
        file.lock().map_err(cache_err)?;
        Ok(file)
    }

    fn init(dir: &Path, url: &str) -> Result<(), CloneError> {
        if dir.join("HEAD").is_file() {
            return Ok(());
        }
        run(
            "init",
            git(None).args(["init", "--quiet", "--bare", "--"]).arg(dir),
        )?;
        run(
            "remote add",
            git(Some(dir)).args(["remote", "add", "origin", "--", url]),
        )?;
        Ok(())
    }
}

/// The blob id of `path` in `git ls-tree -z` output (`<mode> <type> <id>\t<path>\0`),
/// `None` when the path is not there or is not a file.
fn blob_id(listing: &[u8], path: &str) -> Option<String> {
    listing.split(|&b| b == 0).find_map(|entry| {
        let (meta, name) = entry.split_at(entry.iter().position(|&b| b == b'\t')?);
        if &name[1..] != path.as_bytes() {
            return None;
        }
        let mut fields = std::str::from_utf8(meta).ok()?.split(' ');
        let (mode, kind, id) = (fields.next()?, fields.next()?, fields.next()?);
        // A symbolic link is a blob too; its target is not the file.
        (kind == "blob" && mode != "120000").then(|| id.to_owned())
    })
}

/// `git` with the safe environment; `-C dir` when given. The crate's only way to start
/// a process (`clippy.toml`): the engine's builder is out of reach, as this crate may not
/// depend on its sibling `cascade-engine`.
pub(crate) fn git(dir: Option<&Path>) -> Command {
    #[expect(
        clippy::disallowed_methods,
        reason = "cascade-git's one process builder: every git call gets the safe environment here"
    )]
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh")
        .env("LC_ALL", "C");
    cmd
}

fn run(command: &'static str, cmd: &mut Command) -> Result<Output, CloneError> {
    let out = cmd.output().map_err(CloneError::Spawn)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(CloneError::Git {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Whether the commit is in the repository, without fetching it lazily.
fn has_commit(dir: &Path, sha: &str) -> Result<bool, CloneError> {
    let status = git(Some(dir))
        .env("GIT_NO_LAZY_FETCH", "1")
        .args(["cat-file", "-e", "--end-of-options"])
        .arg(format!("{sha}^{{commit}}"))
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(CloneError::Spawn)?;
    Ok(status.success())
}

/// The commit a revision names, `None` when it names none.
fn resolve(dir: &Path, rev: &str) -> Result<Option<String>, CloneError> {
    let out = git(Some(dir))
        .env("GIT_NO_LAZY_FETCH", "1")
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"))
        .output()
        .map_err(CloneError::Spawn)?;
    if !out.status.success() {
        return Ok(None);
    }
    let sha =
        String::from_utf8(out.stdout.trim_ascii().to_vec()).map_err(|_| CloneError::Output {
            what: "a commit id",
            expected: "UTF-8",
        })?;
    Ok(Some(sha))
}

fn keep(dir: &Path, sha: &str) -> Result<(), CloneError> {
    run(
        "update-ref",
        git(Some(dir)).args([
            "update-ref",
            "--end-of-options",
            &format!("refs/cascade/{sha}"),
            sha,
        ]),
    )?;
    Ok(())
}

fn refuse(what: &'static str, value: &str, reason: &'static str) -> CloneError {
    CloneError::Refused {
        what,
        value: value.chars().take(200).collect(),
        reason,
    }
}

/// A full object id: 40 (SHA-1) or 64 (SHA-256) hex digits.
pub fn check_sha(sha: &str) -> Result<(), CloneError> {
    if !matches!(sha.len(), 40 | 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse("commit", sha, "expected 40 or 64 hex digits"));
    }
    Ok(())
}

/// A full ref name (`refs/heads/main`) that git accepts and that cannot be an option.
pub fn check_ref(git_ref: &str) -> Result<(), CloneError> {
    check_rev(git_ref)?;
    if !git_ref.starts_with("refs/") {
        return Err(refuse(
            "ref",
            git_ref,
            "expected a full ref name starting with `refs/`",
        ));
    }
    let ok = git(None)
        // check-ref-format takes no `--end-of-options`; `check_rev` refused a leading `-`.
        .args(["check-ref-format", git_ref])
        .output()
        .map_err(CloneError::Spawn)?
        .status
        .success();
    if !ok {
        return Err(refuse("ref", git_ref, "git check-ref-format refuses it"));
    }
    Ok(())
}

/// A revision (a SHA or a ref name): no leading `-`, no whitespace or control
/// characters, none of git's revision syntax (`:`, `..`, `@{`, `^`, `~`, globs).
pub fn check_rev(rev: &str) -> Result<(), CloneError> {
    if rev.is_empty() || rev.len() > 1024 {
        return Err(refuse("revision", rev, "expected 1 to 1024 characters"));
    }
    if rev.starts_with('-') {
        return Err(refuse(
            "revision",
            rev,
            "it starts with `-` and would be read as an option",
        ));
    }
    let bad_char = rev.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, ':' | '^' | '~' | '?' | '*' | '[' | '\\')
    });
    if bad_char || rev.contains("..") || rev.contains("@{") {
        return Err(refuse(
            "revision",
            rev,
            "it holds characters git reads as revision syntax",
        ));
    }
    Ok(())
}

/// A repository URL that git cannot take for an option or a command.
fn check_url(url: &str) -> Result<(), CloneError> {
    if url.is_empty() || url.starts_with('-') || url.chars().any(char::is_control) {
        return Err(refuse(
            "repository URL",
            url,
            "it is empty, starts with `-` or holds control characters",
        ));
    }
    if url.contains("::") {
        return Err(refuse(
            "repository URL",
            url,
            "`<transport>::` remote helpers are not allowed",
        ));
    }
    Ok(())
}

/// A path inside the repository: relative, no `.`/`..` components.
fn check_path(path: &str) -> Result<(), CloneError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.chars().any(char::is_control)
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(refuse(
            "path",
            path,
            "expected a relative path without `.` or `..` parts",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shas() {
        assert!(check_sha(&"a".repeat(40)).is_ok());
        assert!(check_sha(&"A0".repeat(32)).is_ok());
        for bad in [
            "",
            "abc",
            &"g".repeat(40),
            &"a".repeat(41),
            "--upload-pack=evil",
        ] {
            assert!(check_sha(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn revisions_that_look_like_options_or_syntax_are_refused() {
        for ok in [
            "main",
            "refs/heads/feature/x",
            "origin/main",
            &"a".repeat(40),
        ] {
            assert!(check_rev(ok).is_ok(), "{ok}");
        }
        for bad in [
            "--upload-pack=evil",
            "-n",
            "",
            "a..b",
            "HEAD@{1}",
            "main:secret",
            "main^",
            "main~2",
            "ma in",
            "x\n",
            "refs/*",
        ] {
            assert!(check_rev(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refs_must_be_full_and_well_formed() {
        assert!(check_ref("refs/heads/main").is_ok());
        assert!(check_ref("refs/pull/12/head").is_ok());
        assert!(check_ref("main").is_err());
        assert!(check_ref("refs/heads/x.lock").is_err());
        assert!(check_ref("refs/heads/a/").is_err());
        assert!(check_ref("--upload-pack=evil").is_err());
    }

    #[test]
    fn urls_and_paths() {
        assert!(check_url("https://example.invalid/o/r.git").is_ok());
        assert!(check_url("--upload-pack=evil").is_err());
        assert!(check_url("ext::sh -c evil").is_err());
        assert!(check_path("ci.yaml").is_ok());
        assert!(check_path(".cascade/ci.yaml").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../b", "./ci.yaml", "a//b"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blob_ids_from_ls_tree() {
        let out =
            b"100644 blob aaaa\tci.yaml\x00040000 tree bbbb\tsrc\x00120000 blob cccc\tlink\x00";
        assert_eq!(blob_id(out, "ci.yaml").as_deref(), Some("aaaa"));
        assert_eq!(blob_id(out, "src"), None);
        assert_eq!(blob_id(out, "link"), None);
        assert_eq!(blob_id(out, "ci.yml"), None);
        assert_eq!(blob_id(b"", "ci.yaml"), None);
        assert_eq!(blob_id(b"garbage\0", "ci.yaml"), None);
    }

    #[test]
    fn cache_dirs_are_per_url() {
        let r = Repos::new("/cache");
        assert_ne!(r.repo_dir("a"), r.repo_dir("b"));
        assert_eq!(r.repo_dir("a"), r.repo_dir("a"));
        assert!(r.repo_dir("a").starts_with("/cache"));
    }
}
