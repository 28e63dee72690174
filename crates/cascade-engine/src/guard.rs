//! Tasks end with the engine's process, however it ends: even `kill -9` of `cascade run`,
//! which no signal handler sees.
//!
//! Every attempt runs in its own process group (so a stop reaches its children and
//! grandchildren, and the terminal's Ctrl-C does not). The groups alive right now are
//! kept here, and mirrored to a *guard*: one small `/bin/sh` per engine process, in a
//! process group of its own, reading `+PGID` and `-PGID` lines on its stdin. Only this
//! process holds the other end of that pipe (it is close-on-exec, so no task inherits
//! it), so when this process dies by any means the kernel closes it, the guard reads end
//! of file, and SIGKILLs every group still registered, then exits. A normal end has
//! released every group first, so the guard kills nothing.
//!
//! A pipe and a shell rather than `PR_SET_PDEATHSIG`: that needs code between `fork` and
//! `exec` (`unsafe` here), fires when the spawning *thread* ends, and reaches only the
//! process it is set on, not the job's children. The sandbox (`bwrap --die-with-parent`
//! and a PID namespace) has the same guarantee on its own; the guard costs it nothing.
//!
//! Not covered: a daemon that left its group (`setsid`) while the engine was killed (the
//! end-of-attempt sweep of [`crate::reaper`] stops those on every other path), a
//! container, which podman runs outside our groups, and a daemon a *warm* Python task
//! forks without exec'ing (`os.fork(); os.setsid()`): the sweep finds an attempt's
//! processes by the tracking marker in `/proc/PID/environ`, which a forked interpreter
//! does not have (its `os.environ` changes are not there); `cascade run --cold` covers it.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Mutex;

/// The guard's program: keeps the set of live groups; at end of file kills them. Group
/// ids are checked to be digits; nothing read ever becomes shell text.
const SCRIPT: &str = r#"trap '' INT HUP
live=' '
while read -r op pg; do
  case $pg in ''|*[!0-9]*) continue ;; esac
  case $op in
    +) live="$live$pg " ;;
    -) case $live in *" $pg "*) live="${live%% $pg *} ${live#* $pg }" ;; esac ;;
  esac
done
for pg in $live; do kill -s KILL -- "-$pg" 2>/dev/null; done
"#;

struct Live {
    groups: BTreeSet<i32>,
    guard: Option<(Child, ChildStdin)>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    groups: BTreeSet::new(),
    guard: None,
});

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers a task's process group: it dies with this process from now on.
pub fn register(pgid: Pid) {
    let mut live = live();
    live.groups.insert(pgid.as_raw());
    tell(&mut live, '+', pgid.as_raw());
}

/// Forgets a group that was killed (and so may be reused by another one later).
pub fn release(pgid: Pid) {
    let mut live = live();
    if live.groups.remove(&pgid.as_raw()) {
        tell(&mut live, '-', pgid.as_raw());
    }
}

/// SIGKILLs every registered group now (a second Ctrl-C, before exiting).
pub fn kill_all() {
    for &pgid in &live().groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Writes one line to the guard; a guard that is gone (killed by someone) is started
/// again and told every live group.
fn tell(live: &mut Live, op: char, pgid: i32) {
    if let Some((_, stdin)) = &mut live.guard
        && writeln!(stdin, "{op} {pgid}").is_ok()
    {
        return;
    }
    if let Some((mut old, stdin)) = live.guard.take() {
        drop(stdin);
        let _ = old.wait();
    }
    let Some((child, mut stdin)) = start() else {
        return;
    };
    let mut all = String::new();
    for g in &live.groups {
        let _ = writeln!(all, "+ {g}");
    }
    if stdin.write_all(all.as_bytes()).is_ok() {
        live.guard = Some((child, stdin));
    }
}

/// Starts the guard: its own process group (the terminal's signals miss it), an empty
/// environment, no output.
fn start() -> Option<(Child, ChildStdin)> {
    use std::os::unix::process::CommandExt as _;
    let mut command = crate::process::new_std_command("/bin/sh");
    command
        .args(["-c", SCRIPT])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // One of ours: the orphan sweep never touches it.
    let mut child = crate::reaper::spawn_own(|| command.spawn(), |c| Some(c.id())).ok()?;
    let stdin = child.stdin.take()?;
    Some((child, stdin))
}

#[cfg(test)]
mod tests {
    use super::SCRIPT;
    use crate::process::new_std_command;
    use std::io::Write;
    use std::process::Stdio;

    /// The script against real groups: what was released survives the end of its input,
    /// what is still registered is killed.
    #[test]
    fn at_end_of_input_the_guard_kills_the_groups_still_registered() {
        let spawn = || {
            std::os::unix::process::CommandExt::process_group(new_std_command("sleep").arg("30"), 0)
                .spawn()
                .unwrap()
        };
        let (mut kept, mut released, mut registered) = (spawn(), spawn(), spawn());
        let mut guard = new_std_command("/bin/sh")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = guard.stdin.take().unwrap();
        write!(
            stdin,
            "+ {r}\n+ {g}\n+ 1x; touch pwned\n- {r}\n",
            r = released.id(),
            g = registered.id()
        )
        .unwrap();
        drop(stdin);
        assert!(guard.wait().unwrap().success());
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&registered.wait().unwrap()),
            Some(9)
        );
        // Not registered, or released: alive.
        for child in [&mut kept, &mut released] {
            assert!(child.try_wait().unwrap().is_none());
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
