//! `cascade argo render|…`: the Argo Workflows backend.

use crate::Outcome;
use crate::output;
use cascade_argo::{ArgoVersion, RenderOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the `Workflow` (or `CronWorkflow`) a pipeline becomes
    Render(RenderArgs),
    /// Create it on the cluster (kubeconfig or in-cluster), optionally following it
    Submit(SubmitArgs),
    /// Follow a workflow's phase and its tasks until it ends
    Watch(WatchArgs),
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    render: RenderArgs,
    /// Follow the workflow until it ends; the exit code is its outcome
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Workflow name (as printed by `cascade argo submit`)
    name: String,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
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
    #[arg(long, value_name = "FILE", conflicts_with = "config_map")]
    config: Option<PathBuf>,
    /// Read the admin config from this `ConfigMap` (key `cascade.toml`) in `--namespace`
    #[arg(long, value_name = "NAME")]
    config_map: Option<String>,
    /// Namespace of the manifest (submit: where it is created)
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Image of jobs without `image:`
    #[arg(long, default_value = "docker.io/library/alpine:3.20")]
    default_image: String,
    #[arg(long, value_enum, default_value_t)]
    argo_version: Version,
    /// POST `{workflow, status, event}` here when the workflow ends, whatever the outcome
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    output: ManifestFormat,
}

pub fn run(command: &Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Render(args) => {
            let manifest = match manifest(args) {
                Ok(m) => m,
                Err(outcome) => return Ok(outcome),
            };
            let json = manifest.to_json();
            match args.output {
                ManifestFormat::Json => output::data(&serde_json::to_string_pretty(&json)?),
                ManifestFormat::Yaml => output::data(&serde_saphyr::to_string(&json)?),
            }
            Ok(Outcome::Success)
        }
        Command::Submit(args) => {
            let manifest = match manifest(&args.render) {
                Ok(m) => m,
                Err(outcome) => return Ok(outcome),
            };
            let namespace = args
                .render
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = cascade_argo::cluster::client().await?;
                let name = cascade_argo::cluster::submit(&client, &namespace, &manifest).await?;
                output::data(&name);
                output::note(&format!("created {name} in {namespace}; follow it with `cascade argo watch {name} -n {namespace}`"));
                if args.wait && matches!(manifest, cascade_argo::Manifest::Workflow(_)) {
                    return follow(&client, &namespace, &name).await;
                }
                Ok(Outcome::Success)
            })
        }
        Command::Watch(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = cascade_argo::cluster::client().await?;
                follow(&client, &args.namespace, &args.name).await
            })
        }
    }
}

/// Prints each change of a workflow; the outcome follows its final phase.
async fn follow(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<Outcome> {
    use cascade_argo::cluster::Progress;
    let status = cascade_argo::cluster::watch(client, namespace, name, |p| match p {
        Progress::Phase { phase, message } => {
            output::note(&format!(
                "{name}: {phase}{}",
                message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ));
        }
        Progress::Task {
            name,
            state,
            message,
        } => {
            output::note(&format!(
                "  {name}: {state}{}",
                message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ));
        }
    })
    .await?;
    output::data(&format!("{name} {status}"));
    Ok(if status == cascade_plan::RunStatus::Succeeded {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// The admin config from a `ConfigMap` on the cluster.
fn config_from_cluster(
    name: &str,
    namespace: &str,
) -> Result<cascade_spec::config::AdminConfig, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(async {
            let client = cascade_argo::cluster::client().await?;
            cascade_argo::cluster::load_config(&client, namespace, name).await
        })
        .map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            format!("{e}{cause}")
        })
}

/// Loads, plans and renders; problems are reported and become the outcome.
fn manifest(args: &RenderArgs) -> Result<cascade_argo::Manifest, Outcome> {
    let pipeline = super::load_or_report(&args.file)?;
    let loaded = match &args.config_map {
        Some(name) => config_from_cluster(name, args.namespace.as_deref().unwrap_or("default")),
        None => super::trigger::load_config(args.config.as_deref()),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(message) => {
            output::error(&message);
            return Err(Outcome::Failure);
        }
    };
    let trigger = match args.trigger.trigger(None, None) {
        Ok(t) => t,
        Err(message) => {
            output::error(&message);
            return Err(Outcome::Usage);
        }
    };
    let plan = match cascade_plan::plan(&pipeline, &trigger, &[]) {
        Ok(p) => p,
        Err(e) => {
            output::error(&e.to_string());
            return Err(Outcome::Failure);
        }
    };
    let options = RenderOptions {
        argo_version: match args.argo_version {
            Version::Current => ArgoVersion::Current,
            Version::Legacy => ArgoVersion::Legacy35,
        },
        default_image: args.default_image.clone(),
        namespace: args.namespace.clone(),
        callback_url: args.callback_url.clone(),
        ..RenderOptions::default()
    };
    cascade_argo::render(&pipeline, &plan, &config, &options).map_err(|e| {
        output::error(&format!("{e}; nothing was submitted"));
        Outcome::Failure
    })
}
