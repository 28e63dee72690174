//! Pipeline files and changed paths from registered repositories, through the clone
//! cache of `cascade-git` (a bare partial clone per repository in `DATA/repos`).

use crate::orchestrator::{Fetched, PipelineSource};
use cascade_git::clone::Repos;
use cascade_git::error::CloneError;
use cascade_spec::config::Repository;
use std::sync::Arc;

/// Why a pipeline file or the changed paths could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The clone cache's own message (what git said, or which value it refused).
    #[error(transparent)]
    Clone(#[from] CloneError),
    #[error("{path} at {rev} is not UTF-8")]
    NotUtf8 {
        path: String,
        rev: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// The thread reading from git panicked.
    #[error("reading from the repository stopped before it ended")]
    Interrupted,
}

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
    fn fetch(
        &self,
        repo: &Repository,
        rev: &str,
    ) -> Result<(std::path::PathBuf, String), CloneError> {
        if is_sha(rev) {
            let dir = self.repos.fetch(&repo.url, rev)?;
            Ok((dir, rev.to_owned()))
        } else {
            let full = if rev.starts_with("refs/") {
                rev.to_owned()
            } else {
                format!("refs/heads/{rev}")
            };
            self.repos.fetch_ref(&repo.url, &full)
        }
    }
}

impl PipelineSource for GitSource {
    fn read(
        &self,
        repo: &Repository,
        rev: &str,
        path: &str,
    ) -> Result<Option<Fetched>, SourceError> {
        let (dir, sha) = self.fetch(repo, rev)?;
        let bytes = self.repos.read_file(&dir, &sha, path)?;
        bytes
            .map(|b| {
                String::from_utf8(b)
                    .map(|text| Fetched {
                        text,
                        sha: sha.clone(),
                    })
                    .map_err(|source| SourceError::NotUtf8 {
                        path: path.to_owned(),
                        rev: rev.to_owned(),
                        source,
                    })
            })
            .transpose()
    }

    fn changed(
        &self,
        repo: &Repository,
        base: &str,
        head: &str,
    ) -> Result<Vec<String>, SourceError> {
        let (dir, head) = self.fetch(repo, head)?;
        let (_, base) = self.fetch(repo, base)?;
        Ok(self.repos.changed_paths(&dir, &base, &head)?)
    }
}

/// [`PipelineSource::read`] on a blocking thread (it may fetch from the forge).
pub async fn read_pipeline(
    source: &Arc<dyn PipelineSource>,
    repo: &Repository,
    rev: &str,
    path: &str,
) -> Result<Option<Fetched>, SourceError> {
    let source = Arc::clone(source);
    let (repo, rev, path) = (repo.clone(), rev.to_owned(), path.to_owned());
    crate::store_thread::blocking(move || source.read(&repo, &rev, &path))
        .await
        .unwrap_or(Err(SourceError::Interrupted))
}

/// [`PipelineSource::changed`] on a blocking thread (it may fetch from the forge).
pub async fn changed_paths(
    source: &Arc<dyn PipelineSource>,
    repo: &Repository,
    base: String,
    head: String,
) -> Result<Vec<String>, SourceError> {
    let source = Arc::clone(source);
    let repo = repo.clone();
    crate::store_thread::blocking(move || source.changed(&repo, &base, &head))
        .await
        .unwrap_or(Err(SourceError::Interrupted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(url: &str) -> Repository {
        let config = cascade_spec::config::AdminConfig::parse(&format!(
            "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"{url}\"\n"
        ))
        .unwrap();
        config.repositories["acme/app"].clone()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_fetch_reads_as_the_clone_cache_said_it_and_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let source: Arc<dyn PipelineSource> = Arc::new(GitSource {
            repos: Repos::new(dir.path().join("repos")),
        });
        let missing = format!("file://{}", dir.path().join("nowhere").display());
        let repo = repository(&missing);
        let err = read_pipeline(&source, &repo, "main", "ci.yaml")
            .await
            .unwrap_err();
        let SourceError::Clone(cause) = &err else {
            panic!("not the clone cache's error: {err:?}");
        };
        // The event note is `cannot read ci.yaml at main: {err}`: the cache's own words.
        assert_eq!(err.to_string(), cause.to_string());
        assert!(err.to_string().starts_with("git "), "{err}");
        let sha = "0".repeat(40);
        let refused = changed_paths(&source, &repo, "-x".to_owned(), sha)
            .await
            .unwrap_err();
        assert!(matches!(refused, SourceError::Clone(_)), "{refused:?}");
    }
}
