//! One attempt of one task: the command builder (cwd, environment, process group), output
//! capture through the masker, timeout and cancellation that kill the whole process group
//! (SIGTERM, then SIGKILL after a grace period), and at the end of the attempt the
//! processes it left behind (the group; outside the sandbox also daemons that left it,
//! see [`crate::reaper`]). Every live group dies with this process ([`crate::guard`]).

use crate::mask::Masker;
use cascade_plan::Stream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// Called with each masked line of output.
pub type LineSink = Arc<dyn Fn(Stream, String) + Send + Sync>;

/// How to start one attempt.
#[derive(Clone)]
pub struct Launch {
    /// The program and its arguments (e.g. `sh -ec SCRIPT` or `podman run …`).
    pub argv: Vec<OsString>,
    /// The complete environment of the process (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    pub masker: Masker,
    /// Keep (masked) stdout for outputs, up to this many bytes.
    pub capture_stdout: usize,
    /// Run after a stopped attempt's group was killed (e.g. `podman rm -f NAME`: the
    /// container is not in our process group).
    pub on_stop: Option<Vec<OsString>>,
    /// The task's marker ([`crate::reaper::MARKER`], also in `env`): at the end, orphans
    /// carrying it are killed. `None` in the sandbox (its PID namespace ends them all).
    pub tracking: Option<OsString>,
    /// `argv` starts `bwrap`: a stop's SIGTERM goes to the job inside (bwrap does not
    /// pass signals on), the SIGKILL to bwrap, whose end ends the sandbox.
    pub sandboxed: bool,
    /// A Python task that may start as a fork of its module's warm runner
    /// ([`crate::warm`]); cold (`argv`) when that cannot be done.
    pub warm: Option<Arc<crate::warm::Pool>>,
}

/// SIGKILLs every live task's process group (a second Ctrl-C, before exiting).
pub fn kill_all() {
    crate::guard::kill_all();
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment may hold secrets: never print it.
        f.debug_struct("Launch")
            .field("argv0", &self.argv.first())
            .field("cwd", &self.cwd)
            .finish_non_exhaustive()
    }
}

/// Finds a program on a `PATH` (as the child would), once per run.
///
/// Spawning by absolute path also lets the standard library use `posix_spawn` instead
/// of `fork` + `exec` (it must fork when the child's `PATH` differs from ours and the
/// program needs a lookup), which is most of the per-task cost of a no-op job.
pub fn resolve(program: &str, path: Option<&std::ffi::OsStr>) -> OsString {
    if program.contains('/') {
        return program.into();
    }
    let Some(path) = path else {
        return program.into();
    };
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map_or_else(|| program.into(), std::path::PathBuf::into_os_string)
}

/// The words of a script that needs no shell: one line of plain words (letters, digits
/// and `_-./=:,+@%`), whose first word is not an assignment or a shell builtin whose
/// behaviour differs from the program of the same name. Like GNU make, such a command
/// is executed directly, which saves starting a shell per task; anything else, and any
/// program not found on `PATH`, goes through the shell as written.
pub fn plain_words(script: &str) -> Option<Vec<&str>> {
    const BUILTINS: &[&str] = &[
        ".", ":", "alias", "bg", "break", "cd", "command", "continue", "echo", "eval", "exec",
        "exit", "export", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf", "pwd",
        "read", "readonly", "return", "set", "shift", "source", "test", "times", "trap", "type",
        "ulimit", "umask", "unalias", "unset", "wait",
    ];
    let script = script.trim();
    let plain = !script.is_empty()
        && script
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-./=:,+@%".contains(c));
    if !plain {
        return None;
    }
    let words: Vec<&str> = script.split(' ').filter(|w| !w.is_empty()).collect();
    let first = *words.first()?;
    (!first.contains('=') && !BUILTINS.contains(&first)).then_some(words)
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut(Duration),
    Cancelled,
    SpawnFailed(String),
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }

    pub fn code(&self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(*c),
            _ => None,
        }
    }

    /// Why the attempt failed, for the task's error field.
    pub fn describe(&self) -> Option<String> {
        match self {
            Exit::Code(0) => None,
            Exit::Code(c) => Some(format!("exited with code {c}")),
            Exit::Signal(s) => Some(format!("killed by signal {s}")),
            Exit::TimedOut(d) => Some(format!(
                "timed out after {}",
                cascade_spec::duration::format(*d)
            )),
            Exit::Cancelled => Some(cascade_plan::TaskState::Cancelled.as_str().to_owned()),
            Exit::SpawnFailed(e) => Some(format!("could not start: {e}")),
        }
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub struct Finished {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub duration: Duration,
}

/// Runs one attempt to the end.
pub async fn run(launch: Launch, on_line: LineSink, cancel: CancellationToken) -> Finished {
    let started = Instant::now();
    if cancel.is_cancelled() {
        return Finished {
            exit: Exit::Cancelled,
            stdout: Vec::new(),
            duration: Duration::ZERO,
        };
    }
    let Some((program, args)) = launch.argv.split_first() else {
        return Finished {
            exit: Exit::SpawnFailed("empty command".to_owned()),
            stdout: Vec::new(),
            duration: Duration::ZERO,
        };
    };
    // The deadline counts from here: a warm start may wait for its fork server to import
    // the module, and neither a cancel nor the timeout waits for that (dropping the start
    // drops the child's go pipe, so a child forked meanwhile exits before running).
    let deadline = launch.timeout.map(|t| tokio::time::Instant::now() + t);
    let until = |deadline: Option<tokio::time::Instant>| async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let begun = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Exit::Cancelled),
        () = until(deadline) => Err(Exit::TimedOut(launch.timeout.unwrap_or_default())),
        begun = start(&launch, program, args, &on_line) => Ok(begun),
    };
    let begun = match begun {
        Ok(begun) => begun,
        Err(exit) => {
            return Finished {
                exit,
                stdout: Vec::new(),
                duration: started.elapsed(),
            };
        }
    };
    let (mut child, (out, err)) = match begun {
        Ok(started) => started,
        Err(e) => {
            return Finished {
                exit: Exit::SpawnFailed(format!("{}: {e}", program.to_string_lossy())),
                stdout: Vec::new(),
                duration: started.elapsed(),
            };
        }
    };
    let pgid = child.group();
    let sleep = until(deadline);
    let mut stopped = false;
    let mut exit = tokio::select! {
        // A stop request wins over an exit that happens at the same moment.
        biased;
        () = cancel.cancelled() => {
            terminate(pgid, &mut child, launch.grace, launch.sandboxed).await;
            stopped = true;
            Exit::Cancelled
        }
        () = sleep => {
            terminate(pgid, &mut child, launch.grace, launch.sandboxed).await;
            stopped = true;
            Exit::TimedOut(launch.timeout.unwrap_or_default())
        }
        exit = child.wait() => exit,
    };
    if cancel.is_cancelled() && !exit.success() {
        exit = Exit::Cancelled;
    }
    clean_up(pgid, launch.tracking.as_deref()).await;
    if let (true, Some(argv)) = (stopped, &launch.on_stop) {
        stop_hook(argv, launch.grace).await;
    }
    let stdout = drain(out, err, launch.grace.max(Duration::from_millis(200))).await;
    Finished {
        exit,
        stdout,
        duration: started.elapsed(),
    }
}

/// The output readers of an attempt.
type Readers = (
    Option<tokio::task::JoinHandle<Vec<u8>>>,
    Option<tokio::task::JoinHandle<Vec<u8>>>,
);

/// Starts an attempt in a process group of its own, registered with [`crate::guard`]:
/// a fork of its module's warm runner for a Python task that can be one, else spawned.
async fn start(
    launch: &Launch,
    program: &OsString,
    args: &[OsString],
    on_line: &LineSink,
) -> std::io::Result<(Proc, Readers)> {
    let forked = match &launch.warm {
        Some(pool) => pool.start(launch, on_line).await,
        None => None,
    };
    if let Some(mut forked) = forked {
        // Registered by the pool, before the child was let run.
        let readers = readers(forked.stdout.take(), forked.stderr.take(), launch, on_line);
        return Ok((Proc::Forked(forked), readers));
    }
    let mut command = command(launch, program, args);
    let mut child = crate::reaper::spawn_own(|| command.spawn(), tokio::process::Child::id)?;
    if let Some(p) = child.id().and_then(|id| i32::try_from(id).ok()) {
        crate::guard::register(Pid::from_raw(p));
    }
    let readers = readers(child.stdout.take(), child.stderr.take(), launch, on_line);
    Ok((Proc::Spawned(child), readers))
}

/// Tasks reading an attempt's stdout (kept up to `capture_stdout`) and stderr.
fn readers<O, E>(out: Option<O>, err: Option<E>, launch: &Launch, on_line: &LineSink) -> Readers
where
    O: tokio::io::AsyncRead + Unpin + Send + 'static,
    E: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let out = out.map(|s| {
        tokio::spawn(pump(
            s,
            Stream::Stdout,
            launch.masker.clone(),
            Arc::clone(on_line),
            launch.capture_stdout,
        ))
    });
    let err = err.map(|s| {
        tokio::spawn(pump(
            s,
            Stream::Stderr,
            launch.masker.clone(),
            Arc::clone(on_line),
            0,
        ))
    });
    (out, err)
}

/// Ends what an attempt left behind: its group (background jobs holding the pipes open,
/// so the readers reach end of file) and, outside the sandbox, daemons that left the
/// group (`setsid`) and were handed to us when their parent died.
async fn clean_up(pgid: Option<Pid>, tracking: Option<&std::ffi::OsStr>) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
        crate::guard::release(pgid);
        crate::reaper::disown(pgid.as_raw());
    }
    if let Some(marker) = tracking {
        crate::reaper::sweep(marker, pgid).await;
    }
}

/// The one way a process is started (`clippy.toml` forbids `Command::new` elsewhere, so
/// a reviewer finds every spawn from here): `program` with stdin from `/dev/null`; the
/// caller adds arguments, cwd, environment and output, as [`command`] does for an
/// attempt. `cascade-git` may not depend on this crate and starts `git` through its own
/// `clone::git`.
pub fn new_command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    #[expect(
        clippy::disallowed_methods,
        reason = "the workspace's process builder: every other spawn goes through here"
    )]
    let mut command = tokio::process::Command::new(program);
    command.stdin(Stdio::null());
    command
}

/// [`new_command`] for a blocking caller (the guard of [`crate::guard`], tests): the same
/// one place, a `std` command.
pub fn new_std_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    #[expect(
        clippy::disallowed_methods,
        reason = "the workspace's process builder: every other spawn goes through here"
    )]
    let mut command = std::process::Command::new(program);
    command.stdin(Stdio::null());
    command
}

/// The command of one attempt: its own process group, only the given environment, no
/// stdin, output piped.
fn command(launch: &Launch, program: &OsString, args: &[OsString]) -> tokio::process::Command {
    let mut command = new_command(program);
    command
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// Waits for the output readers, but only so long: a process that left our group
/// (setsid, a daemon) may hold the pipes open for ever. Returns the kept stdout.
async fn drain(
    out: Option<tokio::task::JoinHandle<Vec<u8>>>,
    err: Option<tokio::task::JoinHandle<Vec<u8>>>,
    limit: Duration,
) -> Vec<u8> {
    let mut stdout = Vec::new();
    if let Some(mut reader) = out {
        match tokio::time::timeout(limit, &mut reader).await {
            Ok(joined) => stdout = joined.unwrap_or_default(),
            Err(_) => reader.abort(),
        }
    }
    if let Some(mut reader) = err
        && tokio::time::timeout(limit, &mut reader).await.is_err()
    {
        reader.abort();
    }
    stdout
}

/// Runs a clean-up command (bounded by the grace period), ignoring its outcome.
async fn stop_hook(argv: &[OsString], grace: Duration) {
    let Some((program, rest)) = argv.split_first() else {
        return;
    };
    let mut command = new_command(program);
    command
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = crate::reaper::spawn_own(|| command.spawn(), tokio::process::Child::id);
    if let Ok(mut child) = child {
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        let _ = tokio::time::timeout(grace.max(Duration::from_secs(15)), child.wait()).await;
        if let Some(pid) = pid {
            crate::reaper::disown(pid);
        }
    }
}

/// A running attempt: a process this engine spawned, or a fork of a warm runner.
enum Proc {
    Spawned(tokio::process::Child),
    Forked(crate::warm::Forked),
}

impl Proc {
    /// The attempt's process group (its leader's pid).
    fn group(&self) -> Option<Pid> {
        match self {
            Proc::Spawned(child) => child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
            Proc::Forked(forked) => Some(forked.pid),
        }
    }

    /// How the attempt's leader ended (cancellation-safe).
    async fn wait(&mut self) -> Exit {
        match self {
            Proc::Spawned(child) => match child.wait().await {
                Ok(s) => s.code().map_or_else(
                    || Exit::Signal(std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)),
                    Exit::Code,
                ),
                Err(e) => Exit::SpawnFailed(e.to_string()),
            },
            Proc::Forked(forked) => forked.wait().await,
        }
    }

    async fn kill(&mut self) {
        match self {
            Proc::Spawned(child) => {
                let _ = child.kill().await;
            }
            Proc::Forked(forked) => forked.kill().await,
        }
    }
}

/// SIGTERM to the group, SIGKILL after the grace period.
async fn terminate(pgid: Option<Pid>, child: &mut Proc, grace: Duration, sandboxed: bool) {
    if let Some(pgid) = pgid {
        if sandboxed {
            // bwrap dies of SIGTERM without passing it on: the job inside gets it first.
            if let Some(job) = sandboxed_job(pgid) {
                let _ = killpg(job, Signal::SIGTERM);
                if tokio::time::timeout(grace, child.wait()).await.is_ok() {
                    return;
                }
            }
            let _ = killpg(pgid, Signal::SIGKILL);
            child.kill().await;
            return;
        }
        let _ = killpg(pgid, Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    child.kill().await;
}

/// The process group of the job inside a sandbox started as `bwrap` (pid `outer`):
/// bwrap's child is the namespace's init, whose child is the job, leader of a session
/// and group of its own (`--new-session`).
fn sandboxed_job(outer: Pid) -> Option<Pid> {
    let first_child = |pid: i32| -> Option<i32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let init = first_child(outer.as_raw())?;
    let job = first_child(init)?;
    nix::unistd::getpgid(Some(Pid::from_raw(job))).ok()
}

/// Reads a stream to its end: masks, splits into lines, keeps up to `keep` bytes.
async fn pump(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    masker: Masker,
    on_line: LineSink,
    keep: usize,
) -> Vec<u8> {
    const MAX_LINE: usize = 64 * 1024;
    let mut kept = Vec::new();
    let mut masking = masker.stream();
    let mut line: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let emit = |bytes: &[u8], line: &mut Vec<u8>, kept: &mut Vec<u8>| {
        if kept.len() < keep {
            let room = keep - kept.len();
            kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        for &b in bytes {
            if b == b'\n' || line.len() >= MAX_LINE {
                let text = String::from_utf8_lossy(line)
                    .trim_end_matches('\r')
                    .to_owned();
                on_line(stream, text);
                line.clear();
                if b == b'\n' {
                    continue;
                }
            }
            line.push(b);
        }
    };
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let safe = masking.push(&buf[..n]);
                emit(&safe, &mut line, &mut kept);
            }
        }
    }
    let rest = masking.finish();
    emit(&rest, &mut line, &mut kept);
    if !line.is_empty() {
        on_line(
            stream,
            String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_owned(),
        );
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_commands_skip_the_shell() {
        assert_eq!(plain_words("true"), Some(vec!["true"]));
        assert_eq!(
            plain_words("  make -j4 all  "),
            Some(vec!["make", "-j4", "all"])
        );
        for script in [
            "echo hi",
            "exit 3",
            "cd x",
            "A=1 make",
            "make && true",
            "ls *.rs",
            "echo $HOME",
            "a\nb",
            "x # c",
            "'q'",
            "ls ~",
        ] {
            assert_eq!(plain_words(script), None, "{script}");
        }
    }

    #[test]
    fn resolve_finds_executables_on_path() {
        let sh = resolve("sh", std::env::var_os("PATH").as_deref());
        assert!(std::path::Path::new(&sh).is_absolute(), "{sh:?}");
        assert_eq!(
            resolve("no-such-program-x", std::env::var_os("PATH").as_deref()),
            OsString::from("no-such-program-x")
        );
        assert_eq!(resolve("/bin/sh", None), OsString::from("/bin/sh"));
    }
}
