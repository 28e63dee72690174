//! One module per subcommand.

pub mod changed;
pub mod graph;
pub mod run;
pub mod runs;
pub mod schema;
pub mod validate;

use crate::output;
use cascade_spec::{Pipeline, SpecErrors};
use std::path::Path;

/// Why a pipeline file could not be loaded.
pub enum LoadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file was read but is not a valid pipeline.
    Invalid(SpecErrors),
}

/// Reads and validates a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, LoadError> {
    let bytes = read_limited(path).map_err(LoadError::Io)?;
    cascade_spec::parse_pipeline_bytes(&path.display().to_string(), &bytes)
        .map_err(LoadError::Invalid)
}

/// Reads at most one byte more than the size limit, so a huge file is refused cheaply.
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(u64::try_from(cascade_spec::MAX_FILE_BYTES).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Loads a pipeline for a command that needs a valid one; reports problems on stderr.
pub fn load_or_report(path: &Path) -> Result<Pipeline, crate::Outcome> {
    match load(path) {
        Ok(p) => Ok(p),
        Err(LoadError::Io(e)) => {
            output::error(&format!("cannot read {}: {e}", path.display()));
            Err(crate::Outcome::Usage)
        }
        Err(LoadError::Invalid(errors)) => {
            output::note(&output::render(&errors));
            output::error(&format!(
                "{} is not a valid pipeline ({} problem{}); run `cascade validate {}` after fixing",
                path.display(),
                errors.diagnostics.len(),
                if errors.diagnostics.len() == 1 {
                    ""
                } else {
                    "s"
                },
                path.display()
            ));
            Err(crate::Outcome::Failure)
        }
    }
}
