//! `cascade schema`: the JSON Schema of ci.yaml.

use crate::output;
use crate::{CliResult, Outcome};

pub fn run() -> CliResult {
    output::data(&serde_json::to_string_pretty(
        &cascade_spec::schema::pipeline_schema(),
    )?);
    Ok(Outcome::Success)
}
