//! `cascade argo render|…`: the Argo Workflows backend.

use crate::Outcome;
use crate::output;
use cascade_argo::{ArgoVersion, RenderOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the `Workflow` (or `CronWorkflow`) a pipeline becomes
    Render(RenderArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ManifestFormat {
    #[default]
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Version {
    /// Argo 3.6 and later (`CronWorkflow` `schedules` list)
    #[default]
    #[value(name = "4")]
    Current,
    /// Argo 3.5 and older (singular `schedule`)
    #[value(name = "3.5")]
    Legacy,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Pipeline file (ci.yaml) or DAG JSON
    file: PathBuf,
    #[command(flatten)]
    trigger: super::trigger::TriggerArgs,
    /// Admin config [default: ./cascade.toml if present, else built-in runners]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Namespace to put in the manifest
    #[arg(long)]
    namespace: Option<String>,
    /// Image of jobs without `image:`
    #[arg(long, default_value = "docker.io/library/alpine:3.20")]
    default_image: String,
    #[arg(long, value_enum, default_value_t)]
    argo_version: Version,
    #[arg(long, value_enum, default_value_t)]
    output: ManifestFormat,
}

pub fn run(command: &Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Render(args) => render(args),
    }
}

fn render(args: &RenderArgs) -> anyhow::Result<Outcome> {
    let pipeline = match super::load_or_report(&args.file) {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };
    let config = match super::trigger::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(message) => {
            output::error(&message);
            return Ok(Outcome::Failure);
        }
    };
    let trigger = match args.trigger.trigger(None, None) {
        Ok(t) => t,
        Err(message) => {
            output::error(&message);
            return Ok(Outcome::Usage);
        }
    };
    let plan = match cascade_plan::plan(&pipeline, &trigger, &[]) {
        Ok(p) => p,
        Err(e) => {
            output::error(&e.to_string());
            return Ok(Outcome::Failure);
        }
    };
    let options = RenderOptions {
        argo_version: match args.argo_version {
            Version::Current => ArgoVersion::Current,
            Version::Legacy => ArgoVersion::Legacy35,
        },
        default_image: args.default_image.clone(),
        namespace: args.namespace.clone(),
        ..RenderOptions::default()
    };
    let manifest = match cascade_argo::render(&pipeline, &plan, &config, &options) {
        Ok(m) => m,
        Err(e) => {
            output::error(&format!("{e}; nothing was submitted"));
            return Ok(Outcome::Failure);
        }
    };
    let json = manifest.to_json();
    match args.output {
        ManifestFormat::Json => output::data(&serde_json::to_string_pretty(&json)?),
        ManifestFormat::Yaml => output::data(&serde_saphyr::to_string(&json)?),
    }
    Ok(Outcome::Success)
}
