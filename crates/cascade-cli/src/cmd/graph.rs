//! `cascade graph FILE`: the job DAG as dot, mermaid or json.

use crate::output;
use crate::{CliResult, Outcome};
use cascade_spec::graph;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GraphFormat {
    #[default]
    Dot,
    Mermaid,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline file (ci.yaml), DAG JSON, or Python pipeline (`file.py:function`)
    file: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    format: GraphFormat,
}

pub fn run(args: &Args) -> CliResult {
    let pipeline = super::load_or_report(&args.file)?;
    match args.format {
        GraphFormat::Dot => output::data(&graph::to_dot(&pipeline)),
        GraphFormat::Mermaid => output::data(&graph::to_mermaid(&pipeline)),
        GraphFormat::Json => output::json(&graph::to_json(&pipeline)),
    }
    Ok(Outcome::Success)
}
