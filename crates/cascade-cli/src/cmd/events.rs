//! `cascade dispatch TYPE --payload JSON` starts `repository_dispatch` pipelines;
//! `cascade events [--task-id ID]` shows the event log (a dispatch chain, by task id).

use crate::output::{self, ListFormat};
use crate::{CliError, CliResult, Outcome};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct DispatchArgs {
    /// The event type (`agent:complete`); pipelines list it in `on.repository_dispatch.types`
    event_type: String,
    /// The `client_payload` (a JSON object; `task_id` follows the chain)
    #[arg(long, value_name = "JSON", default_value = "{}")]
    payload: String,
    /// The server (`http://127.0.0.1:8080`)
    #[arg(long, value_name = "URL", env = "CASCADE_SERVER")]
    server: String,
    /// The API token (a `submit` token of the repositories' scopes) [default: the admin
    /// token in `DATA_DIR/admin.token`, when readable]
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CASCADE_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Where to look for the admin token when no --token is given
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: std::path::PathBuf,
    #[arg(long, value_enum, default_value_t)]
    output: ListFormat,
    /// Do not wait for the server to route the event (by default `dispatch` waits up to
    /// 10s and fails, exit 2, when no pipeline listens to the type; inside a job, where
    /// `CASCADE_RUN_ID` is set, it never waits: the next step of a chain must not hold up
    /// the job that sends it)
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only this dispatch chain
    #[arg(long, value_name = "ID")]
    task_id: Option<String>,
    #[arg(long, default_value_t = 200)]
    limit: usize,
    #[command(flatten)]
    target: super::dag::Target,
}

pub fn dispatch(args: &DispatchArgs) -> CliResult {
    let payload: Value = match serde_json::from_str(&args.payload) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Err(CliError::usage(
                "--payload must be a JSON object, e.g. '{\"task_id\": \"42\"}'",
            ));
        }
        Err(e) => return Err(CliError::usage(format!("--payload is not JSON: {e}"))),
    };
    let body = serde_json::json!({"event_type": args.event_type, "client_payload": payload});
    let token = super::dag::token_for(args.token.as_deref(), &args.data_dir);
    let source = super::dag::Source::server(&args.server, token)?;
    let answer = source.http(
        reqwest::Method::POST,
        "/api/v1/dispatch",
        Some(body.to_string()),
    )?;
    let task_id = answer["task_id"].as_str().unwrap_or_default().to_owned();
    match args.output {
        ListFormat::Json => output::json(&answer),
        ListFormat::Table => {
            let duplicate = answer["duplicate"].as_bool().unwrap_or(false);
            output::data(&format!(
                "{task_id}\t{}{}",
                answer["event_type"].as_str().unwrap_or_default(),
                if duplicate {
                    "\t(already dispatched)"
                } else {
                    ""
                }
            ));
        }
    }
    if args.no_wait || std::env::var_os("CASCADE_RUN_ID").is_some() {
        return Ok(Outcome::Success);
    }
    // The server routes the event after answering; a dispatch nobody listens to is the
    // sender's mistake (a typo in the type, most often), so it is not left silent.
    match handled(&source, &task_id, &args.event_type) {
        Some((status, note)) if status == "skipped" => Err(CliError::usage(format!(
            "dispatch `{}` started nothing: {note}",
            args.event_type
        ))
        .hint(
            "pipelines list the types they start on in `on.repository_dispatch.types`; \
             `cascade events` shows the types dispatched so far and what each started",
        )),
        Some((status, note)) if status == "failed" || status == "dead" => Err(CliError::failure(
            format!("dispatch `{}` failed: {note}", args.event_type),
        )),
        Some((_, note)) => {
            output::note(&note);
            Ok(Outcome::Success)
        }
        None => {
            output::note(&format!(
                "queued; `cascade events --task-id {task_id}` shows what it starts"
            ));
            Ok(Outcome::Success)
        }
    }
}

/// How long `dispatch` waits for the server to route the event.
const ROUTING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The status and note of the latest event of this dispatch once the server handled it
/// (`None` if it is still queued after [`ROUTING_WAIT`], or the token may not read it).
fn handled(
    source: &super::dag::Source,
    task_id: &str,
    event_type: &str,
) -> Option<(String, String)> {
    let path = format!(
        "/api/v1/events?limit=50&task_id={}",
        super::dag::escape(task_id)
    );
    let deadline = std::time::Instant::now() + ROUTING_WAIT;
    loop {
        // A token that may dispatch but not read the event log (a job's) cannot tell.
        let Ok(answer) = source.http(reqwest::Method::GET, &path, None) else {
            return None;
        };
        let latest = answer["events"].as_array().and_then(|events| {
            events
                .iter()
                .rev()
                .find(|e| e["event_type"] == event_type)
                .cloned()
        });
        if let Some(event) = latest {
            let status = event["status"].as_str().unwrap_or_default();
            if !matches!(status, "queued" | "processing") {
                return Some((
                    status.to_owned(),
                    event["note"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

pub fn events(args: &EventsArgs) -> CliResult {
    use super::dag::{Source, escape};
    let task = args
        .task_id
        .as_deref()
        .map_or_else(String::new, |t| format!("&task_id={}", escape(t)));
    let path = format!("/api/v1/events?limit={}{task}", args.limit);
    let source = Source::new(&args.target)?;
    if super::dag::nothing_here(
        &source,
        args.target.output,
        "events",
        "point at a server with --server URL",
    ) {
        return Ok(Outcome::Success);
    }
    let answer = source.read_or(
        &path,
        |dir| {
            format!(
                "no events in {} yet; point at a server with --server URL",
                dir.display()
            )
        },
        |r| {
            Ok(serde_json::json!({
                "events": r.events(args.task_id.as_deref(), args.limit)?
            }))
        },
    );
    let rows = answer?["events"].as_array().cloned().unwrap_or_default();
    match args.target.output {
        ListFormat::Json => output::json(&Value::Array(rows)),
        ListFormat::Table => {
            let cells = super::dag::cells;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|e| {
                    cells(
                        e,
                        &[
                            "event_id",
                            "received_at",
                            "source",
                            "kind",
                            "event_type",
                            "task_id",
                            "status",
                            "note",
                        ],
                    )
                })
                .collect();
            output::data(&output::table(
                &[
                    "ID", "RECEIVED", "SOURCE", "KIND", "TYPE", "TASK", "STATUS", "NOTE",
                ],
                &table,
            ));
        }
    }
    Ok(Outcome::Success)
}
