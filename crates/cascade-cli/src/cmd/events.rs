//! `cascade dispatch TYPE --payload JSON` starts `repository_dispatch` pipelines;
//! `cascade events [--task-id ID]` shows the event log (a dispatch chain, by task id).

use crate::Outcome;
use crate::output::{self, ListFormat};
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

pub fn dispatch(args: &DispatchArgs) -> Outcome {
    let payload: Value = match serde_json::from_str(&args.payload) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            output::error("--payload must be a JSON object, e.g. '{\"task_id\": \"42\"}'");
            return Outcome::Usage;
        }
        Err(e) => {
            output::error(&format!("--payload is not JSON: {e}"));
            return Outcome::Usage;
        }
    };
    let body = serde_json::json!({"event_type": args.event_type, "client_payload": payload});
    let token = super::dag::token_for(args.token.as_deref(), &args.data_dir);
    let result = super::dag::Source::server(&args.server, token).and_then(|source| {
        source.http(
            reqwest::Method::POST,
            "/api/v1/dispatch",
            Some(body.to_string()),
        )
    });
    match result {
        Ok(answer) => {
            match args.output {
                ListFormat::Json => output::json(&answer),
                ListFormat::Table => {
                    let duplicate = answer["duplicate"].as_bool().unwrap_or(false);
                    output::data(&format!(
                        "{}\t{}{}",
                        answer["task_id"].as_str().unwrap_or_default(),
                        answer["event_type"].as_str().unwrap_or_default(),
                        if duplicate {
                            "\t(already dispatched)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            Outcome::Success
        }
        Err(super::dag::Failure::Usage(message) | super::dag::Failure::Refused(message)) => {
            output::error(&message);
            Outcome::Failure
        }
    }
}

pub fn events(args: &EventsArgs) -> Outcome {
    use super::dag::{Failure, Source, escape};
    let task = args
        .task_id
        .as_deref()
        .map_or_else(String::new, |t| format!("&task_id={}", escape(t)));
    let path = format!("/api/v1/events?limit={}{task}", args.limit);
    let report = |failure: Failure| {
        let (Failure::Usage(message) | Failure::Refused(message)) = failure;
        output::error(&message);
        Outcome::Failure
    };
    let source = match Source::new(&args.target) {
        Ok(source) => source,
        Err(failure) => return report(failure),
    };
    if super::dag::nothing_here(
        &source,
        args.target.output,
        "events",
        "point at a server with --server URL",
    ) {
        return Outcome::Success;
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
    let rows = match answer {
        Ok(answer) => answer["events"].as_array().cloned().unwrap_or_default(),
        Err(failure) => return report(failure),
    };
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
    Outcome::Success
}
