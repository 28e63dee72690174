//! `cascade schema`: the JSON Schema of ci.yaml, or with `--dag` of a DAG JSON submission.

use crate::output;
use crate::{CliResult, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the schema of a DAG JSON submission (`cascade dag submit`, `POST
    /// /api/v1/dag/execute`) instead of ci.yaml's
    #[arg(long)]
    dag: bool,
}

pub fn run(args: &Args) -> CliResult {
    let schema = if args.dag {
        cascade_spec::schema::dag_schema()
    } else {
        cascade_spec::schema::pipeline_schema()
    };
    output::data(&serde_json::to_string_pretty(&schema)?);
    Ok(Outcome::Success)
}
