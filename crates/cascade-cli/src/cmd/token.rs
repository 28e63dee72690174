//! `cascade token create|list|revoke`: API tokens (DESIGN §8), made through a server's
//! admin API (`--server`, with an admin token) or straight in its data dir (whoever can
//! read the data dir is its admin already).

use crate::output::{self, ListFormat};
use crate::{CliError, CliResult, Outcome};
use cascade_store::{Role, Tokens};
use serde_json::{Value, json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token and print it (shown once: only its hash is kept)
    Create(CreateArgs),
    /// List tokens (never their secrets)
    List(super::dag::Target),
    /// Revoke a token by id or name; it stops working at once
    Revoke(RevokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A name to know it by (`ci-web`, `alice`)
    #[arg(long)]
    name: String,
    /// `read` (runs, logs, DAGs, events), `submit` (also submit, dispatch, cancel) or
    /// `admin` (everything)
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Limit it to this scope (`project:web`; repeatable) [default: every scope]
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Let it expire after this long (`30d`, `12h`) [default: never]
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    #[command(flatten)]
    target: super::dag::Target,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token's id or name (see `cascade token list`)
    id: String,
    #[command(flatten)]
    target: super::dag::Target,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

pub fn run(command: &Command) -> CliResult {
    match command {
        Command::Create(args) => create(args),
        Command::List(target) => list(target),
        Command::Revoke(args) => revoke(args),
    }
}

/// The token table of a data dir, or why not.
fn tokens(target: &super::dag::Target) -> Result<Tokens, CliError> {
    let db = target.data_dir.join("cascade.db");
    if !db.exists() {
        return Err(CliError::usage(format!(
            "no server data in {}; start `cascade serve --data-dir {}` once, or give --server URL",
            target.data_dir.display(),
            target.data_dir.display()
        )));
    }
    Tokens::open(&db).map_err(|e| CliError::caused(Outcome::Failure, &e))
}

/// A store error of the token table: an unknown token is not found (exit 4), anything
/// else a failure of the store.
fn token_error(e: &cascade_store::StoreError) -> CliError {
    match e {
        cascade_store::StoreError::NoToken(_) => {
            CliError::not_found(e.to_string()).hint("`cascade token list` lists the tokens")
        }
        other => CliError::caused(Outcome::Failure, other),
    }
}

/// One API call against `--server`.
fn call(
    target: &super::dag::Target,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
) -> Result<Value, CliError> {
    let url = target.server.as_deref().unwrap_or_default();
    let token = super::dag::token_for(target.token.as_deref(), &target.data_dir);
    super::dag::Source::server(url, token)?.http(method, path, body)
}

fn create(args: &CreateArgs) -> CliResult {
    let answer = created(args)?;
    match args.target.output {
        ListFormat::Json => output::json(&answer),
        ListFormat::Table => {
            output::data(answer["token"].as_str().unwrap_or_default());
            output::note(&format!(
                "created token `{}` ({}, {}); it is shown only now: store it (e.g. as CASCADE_TOKEN)",
                answer["name"].as_str().unwrap_or_default(),
                answer["role"].as_str().unwrap_or_default(),
                scopes_text(&answer["scopes"])
            ));
        }
    }
    Ok(Outcome::Success)
}

/// The new token's row and text, from the server or the data dir.
fn created(args: &CreateArgs) -> Result<Value, CliError> {
    let request = cascade_server::tokens::TokenRequest {
        name: args.name.clone(),
        role: args.role,
        scopes: args.scopes.clone(),
        expires: args.expires.clone(),
    };
    if args.target.server.is_some() {
        let body = json!({"name": request.name, "role": request.role, "scopes": request.scopes, "expires": request.expires});
        return call(
            &args.target,
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(body.to_string()),
        );
    }
    let issued = cascade_server::tokens::create(&tokens(&args.target)?, &request)
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(issued.shown())
}

fn scopes_text(scopes: &Value) -> String {
    let list: Vec<&str> = scopes
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if list.is_empty() {
        "every scope".to_owned()
    } else {
        list.join(",")
    }
}

fn list(target: &super::dag::Target) -> CliResult {
    let rows = listed(target)?;
    match target.output {
        ListFormat::Json => output::json(&Value::Array(rows)),
        ListFormat::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let state = if r["revoked_at"].is_null() {
                        super::dag::str_of(&r["expires_at"])
                    } else {
                        "revoked".to_owned()
                    };
                    vec![
                        super::dag::str_of(&r["id"]),
                        super::dag::str_of(&r["name"]),
                        super::dag::str_of(&r["role"]),
                        scopes_text(&r["scopes"]),
                        super::dag::str_of(&r["created_at"]),
                        state,
                    ]
                })
                .collect();
            output::data(&output::table(
                &["ID", "NAME", "ROLE", "SCOPES", "CREATED", "EXPIRES"],
                &table,
            ));
        }
    }
    Ok(Outcome::Success)
}

fn revoke(args: &RevokeArgs) -> CliResult {
    let answer = revoked(args)?;
    match args.target.output {
        ListFormat::Json => output::json(&answer),
        ListFormat::Table => output::note(&format!(
            "revoked token `{}` ({})",
            answer["name"].as_str().unwrap_or_default(),
            answer["id"].as_str().unwrap_or_default()
        )),
    }
    Ok(Outcome::Success)
}

/// Every token, from the server or the data dir.
fn listed(target: &super::dag::Target) -> Result<Vec<Value>, CliError> {
    if target.server.is_some() {
        let answer = call(target, reqwest::Method::GET, "/api/v1/tokens", None)?;
        return Ok(answer["tokens"].as_array().cloned().unwrap_or_default());
    }
    if !target.data_dir.join("cascade.db").exists() {
        // No server data yet: no tokens (an empty listing is `[]`, DESIGN §6).
        return Ok(Vec::new());
    }
    let rows = tokens(target)?.list().map_err(|e| token_error(&e))?;
    Ok(rows
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect())
}

/// The revoked token's row, from the server or the data dir.
fn revoked(args: &RevokeArgs) -> Result<Value, CliError> {
    if args.target.server.is_some() {
        let path = format!("/api/v1/tokens/{}", super::dag::escape(&args.id));
        return call(&args.target, reqwest::Method::DELETE, &path, None);
    }
    let row = tokens(&args.target)?
        .revoke(&args.id)
        .map_err(|e| token_error(&e))?;
    Ok(serde_json::to_value(row).unwrap_or_default())
}
