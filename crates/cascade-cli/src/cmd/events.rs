//! `cascade dispatch TYPE --payload JSON` starts `repository_dispatch` pipelines;
//! `cascade events [--task-id ID]` shows the event log (a dispatch chain, by task id).

use crate::Outcome;
use crate::output::{self, ListFormat};
use serde_json::Value;
use std::path::PathBuf;

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
    /// A running server; without it the data dir is read
    #[arg(long, value_name = "URL", env = "CASCADE_SERVER")]
    server: Option<String>,
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".cascade",
        env = "CASCADE_DATA_DIR"
    )]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    output: ListFormat,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
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
    let base = args.server.trim_end_matches('/').to_owned();
    let result = super::dag::http_client(&base).and_then(|client| {
        runtime()?.block_on(async {
            let response = client
                .post(format!("{base}/api/v1/dispatch"))
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    format!("cannot reach {base}: {e}; is `cascade serve` running there?")
                })?;
            let status = response.status();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                Ok(value)
            } else {
                Err(value["error"]
                    .as_str()
                    .map_or_else(|| format!("the server answered {status}"), str::to_owned))
            }
        })
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
        Err(message) => {
            output::error(&message);
            Outcome::Failure
        }
    }
}

pub fn events(args: &EventsArgs) -> Outcome {
    let rows: Result<Value, String> = if let Some(url) = &args.server {
        let base = url.trim_end_matches('/').to_owned();
        super::dag::http_client(&base).and_then(|client| {
            runtime()?.block_on(async {
                let mut request = client
                    .get(format!("{base}/api/v1/events"))
                    .query(&[("limit", args.limit.to_string())]);
                if let Some(task) = &args.task_id {
                    request = request.query(&[("task_id", task)]);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach {base}: {e}"))?;
                let value: Value = response.json().await.map_err(|e| e.to_string())?;
                Ok(value["events"].clone())
            })
        })
    } else {
        let db = args.data_dir.join("cascade.db");
        if db.exists() {
            cascade_store::Reader::open(&db)
                .and_then(|r| r.events(args.task_id.as_deref(), args.limit))
                .map(|rows| serde_json::to_value(rows).unwrap_or_default())
                .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "no events in {} yet; point at a server with --server URL",
                args.data_dir.display()
            ))
        }
    };
    let rows = match rows {
        Ok(r) => r.as_array().cloned().unwrap_or_default(),
        Err(message) => {
            output::error(&message);
            return Outcome::Failure;
        }
    };
    match args.output {
        ListFormat::Json => output::json(&Value::Array(rows)),
        ListFormat::Table => {
            let cell = super::dag::str_of;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|e| {
                    vec![
                        cell(&e["event_id"]),
                        cell(&e["received_at"]),
                        cell(&e["source"]),
                        cell(&e["kind"]),
                        cell(&e["event_type"]),
                        cell(&e["task_id"]),
                        cell(&e["status"]),
                        cell(&e["note"]),
                    ]
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
