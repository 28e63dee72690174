//! ci.yaml and DAG JSON: models, parsing with spans, validation, expressions, diagnostics.
//!
//! Values in, values out: nothing here does IO. [`parse_pipeline`] turns text into a
//! validated [`Pipeline`] or a [`SpecErrors`] listing every problem of the file.

pub mod cascade_toml;
pub mod config;
pub mod dag;
pub mod diagnostic;
pub mod duration;
pub mod expr;
pub mod graph;
mod job;
pub mod model;
pub mod parse;
pub mod schedule;
pub mod schema;
pub mod scope;
pub mod source;
mod validate;

pub use validate::MAX_NEEDS_DEPTH;

pub use dag::{Dag, parse_dag};
pub use diagnostic::{Code, Diagnostic, LineColumn, SpecErrors};
pub use model::{Job, JobId, Pipeline};
pub use parse::{MAX_FILE_BYTES, parse_pipeline, parse_pipeline_bytes};
pub use scope::{Scope, WorkerId};
