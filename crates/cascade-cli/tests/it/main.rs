//! Integration tests of the `cascade` binary: real processes, real files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::format_push_string,
    reason = "test helpers: a panic is the failure report"
)]
#![expect(
    clippy::disallowed_methods,
    reason = "tests start the tools they check against (the cascade binary, git, openssl, curl, pgrep, cargo) directly; only the product's own spawns must go through its builders"
)]

mod at_commit;
mod auth;
mod cli;
mod exposure;
mod gitops;
mod gitops_argo;
mod grants;
mod injection;
mod isolation;
mod layering;
mod limits;
mod plan;
mod python;
mod run;
mod screens;
mod serve;
mod summary;
mod telemetry;
mod telemetry_socket;
mod validate;
mod workers;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn cascade() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cascade"));
    cmd.current_dir(root()).env("NO_COLOR", "1");
    cmd
}

/// Reads `stream` (a child's stdout or stderr) line by line until a line contains
/// `marker`, then sends the child SIGINT, as Ctrl-C would; returns what it read.
pub fn interrupt_at(
    child: &std::process::Child,
    stream: &mut impl std::io::BufRead,
    marker: &str,
) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stream.read_line(&mut line).unwrap() > 0,
            "the run ended before `{marker}`: {seen}"
        );
        seen.push_str(&line);
        if line.contains(marker) {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    seen
}

/// Runs `cmd` and asserts it succeeded, showing its stderr when it did not.
pub fn succeeded(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Exit code, stdout and stderr of a run, as one snapshot-friendly text.
pub fn transcript(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Snapshots of runs with what changes from run to run (ids, times) filtered.
#[macro_export]
macro_rules! assert_run_snapshot {
    ($value:expr) => {
        insta::with_settings!({filters => vec![
            (r"\b[0-9a-z]{8,11}-[0-9a-z]{1,6}\b", "[run-id]"),
            (r"\b\d+\.\d+s\b", "[time]"),
        ]}, {
            insta::assert_snapshot!($value);
        });
    };
}
