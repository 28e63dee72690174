//! Argo Workflows backend: `render` turns a plan into a `Workflow` or `CronWorkflow`
//! (pure, no IO); `cluster` creates it with kube-rs and follows its status.

pub mod cluster;
pub mod manifest;
pub mod render;

pub use render::{ArgoVersion, Checkout, Manifest, RenderError, RenderOptions, render};
