//! `cascade changed --base REF [--head REF] [--pattern GLOB]`: changed packages (or files)
//! as a JSON list, for `outputs: { packages: stdout-json }`.

use crate::output;
use crate::{CliError, CliResult, Outcome};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ref to compare with (e.g. `origin/main`)
    #[arg(long)]
    base: String,
    /// The changed side [default: the working tree]
    #[arg(long)]
    head: Option<String>,
    /// Package directories, e.g. `packages/*`; without it, changed files are listed
    #[arg(long)]
    pattern: Option<String>,
    /// The repository
    #[arg(long, default_value = ".")]
    repo: PathBuf,
}

pub fn run(args: &Args) -> CliResult {
    let files = cascade_git::changed_files(&args.repo, &args.base, args.head.as_deref())
        .map_err(|e| CliError::caused(Outcome::Failure, &e))?;
    let list = match &args.pattern {
        None => files,
        Some(p) => cascade_git::changed_packages(&files, p)
            .map_err(|e| CliError::caused(Outcome::Usage, &e))?,
    };
    output::json(&serde_json::to_value(list)?);
    Ok(Outcome::Success)
}
