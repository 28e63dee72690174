//! `git` for tests that make real repositories: a fixed identity, `main` as the first
//! branch, no signing, whatever the machine's git config says.

use std::path::Path;
use std::process::Command;

/// Runs `git ARGS` in `dir`; its stdout, trimmed.
///
/// # Panics
/// When git cannot run or fails (with its stderr).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git ({e}); install it (apt-get install git)"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
