//! `cascade schema`: the JSON Schema of ci.yaml.

use crate::Outcome;
use crate::output;

pub fn run() -> anyhow::Result<Outcome> {
    output::data(&serde_json::to_string_pretty(
        &cascade_spec::schema::pipeline_schema(),
    )?);
    Ok(Outcome::Success)
}
