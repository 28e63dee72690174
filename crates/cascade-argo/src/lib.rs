//! Argo Workflows backend: `render` turns a plan into a `Workflow` or `CronWorkflow`
//! (pure, no IO). Submitting and watching with kube-rs come next (see ARCHITECTURE.md).

pub mod manifest;
pub mod render;

pub use render::{ArgoVersion, Manifest, RenderError, RenderOptions, render};
