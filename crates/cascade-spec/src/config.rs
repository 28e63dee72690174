//! The admin config (`cascade.toml` locally, a `ConfigMap` on Kubernetes): runner aliases
//! and secret mappings. Pipelines name runners and secrets; only this file says what they
//! are, so a pipeline author cannot ask for more than an admin allowed.

use crate::model::Resources;
use indexmap::IndexMap;
use serde::Deserialize;

/// The whole admin config.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Runner aliases by name (`runner: small` in ci.yaml). Giving this table replaces
    /// the built-in `small`, `medium` and `large`.
    #[serde(default = "default_runners")]
    #[schemars(example = serde_json::json!({"gpu": {"cpu": 8, "memory": "32Gi", "node_selector": {"accelerator": "a100"}, "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}}))]
    pub runners: IndexMap<String, Runner>,
    /// Secret names (as in a job's `secrets:`) → where the secret lives on Kubernetes.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"PYPI_TOKEN": {"secret": "pypi", "key": "token"}}))]
    pub secrets: IndexMap<String, SecretRef>,
    /// Limits of the local engine.
    #[serde(default)]
    pub engine: EngineLimits,
    /// Repositories whose webhooks, dispatches and schedules `serve` acts on, by full
    /// name (`owner/name`, or a GitLab path).
    #[serde(default)]
    #[schemars(example = serde_json::json!({"acme/app": {"forge": "github", "url": "https://github.com/acme/app.git", "api_url": "https://api.github.com", "token_secret": "GITHUB_TOKEN", "webhook_secret": "ACME_WEBHOOK_SECRET", "pipeline": "ci.yaml", "default_branch": "main", "backend": "local", "callback": "done"}}))]
    pub repositories: IndexMap<String, Repository>,
    /// How `serve` routes events: dispatch retries, circuit breakers, callbacks.
    #[serde(default)]
    pub orchestrator: Orchestrator,
    /// Where repositories with `backend = "argo"` run: the cluster comes from the
    /// server's kubeconfig (`$KUBECONFIG`, `~/.kube/config`) or its service account.
    #[serde(default)]
    pub argo: ArgoSettings,
    /// How Python tasks (`@cs.task` functions, `python3 -m cascade.runner`) run on Argo.
    #[serde(default)]
    pub python: PythonSettings,
    /// Which repositories and scopes may use each secret on the server (by secret name).
    /// A server run whose job declares a secret not granted to its repository or scope
    /// fails before anything runs; `cascade run` on your own machine needs no grant.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"PYPI_TOKEN": {"repositories": ["acme/app"], "scopes": ["project:web"]}}))]
    pub grants: IndexMap<String, Grant>,
    /// Completion callback URLs by name. Only these are ever called: a dispatch's
    /// `client_payload.callback` may pick one by name, never give a URL.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"done": "https://hooks.example/cascade-done"}))]
    pub callbacks: IndexMap<String, String>,
    /// How jobs run by `serve` (and by `cascade run --sandbox`) are isolated.
    #[serde(default)]
    pub sandbox: SandboxSettings,
}

/// Who may use one secret on the server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Registered repositories (`owner/name`) whose runs get it; never pull requests
    /// from forks.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Scopes (`project:web`, `global`) whose API submissions get it.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Where a server run comes from, for [`AdminConfig::check_grants`].
#[derive(Debug, Clone, Copy)]
pub struct Grantee<'a> {
    /// The registered repository of a webhook, dispatch or schedule run.
    pub repository: Option<&'a str>,
    /// The run's scope (`project:web`).
    pub scope: &'a str,
}

/// Job isolation (bubblewrap): what a job may see besides its workspace and the system.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// The user jobs run as when `serve` runs as root: a name or a numeric uid (its
    /// workspace is given to that user). Never root.
    pub user: String,
    /// Share the host's network with jobs (they fetch dependencies and reach
    /// `CASCADE_SERVER`); `false` gives each job an empty network namespace.
    pub network: bool,
    /// Absolute paths of directories every job gets read-write at the same path (shared
    /// caches). Nothing else of the host is writable inside.
    pub bind: Vec<String>,
    /// Absolute paths every job gets read-only at the same path (tool directories such as
    /// `/opt/tools`, or `/etc` entries beyond the built-in list).
    pub read_only: Vec<String>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            user: "nobody".to_owned(),
            network: true,
            bind: Vec::new(),
            read_only: Vec::new(),
        }
    }
}

/// How `serve` hands runs to Argo Workflows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ArgoSettings {
    /// The namespace workflows are created in and watched.
    pub namespace: String,
    /// The image of jobs without `image:` (Python tasks: `[python] image`).
    pub default_image: String,
    /// The service account the job pods run as (never taken from ci.yaml).
    pub service_account: String,
}

impl Default for ArgoSettings {
    fn default() -> Self {
        Self {
            namespace: "default".to_owned(),
            default_image: "docker.io/library/alpine:3.20".to_owned(),
            service_account: "cascade-executor".to_owned(),
        }
    }
}

/// Python tasks on Argo: each runs `python3 -m cascade.runner` in the repository checked
/// out at the run's commit, so its pipeline's files are there; the `cascade` package is
/// not in the repository and must come from the image or from `install`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PythonSettings {
    /// The image of Python tasks without `image=`. It needs `python3` (3.10 or later) and,
    /// unless `install` is set, the `cascade` package installed (an image built
    /// `FROM python:3.12-slim` that runs `pip install cascade`); the plain default has
    /// Python only, so set `install` or give an image that has the package.
    pub image: String,
    /// A shell command each Python task runs in the checkout before its function, as the
    /// pod's non-root user with a writable `HOME`, so `pip install --user` works. Admin
    /// text, never a pipeline's; unset: nothing is installed.
    #[schemars(example = "pip install --user cascade==0.1.0")]
    pub install: Option<String>,
}

impl Default for PythonSettings {
    fn default() -> Self {
        Self {
            image: "python:3.12-slim".to_owned(),
            install: None,
        }
    }
}

/// A git host whose webhooks and status API Cascade speaks: the one `Forge` of the
/// workspace. `cascade.toml` spells it `github`, `gitea` or `gitlab` (as do the webhook
/// routes, `/hooks/github`, and stored events); `cascade-git` re-exports it and adds
/// what is about webhooks (which header names the event, detecting the sender).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    GitHub,
    Gitea,
    GitLab,
}

impl Forge {
    pub const ALL: [Forge; 3] = [Forge::GitHub, Forge::Gitea, Forge::GitLab];

    /// The lowercase name used in `cascade.toml`, routes (`/hooks/github`) and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
        }
    }
}

impl std::fmt::Display for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Forge::GitHub => "GitHub",
            Forge::Gitea => "Gitea",
            Forge::GitLab => "GitLab",
        })
    }
}

/// A route or config name that is not `github`, `gitea` or `gitlab`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown forge `{0}`; expected github, gitea or gitlab")]
pub struct UnknownForge(pub String);

impl std::str::FromStr for Forge {
    type Err = UnknownForge;

    /// The lowercase name, in any case (`GitLab` too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Forge::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownForge(s.to_owned()))
    }
}

/// Where a repository's runs go.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The worker processes of this server.
    #[default]
    Local,
    /// Argo Workflows, with the kubeconfig of the server.
    Argo,
}

/// One repository `serve` acts on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// The git host: `github`, `gitea` or `gitlab`.
    pub forge: Forge,
    /// Where to clone from (`https://…`, `file://…`); webhooks name the repository, this
    /// says where it is.
    pub url: String,
    /// The host's API base for commit statuses (`https://api.github.com`,
    /// `https://gitea.example/api/v1`, `https://gitlab.com/api/v4`); unset: no statuses.
    pub api_url: Option<String>,
    /// GitLab's numeric project id, for its status API.
    #[schemars(example = "1234")]
    pub project_id: Option<String>,
    /// The secret (by name, from the secret store) holding the API token for statuses.
    pub token_secret: Option<String>,
    /// The secret (by name) holding this repository's webhook secret, instead of the
    /// server's `--webhook-secret`.
    pub webhook_secret: Option<String>,
    /// The pipeline file inside the repository.
    #[serde(default = "default_pipeline_path")]
    pub pipeline: String,
    /// The branch whose pipeline file schedules and dispatches read.
    #[serde(default = "default_branch")]
    pub default_branch: String,
    /// `local` (this server's workers) or `argo`.
    #[serde(default)]
    pub backend: Backend,
    /// The completion callback of this repository's runs: a name from `[callbacks]`.
    pub callback: Option<String>,
}

fn default_pipeline_path() -> String {
    "ci.yaml".to_owned()
}

fn default_branch() -> String {
    "main".to_owned()
}

/// Event routing (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Orchestrator {
    /// A failed dispatch-started run is started again up to this many times.
    pub retry_limit: u32,
    /// Consecutive failures of one route (event type → pipeline) that open its breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses its route before letting one event try
    /// (half-open), as a duration (`60s`).
    pub breaker_cooldown: String,
    /// Where completion callbacks go when neither the dispatch (`client_payload.callback`,
    /// a name from `[callbacks]`) nor the repository (`callback`) names one.
    #[schemars(example = "https://hooks.example/cascade")]
    pub callback_url: Option<String>,
    /// Deliveries of one event from NATS before it is dead-lettered.
    pub max_deliver: u32,
    /// How long a repository's clone may go unfetched before `serve` removes it from
    /// its clone cache (`DATA/repos`), as a duration (`14d`); it is fetched again when
    /// next needed.
    pub clone_cache_max_age: String,
}

impl Default for Orchestrator {
    fn default() -> Self {
        Self {
            retry_limit: 3,
            breaker_failures: 5,
            breaker_cooldown: "60s".to_owned(),
            callback_url: None,
            max_deliver: 5,
            clone_cache_max_age: "14d".to_owned(),
        }
    }
}

impl Orchestrator {
    /// How long an unused clone stays cached (checked when the config was read).
    pub fn clone_cache_max_age(&self) -> std::time::Duration {
        crate::duration::parse(&self.clone_cache_max_age)
            .unwrap_or(std::time::Duration::from_hours(24 * 14))
    }

    /// The breaker cool-down (checked when the config was read).
    pub fn cooldown(&self) -> std::time::Duration {
        crate::duration::parse(&self.breaker_cooldown).unwrap_or(std::time::Duration::from_mins(1))
    }
}

/// What a runner alias gives a job.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runner {
    /// CPU cores the job may use (Kubernetes requests/limits; local weight).
    pub cpu: f64,
    /// Memory, in Kubernetes quantity syntax (`512Mi`, `2Gi`).
    pub memory: String,
    /// Kubernetes node selector of the job's pod.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub node_selector: IndexMap<String, String>,
    /// Kubernetes tolerations of the job's pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// A Kubernetes toleration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    /// The taint key it tolerates; unset with `Exists`: every taint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` or `Exists`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The taint value that must match (with `Equal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// Where a secret lives in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Kubernetes Secret.
    pub secret: String,
    /// Key inside the Secret.
    pub key: String,
}

/// Capacity of the local engine; unset means this machine's CPU count and memory.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineLimits {
    /// CPU cores the engine may hand out to jobs at once.
    #[schemars(example = 8)]
    pub cpu: Option<f64>,
    /// Memory the engine may hand out at once (`8Gi`).
    #[schemars(example = "8Gi")]
    pub memory: Option<String>,
}

/// Why a config could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid cascade.toml at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "runner `{runner}`: invalid memory `{memory}` (expected a quantity like `512Mi` or `2Gi`)"
    )]
    BadMemory { runner: String, memory: String },
    #[error("runner `{runner}`: cpu must be more than 0, found {cpu}")]
    BadCpu { runner: String, cpu: String },
    #[error("orchestrator.breaker_cooldown: {0} (expected a duration like `60s`)")]
    BadCooldown(crate::duration::DurationError),
    #[error("orchestrator.clone_cache_max_age: {0} (expected a duration like `14d`)")]
    BadCacheAge(crate::duration::DurationError),
    #[error(
        "repositories.\"{repo}\".callback: no callback `{name}` in [callbacks] (add `{name} = \"https://…\"` there)"
    )]
    UnknownCallback { repo: String, name: String },
    #[error("sandbox.{field}: `{path}` is not an absolute path (expected one like `/srv/cache`)")]
    RelativeBind { field: &'static str, path: String },
    #[error("sandbox.user: jobs must not run as root (found `{0}`); name an unprivileged user")]
    RootSandboxUser(String),
}

fn default_runners() -> IndexMap<String, Runner> {
    let runner = |cpu: f64, memory: &str| Runner {
        cpu,
        memory: memory.to_owned(),
        node_selector: IndexMap::new(),
        tolerations: Vec::new(),
    };
    [
        ("small".to_owned(), runner(1.0, "1Gi")),
        ("medium".to_owned(), runner(2.0, "4Gi")),
        ("large".to_owned(), runner(4.0, "8Gi")),
    ]
    .into_iter()
    .collect()
}

impl Default for AdminConfig {
    /// The embedded defaults: runners `small`, `medium`, `large`; no secret mappings.
    fn default() -> Self {
        Self {
            runners: default_runners(),
            secrets: IndexMap::new(),
            engine: EngineLimits::default(),
            repositories: IndexMap::new(),
            orchestrator: Orchestrator::default(),
            argo: ArgoSettings::default(),
            python: PythonSettings::default(),
            grants: IndexMap::new(),
            callbacks: IndexMap::new(),
            sandbox: SandboxSettings::default(),
        }
    }
}

impl AdminConfig {
    /// Reads `cascade.toml` text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: AdminConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map_or(crate::LineColumn { line: 1, column: 1 }, |s| {
                    crate::LineColumn::of(text, s.start)
                });
            ConfigError::Syntax {
                line: at.line,
                column: at.column,
                message: e.message().to_owned(),
            }
        })?;
        for (name, runner) in &config.runners {
            if !(runner.cpu > 0.0 && runner.cpu.is_finite()) {
                return Err(ConfigError::BadCpu {
                    runner: name.clone(),
                    cpu: runner.cpu.to_string(),
                });
            }
            if memory_bytes(&runner.memory).is_none() {
                return Err(ConfigError::BadMemory {
                    runner: name.clone(),
                    memory: runner.memory.clone(),
                });
            }
        }
        for (repo, r) in &config.repositories {
            if let Some(name) = &r.callback
                && !config.callbacks.contains_key(name)
            {
                return Err(ConfigError::UnknownCallback {
                    repo: repo.clone(),
                    name: name.clone(),
                });
            }
        }
        crate::duration::parse(&config.orchestrator.breaker_cooldown)
            .map_err(ConfigError::BadCooldown)?;
        crate::duration::parse(&config.orchestrator.clone_cache_max_age)
            .map_err(ConfigError::BadCacheAge)?;
        for (field, paths) in [
            ("bind", &config.sandbox.bind),
            ("read_only", &config.sandbox.read_only),
        ] {
            if let Some(path) = paths.iter().find(|p| !p.starts_with('/')) {
                return Err(ConfigError::RelativeBind {
                    field,
                    path: path.clone(),
                });
            }
        }
        let user = config.sandbox.user.trim();
        if user == "root" || user == "0" {
            return Err(ConfigError::RootSandboxUser(user.to_owned()));
        }
        Ok(config)
    }

    /// The secrets of `declared` not granted to `to`, each with the grant that would
    /// allow it (as `cascade.toml` text), for the run's error.
    pub fn check_grants<'a>(
        &self,
        declared: impl IntoIterator<Item = &'a str>,
        to: Grantee<'_>,
    ) -> Result<(), UngrantedSecrets> {
        let mut missing: Vec<&str> = declared
            .into_iter()
            .filter(|name| {
                let grant = self.grants.get(*name);
                !grant.is_some_and(|g| {
                    to.repository
                        .is_some_and(|r| g.repositories.iter().any(|x| x == r))
                        || g.scopes.iter().any(|x| x == to.scope)
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        Err(UngrantedSecrets {
            names: missing.into_iter().map(str::to_owned).collect(),
            repository: to.repository.map(str::to_owned),
            scope: to.scope.to_owned(),
        })
    }

    /// A runner alias; the error lists the known ones.
    pub fn runner(&self, name: &str) -> Result<&Runner, UnknownRunner> {
        self.runners.get(name).ok_or_else(|| UnknownRunner {
            name: name.to_owned(),
            known: self.runners.keys().cloned().collect(),
        })
    }

    /// The CPU and memory a job gets: its runner alias's, each overridden by the job's own
    /// `resources:` (a field the job leaves out keeps the alias's value; with no alias it
    /// stays unset). The error is an unknown alias.
    pub fn job_resources(
        &self,
        runner: Option<&str>,
        own: Option<&Resources>,
    ) -> Result<Resources, UnknownRunner> {
        let alias = match runner {
            Some(name) => {
                let r = self.runner(name)?;
                Resources {
                    cpu_milli: Some(cpu_millis(r.cpu)),
                    memory: Some(r.memory.clone()),
                }
            }
            None => Resources::default(),
        };
        let own = own.cloned().unwrap_or_default();
        Ok(Resources {
            cpu_milli: own.cpu_milli.or(alias.cpu_milli),
            memory: own.memory.or(alias.memory),
        })
    }

    /// The JSON Schema of cascade.toml.
    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(AdminConfig)).unwrap_or_default()
    }
}

/// Secrets a run declares that `[grants]` does not give its repository (or scope). The
/// message names each with the grant that would allow it, as `cascade.toml` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UngrantedSecrets {
    /// Sorted, each once.
    pub names: Vec<String>,
    /// The run's repository, when it has one (grants then go by repository).
    pub repository: Option<String>,
    pub scope: String,
}

impl std::fmt::Display for UngrantedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (field, who, what) = match &self.repository {
            Some(repo) => ("repositories", repo, format!("repository `{repo}`")),
            None => ("scopes", &self.scope, format!("scope `{}`", self.scope)),
        };
        let one = self.names.len() == 1;
        let names: Vec<String> = self.names.iter().map(|m| format!("`{m}`")).collect();
        let hints: Vec<String> = self
            .names
            .iter()
            .map(|name| format!("[grants.{name}] {field} = [\"{who}\"]"))
            .collect();
        write!(
            f,
            "secret{} {} not granted to {what}; an admin grants {} in cascade.toml: {}",
            if one { "" } else { "s" },
            names.join(", "),
            if one { "it" } else { "them" },
            hints.join("; ")
        )
    }
}

impl std::error::Error for UngrantedSecrets {}

/// A runner alias `[runners]` does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown runner `{name}` (cascade.toml has {})", self.known())]
pub struct UnknownRunner {
    pub name: String,
    /// The aliases that are defined, in file order.
    pub known: Vec<String>,
}

impl UnknownRunner {
    /// The defined aliases, comma-separated (empty when there are none).
    pub fn known(&self) -> String {
        self.known.join(", ")
    }
}

/// Millicores of a CPU count in cores (`1.5` is 1500), rounded, within `u32`.
pub fn cpu_millis(cores: f64) -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to the u32 range first"
    )]
    let m = (cores * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32;
    m
}

/// Bytes of a Kubernetes memory quantity (`512Mi`, `2Gi`, `1G`, `1000`).
pub fn memory_bytes(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(quantity.len());
    let (number, unit) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    let bytes = number * factor;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked finite and non-negative"
    )]
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_have_three_runners() {
        let c = AdminConfig::default();
        assert_eq!(
            c.runners.keys().collect::<Vec<_>>(),
            ["small", "medium", "large"]
        );
        assert_eq!(AdminConfig::parse("").unwrap(), c);
    }

    #[test]
    fn parses_runners_and_secrets() {
        let c = AdminConfig::parse(
            "[runners.gpu]\ncpu = 8\nmemory = \"32Gi\"\nnode_selector = { accelerator = \"a100\" }\ntolerations = [{ key = \"gpu\", operator = \"Exists\", effect = \"NoSchedule\" }]\n[secrets.PYPI_TOKEN]\nsecret = \"pypi\"\nkey = \"token\"\n",
        )
        .unwrap();
        assert!((c.runners["gpu"].cpu - 8.0).abs() < f64::EPSILON);
        assert_eq!(c.secrets["PYPI_TOKEN"].secret, "pypi");
        let unknown = c.runner("nope").unwrap_err();
        assert_eq!(unknown.known(), "gpu");
        assert_eq!(
            unknown.to_string(),
            "unknown runner `nope` (cascade.toml has gpu)"
        );
    }

    #[test]
    fn reports_errors_with_position() {
        let e =
            AdminConfig::parse("[runners.x]\ncpu = 1\nmemory = \"1Gi\"\nmemroy = 2\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 4, .. }), "{e}");
        let e = AdminConfig::parse("[runners.x]\ncpu = 1\nmemory = \"lots\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "runner `x`: invalid memory `lots` (expected a quantity like `512Mi` or `2Gi`)"
        );
    }

    #[test]
    fn forge_names_are_the_config_syntax_and_round_trip() {
        for f in Forge::ALL {
            assert_eq!(f.as_str().parse::<Forge>(), Ok(f));
            let c = AdminConfig::parse(&format!(
                "[repositories.\"o/r\"]\nforge = \"{}\"\nurl = \"file:///r\"\n",
                f.as_str()
            ))
            .unwrap();
            assert_eq!(c.repositories["o/r"].forge, f);
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        assert_eq!("GitLab".parse::<Forge>(), Ok(Forge::GitLab));
        assert_eq!(
            "bitbucket".parse::<Forge>().unwrap_err().to_string(),
            "unknown forge `bitbucket`; expected github, gitea or gitlab"
        );
        // The file's spelling is lowercase only, as it always was.
        assert!(
            AdminConfig::parse("[repositories.\"o/r\"]\nforge = \"GitHub\"\nurl = \"x\"\n")
                .is_err()
        );
    }

    #[test]
    fn parses_repositories_and_the_orchestrator() {
        let c = AdminConfig::parse(
            "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"https://github.com/acme/app.git\"\napi_url = \"https://api.github.com\"\ntoken_secret = \"GITHUB_TOKEN\"\n[orchestrator]\nretry_limit = 2\nbreaker_cooldown = \"5s\"\n",
        )
        .unwrap();
        let repo = &c.repositories["acme/app"];
        assert_eq!(
            (
                repo.forge,
                repo.pipeline.as_str(),
                repo.default_branch.as_str(),
                repo.backend
            ),
            (Forge::GitHub, "ci.yaml", "main", Backend::Local)
        );
        assert_eq!(c.orchestrator.retry_limit, 2);
        assert_eq!(c.orchestrator.breaker_failures, 5);
        assert_eq!(c.orchestrator.cooldown(), std::time::Duration::from_secs(5));
        let e = AdminConfig::parse("[orchestrator]\nbreaker_cooldown = \"soon\"\n").unwrap_err();
        assert!(
            e.to_string().starts_with("orchestrator.breaker_cooldown:"),
            "{e}"
        );
        assert_eq!(
            c.orchestrator.clone_cache_max_age(),
            std::time::Duration::from_hours(24 * 14)
        );
        let e =
            AdminConfig::parse("[orchestrator]\nclone_cache_max_age = \"2 weeks\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("orchestrator.clone_cache_max_age:")
                && e.to_string().ends_with("(expected a duration like `14d`)"),
            "{e}"
        );
        let c = AdminConfig::parse("[argo]\nnamespace = \"ci\"\n").unwrap();
        assert_eq!(c.argo.namespace, "ci");
        assert_eq!(c.argo.service_account, "cascade-executor");
        let e = AdminConfig::parse("[argo]\nnamspace = \"ci\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
        let e = AdminConfig::parse("[repositories.x]\nforge = \"svn\"\nurl = \"u\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
    }

    #[test]
    fn secrets_are_granted_per_repository_or_scope_and_the_error_names_the_grant() {
        let config = AdminConfig::parse(
            "[grants.PYPI_TOKEN]\nrepositories = [\"acme/app\"]\n[grants.DEPLOY_KEY]\nscopes = [\"project:web\"]\n",
        )
        .unwrap();
        let repo = Grantee {
            repository: Some("acme/app"),
            scope: "project:acme-app",
        };
        assert!(config.check_grants(["PYPI_TOKEN"], repo).is_ok());
        let err = config
            .check_grants(["PYPI_TOKEN", "DEPLOY_KEY", "AWS_KEY"], repo)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "secrets `AWS_KEY`, `DEPLOY_KEY` not granted to repository `acme/app`; an admin grants them in cascade.toml: [grants.AWS_KEY] repositories = [\"acme/app\"]; [grants.DEPLOY_KEY] repositories = [\"acme/app\"]"
        );
        let web = Grantee {
            repository: None,
            scope: "project:web",
        };
        assert!(config.check_grants(["DEPLOY_KEY"], web).is_ok());
        let err = config
            .check_grants(["PYPI_TOKEN"], web)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[grants.PYPI_TOKEN] scopes = [\"project:web\"]"),
            "{err}"
        );
        assert!(config.check_grants([], web).is_ok());
    }

    #[test]
    fn parses_the_python_table() {
        let c = AdminConfig::default();
        assert_eq!(c.python.image, "python:3.12-slim");
        assert_eq!(c.python.install, None);
        let c = AdminConfig::parse("[python]\ninstall = \"pip install --user cascade\"\n").unwrap();
        assert_eq!(
            c.python.install.as_deref(),
            Some("pip install --user cascade")
        );
        assert_eq!(c.python.image, "python:3.12-slim");
        let e = AdminConfig::parse("[python]\nimage = 3\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn a_repository_callback_must_be_a_named_one() {
        let err = AdminConfig::parse(
            "[repositories.\"a/b\"]\nforge = \"github\"\nurl = \"file:///x\"\ncallback = \"done\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("no callback `done` in [callbacks]"),
            "{err}"
        );
        let ok = AdminConfig::parse(
            "[callbacks]\ndone = \"http://127.0.0.1:9/done\"\n[repositories.\"a/b\"]\nforge = \"github\"\nurl = \"file:///x\"\ncallback = \"done\"\n",
        )
        .unwrap();
        assert_eq!(ok.repositories["a/b"].callback.as_deref(), Some("done"));
    }

    #[test]
    fn parses_the_sandbox_table() {
        let c = AdminConfig::default();
        assert_eq!(
            (c.sandbox.user.as_str(), c.sandbox.network),
            ("nobody", true)
        );
        let c = AdminConfig::parse(
            "[sandbox]\nuser = \"ci\"\nnetwork = false\nbind = [\"/srv/cache\"]\nread_only = [\"/opt/tools\"]\n",
        )
        .unwrap();
        assert_eq!(c.sandbox.user, "ci");
        assert!(!c.sandbox.network);
        assert_eq!(
            (c.sandbox.bind, c.sandbox.read_only),
            (vec!["/srv/cache".to_owned()], vec!["/opt/tools".to_owned()])
        );
        let e = AdminConfig::parse("[sandbox]\nbind = [\"cache\"]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "sandbox.bind: `cache` is not an absolute path (expected one like `/srv/cache`)"
        );
        let e = AdminConfig::parse("[sandbox]\nuser = \"root\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::RootSandboxUser(_)), "{e}");
        let e = AdminConfig::parse("[sandbox]\nusers = \"ci\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
        // The schema documents every field of the table (drift between the two fails).
        let schema = AdminConfig::schema();
        let fields = &schema["$defs"]["SandboxSettings"]["properties"];
        for name in ["user", "network", "bind", "read_only"] {
            assert!(fields[name]["description"].is_string(), "{name}: {fields}");
        }
        assert_eq!(fields.as_object().map(serde_json::Map::len), Some(4));
    }

    #[test]
    fn a_jobs_resources_override_its_runner_field_by_field() {
        let c = AdminConfig::default();
        let r = |cpu_milli: Option<u32>, memory: Option<&str>| Resources {
            cpu_milli,
            memory: memory.map(str::to_owned),
        };
        // `medium` is 2 cores, 4Gi.
        assert_eq!(
            c.job_resources(Some("medium"), None).unwrap(),
            r(Some(2000), Some("4Gi"))
        );
        assert_eq!(
            c.job_resources(Some("medium"), Some(&r(Some(500), None)))
                .unwrap(),
            r(Some(500), Some("4Gi"))
        );
        assert_eq!(
            c.job_resources(Some("medium"), Some(&r(None, Some("1Gi"))))
                .unwrap(),
            r(Some(2000), Some("1Gi"))
        );
        assert_eq!(
            c.job_resources(None, Some(&r(None, Some("1Gi")))).unwrap(),
            r(None, Some("1Gi"))
        );
        assert_eq!(c.job_resources(None, None).unwrap(), r(None, None));
        assert_eq!(
            c.job_resources(Some("huge"), Some(&r(Some(1), Some("1Mi"))))
                .unwrap_err()
                .name,
            "huge",
            "an unknown alias is an error even when both fields are overridden"
        );
        assert_eq!(cpu_millis(1.5), 1500);
        assert_eq!(cpu_millis(-1.0), 0);
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(memory_bytes("512Mi"), Some(512 * 1024 * 1024));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("1.5Gi"), Some(1_610_612_736));
        assert_eq!(memory_bytes("x"), None);
    }
}
