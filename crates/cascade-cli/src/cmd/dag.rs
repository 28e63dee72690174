//! `cascade dag …`: submit DAGs and follow them, against a running server (`--server`)
//! or straight on its data dir. Both give the same JSON (the API's), so one set of
//! tables serves both.

use crate::output::{self, ListFormat};
use crate::{CliError, CliResult, Outcome};
use cascade_store::{DagFilter, Queue, Reader};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Submit a DAG (`*.json`, DESIGN §3) or a pipeline (ci.yaml) to be run
    Submit(SubmitArgs),
    /// List submitted DAGs, newest first
    List(ListArgs),
    /// A DAG's details, recent runs and the task running now
    Status(IdArgs),
    /// The logs of a DAG's latest run (or of `--run`)
    Logs(LogsArgs),
    /// Cancel a run (queued: at once; running: its worker stops it)
    Cancel(IdArgs),
    /// Worker processes
    #[command(subcommand)]
    Worker(WorkerCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkerCommand {
    /// List the workers and whether they are alive
    List(Target),
    /// One worker and the runs it ran
    Status(IdArgs),
}

/// Where the DAGs are: a server, or a data dir read directly.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// A running `cascade serve` (`http://127.0.0.1:8080`); without it the data dir is used
    #[arg(long, value_name = "URL", env = "CASCADE_SERVER")]
    pub(crate) server: Option<String>,
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    pub(crate) data_dir: PathBuf,
    /// The API token for `--server` [default: the admin token in `DATA_DIR/admin.token`,
    /// when readable]
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CASCADE_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// `table` (or text) for people, `json` for programs
    #[arg(long, value_enum, default_value_t)]
    pub(crate) output: ListFormat,
}

/// The token to send: the one given, else the admin token `serve` wrote in the data dir.
pub(crate) fn token_for(given: Option<&str>, data_dir: &Path) -> Option<String> {
    given.map(str::to_owned).or_else(|| {
        std::fs::read_to_string(data_dir.join(cascade_server::auth::ADMIN_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    })
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// A DAG (`*.json`), a pipeline (`ci.yaml`) or a Python pipeline (`file.py:function`)
    file: PathBuf,
    /// An input of the pipeline, `name=value` (repeatable)
    #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, String)>,
    /// Wait until the run ends, showing its tasks as they change; the exit code is its
    /// outcome (0 succeeded, 1 failed, 130 cancelled)
    #[arg(long)]
    wait: bool,
    /// Run the pipeline's tasks in a worktree of the repository at this commit (any git
    /// revision, resolved here: `HEAD`, a branch, a sha) [default with `--repository`:
    /// `HEAD` of the git repository of the current directory]. Needs `--server`
    #[arg(long, value_name = "REV")]
    commit: Option<String>,
    /// The server's registered repository to run it from, by name (`acme/app`) or URL
    /// [default with `--commit`: the `origin` remote of the current directory's git
    /// repository, which the server matches against its repositories' URLs]
    #[arg(long, value_name = "NAME|URL")]
    repository: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `--status`: one of the run statuses, offered (and completed) from the type.
fn run_status() -> impl clap::builder::TypedValueParser<Value = cascade_plan::RunStatus> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(
        cascade_plan::RunStatus::ALL.iter().map(|s| s.as_str()),
    )
    .try_map(|word| word.parse::<cascade_plan::RunStatus>())
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only DAGs whose latest run has this status
    #[arg(long, value_parser = run_status())]
    status: Option<cascade_plan::RunStatus>,
    /// Only this scope (`project:proj-a`, `global`)
    #[arg(long)]
    scope: Option<String>,
    /// Only DAGs owned by this node
    #[arg(long)]
    node: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The id (DAG, run or worker, as the command says)
    id: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    dag_id: String,
    /// This run instead of the latest
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
    /// Only this job (all its copies) or task
    #[arg(long)]
    task: Option<String>,
    #[command(flatten)]
    show: super::runs::Show,
    #[command(flatten)]
    target: Target,
}

fn parse_input(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, found `{text}`"))
}

/// The API's answer, or why there is none (an unknown id is not found, exit 4; a refusal
/// or a failure of the server or store is exit 1).
pub(crate) type Answer = Result<Value, CliError>;

/// The API, spoken over HTTP or answered from the data dir.
pub(crate) enum Source {
    Http {
        base: String,
        client: reqwest::Client,
        runtime: tokio::runtime::Runtime,
        token: Option<String>,
    },
    Dir(PathBuf),
}

impl Source {
    pub(crate) fn new(target: &Target) -> Result<Self, CliError> {
        match &target.server {
            Some(url) => Self::server(url, token_for(target.token.as_deref(), &target.data_dir)),
            None => Ok(Source::Dir(target.data_dir.clone())),
        }
    }

    /// The API of the server at `url`, as `token`.
    pub(crate) fn server(url: &str, token: Option<String>) -> Result<Self, CliError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "--server: expected a URL like http://127.0.0.1:8080, found `{url}`"
            )));
        }
        let client = http_client(url).map_err(CliError::usage)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::internal(format!("cannot start the runtime: {e}")))?;
        Ok(Source::Http {
            base: url.trim_end_matches('/').to_owned(),
            client,
            runtime,
            token,
        })
    }

    /// One request to the server; the API's error, worded, when it is not a success.
    pub(crate) fn http(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Answer {
        let Source::Http {
            base,
            client,
            runtime,
            token,
        } = self
        else {
            return Err(CliError::internal("not a server target"));
        };
        let url = format!("{base}{path}");
        runtime.block_on(async {
            let mut request = client.request(method, &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let response = request.send().await.map_err(|e| {
                CliError::failure(format!("cannot reach {base}: {}", crate::error::chain(&e)))
                    .hint("is `cascade serve` running there?")
            })?;
            let status = response.status();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(value);
            }
            let message = describe_error(&value).unwrap_or_else(|| format!("HTTP {status}"));
            let error = if status == reqwest::StatusCode::NOT_FOUND {
                CliError::not_found(message)
            } else {
                CliError::failure(message)
            };
            if status == reqwest::StatusCode::UNAUTHORIZED && token.is_none() {
                return Err(error.hint(
                    "give a token with --token or CASCADE_TOKEN (the admin token is in the server's DATA_DIR/admin.token)",
                ));
            }
            Err(error)
        })
    }

    fn read(
        &self,
        path: &str,
        f: impl FnOnce(&Reader) -> Result<Value, cascade_store::StoreError>,
    ) -> Answer {
        self.read_or(
            path,
            |dir| {
                format!(
                    "no DAGs in {} yet; submit one with `cascade dag submit FILE`, or point at a server with --server URL",
                    dir.display()
                )
            },
            f,
        )
    }

    /// `GET path` from the server, or `f` on the data dir's store; `missing` words the
    /// error when the data dir has no store yet.
    pub(crate) fn read_or(
        &self,
        path: &str,
        missing: impl FnOnce(&Path) -> String,
        f: impl FnOnce(&Reader) -> Result<Value, cascade_store::StoreError>,
    ) -> Answer {
        match self {
            Source::Http { .. } => self.http(reqwest::Method::GET, path, None),
            Source::Dir(dir) => {
                let db = dir.join("cascade.db");
                if !db.exists() {
                    return Err(CliError::not_found(missing(dir)));
                }
                let reader = Reader::open(&db).map_err(|e| store_error(&e))?;
                f(&reader).map_err(|e| store_error(&e))
            }
        }
    }

    fn submit(&self, body: &Value) -> Answer {
        let text = body.to_string();
        match self {
            Source::Http { .. } => {
                self.http(reqwest::Method::POST, "/api/v1/dag/execute", Some(text))
            }
            Source::Dir(dir) => {
                let submission =
                    cascade_server::api::submission(&text, body, &indexmap::IndexMap::default())
                        .map_err(|e| CliError::failure(e.to_string()))?;
                let scope = submission.scope.to_string();
                let dag_id = submission.dag_id.clone();
                let mut queue =
                    Queue::open(&dir.join("cascade.db")).map_err(|e| store_error(&e))?;
                let enqueued = queue.submit(&submission).map_err(|e| store_error(&e))?;
                Ok(
                    json!({"run_id": enqueued.run_id, "dag_id": dag_id, "scope": scope, "worker_id": enqueued.worker_id}),
                )
            }
        }
    }

    fn cancel(&self, run_id: &str) -> Answer {
        match self {
            Source::Http { .. } => self.http(
                reqwest::Method::POST,
                &format!("/api/v1/runs/{}/cancel", escape(run_id)),
                None,
            ),
            Source::Dir(dir) => {
                let mut queue =
                    Queue::open(&dir.join("cascade.db")).map_err(|e| store_error(&e))?;
                match queue.cancel(run_id) {
                    Ok(cascade_store::Cancelled::Dequeued) => {
                        Ok(json!({"run_id": run_id, "status": cascade_plan::RunStatus::Cancelled}))
                    }
                    Ok(cascade_store::Cancelled::Requested) => {
                        Ok(json!({"run_id": run_id, "status": cascade_plan::RunStatus::Cancelling}))
                    }
                    Ok(cascade_store::Cancelled::AlreadyEnded(status)) => Err(CliError::failure(
                        format!("run `{run_id}` already ended ({status}); nothing to cancel"),
                    )),
                    Err(e) => Err(store_error(&e)),
                }
            }
        }
    }
}

/// A store error as the user sees it: an unknown id is not found (exit 4), anything else
/// a failure of the store (exit 1).
fn store_error(e: &cascade_store::StoreError) -> CliError {
    match e {
        cascade_store::StoreError::NoRun(_)
        | cascade_store::StoreError::NoDag(_)
        | cascade_store::StoreError::NoWorker(_)
        | cascade_store::StoreError::NoToken(_) => CliError::not_found(e.to_string()),
        other => CliError::caused(Outcome::Failure, other),
    }
}

/// An HTTP client for the server's API; plain HTTP needs no trust roots, and loading the
/// system's costs more than the request itself.
fn http_client(url: &str) -> Result<reqwest::Client, String> {
    let mut builder = cascade_git::HttpClient::new(std::time::Duration::from_secs(30));
    if url.starts_with("http://") {
        builder = builder.trust_only(Vec::new());
    } else if let Some(path) = std::env::var_os("CASCADE_CA_CERT") {
        // A server with a certificate of its own CA (self-signed, internal).
        let pem = std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read CASCADE_CA_CERT {}: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("CASCADE_CA_CERT is not a PEM certificate: {e}"))?;
        builder = builder.trust_only(vec![cert]);
    }
    builder
        .build()
        .map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        })
}

/// The API's error body in one line: the message, then each problem with its position.
fn describe_error(value: &Value) -> Option<String> {
    let mut message = value.get("error")?.as_str()?.to_owned();
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        for e in errors {
            let _ = write!(
                message,
                "\n  {}:{}: {}",
                e["line"],
                e["column"],
                e["message"].as_str().unwrap_or_default()
            );
        }
    }
    Some(message)
}

/// Path segments are ids we were given: keep them one segment.
pub(crate) fn escape(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '[' | ']') {
                c.to_string()
            } else {
                format!("%{:02X}", u32::from(c))
            }
        })
        .collect()
}

pub fn run(command: &Command) -> CliResult {
    match command {
        Command::Submit(args) => submit(args),
        Command::List(args) => list(args),
        Command::Status(args) => status(args),
        Command::Logs(args) => logs(args),
        Command::Cancel(args) => cancel(args),
        Command::Worker(WorkerCommand::List(target)) => workers(target),
        Command::Worker(WorkerCommand::Status(args)) => worker(args),
    }
}

fn submit(args: &SubmitArgs) -> CliResult {
    // Checked here first, so problems are shown with the file's own lines and carets.
    // (A Python pipeline is rendered here, and its document sent as the pipeline text.)
    let loaded = super::load_source_or_report(&args.file)?;
    let text = loaded.text;
    let is_dag = loaded.form == super::Form::Dag;
    let body = if is_dag {
        if !args.inputs.is_empty() {
            return Err(CliError::usage(
                "--input is for pipelines; a DAG takes its values in `env:`",
            ));
        }
        serde_json::from_str(&text)
            .map_err(|e| CliError::failure(format!("{}: not JSON: {e}", args.file.display())))?
    } else {
        let inputs: serde_json::Map<String, Value> = args
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut body = json!({"pipeline": text, "inputs": inputs});
        if args.commit.is_some() || args.repository.is_some() {
            if args.target.server.is_none() {
                return Err(CliError::usage(
                    "--commit and --repository need --server: the server checks the commit out of one of its registered repositories",
                ));
            }
            body["source"] = at_commit(args, loaded.form == super::Form::Python)?;
        }
        body
    };
    if is_dag && (args.commit.is_some() || args.repository.is_some()) {
        return Err(CliError::usage(
            "--commit and --repository are for pipelines (ci.yaml or file.py:function); a DAG's tasks run in an empty directory",
        ));
    }
    let source = Source::new(&args.target)?;
    let answer = source.submit(&body)?;
    match args.target.output {
        ListFormat::Json => output::json(&answer),
        ListFormat::Table => {
            output::data(&format!(
                "{}\t{}\t{}\t{}",
                str_of(&answer["run_id"]),
                str_of(&answer["dag_id"]),
                str_of(&answer["scope"]),
                str_of(&answer["worker_id"])
            ));
            let target = match &args.target.server {
                Some(url) => format!(" --server {url}"),
                None => format!(" --data-dir {}", args.target.data_dir.display()),
            };
            output::note(&format!(
                "queued run {} of {}; follow it with `cascade dag status {}{target}`",
                str_of(&answer["run_id"]),
                str_of(&answer["dag_id"]),
                str_of(&answer["dag_id"])
            ));
            if matches!(source, Source::Dir(_)) {
                output::note(&format!(
                    "note: queued in {}; `cascade serve --data-dir {}` runs it",
                    args.target.data_dir.display(),
                    args.target.data_dir.display()
                ));
            }
        }
    }
    if !args.wait {
        return Ok(Outcome::Success);
    }
    wait(&source, &str_of(&answer["run_id"]))
}

/// `git ARGS` in the current directory: its trimmed stdout, or what git said.
fn git(args: &[&str]) -> Result<String, String> {
    let out = cascade_engine::process::new_std_command("git")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The `source` of a pipeline submitted at a commit: `--commit` resolved to a full sha
/// here (default `HEAD`), `--repository` as given (default: the `origin` remote's URL,
/// which the server matches against its registered repositories). Warns when the
/// working tree has uncommitted changes (the server runs the commit, not them); a
/// Python pipeline must be submitted from the repository's top level, where its tasks'
/// entry points (paths relative to the current directory) are found on the server too.
fn at_commit(args: &SubmitArgs, python: bool) -> Result<Value, CliError> {
    let rev = args.commit.as_deref().unwrap_or("HEAD");
    let commit = git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        &format!("{rev}^{{commit}}"),
    ])
    .map_err(|said| {
        CliError::usage(format!(
            "--commit {rev}: not a commit of the git repository here{}; give a commit sha, a branch or HEAD, from inside the repository",
            if said.is_empty() { String::new() } else { format!(" ({said})") }
        ))
    })?;
    let repository = match &args.repository {
        Some(r) => r.clone(),
        // Without its user info: an `origin` such as `https://ci-token:SECRET@host/o/r`
        // must not send the credential to the server (it matches URLs without it).
        None => without_userinfo(&git(&["remote", "get-url", "origin"]).map_err(|said| {
            CliError::usage(format!(
                "no --repository, and no `origin` remote to take it from ({said}); name the server's repository with --repository NAME"
            ))
        })?),
    };
    if let Ok(top) = git(&["rev-parse", "--show-toplevel"]) {
        let here = std::env::current_dir()
            .ok()
            .and_then(|d| d.canonicalize().ok());
        let top = Path::new(&top).canonicalize().ok();
        if python && here.is_some() && here != top {
            return Err(CliError::usage(format!(
                "a Python pipeline is submitted from the top of its repository ({}): its tasks' entry points are paths from the current directory, and the server runs them from there",
                top.map_or_else(String::new, |t| t.display().to_string())
            )));
        }
        if let Ok(changes) = git(&["status", "--porcelain", "--untracked-files=no"])
            && !changes.is_empty()
        {
            output::note(&format!(
                "warning: the working tree has uncommitted changes; the server runs commit {commit} without them"
            ));
        }
    }
    Ok(json!({"repository": repository, "commit": commit}))
}

/// A run and its tasks, from the server or the data dir.
fn run_and_tasks(source: &Source, run_id: &str) -> Answer {
    source.read(&format!("/api/v1/runs/{}", escape(run_id)), |r| {
        Ok(json!({"run": r.run(run_id)?, "tasks": r.tasks(run_id)?}))
    })
}

/// The exit code of a run that ended with `status`.
fn ended(status: &str) -> Outcome {
    use cascade_plan::RunStatus;
    match RunStatus::read(status) {
        Some(RunStatus::Succeeded | RunStatus::Skipped) => Outcome::Success,
        Some(RunStatus::Cancelled) => Outcome::Cancelled,
        _ => Outcome::Failure,
    }
}

/// Follows a run until it ends: each change of its status or of a task's on stderr, then
/// the outcome on stdout (`RUN STATUS`); the exit code is the outcome.
fn wait(source: &Source, run_id: &str) -> CliResult {
    let mut shown: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let started = std::time::Instant::now();
    loop {
        let answer = run_and_tasks(source, run_id)?;
        let status = str_of(&answer["run"]["status"]);
        for task in answer["tasks"].as_array().into_iter().flatten() {
            let id = str_of(&task["task_id"]);
            let state = str_of(&task["status"]);
            if shown.get(&id) != Some(&state) {
                let attempt = task["attempt"].as_u64().filter(|a| *a > 1);
                output::note(&format!(
                    "  {id}: {state}{}",
                    attempt
                        .map(|a| format!(" (attempt {a})"))
                        .unwrap_or_default()
                ));
                shown.insert(id, state);
            }
        }
        if shown.get("") != Some(&status) {
            output::note(&format!("run {run_id}: {status}"));
            shown.insert(String::new(), status.clone());
        }
        if !super::runs::still_going(&status) {
            let error = answer["run"]["error"].as_str().map(|e| format!(" ({e})"));
            output::data(&format!("{run_id} {status}"));
            output::note(&format!(
                "run {run_id} {status} after {}{}; its logs: `cascade dag logs {} --run {run_id}`",
                output::duration(started.elapsed()),
                error.unwrap_or_default(),
                str_of(&answer["run"]["dag_id"]),
            ));
            return Ok(ended(&status));
        }
        std::thread::sleep(super::runs::FOLLOW_EVERY);
    }
}

/// A listing of a data dir with no store yet is empty (DESIGN §6): `[]` in JSON, a hint
/// on stderr for a table. `true` when that was printed.
pub(crate) fn nothing_here(source: &Source, format: ListFormat, what: &str, hint: &str) -> bool {
    let Source::Dir(dir) = source else {
        return false;
    };
    if dir.join("cascade.db").exists() {
        return false;
    }
    match format {
        ListFormat::Json => output::json(&Value::Array(Vec::new())),
        ListFormat::Table => output::note(&format!("no {what} in {} yet; {hint}", dir.display())),
    }
    true
}

/// A JSON value as a table cell (`-` for null).
pub(crate) fn str_of(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The cells of one table row: each key's value of `item`, as [`str_of`] shows it.
pub(crate) fn cells(item: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| str_of(&item[*k])).collect()
}

fn list(args: &ListArgs) -> CliResult {
    let source = Source::new(&args.target)?;
    if nothing_here(
        &source,
        args.target.output,
        "DAGs",
        "submit one with `cascade dag submit FILE`, or point at a server with --server URL",
    ) {
        return Ok(Outcome::Success);
    }
    let mut query = vec![format!("limit={}", args.limit)];
    let status = args.status.map(|s| s.as_str().to_owned());
    for (key, value) in [
        ("status", &status),
        ("scope", &args.scope),
        ("node", &args.node),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={}", escape(v)));
        }
    }
    let filter = DagFilter {
        status: args.status,
        scope: args.scope.clone(),
        node: args.node.clone(),
    };
    let answer = source.read(&format!("/api/v1/dags?{}", query.join("&")), |r| {
        Ok(json!({"dags": r.dags_where(&filter, args.limit)?}))
    })?;
    let dags = answer["dags"].as_array().cloned().unwrap_or_default();
    match args.target.output {
        ListFormat::Json => output::json(&Value::Array(dags)),
        ListFormat::Table => {
            let rows: Vec<Vec<String>> = dags
                .iter()
                .map(|d| {
                    cells(
                        d,
                        &["dag_id", "scope", "status", "owner_node", "created_at"],
                    )
                })
                .collect();
            output::data(&output::table(
                &["DAG_ID", "SCOPE", "STATUS", "OWNER_NODE", "CREATED"],
                &rows,
            ));
        }
    }
    Ok(Outcome::Success)
}

fn status(args: &IdArgs) -> CliResult {
    let source = Source::new(&args.target)?;
    let dag = source.read(&format!("/api/v1/dags/{}", escape(&args.id)), |r| {
        cascade_server::api::dag_status(r, &args.id)
    })?;
    if args.target.output == ListFormat::Json {
        output::json(&dag);
        return Ok(Outcome::Success);
    }
    let mut text = format!(
        "dag:        {}\nscope:      {}\nstatus:     {}\nowner node: {}\ntarget:     {}\npriority:   {}\ncreated:    {}\ncurrent:    {}\n",
        str_of(&dag["dag_id"]),
        str_of(&dag["scope"]),
        str_of(&dag["status"]),
        str_of(&dag["owner_node"]),
        str_of(&dag["target_node"]),
        str_of(&dag["priority"]),
        str_of(&dag["created_at"]),
        str_of(&dag["current_task"]),
    );
    // A pipeline submitted at a commit: where its latest run's tasks ran.
    if let Some(at) = dag["runs"][0]["source"].as_str() {
        let _ = writeln!(text, "source:     {at}");
    }
    let runs: Vec<Vec<String>> = dag["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|r| {
                    vec![
                        str_of(&r["run_id"]),
                        str_of(&r["status"]),
                        str_of(&r["worker_id"]),
                        str_of(&r["created_at"]),
                        r["duration_ms"]
                            .as_i64()
                            .and_then(|ms| u64::try_from(ms).ok())
                            .map_or_else(|| "-".to_owned(), crate::output::duration_ms),
                        str_of(&r["error"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    text.push_str("\nrecent runs:\n");
    text.push_str(&output::table(
        &["RUN_ID", "STATUS", "WORKER", "CREATED", "TIME", "ERROR"],
        &runs,
    ));
    if let Some(tasks) = dag["latest_tasks"].as_array() {
        let rows: Vec<Vec<String>> = tasks
            .iter()
            .map(|t| cells(t, &["task_id", "status", "attempt", "exit_code", "error"]))
            .collect();
        text.push_str("\n\ntasks of the latest run:\n");
        text.push_str(&output::table(
            &["TASK", "STATUS", "ATTEMPT", "EXIT", "ERROR"],
            &rows,
        ));
    }
    output::data(&text);
    Ok(Outcome::Success)
}

fn logs(args: &LogsArgs) -> CliResult {
    let source = Source::new(&args.target)?;
    let run_id = if let Some(run) = &args.run {
        run.clone()
    } else {
        let dag = source.read(&format!("/api/v1/dags/{}", escape(&args.dag_id)), |r| {
            let (_, _, runs) = r.dag(&args.dag_id)?;
            Ok(json!({"runs": runs}))
        })?;
        dag["runs"][0]["run_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::not_found(format!("DAG `{}` has no runs yet", args.dag_id)))?
    };
    // Each look asks only for the lines after the last one seen (`after=SEQ`).
    let read = |after: i64| {
        let mut path = format!("/api/v1/runs/{}/logs?after={after}", escape(&run_id));
        if let Some(task) = &args.task {
            let _ = write!(path, "&task={}", escape(task));
        }
        source.read(&path, |r| {
            r.run(&run_id)?;
            Ok(json!({"run_id": run_id, "logs": r.logs_after(&run_id, args.task.as_deref(), after)?}))
        })
    };
    if args.target.output == ListFormat::Json {
        output::json(&read(0)?);
        return Ok(Outcome::Success);
    }
    let mut printer = super::runs::Printer::new(args.show, false);
    let mut seen = 0;
    loop {
        // The status first: lines read after it ended are all there are.
        let going = args.show.follow
            && super::runs::still_going(&str_of(
                &run_and_tasks(&source, &run_id)?["run"]["status"],
            ));
        let answer = read(seen)?;
        for l in answer["logs"].as_array().into_iter().flatten() {
            let seq = l["seq"].as_i64().unwrap_or(0);
            if seq <= seen {
                continue;
            }
            seen = seq;
            printer.print(&super::runs::Line {
                task: l["task_id"].as_str().unwrap_or_default(),
                stderr: l["stream"] == "stderr",
                text: l["line"].as_str().unwrap_or_default(),
                ts: l["ts"].as_str().unwrap_or_default(),
                attempt: l["attempt"].as_u64().and_then(|a| u32::try_from(a).ok()),
            });
        }
        if !going {
            break;
        }
        std::thread::sleep(super::runs::FOLLOW_EVERY);
    }
    if printer.printed == 0 {
        output::note(&format!("no log lines for run {run_id}"));
    }
    Ok(Outcome::Success)
}

fn cancel(args: &IdArgs) -> CliResult {
    let source = Source::new(&args.target)?;
    // A run id, or a DAG id (its latest run), as `status` and `logs` take.
    let answer = match source.cancel(&args.id) {
        Err(no_run) if no_run.outcome == Outcome::NotFound => {
            let Ok(dag) = source.read(&format!("/api/v1/dags/{}", escape(&args.id)), |r| {
                let (_, _, runs) = r.dag(&args.id)?;
                Ok(json!({"runs": runs}))
            }) else {
                return Err(no_run);
            };
            let latest = dag["runs"][0]["run_id"]
                .as_str()
                .ok_or_else(|| CliError::not_found(format!("DAG `{}` has no runs yet", args.id)))?
                .to_owned();
            source.cancel(&latest)?
        }
        other => other?,
    };
    match args.target.output {
        ListFormat::Json => output::json(&answer),
        ListFormat::Table => output::data(&format!(
            "{}\t{}",
            str_of(&answer["run_id"]),
            str_of(&answer["status"])
        )),
    }
    Ok(Outcome::Success)
}

fn worker_rows(workers: &[Value]) -> Vec<Vec<String>> {
    workers
        .iter()
        .map(|w| {
            cells(
                w,
                &[
                    "worker_id",
                    "scope",
                    "status",
                    "pid",
                    "node_id",
                    "current_runs",
                    "runs_done",
                    "heartbeat",
                ],
            )
        })
        .collect()
}

const WORKER_HEADER: &[&str] = &[
    "WORKER_ID",
    "SCOPE",
    "STATUS",
    "PID",
    "NODE",
    "RUNNING",
    "DONE",
    "LAST_SEEN",
];

fn workers(target: &Target) -> CliResult {
    let source = Source::new(target)?;
    if nothing_here(
        &source,
        target.output,
        "workers",
        "`cascade serve --data-dir DIR` starts them, or point at a server with --server URL",
    ) {
        return Ok(Outcome::Success);
    }
    let answer = source.read("/api/v1/workers", |r| Ok(json!({"workers": r.workers()?})))?;
    let workers = answer["workers"].as_array().cloned().unwrap_or_default();
    match target.output {
        ListFormat::Json => output::json(&Value::Array(workers)),
        ListFormat::Table => output::data(&output::table(WORKER_HEADER, &worker_rows(&workers))),
    }
    Ok(Outcome::Success)
}

fn worker(args: &IdArgs) -> CliResult {
    let source = Source::new(&args.target)?;
    let answer = source.read(&format!("/api/v1/workers/{}", escape(&args.id)), |r| {
        let (worker, runs) = r.worker(&args.id)?;
        Ok(json!({"worker": worker, "runs": runs}))
    })?;
    match args.target.output {
        ListFormat::Json => output::json(&answer),
        ListFormat::Table => {
            let mut text = output::table(
                WORKER_HEADER,
                &worker_rows(std::slice::from_ref(&answer["worker"])),
            );
            let runs: Vec<Vec<String>> = answer["runs"]
                .as_array()
                .map(|runs| {
                    runs.iter()
                        .map(|r| cells(r, &["run_id", "dag_id", "status", "created_at"]))
                        .collect()
                })
                .unwrap_or_default();
            text.push_str("\n\nruns:\n");
            text.push_str(&output::table(
                &["RUN_ID", "DAG_ID", "STATUS", "CREATED"],
                &runs,
            ));
            output::data(&text);
        }
    }
    Ok(Outcome::Success)
}

/// `url` without the user info of a `scheme://user:password@host/…` URL (parsed by the
/// `url` crate, through reqwest); anything that is not such a URL (scp-like
/// `git@host:o/r`, a path) stays as it is.
fn without_userinfo(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            // Both fail only for URLs that cannot have user info (no host): not these.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.into()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn a_remote_url_loses_its_credentials_and_nothing_else() {
        assert_eq!(
            without_userinfo("https://gitlab-ci-token:s3cr3t@gitlab.example/o/r.git"),
            "https://gitlab.example/o/r.git"
        );
        assert_eq!(without_userinfo("ssh://git@host/o/r"), "ssh://host/o/r");
        assert_eq!(without_userinfo("git@host:o/r.git"), "git@host:o/r.git");
        assert_eq!(without_userinfo("https://host/a@b"), "https://host/a@b");
        assert_eq!(without_userinfo("/srv/repo"), "/srv/repo");
    }
}
