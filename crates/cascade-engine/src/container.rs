//! `--containers`: a job with `image:` runs in podman, the workspace bound at
//! `/workspace`. Values never appear on podman's command line: each variable is passed by
//! name (`--env NAME`), and podman copies it from its own environment.

use crate::engine::Options;
use cascade_spec::model::Shell;
use std::ffi::OsString;
use std::path::Path;

/// The container name of a task: unique per run and task, safe for podman.
pub fn name(run_id: &str, task: &str) -> String {
    let task: String = task
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("cascade-{run_id}-{}", task.trim_matches('-'))
}

/// Where the run directory appears inside the container.
const RUN_DIR: &str = "/cascade-run";

/// The podman command line for one attempt.
pub fn argv(
    image: &str,
    shell: Shell,
    script: &str,
    job_env: &[(OsString, OsString)],
    output_file: &Path,
    name: &str,
    options: &Options,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = [
        "podman",
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        "--network",
        "host",
        "--pull",
        "never",
        "--workdir",
        "/workspace",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    // A name, so a stopped attempt's container can be removed: it is not in our
    // process group, and killing the podman client does not stop it.
    argv.push("--name".into());
    argv.push(name.into());
    let mut volume = OsString::from("--volume=");
    volume.push(options.workspace.as_os_str());
    volume.push(":/workspace");
    argv.push(volume);
    let mut run_dir = OsString::from("--volume=");
    run_dir.push(options.run_dir.as_os_str());
    run_dir.push(format!(":{RUN_DIR}"));
    argv.push(run_dir);
    for (name, _) in job_env {
        let name = name.to_string_lossy();
        match name.as_ref() {
            "CASCADE_OUTPUT" | "CASCADE_WORKSPACE" => {}
            _ => {
                argv.push("--env".into());
                argv.push(name.as_ref().into());
            }
        }
    }
    let file = output_file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    argv.push("--env".into());
    argv.push(format!("CASCADE_OUTPUT={RUN_DIR}/{file}").into());
    argv.push("--env".into());
    argv.push("CASCADE_WORKSPACE=/workspace".into());
    argv.push(image.into());
    argv.push(shell.program().into());
    argv.push("-ec".into());
    argv.push(script.into());
    argv
}
