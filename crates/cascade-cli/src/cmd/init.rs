//! `cascade init [DIR]`: a starter `ci.yaml` and a commented `cascade.toml` (the
//! generated reference of every config field, set to the defaults), both valid as
//! written. Existing files are kept unless `--force`.

use crate::output;
use crate::{CliError, CliResult, Outcome};
use cascade_spec::cascade_toml::{self, Examples};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the files (`.`: the current directory)
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Overwrite ci.yaml and cascade.toml if they exist
    #[arg(long)]
    force: bool,
}

/// The starter pipeline: a build, a test matrix after it, and a step that always runs.
pub const STARTER_PIPELINE: &str = r#"# A starter pipeline. Check it with `cascade validate ci.yaml`, see what it would do
# with `cascade plan ci.yaml`, run it here with `cascade run ci.yaml`.
name: starter
on:
  push: { branches: [main] }
  pull_request: {}
  workflow_dispatch:
    inputs:
      greeting: { default: "hello", description: "what build says" }
env:
  GREETING: ${{ inputs.greeting }}
jobs:
  build:
    run: |
      echo "$GREETING from build"
      echo "version=0.1.0" >> "$CASCADE_OUTPUT"
    outputs: { version: file }
  test:
    needs: [build]
    matrix: { suite: [unit, integration] }
    run: echo "testing ${{ matrix.suite }} of version ${{ needs.build.outputs.version }}"
    timeout: 10m
    retry: { limit: 1, backoff: 2s }
  report:
    needs: [test]
    if: always()
    run: echo "tests ${{ needs.test.result }}"
"#;

pub fn run(args: &Args) -> CliResult {
    // `ci.yaml`, not `./ci.yaml`, in messages about the current directory.
    let at = |name: &str| {
        if args.dir == std::path::Path::new(".") {
            PathBuf::from(name)
        } else {
            args.dir.join(name)
        }
    };
    let files = [
        ("ci.yaml", STARTER_PIPELINE.to_owned()),
        ("cascade.toml", cascade_toml::annotated(Examples::Commented)),
    ];
    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .map(|(name, _)| at(name))
            .filter(|path| path.exists())
            .map(|path| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(CliError::failure(format!(
                "{} already exist{}; nothing was written",
                existing.join(" and "),
                if existing.len() == 1 { "s" } else { "" }
            ))
            .hint("pass --force to overwrite them"));
        }
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", args.dir.display())))?;
    for (name, text) in &files {
        let path = at(name);
        std::fs::write(&path, text)
            .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
        output::note(&format!("wrote {}", path.display()));
    }
    let pipeline = at("ci.yaml");
    output::note(&format!(
        "next: cascade validate {0}, cascade plan {0}, cascade run {0}",
        pipeline.display()
    ));
    Ok(Outcome::Success)
}
