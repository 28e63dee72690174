//! `cascade argo render|…`: the Argo Workflows backend.

use crate::output;
use crate::{CliError, CliResult, Outcome};
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
    /// Pipeline file (ci.yaml), DAG JSON, or Python pipeline (`file.py:function`)
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
    /// Image of jobs without `image:` (Python tasks: `[python] image` of the admin config)
    #[arg(long, default_value = "docker.io/library/alpine:3.20")]
    default_image: String,
    #[arg(long, value_enum, default_value_t)]
    argo_version: Version,
    /// POST `{workflow, status, event}` here when the workflow ends, whatever the outcome
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// Check this repository out in every job (`/src`, its working directory; Python
    /// tasks need it to import their pipeline's files)
    #[arg(long, value_name = "URL")]
    repo: Option<String>,
    /// The commit (or branch, tag) of `--repo` to check out [default: the remote's HEAD]
    #[arg(long, value_name = "SHA", requires = "repo")]
    revision: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    output: ManifestFormat,
}

pub fn run(command: &Command) -> CliResult {
    match command {
        Command::Render(args) => {
            let manifest = manifest(args)?;
            let json = manifest.to_json();
            match args.output {
                ManifestFormat::Json => output::data(&serde_json::to_string_pretty(&json)?),
                ManifestFormat::Yaml => output::data(&serde_saphyr::to_string(&json)?),
            }
            Ok(Outcome::Success)
        }
        Command::Submit(args) => {
            let manifest = manifest(&args.render)?;
            let namespace = args
                .render
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = client().await?;
                let name = cascade_argo::cluster::submit(&client, &namespace, &manifest)
                    .await
                    .map_err(|e| cluster_error(&e))?;
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
                let client = client().await?;
                follow(&client, &args.namespace, &args.name).await
            })
        }
    }
}

/// A client of the cluster; without a kubeconfig (or a service account) that is a
/// configuration for the user to give, not an internal error.
async fn client() -> CliResult<kube::Client> {
    cascade_argo::cluster::client()
        .await
        .map_err(|e| cluster_error(&e))
}

/// A cluster error for the user: no client configuration is a usage error with what to
/// do; anything else a failure, each cause said once.
fn cluster_error(e: &cascade_argo::cluster::ClusterError) -> CliError {
    match e {
        cascade_argo::cluster::ClusterError::Config(_) => CliError::caused(Outcome::Usage, e).hint(
            "point KUBECONFIG at a kubeconfig (or create ~/.kube/config), or run inside the cluster with a service account; `cascade argo render` needs neither",
        ),
        _ => CliError::caused(Outcome::Failure, e),
    }
}

/// Prints each change of a workflow; the outcome follows its final phase.
async fn follow(client: &kube::Client, namespace: &str, name: &str) -> CliResult {
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
    .await
    .map_err(|e| cluster_error(&e))?;
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
) -> CliResult<cascade_spec::config::AdminConfig> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = client().await?;
        cascade_argo::cluster::load_config(&client, namespace, name)
            .await
            .map_err(|e| cluster_error(&e))
    })
}

/// Loads, plans and renders.
fn manifest(args: &RenderArgs) -> CliResult<cascade_argo::Manifest> {
    let pipeline = super::load_or_report(&args.file)?;
    let config = match &args.config_map {
        Some(name) => config_from_cluster(name, args.namespace.as_deref().unwrap_or("default"))?,
        None => super::trigger::load_config(args.config.as_deref()).map_err(CliError::failure)?,
    };
    let mut trigger = args.trigger.trigger(None, None).map_err(CliError::usage)?;
    // Rendered for no event in particular, a scheduled pipeline becomes a CronWorkflow:
    // every run of it is a `schedule` event, so it is planned as one.
    if trigger.event_name == "manual" && !pipeline.on.schedule.is_empty() {
        "schedule".clone_into(&mut trigger.event_name);
    }
    let plan = cascade_plan::plan(&pipeline, &trigger, &[])
        .map_err(|e| CliError::failure(e.to_string()))?;
    let options = RenderOptions {
        argo_version: match args.argo_version {
            Version::Current => ArgoVersion::Current,
            Version::Legacy => ArgoVersion::Legacy35,
        },
        default_image: args.default_image.clone(),
        namespace: args.namespace.clone(),
        callback_url: args.callback_url.clone(),
        checkout: args.repo.as_ref().map(|repo| cascade_argo::Checkout {
            repo: repo.clone(),
            revision: args.revision.clone().unwrap_or_else(|| "HEAD".to_owned()),
        }),
        ..RenderOptions::default()
    };
    cascade_argo::render(&pipeline, &plan, &config, &options)
        .map_err(|e| CliError::caused(Outcome::Failure, &e))
}
