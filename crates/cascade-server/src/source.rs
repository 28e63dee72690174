//! Pipeline files and changed paths from registered repositories, through the clone
//! cache of `cascade-git` (a bare partial clone per repository in `DATA/repos`).

use crate::orchestrator::{Fetched, PipelineSource};
use cascade_git::clone::Repos;
use cascade_spec::config::Repository;

/// Reads from the clone cache.
#[derive(Debug, Clone)]
pub struct GitSource {
    pub repos: Repos,
}

fn is_sha(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitSource {
    /// The cache repository and the commit of `rev` (a sha, or a branch name).
    fn fetch(&self, repo: &Repository, rev: &str) -> Result<(std::path::PathBuf, String), String> {
        if is_sha(rev) {
            let dir = self
                .repos
                .fetch(&repo.url, rev)
                .map_err(|e| e.to_string())?;
            Ok((dir, rev.to_owned()))
        } else {
            let full = if rev.starts_with("refs/") {
                rev.to_owned()
            } else {
                format!("refs/heads/{rev}")
            };
            self.repos
                .fetch_ref(&repo.url, &full)
                .map_err(|e| e.to_string())
        }
    }
}

impl PipelineSource for GitSource {
    fn read(&self, repo: &Repository, rev: &str, path: &str) -> Result<Option<Fetched>, String> {
        let (dir, sha) = self.fetch(repo, rev)?;
        let bytes = self
            .repos
            .read_file(&dir, &sha, path)
            .map_err(|e| e.to_string())?;
        bytes
            .map(|b| {
                String::from_utf8(b)
                    .map(|text| Fetched {
                        text,
                        sha: sha.clone(),
                    })
                    .map_err(|_| format!("{path} at {rev} is not UTF-8"))
            })
            .transpose()
    }

    fn changed(&self, repo: &Repository, base: &str, head: &str) -> Result<Vec<String>, String> {
        let (dir, head) = self.fetch(repo, head)?;
        let (_, base) = self.fetch(repo, base)?;
        self.repos
            .changed_paths(&dir, &base, &head)
            .map_err(|e| e.to_string())
    }
}
