//! `cascade changed --base REF [--head REF] [--pattern GLOB]`: changed packages (or files)
//! as a JSON list, for `outputs: { packages: stdout-json }`.

use crate::Outcome;
use crate::output;
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

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let files = match cascade_git::changed_files(&args.repo, &args.base, args.head.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            output::error(&e.to_string());
            return Ok(Outcome::Failure);
        }
    };
    let list = match &args.pattern {
        None => files,
        Some(p) => match cascade_git::changed_packages(&files, p) {
            Ok(l) => l,
            Err(e) => {
                output::error(&e.to_string());
                return Ok(Outcome::Usage);
            }
        },
    };
    output::json(&serde_json::to_value(list)?);
    Ok(Outcome::Success)
}
