//! Stops what a task leaves behind when it runs without the sandbox (`cascade run`
//! without `--sandbox`): daemons that called `setsid` leave the task's process group, so
//! killing the group misses them.
//!
//! The engine's process becomes a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process
//! whose parent dies is handed to it instead of to init. Every task gets a marker in its
//! environment ([`MARKER`], like GitHub's `RUNNER_TRACKING_ID`), which children inherit.
//! At the end of each attempt, every child of this process that the engine did not start
//! itself and whose environment carries the attempt's marker is killed with its process
//! group, and reaped; killed members of the task's group are reaped too. A job that
//! clears the marker on purpose escapes this; the sandbox's PID namespace does not have
//! that hole.
//!
//! The cost is one read of the main thread's `/proc/…/children` per attempt when the
//! task left nothing behind.

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::sync::Mutex;
use std::time::Duration;

/// The environment variable holding a task's marker.
pub const MARKER: &str = "CASCADE_TRACKING_ID";

/// Children this process started itself (attempts and clean-up commands): the runtime
/// waits for those, so the sweep must never reap them. The lock is held from spawn to
/// registration, so a sweep never sees a child of ours it does not know.
static OURS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Makes this process the reaper of its orphaned descendants (Linux; elsewhere nothing).
pub fn adopt_orphans() {
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
}

/// Spawns with `spawn` and registers the child as one of ours, under the lock.
pub fn spawn_own<T>(
    spawn: impl FnOnce() -> std::io::Result<T>,
    pid: impl Fn(&T) -> Option<u32>,
) -> std::io::Result<T> {
    let mut ours = OURS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let child = spawn()?;
    if let Some(p) = pid(&child).and_then(|p| i32::try_from(p).ok()) {
        ours.insert(p);
    }
    Ok(child)
}

/// Forgets a child of ours once the runtime has waited for it.
pub fn disown(pid: i32) {
    OURS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&pid);
}

/// Kills and reaps every orphan carrying `marker`, and reaps dead members of `group` (the
/// attempt's process group, already killed). Returns how many marked orphans were found.
pub async fn sweep(marker: &OsStr, group: Option<Pid>) -> usize {
    let needle = {
        let mut n = MARKER.as_bytes().to_vec();
        n.push(b'=');
        n.extend_from_slice(marker.as_encoded_bytes());
        n.push(0);
        n
    };
    let mut found = 0;
    // An orphan killed here hands its own children to us: look again, a few times.
    for _ in 0..16 {
        let strays: Vec<Stray> = {
            let ours = OURS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            children()
                .into_iter()
                .filter(|pid| !ours.contains(pid))
                .filter_map(|pid| Stray::read(pid, &needle, group))
                .collect()
        };
        if strays.is_empty() {
            break;
        }
        let mut killed = Vec::new();
        for stray in strays {
            match stray {
                Stray::Dead(pid) => {
                    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                }
                Stray::Marked { pid, pgid } => {
                    found += 1;
                    // Its whole group (a daemon's own, after setsid), then itself.
                    if pgid.as_raw() > 1 {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                    let _ = kill(pid, Signal::SIGKILL);
                    killed.push(pid);
                }
            }
        }
        if killed.is_empty() {
            break;
        }
        for pid in killed {
            reap(pid).await;
        }
    }
    found
}

/// Waits (briefly, without blocking the runtime) for a killed orphan to be reaped.
async fn reap(pid: Pid) {
    for _ in 0..2000 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => tokio::time::sleep(Duration::from_millis(1)).await,
            _ => return,
        }
    }
}

/// A child of ours that we did not start.
enum Stray {
    /// Dead and in the killed attempt's group: only needs reaping.
    Dead(Pid),
    /// Alive and carrying the marker: to be killed.
    Marked { pid: Pid, pgid: Pid },
}

impl Stray {
    fn read(pid: i32, needle: &[u8], group: Option<Pid>) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?;
        let leader = Pid::from_raw(fields.nth(1)?.parse().ok()?);
        let pid = Pid::from_raw(pid);
        if state == "Z" || state == "X" {
            // A zombie's environment is gone: it is ours to reap only if it was in the
            // attempt's group (another dead stray may belong to a running task).
            return (Some(leader) == group).then_some(Self::Dead(pid));
        }
        let environ = std::fs::read(format!("/proc/{}/environ", pid.as_raw())).ok()?;
        let marked = environ.starts_with(needle)
            || environ
                .windows(needle.len() + 1)
                .any(|w| w[0] == 0 && &w[1..] == needle);
        marked.then_some(Self::Marked { pid, pgid: leader })
    }
}

/// The pids of the children of this process's main thread: the kernel hands orphans to
/// a subreaper's first live thread, which is the main thread while the process runs
/// (children a runtime thread spawned itself are listed under that thread: those are
/// ours, and not looked at). One small read per attempt.
fn children() -> Vec<i32> {
    let pid = std::process::id();
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}
