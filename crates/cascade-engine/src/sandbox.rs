//! Job isolation with bubblewrap (`bwrap`): turns one attempt's command into the `bwrap`
//! command that runs it in namespaces of its own.
//!
//! What a sandboxed job sees: the system read-only (`/usr` and the merged-usr links,
//! a short list of `/etc` files a job needs to run `sh`, `git` and TLS clients), a
//! private `/tmp`, `/proc` of its own PID namespace, a minimal `/dev`, its workspace and
//! its run directory (read-write, at the same paths as outside, so a git worktree's
//! `.git` file and `$CASCADE_OUTPUT` stay valid), `HOME` at `/home/cascade`, the running
//! `cascade` binary at `/opt/cascade/bin/cascade`, and whatever the admin config binds.
//! Nothing else of the host's file system exists inside: not the data dir's database,
//! not the config or the secrets file, not another run's directory.
//!
//! The PID namespace means a job cannot see or signal anything outside it, and when the
//! job's first process ends the kernel kills everything left in the namespace (daemons
//! that called `setsid` included). `--die-with-parent` ends the sandbox when the process
//! that started it (the engine) dies, so a killed worker leaves no orphan job behind.
//!
//! As root, `bwrap` runs as root (it needs no user namespace then, and can reach paths
//! only root may traverse, such as a data dir of mode 0700) and keeps only the
//! capabilities to change identity; the job itself is started through `setpriv` as the
//! configured unprivileged user, with no capabilities and `no_new_privs`. As any other
//! user, `bwrap` makes an unprivileged user namespace and the job keeps that user.

use crate::error::EngineError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where `HOME` is inside the sandbox.
pub const HOME: &str = "/home/cascade";
/// Where the running `cascade` binary is inside the sandbox (jobs call `cascade …`).
pub const CASCADE_BIN: &str = "/opt/cascade/bin";
/// `PATH` inside the sandbox: only what is mounted.
pub const PATH: &str =
    "/opt/cascade/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Files and directories of `/etc` a job gets (read-only, when the host has them): users
/// and groups (for `id`, `git`, `ssh`), name resolution, TLS roots, the dynamic linker's
/// cache, time zone, Debian's alternatives (`awk`, `editor`…), system-wide git config.
/// Everything else of `/etc` (`shadow`, `ssh` host keys, `cascade/`, package manager
/// credentials like `npmrc` and `pip.conf`) is absent.
const ETC: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "hostname",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "crypto-policies",
    "gitconfig",
    "os-release",
    "debian_version",
    "mime.types",
    "terminfo",
    "shells",
    "inputrc",
];

/// Top-level system directories that are links into `/usr` on merged-usr systems and
/// real directories elsewhere.
const SYSTEM_DIRS: &[&str] = &["bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/// A user and group id to run jobs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// One extra path of the host, mounted at the same path inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub path: PathBuf,
    pub writable: bool,
}

/// How jobs are isolated; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The `bwrap` program (absolute).
    pub bwrap: PathBuf,
    /// Started as root: the user jobs run as, and `setpriv` (absolute) that switches to it.
    pub drop_to: Option<(Ids, PathBuf)>,
    /// Share the host's network (jobs fetch dependencies, and reach `CASCADE_SERVER`).
    pub network: bool,
    /// Paths the admin config shares with every job (caches, tool directories), and
    /// what the caller adds per run (a worktree's repository).
    pub binds: Vec<Bind>,
    /// The running `cascade` binary, mounted at [`CASCADE_BIN`]`/cascade`.
    pub cascade: Option<PathBuf>,
    /// Whether `bwrap` itself runs as root (no user namespace, capabilities dropped).
    pub as_root: bool,
}

impl Sandbox {
    /// A sandbox for this process: `bwrap` found on `path`; when `run_as` is given and
    /// this process is root, jobs run as that user (a name or a numeric uid).
    pub fn new(path: Option<&std::ffi::OsStr>, run_as: Option<&str>) -> Result<Self, EngineError> {
        let bwrap = find("bwrap", path).ok_or(EngineError::NoBwrap)?;
        let as_root = nix::unistd::geteuid().is_root();
        let drop_to = match (as_root, run_as) {
            (true, Some(user)) => {
                let ids = lookup(user)?;
                let setpriv = find("setpriv", path).ok_or(EngineError::NoSetpriv)?;
                (ids.uid != 0).then_some((ids, setpriv))
            }
            _ => None,
        };
        Ok(Self {
            bwrap,
            drop_to,
            network: true,
            binds: Vec::new(),
            cascade: std::env::current_exe().ok(),
            as_root,
        })
    }

    /// A sandbox as the admin config's `[sandbox]` table says: its network choice and
    /// binds; `drop_root` (the server tier) runs jobs as its `user` when we are root.
    pub fn configured(
        settings: &cascade_spec::config::SandboxSettings,
        path: Option<&std::ffi::OsStr>,
        drop_root: bool,
    ) -> Result<Self, EngineError> {
        let mut sandbox = Self::new(path, drop_root.then_some(settings.user.as_str()))?;
        sandbox.network = settings.network;
        sandbox.binds = settings
            .bind
            .iter()
            .map(|p| (p, true))
            .chain(settings.read_only.iter().map(|p| (p, false)))
            .map(|(path, writable)| Bind {
                path: path.into(),
                writable,
            })
            .collect();
        Ok(sandbox)
    }

    /// The ids jobs run as, if they differ from this process's.
    pub fn user(&self) -> Option<Ids> {
        self.drop_to.as_ref().map(|(ids, _)| *ids)
    }

    /// The `bwrap` command that runs `argv` in `cwd`, with `writable` (the workspace and
    /// the run directory) mounted read-write at their own paths and `home` at [`HOME`].
    pub fn wrap(
        &self,
        argv: &[OsString],
        cwd: &Path,
        writable: &[&Path],
        home: &Path,
    ) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![self.bwrap.clone().into_os_string()];
        let mut push = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
            out.extend(args.iter().map(|a| a.as_ref().to_owned()));
        };
        push(&[
            &"--unshare-ipc",
            &"--unshare-pid",
            &"--unshare-uts",
            &"--unshare-cgroup-try",
            &"--die-with-parent",
            // A job must not reach the controlling terminal of whoever started the
            // engine (TIOCSTI injects keystrokes into it).
            &"--new-session",
        ]);
        if !self.as_root {
            push(&[&"--unshare-user"]);
        }
        if !self.network {
            push(&[&"--unshare-net"]);
        }
        push(&[&"--ro-bind", &"/usr", &"/usr"]);
        for dir in SYSTEM_DIRS {
            let host = Path::new("/").join(dir);
            match std::fs::read_link(&host) {
                Ok(target) => push(&[&"--symlink", &target, &host]),
                Err(_) if host.is_dir() => push(&[&"--ro-bind", &host, &host]),
                Err(_) => {}
            }
        }
        for name in ETC {
            let host = Path::new("/etc").join(name);
            push(&[&"--ro-bind-try", &host, &host]);
        }
        push(&[
            &"--proc",
            &"/proc",
            &"--dev",
            &"/dev",
            &"--perms",
            &"01777",
            &"--tmpfs",
            &"/tmp",
            &"--perms",
            &"01777",
            &"--tmpfs",
            &"/var/tmp",
        ]);
        let mut mounts = Mounts::default();
        // Outer paths first: a bind inside another must come after it, or it is hidden.
        let mut writable = writable.to_vec();
        writable.sort_by_key(|p| p.components().count());
        for path in writable {
            mounts.bind("--bind", path, path, &mut out);
        }
        mounts.bind("--bind", home, Path::new(HOME), &mut out);
        for bind in &self.binds {
            let mode = if bind.writable { "--bind" } else { "--ro-bind" };
            mounts.bind(mode, &bind.path, &bind.path, &mut out);
        }
        if let Some(exe) = &self.cascade {
            let inside = Path::new(CASCADE_BIN).join("cascade");
            mounts.bind("--ro-bind", exe, &inside, &mut out);
        }
        out.extend(["--chdir".into(), cwd.as_os_str().to_owned()]);
        let mut push = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
            out.extend(args.iter().map(|a| a.as_ref().to_owned()));
        };
        match &self.drop_to {
            Some((ids, setpriv)) => {
                // Only what `setpriv` needs to switch user; it drops these too.
                push(&[
                    &"--cap-drop",
                    &"ALL",
                    &"--cap-add",
                    &"CAP_SETUID",
                    &"--cap-add",
                    &"CAP_SETGID",
                    &"--cap-add",
                    &"CAP_SETPCAP",
                    &"--",
                    setpriv,
                    &format!("--reuid={}", ids.uid),
                    &format!("--regid={}", ids.gid),
                    &"--clear-groups",
                    &"--inh-caps=-all",
                    &"--bounding-set=-all",
                    &"--no-new-privs",
                    &"--",
                ]);
            }
            None if self.as_root => push(&[&"--cap-drop", &"ALL", &"--"]),
            None => push(&[&"--"]),
        }
        out.extend(argv.iter().cloned());
        out
    }
}

/// The mounts made so far, so that each new one's missing parents are made first.
#[derive(Default)]
struct Mounts {
    /// Destinations of host binds: everything below them exists.
    binds: Vec<PathBuf>,
    /// Directories made inside the sandbox.
    made: std::collections::BTreeSet<PathBuf>,
}

impl Mounts {
    /// Mount points made before the binds: the system binds, and empty file systems
    /// (where only the mount point itself exists).
    const SYSTEM: &[&str] = &["/usr", "/proc", "/dev", "/tmp", "/var/tmp"];

    /// `mode SOURCE DEST`, after `--dir` for each parent of `dest` that does not exist
    /// yet: bwrap would make them itself, but with mode 0700, which a job running as
    /// another user cannot walk through.
    fn bind(&mut self, mode: &str, source: &Path, dest: &Path, out: &mut Vec<OsString>) {
        let mut parents: Vec<&Path> = dest
            .ancestors()
            .skip(1)
            .take_while(|p| p.parent().is_some())
            .collect();
        parents.reverse();
        for parent in parents {
            let exists = self.made.contains(parent)
                || Self::SYSTEM.iter().any(|m| Path::new(m) == parent)
                || self.binds.iter().any(|b| parent.starts_with(b))
                || parent.starts_with("/usr");
            if !exists {
                out.extend(["--perms".into(), "0755".into(), "--dir".into()]);
                out.push(parent.as_os_str().to_owned());
                self.made.insert(parent.to_owned());
            }
        }
        out.extend([
            mode.into(),
            source.as_os_str().to_owned(),
            dest.as_os_str().to_owned(),
        ]);
        self.binds.push(dest.to_owned());
    }
}

/// A user name or numeric uid → its uid and primary gid.
fn lookup(user: &str) -> Result<Ids, EngineError> {
    let found = match user.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(user),
    };
    match found {
        Ok(Some(u)) => Ok(Ids {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        // A numeric uid without a passwd entry is still a user: its own number as group.
        _ => match user.parse::<u32>() {
            Ok(uid) => Ok(Ids { uid, gid: uid }),
            Err(_) => Err(EngineError::UnknownUser(user.to_owned())),
        },
    }
}

/// A program on `path`, as an absolute path.
fn find(program: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let found = PathBuf::from(crate::process::resolve(program, path));
    found.is_absolute().then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(as_root: bool, drop_to: Option<Ids>) -> Sandbox {
        Sandbox {
            bwrap: "/usr/bin/bwrap".into(),
            drop_to: drop_to.map(|ids| (ids, PathBuf::from("/usr/bin/setpriv"))),
            network: true,
            binds: vec![Bind {
                path: "/srv/cache".into(),
                writable: true,
            }],
            cascade: Some("/build/cascade".into()),
            as_root,
        }
    }

    fn words(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The value after each occurrence of `flag` (pairs for the two-argument flags).
    fn after(argv: &[String], flag: &str, n: usize) -> Vec<Vec<String>> {
        argv.iter()
            .enumerate()
            .filter(|(_, a)| *a == flag)
            .map(|(i, _)| argv[i + 1..=i + n].to_vec())
            .collect()
    }

    #[test]
    fn a_root_sandbox_runs_the_job_as_the_user_with_only_its_own_paths() {
        let ids = Ids {
            uid: 65534,
            gid: 65534,
        };
        let argv = words(&sandbox(true, Some(ids)).wrap(
            &["sh".into(), "-ec".into(), "id".into()],
            Path::new("/data/runs/r1/workspace"),
            &[
                Path::new("/data/runs/r1/workspace"),
                Path::new("/data/runs/r1"),
            ],
            Path::new("/data/runs/r1/home"),
        ));
        assert_eq!(argv[0], "/usr/bin/bwrap");
        for flag in [
            "--unshare-pid",
            "--unshare-ipc",
            "--die-with-parent",
            "--new-session",
        ] {
            assert!(argv.contains(&flag.to_owned()), "{flag}: {argv:?}");
        }
        // Root needs no user namespace; the network is shared unless configured.
        assert!(!argv.contains(&"--unshare-user".to_owned()));
        assert!(!argv.contains(&"--unshare-net".to_owned()));
        let rw = after(&argv, "--bind", 2);
        assert_eq!(
            rw,
            [
                ["/data/runs/r1", "/data/runs/r1"],
                ["/data/runs/r1/workspace", "/data/runs/r1/workspace"],
                ["/data/runs/r1/home", HOME],
                ["/srv/cache", "/srv/cache"],
            ]
        );
        // Read-only: the system, /etc files one by one, the cascade binary.
        let ro = after(&argv, "--ro-bind", 2);
        assert_eq!(ro[0], ["/usr", "/usr"]);
        assert!(ro.contains(&vec![
            "/build/cascade".to_owned(),
            "/opt/cascade/bin/cascade".to_owned()
        ]));
        let etc: Vec<String> = after(&argv, "--ro-bind-try", 2)
            .into_iter()
            .map(|p| p[0].clone())
            .collect();
        assert!(etc.contains(&"/etc/passwd".to_owned()) && etc.contains(&"/etc/ssl".to_owned()));
        assert!(
            !etc.iter()
                .any(|p| p == "/etc" || p.contains("shadow") || p.contains("ssh")),
            "{etc:?}"
        );
        // Nothing else of the host is mounted: no `/`, no data dir, no /home.
        assert!(
            !rw.iter()
                .chain(&ro)
                .any(|p| p[0] == "/" || p[0] == "/data" || p[0] == "/home"),
            "{argv:?}"
        );
        assert_eq!(after(&argv, "--tmpfs", 1), [["/tmp"], ["/var/tmp"]]);
        // The parents of what is bound are made walkable for the job's user (bwrap's
        // own would be 0700), once each, and never inside a host path.
        let dirs: Vec<String> = after(&argv, "--dir", 1)
            .into_iter()
            .map(|d| d[0].clone())
            .collect();
        assert_eq!(
            dirs,
            [
                "/data",
                "/data/runs",
                "/home",
                "/srv",
                "/opt",
                "/opt/cascade",
                "/opt/cascade/bin"
            ]
        );
        for (i, a) in argv.iter().enumerate().filter(|(_, a)| *a == "--dir") {
            assert_eq!(argv[i - 2..i], ["--perms", "0755"], "{a}");
        }
        assert_eq!(after(&argv, "--chdir", 1), [["/data/runs/r1/workspace"]]);
        // The job starts through setpriv as 65534, then the command, unchanged.
        let end = argv.iter().position(|a| a == "/usr/bin/setpriv").unwrap();
        assert_eq!(argv[end - 1], "--");
        assert_eq!(
            argv[end + 1..],
            [
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
                "sh",
                "-ec",
                "id"
            ]
        );
    }

    #[test]
    fn an_unprivileged_sandbox_uses_a_user_namespace_and_no_setpriv() {
        let mut s = sandbox(false, None);
        s.network = false;
        let argv = words(&s.wrap(
            &["/usr/bin/true".into()],
            Path::new("/w"),
            &[Path::new("/w")],
            Path::new("/w/.home"),
        ));
        assert!(argv.contains(&"--unshare-user".to_owned()));
        assert!(argv.contains(&"--unshare-net".to_owned()));
        assert!(
            !argv
                .iter()
                .any(|a| a.contains("setpriv") || a == "--cap-drop")
        );
        assert_eq!(argv[argv.len() - 2..], ["--", "/usr/bin/true"]);
    }

    #[test]
    fn root_without_another_user_drops_every_capability() {
        let argv = words(&sandbox(true, None).wrap(
            &["/usr/bin/true".into()],
            Path::new("/w"),
            &[],
            Path::new("/h"),
        ));
        assert_eq!(
            argv[argv.len() - 4..],
            ["--cap-drop", "ALL", "--", "/usr/bin/true"]
        );
    }

    #[test]
    fn users_are_found_by_name_or_number() {
        assert_eq!(lookup("0").unwrap(), Ids { uid: 0, gid: 0 });
        assert_eq!(lookup("root").unwrap(), Ids { uid: 0, gid: 0 });
        assert_eq!(
            lookup("4242424").unwrap(),
            Ids {
                uid: 4_242_424,
                gid: 4_242_424
            }
        );
        assert!(matches!(
            lookup("no-such-user-x"),
            Err(EngineError::UnknownUser(_))
        ));
    }
}
