//! Flags shared by commands that plan a run: the trigger (event, payload, inputs) and
//! the admin config.

use cascade_plan::Trigger;
use cascade_spec::config::AdminConfig;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// An input, `name=value` (repeatable)
    #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, String)>,
    /// The triggering event: `push`, `pull_request`, `schedule`, `workflow_dispatch`, `repository_dispatch`
    #[arg(long)]
    event: Option<String>,
    /// The event payload, a JSON file (read as `event.*`)
    #[arg(long, value_name = "FILE")]
    event_file: Option<PathBuf>,
}

fn parse_input(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, found `{text}`"))
}

const EVENTS: &[&str] = &[
    "push",
    "pull_request",
    "schedule",
    "workflow_dispatch",
    "repository_dispatch",
    "manual",
];

impl TriggerArgs {
    /// The trigger; `base`/`head` compute changed files with git.
    pub fn trigger(&self, base: Option<&str>, head: Option<&str>) -> Result<Trigger, String> {
        let mut trigger = Trigger::manual();
        if let Some(event) = &self.event {
            if !EVENTS.contains(&event.as_str()) {
                return Err(format!(
                    "unknown event `{event}`; expected one of {}",
                    EVENTS.join(", ")
                ));
            }
            trigger.event_name.clone_from(event);
        }
        if let Some(path) = &self.event_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            trigger.payload = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}:{}:{}: invalid JSON: {e}",
                    path.display(),
                    e.line(),
                    e.column()
                )
            })?;
        }
        trigger.inputs = self.inputs.iter().cloned().collect();
        if let Some(base) = base {
            let files = cascade_git::changed_files(Path::new("."), base, head)
                .map_err(|e| e.to_string())?;
            trigger.changed_paths = Some(files);
        }
        Ok(trigger)
    }
}

/// `--config FILE`, else `./cascade.toml` if present, else the built-in defaults.
/// The admin config and the secrets of a long-running command (`serve`, `worker run`).
/// A bad or unsafe config or secrets file is the admin's to fix: exit 1, as an invalid
/// pipeline.
pub fn load_admin(
    config: Option<&Path>,
    secrets_file: Option<&Path>,
) -> Result<(AdminConfig, cascade_engine::Secrets), crate::CliError> {
    let config = load_config(config).map_err(crate::CliError::failure)?;
    let secrets = secrets_file
        .map(cascade_engine::Secrets::from_file)
        .transpose()
        .map_err(|e| crate::CliError::failure(e.to_string()))?
        .unwrap_or_default();
    Ok((config, secrets))
}

pub fn load_config(path: Option<&Path>) -> Result<AdminConfig, String> {
    let (path, required) = match path {
        Some(p) => (p.to_owned(), true),
        None => (PathBuf::from("cascade.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => AdminConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(_) if !required => Ok(AdminConfig::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
