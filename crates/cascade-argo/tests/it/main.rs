//! Rendered manifests: snapshots of every example and of each mapping rule, each
//! validated against the strict JSON Schemas made from Argo's CRDs (../shared/argo).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::format_push_string,
    clippy::too_many_lines,
    reason = "test helpers: a panic is the failure report"
)]

mod apiserver;
mod contract;
mod equivalence;
mod python;
mod rules;
mod snapshots;

use cascade_argo::{Manifest, RenderOptions, render};
use cascade_plan::Trigger;
use cascade_spec::config::AdminConfig;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The admin config the tests render with: the built-in runners, a `gpu` runner and
/// mappings for every secret the examples use.
pub fn config() -> AdminConfig {
    AdminConfig::parse(
        r#"
[runners.small]
cpu = 1
memory = "1Gi"
[runners.large]
cpu = 4
memory = "8Gi"
[runners.gpu]
cpu = 0.5
memory = "2Gi"
node_selector = { accelerator = "a100" }
tolerations = [{ key = "gpu", operator = "Exists", effect = "NoSchedule" }]
[secrets.PYPI_TOKEN]
secret = "pypi"
key = "token"
[secrets.SIGNING_KEY]
secret = "release"
key = "signing-key"
[secrets.REGISTRY_TOKEN]
secret = "release"
key = "registry-token"
"#,
    )
    .unwrap()
}

pub fn render_file(
    path: &Path,
    trigger: &Trigger,
    options: &RenderOptions,
) -> Result<Manifest, cascade_argo::RenderError> {
    let text = std::fs::read_to_string(path).unwrap();
    let pipeline = cascade_spec::parse_pipeline(&path.display().to_string(), &text).unwrap();
    let plan = cascade_plan::plan(&pipeline, trigger, &[]).unwrap();
    render(&pipeline, &plan, &config(), options)
}

fn schema(name: &str) -> &'static jsonschema::Validator {
    static WORKFLOW: OnceLock<jsonschema::Validator> = OnceLock::new();
    static CRON: OnceLock<jsonschema::Validator> = OnceLock::new();
    let cell = if name == "workflows" {
        &WORKFLOW
    } else {
        &CRON
    };
    cell.get_or_init(|| {
        let text =
            std::fs::read_to_string(root().join(format!("../shared/argo/{name}-strict.json")))
                .expect("../shared/argo holds the strict CRD schemas");
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    })
}

/// Fails with every schema error of a manifest.
pub fn assert_valid(manifest: &Manifest) {
    let json = manifest.to_json();
    let validator = match manifest {
        Manifest::Workflow(_) => schema("workflows"),
        Manifest::CronWorkflow(_) => schema("cronworkflows"),
    };
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "manifest does not match Argo's CRD schema:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(&json).unwrap()
    );
}

pub fn yaml(manifest: &Manifest) -> String {
    serde_saphyr::to_string(&manifest.to_json()).unwrap()
}
