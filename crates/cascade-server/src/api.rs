//! `/api/v1`: DAG submission and read endpoints.

use crate::auth::{Auth, Principal};
use crate::error::ApiError;
use crate::intake::Intake;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cascade_plan::{RunId, Trigger};
use cascade_spec::{Scope, SpecErrors};
use cascade_store::{Cancelled, DagFilter, Reader, Role, StoreError, Submission};
use std::sync::{Arc, Mutex};

/// What handlers share.
#[derive(Debug)]
pub struct App {
    pub intake: Intake,
    /// Reads go through one connection (WAL lets them run beside the writer).
    pub reader: Mutex<Reader>,
    /// Told of every submission, so the scope's worker starts or wakes at once.
    pub pool: Option<crate::pool::PoolHandle>,
    /// Where webhooks and dispatches go (`None`: the event routes are off).
    pub inbox: Option<crate::inbox::Inbox>,
    /// Webhook secrets (`None`: the webhook routes are off).
    pub hook_secrets: Option<crate::hooks::HookSecrets>,
    /// Who may call the API.
    pub auth: Arc<Auth>,
    /// The registered repositories (`cascade.toml` `[repositories]`): the only ones a
    /// pipeline submission's `source` may name.
    pub repositories: Arc<Repositories>,
}

/// Registered repositories by name, as `cascade.toml` lists them.
pub type Repositories = indexmap::IndexMap<String, cascade_spec::config::Repository>;

/// 403 unless `who` may see the run's scope; 404 when there is no such run.
async fn check_run(app: &Arc<App>, who: &Principal, run_id: &str) -> Result<(), ApiError> {
    if !who.restricted() {
        return Ok(());
    }
    let app2 = Arc::clone(app);
    let id = run_id.to_owned();
    match blocking(move || read(&app2, |r| r.run_scope(&id))).await? {
        Ok(scope) => who.check_scope(scope.as_deref(), &format!("run `{run_id}`")),
        Err(StoreError::NoRun(_)) => Err(ApiError::NotFound {
            what: "run",
            id: run_id.to_owned(),
        }),
        Err(_) => Err(ApiError::Unavailable),
    }
}

type Shared = State<Arc<App>>;

fn invalid(errors: &SpecErrors) -> ApiError {
    ApiError::Invalid {
        errors: errors
            .diagnostics
            .iter()
            .map(|d| {
                let at = errors.line_column(d);
                serde_json::json!({"message": d.message, "line": at.line, "column": at.column, "help": d.help, "code": d.code.as_str()})
            })
            .collect(),
    }
}

/// `POST /api/v1/dag/execute`: a DAG (DESIGN §3) or `{"pipeline": "<ci.yaml>", "inputs":
/// {…}, "source": {"repository": "<registered name or URL>", "commit": "<sha>"}}` (inputs
/// and source optional). Answers `202` after the submission is committed.
///
/// A pipeline with a `source` runs in a worktree of that registered repository at that
/// commit, in the repository's scope (`project:<slug of its name>`, the scope of its
/// GitOps runs), so the token needs `submit` in that scope. It gets the secrets granted
/// to that scope only: not the repository's grants, nor a job token (those are for runs
/// the repository's own events started).
pub async fn execute(
    State(app): Shared,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    who.require(Role::Submit)?;
    let text = std::str::from_utf8(&body).map_err(|e| ApiError::Field {
        field: "body",
        message: format!("expected UTF-8 JSON ({e})"),
    })?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ApiError::BadJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let submission = submission(text, &value, &app.repositories)?;
    let scope = submission.scope.to_string();
    let dag_id = submission.dag_id.clone();
    who.check_scope(Some(&scope), &format!("DAG `{dag_id}`"))?;
    // A DAG id keeps its scope: a token of other scopes cannot take it over (an
    // unrestricted token may move it, so it needs no look-up).
    let existing = if who.restricted() {
        let app2 = Arc::clone(&app);
        let id = dag_id.clone();
        blocking(move || read(&app2, |r| r.dag_scope(&id)))
            .await?
            .map_err(|_| ApiError::Unavailable)?
    } else {
        None
    };
    if let Some(existing) = existing.filter(|e| *e != scope)
        && !who.sees(Some(&existing))
    {
        return Err(ApiError::Forbidden(format!(
            "DAG `{dag_id}` belongs to scope `{existing}`, which token `{}` may not change; choose another dag_id",
            who.name
        )));
    }
    match app.intake.submit(submission).await {
        Ok(enqueued) => {
            if let Some(pool) = &app.pool {
                pool.notify(&enqueued.worker_id, &scope);
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    serde_json::json!({"run_id": enqueued.run_id, "dag_id": dag_id, "scope": scope, "worker_id": enqueued.worker_id}),
                ),
            ))
        }
        Err(e @ StoreError::TargetConflict { .. }) => Err(ApiError::Conflict(e.to_string())),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// A submission from a request body (already parsed as JSON): a DAG, or a pipeline with
/// inputs (and maybe a `source` among `repositories`). Shared with `cascade dag submit
/// --data-dir`, which queues without a server.
pub fn submission(
    text: &str,
    value: &serde_json::Value,
    repositories: &Repositories,
) -> Result<Submission, ApiError> {
    let submission = if value.get("pipeline").is_some() {
        pipeline_submission(value, repositories)?
    } else {
        dag_submission(text, value)?
    };
    // Repositories' pipelines are `owner/name/path`: an API submission cannot take one's
    // DAG id (and with it, once the repository's run overwrites it, that scope).
    if submission.dag_id.contains('/') {
        return Err(ApiError::Field {
            field: "dag_id",
            message: format!(
                "`{}`: a DAG id (or pipeline name) of a submission cannot contain `/`, which names repository pipelines",
                submission.dag_id
            ),
        });
    }
    Ok(submission)
}

/// A fresh run id: now, and a per-process random part.
pub fn new_run_id() -> RunId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let millis = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
    RunId::generate(millis, h.finish())
}

fn dag_submission(text: &str, value: &serde_json::Value) -> Result<Submission, ApiError> {
    let dag = cascade_spec::parse_dag("dag", text).map_err(|e| invalid(&e))?;
    let run_id = new_run_id();
    let (scope, _) = dag.effective_scope();
    Ok(Submission {
        dag_id: dag
            .dag_id
            .clone()
            .unwrap_or_else(|| format!("dag-{run_id}")),
        run_id: run_id.to_string(),
        definition: value.clone(),
        scope,
        target_node: dag.target_node.clone(),
        priority: dag.priority,
        trigger: "api".to_owned(),
        source: None,
    })
}

/// A request body as a JSON object with only the `fields` named.
pub(crate) fn body_object<'a>(
    value: &'a serde_json::Value,
    [first, second]: [&str; 2],
) -> Result<&'a serde_json::Map<String, serde_json::Value>, ApiError> {
    let object = value.as_object().ok_or(ApiError::Field {
        field: "body",
        message: "expected a JSON object".to_owned(),
    })?;
    if let Some(unknown) = object.keys().find(|k| *k != first && *k != second) {
        return Err(ApiError::Field {
            field: "body",
            message: format!("unknown field `{unknown}` (expected `{first}` and `{second}`)"),
        });
    }
    Ok(object)
}

fn pipeline_submission(
    value: &serde_json::Value,
    repositories: &Repositories,
) -> Result<Submission, ApiError> {
    let object = value.as_object().ok_or(ApiError::Field {
        field: "body",
        message: "expected a JSON object".to_owned(),
    })?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "pipeline" | "inputs" | "source"))
    {
        return Err(ApiError::Field {
            field: "body",
            message: format!(
                "unknown field `{unknown}` (expected `pipeline`, `inputs` and `source`)"
            ),
        });
    }
    let source = object
        .get("source")
        .map(|s| pipeline_source(s, repositories))
        .transpose()?;
    let text = object
        .get("pipeline")
        .and_then(serde_json::Value::as_str)
        .ok_or(ApiError::Field {
            field: "pipeline",
            message: "expected the ci.yaml text as a string".to_owned(),
        })?;
    let pipeline = cascade_spec::parse_pipeline("pipeline", text).map_err(|e| invalid(&e))?;
    let mut trigger = Trigger {
        event_name: "workflow_dispatch".to_owned(),
        ..Trigger::manual()
    };
    if let Some(inputs) = object.get("inputs") {
        let inputs = inputs.as_object().ok_or(ApiError::Field {
            field: "inputs",
            message: "expected an object of strings".to_owned(),
        })?;
        for (k, v) in inputs {
            let v = v.as_str().map(str::to_owned).ok_or(ApiError::Field {
                field: "inputs",
                message: format!("input `{k}`: expected a string"),
            })?;
            trigger.inputs.insert(k.clone(), v);
        }
    }
    // Plan now, so a bad input or an unsafe script is refused before it is queued.
    cascade_plan::plan(&pipeline, &trigger, &[]).map_err(|e| ApiError::Field {
        field: "inputs",
        message: e.to_string(),
    })?;
    let run_id = new_run_id();
    let dag_id = pipeline
        .name
        .clone()
        .unwrap_or_else(|| format!("pipeline-{run_id}"));
    let (mut scope, _) = Scope::infer(None, pipeline.project_ids(), Some(&dag_id));
    let mut definition = value.clone();
    let mut recorded = None;
    if let Some(source) = source {
        scope = crate::orchestrator::repo_scope(&source.name);
        recorded = Some(format!("{}@{}", source.name, source.commit));
        // The worker checks `checkout` out (as for a repository's own runs); `source`
        // is what the submitter asked for, by the registered name. Neither can come
        // from the body: it may hold only the three fields above.
        definition["source"] =
            serde_json::json!({"repository": source.name, "commit": source.commit});
        definition["checkout"] = serde_json::json!({"url": source.url, "sha": source.commit});
    }
    Ok(Submission {
        dag_id,
        run_id: run_id.to_string(),
        definition,
        scope,
        target_node: None,
        priority: cascade_spec::dag::Priority::Normal,
        trigger: "api".to_owned(),
        source: recorded,
    })
}

/// A pipeline submission's `source`, resolved against the registered repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PipelineSource {
    /// The registered name (`acme/app`).
    name: String,
    /// Where the server clones it from (its `url` in `cascade.toml`).
    url: String,
    /// A full commit sha, lower case.
    commit: String,
}

/// `{"repository": "<name or URL>", "commit": "<40 hex digits>"}`: the repository must
/// be registered (by its name, or a URL that names the same place as its `url`).
fn pipeline_source(
    value: &serde_json::Value,
    repositories: &Repositories,
) -> Result<PipelineSource, ApiError> {
    let object = body_object(value, ["repository", "commit"]).map_err(|_| ApiError::Field {
        field: "source",
        message: "expected {\"repository\": \"<registered name or URL>\", \"commit\": \"<40 hex digits>\"}".to_owned(),
    })?;
    let commit = object
        .get("commit")
        .and_then(serde_json::Value::as_str)
        .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ApiError::Field {
            field: "source.commit",
            message: format!(
                "expected a full commit sha (40 hex digits), got {}; resolve it with `git rev-parse <rev>`",
                object.get("commit").map_or_else(|| "nothing".to_owned(), preview)
            ),
        })?
        .to_ascii_lowercase();
    let wanted = object
        .get("repository")
        .and_then(serde_json::Value::as_str)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::Field {
            field: "source.repository",
            message: "expected the name (or URL) of a repository registered on this server"
                .to_owned(),
        })?;
    let found = repositories.get_key_value(wanted).or_else(|| {
        let key = url_key(wanted);
        repositories.iter().find(|(_, r)| url_key(&r.url) == key)
    });
    let Some((name, repository)) = found else {
        let registered = if repositories.is_empty() {
            "this server has no registered repositories".to_owned()
        } else {
            format!(
                "the registered ones are {}",
                repositories
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(ApiError::Field {
            field: "source.repository",
            message: format!(
                "{} is not a repository registered on this server ({registered}); name one of them, or register it under `[repositories.\"NAME\"]` in the server's cascade.toml",
                preview(&serde_json::Value::String(wanted.to_owned()))
            ),
        });
    };
    Ok(PipelineSource {
        name: name.clone(),
        url: repository.url.clone(),
        commit,
    })
}

/// A value as JSON text, cut short (for messages).
fn preview(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

/// What a clone URL names, for comparing the forms one repository goes by:
/// `https://host/o/r.git`, `ssh://git@host/o/r`, `git@host:o/r.git` and `http://host/o/r/`
/// all give `host/o/r`; `file:///srv/r` and `/srv/r` give `/srv/r`.
fn url_key(url: &str) -> String {
    let url = url.trim();
    let mut rest = match url.split_once("://") {
        Some(("file", path)) => path.to_owned(),
        Some((_, rest)) => rest.to_owned(),
        // scp-like `user@host:path`
        None => match url.split_once(':') {
            Some((host, path)) if !url.starts_with('/') && !host.contains('/') => {
                format!("{host}/{path}")
            }
            _ => url.to_owned(),
        },
    };
    if !url.starts_with("file://") && !url.starts_with('/') {
        // No user info (`git@`, `user:token@`).
        if let Some((authority, path)) = rest.split_once('/') {
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            rest = format!("{}/{path}", host.to_ascii_lowercase());
        }
    }
    let trimmed = rest.trim_end_matches('/');
    trimmed
        .strip_suffix(".git")
        .unwrap_or(trimmed)
        .trim_end_matches('/')
        .to_owned()
}

fn read<T>(app: &App, f: impl FnOnce(&Reader) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let reader = app.reader.lock().map_err(|_| StoreError::WriterGone)?;
    f(&reader)
}

/// `GET /api/v1/runs/{run_id}`: a run and its tasks.
pub async fn run(
    State(app): Shared,
    Extension(who): Extension<Principal>,
    Path(run_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_run(&app, &who, &run_id).await?;
    let app2 = Arc::clone(&app);
    let id = run_id.clone();
    let found =
        tokio::task::spawn_blocking(move || read(&app2, |r| Ok((r.run(&id)?, r.tasks(&id)?))))
            .await
            .map_err(|_| ApiError::Unavailable)?;
    match found {
        Ok((run, tasks)) => Ok(Json(serde_json::json!({"run": run, "tasks": tasks}))),
        Err(StoreError::NoRun(_)) => Err(ApiError::NotFound {
            what: "run",
            id: run_id,
        }),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// Filters of `GET /api/v1/dags`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagQuery {
    status: Option<cascade_plan::RunStatus>,
    scope: Option<String>,
    node: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/dags?status=&scope=&node=&limit=`: submitted DAGs, newest first.
pub async fn dags(
    State(app): Shared,
    Extension(who): Extension<Principal>,
    Query(query): Query<DagQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(scope) = &query.scope {
        who.check_scope(Some(scope), "the scope asked for")?;
    }
    // A token of one scope asks the store for that scope only.
    let scope = match (&query.scope, who.scopes.as_slice()) {
        (None, [only]) => Some(only.clone()),
        _ => query.scope,
    };
    let filter = DagFilter {
        status: query.status,
        node: query.node,
        scope,
    };
    let limit = query.limit.unwrap_or(1000).min(10_000);
    // A token of several scopes reads more rows and keeps its own.
    let fetch = if who.scopes.len() > 1 { 10_000 } else { limit };
    let mut rows = blocking(move || read(&app, |r| r.dags_where(&filter, fetch)))
        .await?
        .map_err(|_| ApiError::Unavailable)?;
    rows.retain(|row| who.sees(Some(&row.scope)));
    rows.truncate(limit);
    Ok(Json(serde_json::json!({"dags": rows})))
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::Unavailable)
}

/// Which logs `GET /api/v1/runs/{run_id}/logs` returns.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// A job (all its copies) or one task (`build[1]`).
    task: Option<String>,
    /// Only the lines after this `seq` (the last one already read): what a client
    /// following a run asks for each time it looks again.
    #[serde(default)]
    after: i64,
}

/// `GET /api/v1/runs/{run_id}/logs[?task=JOB][&after=SEQ]`: the run's log lines, in order.
pub async fn run_logs(
    State(app): Shared,
    Extension(who): Extension<Principal>,
    Path(run_id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_run(&app, &who, &run_id).await?;
    let id = run_id.clone();
    let found = blocking(move || {
        read(&app, |r| {
            r.run(&id)?;
            r.logs_after(&id, query.task.as_deref(), query.after)
        })
    })
    .await?;
    match found {
        Ok(lines) => Ok(Json(serde_json::json!({"run_id": run_id, "logs": lines}))),
        Err(StoreError::NoRun(_)) => Err(ApiError::NotFound {
            what: "run",
            id: run_id,
        }),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// `POST /api/v1/runs/{run_id}/cancel`: a queued run is cancelled at once (`cancelled`);
/// a running one is stopped by its worker (`cancelling`, then `cancelled`).
pub async fn cancel(
    State(app): Shared,
    Extension(who): Extension<Principal>,
    Path(run_id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    who.require(Role::Submit)?;
    check_run(&app, &who, &run_id).await?;
    match app.intake.cancel(&run_id).await {
        Ok(Cancelled::Dequeued) => Ok((
            StatusCode::OK,
            Json(
                serde_json::json!({"run_id": run_id, "status": cascade_plan::RunStatus::Cancelled}),
            ),
        )),
        Ok(Cancelled::Requested) => {
            if let Some(pool) = &app.pool {
                let id = run_id.clone();
                let app2 = Arc::clone(&app);
                if let Ok(Ok(run)) = blocking(move || read(&app2, |r| r.run(&id))).await
                    && let Some(worker) = run.worker_id
                {
                    pool.wake(&worker);
                }
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    serde_json::json!({"run_id": run_id, "status": cascade_plan::RunStatus::Cancelling}),
                ),
            ))
        }
        Ok(Cancelled::AlreadyEnded(status)) => Err(ApiError::Conflict(format!(
            "run `{run_id}` already ended ({status}); nothing to cancel"
        ))),
        Err(StoreError::NoRun(_)) => Err(ApiError::NotFound {
            what: "run",
            id: run_id,
        }),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// `GET /api/v1/workers`: every worker that recorded itself, and whether it is alive.
pub async fn workers(
    State(app): Shared,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(Role::Admin)?;
    let rows = blocking(move || read(&app, Reader::workers))
        .await?
        .map_err(|_| ApiError::Unavailable)?;
    Ok(Json(serde_json::json!({"workers": rows})))
}

/// `GET /api/v1/workers/{worker_id}`: one worker and the runs it ran.
pub async fn worker(
    State(app): Shared,
    Extension(who): Extension<Principal>,
    Path(worker_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(Role::Admin)?;
    let id = worker_id.clone();
    match blocking(move || read(&app, |r| r.worker(&id))).await? {
        Ok((worker, runs)) => Ok(Json(serde_json::json!({"worker": worker, "runs": runs}))),
        Err(StoreError::NoWorker(_)) => Err(ApiError::NotFound {
            what: "worker",
            id: worker_id,
        }),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// `GET /api/v1/dags/{dag_id}`: a DAG (scope, owner node, latest status), its definition,
/// its recent runs, and the tasks of the latest one (with the one running now).
pub async fn dag(
    State(app): Shared,
    Extension(who): Extension<Principal>,
    Path(dag_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = dag_id.clone();
    match blocking(move || read(&app, |r| dag_status(r, &id))).await? {
        Ok(body) => {
            let scope = body.get("scope").and_then(serde_json::Value::as_str);
            who.check_scope(scope, &format!("DAG `{dag_id}`"))?;
            Ok(Json(body))
        }
        Err(StoreError::NoDag(_)) => Err(ApiError::NotFound {
            what: "dag",
            id: dag_id,
        }),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// What `GET /api/v1/dags/{dag_id}` and `cascade dag status` show, in one read.
pub fn dag_status(reader: &Reader, dag_id: &str) -> Result<serde_json::Value, StoreError> {
    let (row, definition, runs) = reader.dag(dag_id)?;
    let tasks = match runs.first() {
        Some(latest) => reader.tasks(&latest.run_id)?,
        None => Vec::new(),
    };
    let current = tasks
        .iter()
        .find(|t| t.status == cascade_plan::TaskState::Running)
        .map(|t| t.task_id.clone());
    let mut body = serde_json::to_value(row).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("definition".to_owned(), definition);
        object.insert(
            "runs".to_owned(),
            serde_json::to_value(runs).unwrap_or_default(),
        );
        object.insert(
            "latest_tasks".to_owned(),
            serde_json::to_value(tasks).unwrap_or_default(),
        );
        object.insert("current_task".to_owned(), current.into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> Repositories {
        cascade_spec::config::AdminConfig::parse(
            "[repositories.\"acme/app\"]\nforge = \"github\"\nurl = \"https://github.com/acme/app.git\"\n\
             [repositories.\"acme/local\"]\nforge = \"gitea\"\nurl = \"file:///srv/git/local\"\n",
        )
        .unwrap()
        .repositories
    }

    fn source(repository: &str, commit: &str) -> Result<PipelineSource, ApiError> {
        pipeline_source(
            &serde_json::json!({"repository": repository, "commit": commit}),
            &registered(),
        )
    }

    #[test]
    fn a_repository_is_found_by_its_name_or_any_usual_form_of_its_url() {
        let sha = "AB".repeat(20);
        for name in [
            "acme/app",
            "https://github.com/acme/app",
            "https://github.com/acme/app.git/",
            "git@github.com:acme/app.git",
            "ssh://git@GitHub.com/acme/app",
            "https://user:token@github.com/acme/app",
        ] {
            let found = source(name, &sha).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(found.name, "acme/app", "{name}");
            assert_eq!(found.url, "https://github.com/acme/app.git");
            assert_eq!(
                found.commit,
                "ab".repeat(20),
                "commits are kept in lower case"
            );
        }
        for path in [
            "/srv/git/local",
            "/srv/git/local/.git",
            "file:///srv/git/local/",
        ] {
            assert_eq!(source(path, &sha).unwrap().name, "acme/local", "{path}");
        }
        for other in [
            "acme/ap",
            "https://github.com/acme/app2",
            "/srv/git",
            "github.com",
        ] {
            let err = source(other, &sha).unwrap_err().to_string();
            assert!(
                err.contains("not a repository registered on this server")
                    && err.contains("the registered ones are `acme/app`, `acme/local`"),
                "{other}: {err}"
            );
        }
    }

    #[test]
    fn a_commit_is_a_full_sha_and_a_source_has_exactly_its_two_fields() {
        for bad in ["", "main", "abc123", &"g".repeat(40), &"a".repeat(41)] {
            let err = source("acme/app", bad).unwrap_err().to_string();
            assert!(err.contains("40 hex digits"), "{bad}: {err}");
        }
        for bad in [
            serde_json::json!("acme/app"),
            serde_json::json!({"repository": "acme/app"}),
            serde_json::json!({"repository": "acme/app", "commit": "a".repeat(40), "url": "x"}),
        ] {
            assert!(pipeline_source(&bad, &registered()).is_err(), "{bad}");
        }
        let none = pipeline_source(
            &serde_json::json!({"repository": "acme/app", "commit": "a".repeat(40)}),
            &Repositories::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            none.contains("this server has no registered repositories"),
            "{none}"
        );
    }

    #[test]
    fn a_pipeline_at_a_commit_runs_in_the_repositorys_scope_with_its_checkout() {
        let sha = "c".repeat(40);
        let body = serde_json::json!({
            "pipeline": "name: p\njobs:\n  a:\n    run: ls\n    env: { PROJECT_ID: other }\n",
            "source": {"repository": "acme/app", "commit": sha},
        });
        let s = submission(&body.to_string(), &body, &registered()).unwrap();
        assert_eq!(s.scope.to_string(), "project:acme-app");
        assert_eq!(
            s.source.as_deref(),
            Some(format!("acme/app@{sha}").as_str())
        );
        assert_eq!(
            s.definition["checkout"],
            serde_json::json!({"url": "https://github.com/acme/app.git", "sha": sha})
        );
        assert!(
            s.definition.get("repository").is_none(),
            "no repository grants, no job token"
        );
        let plain = serde_json::json!({"pipeline": "name: p\njobs:\n  a:\n    run: ls\n"});
        let s = submission(&plain.to_string(), &plain, &registered()).unwrap();
        assert!(s.source.is_none() && s.definition.get("checkout").is_none());
    }
}
