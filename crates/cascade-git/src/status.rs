//! The commit-status reporter: one status per job (the context) on the commit a run
//! built, on GitHub, Gitea or GitLab.
//!
//! Requests, exactly:
//! - GitHub: `POST {api}/repos/{owner}/{name}/statuses/{sha}`, JSON
//!   `{"state": "pending|success|failure|error", "context", "description", "target_url"?}`,
//!   headers `Authorization: Bearer <token>`, `Accept: application/vnd.github+json`,
//!   `X-GitHub-Api-Version: 2022-11-28`.
//! - Gitea: the same path and body (`{api}` ends in `/api/v1`), `Authorization: token
//!   <token>`, `Accept: application/json`.
//! - GitLab: `POST {api}/projects/{id}/statuses/{sha}` (`{api}` ends in `/api/v4`; a
//!   project path such as `group/project` is sent URL-encoded as one segment), JSON
//!   `{"state": "pending|success|failed", "name", "description", "target_url"?}`, header
//!   `PRIVATE-TOKEN: <token>`. GitLab has no `error` state: errors are `failed`.
//!
//! Every request has `User-Agent: cascade/<version>` and `Content-Type: application/json`.
//!
//! Decisions:
//! - A skipped job is `success` with the description `skipped` ([`Reporter::skipped`]):
//!   a skip must not block a merge.
//! - Descriptions are masked first (the caller's masking function, the run's secrets),
//!   then cut to 140 characters on a character boundary, the last one `…` when cut:
//!   cutting first could leave half a secret unmasked.
//! - Only changes are sent: a context whose last sent state and description are the same
//!   is not posted again. GitLab refuses a transition to the state a status already has,
//!   so there only a change of state is sent (a description-only change is dropped).
//!   A failed post is not remembered, so the next report of that context sends again.
//! - 5xx, 429 and transport errors are retried with exponential backoff, at most
//!   [`RetryPolicy::attempts`] tries; a `Retry-After` in seconds replaces the backoff. Both
//!   are capped by [`RetryPolicy::max_delay`]. Other 4xx are final at once.
//! - The HTTP client ([`http_client`], made by [`crate::http::HttpClient`]) does not
//!   follow redirects (the token would travel with them).
//! - The token never appears in `Debug` output or errors.

use crate::error::StatusError;
use crate::forge::Forge;
use crate::http::USER_AGENT;
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The longest description sent, in characters (GitHub's limit).
pub const MAX_DESCRIPTION: usize = 140;
/// The longest excerpt of an error body kept in [`StatusError::Rejected`].
const MAX_ERROR_BODY: usize = 200;

/// The masking function of a run: replaces every secret value with `***`.
pub type Mask = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A commit status state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    /// The state's name in `forge`'s API.
    pub fn api_name(self, forge: Forge) -> &'static str {
        match (self, forge) {
            (CommitState::Pending, _) => "pending",
            (CommitState::Success, _) => "success",
            (CommitState::Failure | CommitState::Error, Forge::GitLab) => "failed",
            (CommitState::Failure, _) => "failure",
            (CommitState::Error, _) => "error",
        }
    }
}

/// Where statuses go: one commit of one repository.
#[derive(Clone)]
pub struct StatusTarget {
    pub forge: Forge,
    /// `https://api.github.com`, `https://gitea.example/api/v1`,
    /// `https://gitlab.example/api/v4`.
    pub api_base_url: String,
    /// `owner/name` (GitHub, Gitea), or the project id or path (GitLab).
    pub repo: String,
    pub sha: String,
    pub token: String,
    /// The run's page, linked from the forge.
    pub target_url: Option<String>,
}

impl fmt::Debug for StatusTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusTarget")
            .field("forge", &self.forge)
            .field("api_base_url", &self.api_base_url)
            .field("repo", &self.repo)
            .field("sha", &self.sha)
            .field("token", &"***")
            .field("target_url", &self.target_url)
            .finish()
    }
}

/// How failed posts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    pub base_delay: Duration,
    /// No wait is longer, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `attempt` (1-based), given the server's
    /// `Retry-After` header.
    pub fn delay(&self, attempt: u32, retry_after: Option<&str>) -> Duration {
        let asked = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let backoff = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        asked.unwrap_or(backoff).min(self.max_delay)
    }
}

/// What [`Reporter::report`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The context already has this state (and description): nothing sent.
    Unchanged,
    /// Posted, after `attempts` tries with these waits between them.
    Posted {
        attempts: u32,
        delays: Vec<Duration>,
    },
}

/// The HTTP client for status posts: [`crate::http::HttpClient`] with a 30 s timeout.
pub fn http_client() -> Result<reqwest::Client, StatusError> {
    Ok(crate::http::HttpClient::new(Duration::from_secs(30)).build()?)
}

/// Posts statuses for one commit, sending only changes.
pub struct Reporter {
    client: reqwest::Client,
    target: StatusTarget,
    url: Url,
    mask: Mask,
    retry: RetryPolicy,
    last: Mutex<HashMap<String, (CommitState, String)>>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("target", &self.target)
            .field("url", &self.url.as_str())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One request, built but not sent.
#[derive(Debug, Clone, PartialEq)]
struct StatusRequest {
    url: Url,
    /// Header name and value; the credential header is last.
    headers: Vec<(&'static str, String)>,
    body: Value,
}

impl Reporter {
    /// A reporter for `target`. Checks the base URL, the repository and the SHA.
    pub fn new(
        client: reqwest::Client,
        target: StatusTarget,
        mask: Mask,
    ) -> Result<Self, StatusError> {
        let url = status_url(&target)?;
        Ok(Self {
            client,
            target,
            url,
            mask,
            retry: RetryPolicy::default(),
            last: Mutex::new(HashMap::new()),
        })
    }

    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            attempts: retry.attempts.max(1),
            ..retry
        };
        self
    }

    /// A skipped job: `success` with the description `skipped`.
    pub async fn skipped(&self, context: &str) -> Result<Sent, StatusError> {
        self.report(context, CommitState::Success, "skipped").await
    }

    /// Sets the status of `context` (a job) unless it already has it.
    pub async fn report(
        &self,
        context: &str,
        state: CommitState,
        description: &str,
    ) -> Result<Sent, StatusError> {
        let description = cap(&(self.mask)(description));
        if self.unchanged(context, state, &description) {
            return Ok(Sent::Unchanged);
        }
        let request = self.request(context, state, &description);
        let sent = self.send(&request).await?;
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(context.to_owned(), (state, description));
        Ok(sent)
    }

    fn unchanged(&self, context: &str, state: CommitState, description: &str) -> bool {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.get(context).is_some_and(|(s, d)| {
            *s == state && (self.target.forge == Forge::GitLab || d == description)
        })
    }

    fn request(&self, context: &str, state: CommitState, description: &str) -> StatusRequest {
        let forge = self.target.forge;
        let context_key = if forge == Forge::GitLab {
            "name"
        } else {
            "context"
        };
        let mut body = json!({
            "state": state.api_name(forge),
            context_key: context,
            "description": description,
        });
        if let (Some(url), Value::Object(map)) = (&self.target.target_url, &mut body) {
            map.insert("target_url".to_owned(), Value::String(url.clone()));
        }
        let token = &self.target.token;
        let mut headers = vec![
            ("User-Agent", USER_AGENT.to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ];
        match forge {
            Forge::GitHub => headers.extend([
                ("Accept", "application/vnd.github+json".to_owned()),
                ("X-GitHub-Api-Version", "2022-11-28".to_owned()),
                ("Authorization", format!("Bearer {token}")),
            ]),
            Forge::Gitea => headers.extend([
                ("Accept", "application/json".to_owned()),
                ("Authorization", format!("token {token}")),
            ]),
            Forge::GitLab => headers.extend([
                ("Accept", "application/json".to_owned()),
                ("PRIVATE-TOKEN", token.clone()),
            ]),
        }
        StatusRequest {
            url: self.url.clone(),
            headers,
            body,
        }
    }

    async fn send(&self, request: &StatusRequest) -> Result<Sent, StatusError> {
        let mut delays = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last_try = attempt >= self.retry.attempts;
            let outcome = self.post(request).await;
            let retry_after = match outcome {
                Ok(response) if response.status().is_success() => {
                    return Ok(Sent::Posted {
                        attempts: attempt,
                        delays,
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    let retryable = status.is_server_error() || status.as_u16() == 429;
                    if !retryable || last_try {
                        return Err(self.rejected(response, attempt).await);
                    }
                    response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                }
                Err(source) if last_try => {
                    return Err(StatusError::Transport {
                        url: request.url.to_string(),
                        source,
                    });
                }
                Err(_) => None,
            };
            let delay = self.retry.delay(attempt, retry_after.as_deref());
            delays.push(delay);
            tokio::time::sleep(delay).await;
        }
    }

    async fn post(&self, request: &StatusRequest) -> Result<reqwest::Response, reqwest::Error> {
        let mut builder = self.client.post(request.url.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        builder.body(request.body.to_string()).send().await
    }

    async fn rejected(&self, response: reqwest::Response, attempts: u32) -> StatusError {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: String = (self.mask)(&text).chars().take(MAX_ERROR_BODY).collect();
        StatusError::Rejected {
            forge: self.target.forge,
            status,
            attempts,
            body,
        }
    }
}

/// At most [`MAX_DESCRIPTION`] characters, the last one `…` when cut.
fn cap(text: &str) -> String {
    if text.chars().count() <= MAX_DESCRIPTION {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    out.push('…');
    out
}

fn bad(what: &'static str, value: &str, reason: &'static str) -> StatusError {
    StatusError::BadTarget {
        what,
        value: value.to_owned(),
        reason,
    }
}

fn status_url(target: &StatusTarget) -> Result<Url, StatusError> {
    let base = &target.api_base_url;
    let mut url = Url::parse(base).map_err(|e| StatusError::BadBaseUrl {
        url: base.clone(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(StatusError::BadBaseUrl {
            url: base.clone(),
            reason: "expected an http or https URL".to_owned(),
        });
    }
    let sha = &target.sha;
    if !matches!(sha.len(), 40 | 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("commit", sha, "expected 40 or 64 hex digits"));
    }
    let repo = target.repo.as_str();
    let segments: Vec<&str> = match target.forge {
        Forge::GitHub | Forge::Gitea => {
            let Some((owner, name)) = repo
                .split_once('/')
                .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            else {
                return Err(bad("repository", repo, "expected `owner/name`"));
            };
            vec!["repos", owner, name, "statuses", sha]
        }
        Forge::GitLab => {
            if repo.is_empty() {
                return Err(bad("project", repo, "expected a project id or path"));
            }
            vec!["projects", repo, "statuses", sha]
        }
    };
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| StatusError::BadBaseUrl {
            url: base.clone(),
            reason: "expected an http or https URL".to_owned(),
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn target(forge: Forge, base: &str, repo: &str) -> StatusTarget {
        StatusTarget {
            forge,
            api_base_url: base.to_owned(),
            repo: repo.to_owned(),
            sha: SHA.to_owned(),
            token: "tok-123".to_owned(),
            target_url: None,
        }
    }

    fn reporter(t: StatusTarget) -> Reporter {
        // Already installed by another test is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Reporter::new(
            http_client().unwrap(),
            t,
            Arc::new(|s: &str| s.replace("hunter2", "***")),
        )
        .unwrap()
    }

    #[test]
    fn urls_per_forge() {
        let url = |t| status_url(&t).unwrap().to_string();
        assert_eq!(
            url(target(Forge::GitHub, "https://api.github.com", "o/r")),
            format!("https://api.github.com/repos/o/r/statuses/{SHA}")
        );
        assert_eq!(
            url(target(Forge::Gitea, "http://gitea.local/api/v1/", "o/r")),
            format!("http://gitea.local/api/v1/repos/o/r/statuses/{SHA}")
        );
        assert_eq!(
            url(target(Forge::GitLab, "https://gl.local/api/v4", "42")),
            format!("https://gl.local/api/v4/projects/42/statuses/{SHA}")
        );
        assert_eq!(
            url(target(
                Forge::GitLab,
                "https://gl.local/api/v4",
                "group/sub/project"
            )),
            format!("https://gl.local/api/v4/projects/group%2Fsub%2Fproject/statuses/{SHA}")
        );
    }

    #[test]
    fn bad_targets_are_refused() {
        for t in [
            target(Forge::GitHub, "not a url", "o/r"),
            target(Forge::GitHub, "ftp://x", "o/r"),
            target(Forge::GitHub, "https://x", "o"),
            target(Forge::GitHub, "https://x", "o/r/s"),
            target(Forge::Gitea, "https://x", "/r"),
            target(Forge::GitLab, "https://x", ""),
            StatusTarget {
                sha: "../../admin".into(),
                ..target(Forge::GitHub, "https://x", "o/r")
            },
        ] {
            assert!(status_url(&t).is_err(), "{t:?}");
        }
    }

    #[test]
    fn states_per_forge() {
        assert_eq!(CommitState::Failure.api_name(Forge::GitHub), "failure");
        assert_eq!(CommitState::Error.api_name(Forge::Gitea), "error");
        assert_eq!(CommitState::Failure.api_name(Forge::GitLab), "failed");
        assert_eq!(CommitState::Error.api_name(Forge::GitLab), "failed");
        assert_eq!(CommitState::Pending.api_name(Forge::GitLab), "pending");
        assert_eq!(CommitState::Success.api_name(Forge::GitLab), "success");
    }

    #[test]
    fn request_bodies_and_headers() {
        let r = reporter(StatusTarget {
            target_url: Some("https://ci.local/runs/1".into()),
            ..target(Forge::GitHub, "https://api.github.com", "o/r")
        });
        let req = r.request("build", CommitState::Pending, "running");
        assert_eq!(
            req.body,
            json!({"state": "pending", "context": "build", "description": "running",
                   "target_url": "https://ci.local/runs/1"})
        );
        assert!(
            req.headers
                .contains(&("Authorization", "Bearer tok-123".into()))
        );
        let r = reporter(target(Forge::Gitea, "https://g/api/v1", "o/r"));
        let req = r.request("build", CommitState::Error, "x");
        assert_eq!(
            req.body,
            json!({"state": "error", "context": "build", "description": "x"})
        );
        assert!(
            req.headers
                .contains(&("Authorization", "token tok-123".into()))
        );
        let r = reporter(target(Forge::GitLab, "https://g/api/v4", "7"));
        let req = r.request("build", CommitState::Failure, "x");
        assert_eq!(
            req.body,
            json!({"state": "failed", "name": "build", "description": "x"})
        );
        assert!(req.headers.contains(&("PRIVATE-TOKEN", "tok-123".into())));
    }

    #[test]
    fn descriptions_are_capped_on_char_boundaries() {
        assert_eq!(cap("short"), "short");
        let exact = "é".repeat(140);
        assert_eq!(cap(&exact), exact);
        let long = "日本".repeat(100);
        let cut = cap(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
        assert!(long.starts_with(cut.trim_end_matches('…')));
    }

    #[test]
    fn backoff_and_retry_after() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        assert_eq!(p.delay(1, None), Duration::from_millis(100));
        assert_eq!(p.delay(2, None), Duration::from_millis(200));
        assert_eq!(p.delay(3, None), Duration::from_millis(400));
        assert_eq!(p.delay(10, None), Duration::from_secs(2));
        assert_eq!(p.delay(1, Some("1")), Duration::from_secs(1));
        assert_eq!(p.delay(1, Some("3600")), Duration::from_secs(2));
        // An HTTP date is not understood: back off as usual.
        assert_eq!(
            p.delay(1, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn debug_output_hides_the_token() {
        let r = reporter(target(Forge::GitHub, "https://api.github.com", "o/r"));
        assert!(!format!("{r:?}").contains("tok-123"));
    }
}
