//! Warm Python runners: locally, a Python task's attempt is a fork of an interpreter
//! that already imported the pipeline's module, not a fresh interpreter.
//!
//! A job whose script is `python3 -m cascade.runner` and whose environment names its
//! function (`CSPY_TASK`) is a Python task. When [`crate::Options::warm_python`] is on
//! and the job runs neither in podman nor in the sandbox, its attempts go to a *fork
//! server*: `python3 -m cascade._forkserver --preload MODULE`, one per module, Python
//! program, working directory and job environment (less the variables that differ from
//! task to task: its arguments, its ids, its output file), started on first use. Keying
//! by the environment keeps a warm task equal to a cold one: the module was imported
//! under exactly the variables (secrets included) the task would have imported it under,
//! and a server only ever forks tasks that were granted the same ones.
//!
//! The server's standard input is one end of a socket pair (no socket file, nothing
//! another process can connect to). Per attempt the engine makes the output pipes as for
//! a spawned process, sends the job's complete environment and working directory with
//! the child's stdin (`/dev/null`), stdout, stderr and the read end of a *go* pipe
//! (`SCM_RIGHTS`); the server forks, the child makes its own process group, and the server
//! answers with its pid. The engine registers that group with [`crate::guard`] and only
//! then writes to the go pipe: no task code runs in a group that would outlive the
//! engine. From there the attempt is supervised as a spawned one ([`crate::process`]):
//! output from the pipes, timeouts and cancellation by `killpg`, and the exit status
//! from the server, which reaps the child.
//!
//! Anything that stops the warm path (no server can be started, its module does not
//! import, it died) makes the attempt start cold, as `python3 -m cascade.runner`, which
//! shows the real error in the task's log; a note in that log says so, once per module.
//! The servers end with the run ([`Pool::shutdown`]), with the engine however it ends
//! ([`crate::guard`]), and on their own at end of file on their socket.
//!
//! The protocol's other side, and its messages, are in `python/cascade/_forkserver.py`.

use crate::process::{Exit, Launch, LineSink};
use cascade_plan::Stream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::sync::{OnceCell, mpsc};

/// The script of a Python task (the contract of the Python SDK's lowering).
const SCRIPTS: &[&str] = &["python3 -m cascade.runner", "python -m cascade.runner"];

/// The variable naming a Python task's function.
const TASK_VAR: &str = "CSPY_TASK";

/// Variables that differ between the tasks one server forks: left out of its key and
/// of its own environment (each child gets the task's complete environment).
fn per_task(name: &str) -> bool {
    name.starts_with("CSPY_")
        || name == crate::reaper::MARKER
        || matches!(name, "CASCADE_JOB" | "CASCADE_TASK" | "CASCADE_OUTPUT")
}

/// At most this many servers per run; later keys start cold (a job whose environment
/// differs per item would otherwise start a server per item).
const MAX_SERVERS: usize = 16;

/// How long a server may take to import its module.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// Whether a job's script is the Python runner's entry point.
pub fn is_python_task(script: &str) -> bool {
    SCRIPTS.contains(&script.trim())
}

/// What decides which server forks an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    program: OsString,
    module: String,
    path: Option<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

/// A server once started, or why it could not be.
type Starting = OnceCell<Result<Arc<Server>, String>>;

/// The warm runners of one run.
#[derive(Default)]
pub struct Pool {
    servers: Mutex<HashMap<Key, Arc<Starting>>>,
    /// Modules whose fallback was noted in a task's log already.
    noted: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// A task's attempt forked by a server: its group, its output, its end.
pub struct Forked {
    pub pid: Pid,
    /// The read ends of the child's output (taken by the supervisor).
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    id: u64,
    server: Arc<Server>,
    replies: mpsc::UnboundedReceiver<Reply>,
    exit: Option<Exit>,
}

impl std::fmt::Debug for Forked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forked")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Forked {
    /// The attempt's end, as the server saw it (cancellation-safe).
    pub async fn wait(&mut self) -> Exit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let exit = match self.replies.recv().await {
            Some(Reply::Exit(exit)) => exit,
            Some(Reply::Pid(_) | Reply::Error(_)) | None => {
                Exit::SpawnFailed("the warm Python runner ended before the task did".to_owned())
            }
        };
        self.exit = Some(exit.clone());
        exit
    }

    /// SIGKILLs the attempt's group and waits for the server to report its end.
    pub async fn kill(&mut self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.wait()).await;
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        self.server.forget(self.id);
    }
}

enum Reply {
    Pid(i32),
    Exit(Exit),
    Error(String),
}

/// One fork server.
struct Server {
    pid: Pid,
    child: Mutex<Option<tokio::process::Child>>,
    writer: tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<Reply>>>,
    next: AtomicU64,
    alive: AtomicBool,
}

impl Server {
    fn forget(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    fn stop(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let _ = killpg(self.pid, Signal::SIGKILL);
        crate::guard::release(self.pid);
        if let Some(mut child) = lock(&self.child).take() {
            // Reaped by the runtime (kill_on_drop): never left a zombie.
            let _ = child.start_kill();
        }
        crate::reaper::disown(self.pid.as_raw());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `launch` (a Python task's) as a fork of its module's server, or `None`:
    /// the caller starts it cold.
    pub async fn start(&self, launch: &Launch, on_line: &LineSink) -> Option<Forked> {
        let (key, env) = key(launch)?;
        let module = key.module.clone();
        let cell = {
            let mut servers = lock(&self.servers);
            if !servers.contains_key(&key) && servers.len() >= MAX_SERVERS {
                return None;
            }
            Arc::clone(servers.entry(key.clone()).or_default())
        };
        let server = cell.get_or_init(|| start_server(key)).await;
        let why = match server {
            Ok(server) if server.alive.load(Ordering::SeqCst) => {
                match fork(server, launch, &env).await {
                    Ok(forked) => return Some(forked),
                    Err(why) => {
                        server.alive.store(false, Ordering::SeqCst);
                        why
                    }
                }
            }
            Ok(_) => "its fork server has stopped".to_owned(),
            Err(why) => why.clone(),
        };
        if lock(&self.noted).insert(module.clone()) {
            on_line(
                Stream::Stderr,
                format!(
                    "cascade: no warm Python runner for {module} ({why}); its tasks start a fresh interpreter"
                ),
            );
        }
        None
    }

    /// Stops every server and reaps it (the run has ended: no task of theirs is
    /// running).
    pub async fn shutdown(&self) {
        let servers: Vec<_> = lock(&self.servers).drain().collect();
        for (_, cell) in servers {
            if let Some(Ok(server)) = cell.get() {
                let child = lock(&server.child).take();
                server.stop();
                if let Some(mut child) = child {
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                }
            }
        }
    }
}

/// The server key of a Python task's launch and its complete environment (the last
/// value of each name, as a spawned process gets it), or `None` when it cannot run warm
/// (an interpreter not found on `PATH`, no task description, or a name or value that is
/// not UTF-8).
fn key(launch: &Launch) -> Option<(Key, Vec<(String, String)>)> {
    // The interpreter was found on PATH and is started directly (not through a shell).
    let [program, dash_m, module] = launch.argv.as_slice() else {
        return None;
    };
    if dash_m != "-m" || module != "cascade.runner" {
        return None;
    }
    let mut env: Vec<(String, String)> = Vec::with_capacity(launch.env.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in &launch.env {
        let (k, v) = (k.to_str()?.to_owned(), v.to_str()?.to_owned());
        if let Some(&i) = index.get(&k) {
            env[i].1 = v;
        } else {
            index.insert(k.clone(), env.len());
            env.push((k, v));
        }
    }
    let spec = env.iter().find(|(k, _)| k == TASK_VAR)?.1.as_str();
    let (module, path) = module_of(spec)?;
    let mut shared: Vec<(String, String)> =
        env.iter().filter(|(k, _)| !per_task(k)).cloned().collect();
    shared.sort();
    let key = Key {
        program: program.clone(),
        module,
        path,
        cwd: launch.cwd.clone(),
        env: shared,
    };
    Some((key, env))
}

/// The module part of a task description's entry (`path/file.py` or `package.module`)
/// and its `path`, from the JSON text or its `{"b64": …}` form.
fn module_of(spec: &str) -> Option<(String, Option<String>)> {
    use base64::Engine as _;
    let mut value: Value = serde_json::from_str(spec).ok()?;
    if let Some(b64) = value.get("b64").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        value = serde_json::from_slice(&bytes).ok()?;
    }
    let entry = value.get("entry")?.as_str()?;
    let (module, qualname) = entry.rsplit_once(':')?;
    if module.is_empty() || qualname.is_empty() {
        return None;
    }
    let path = value.get("path").and_then(Value::as_str).map(str::to_owned);
    Some((module.to_owned(), path))
}

/// Starts the server of `key` and waits until it has imported its module.
async fn start_server(key: Key) -> Result<Arc<Server>, String> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("cannot make a socket pair: {e}"))?;
    let mut command = crate::process::new_command(&key.program);
    command
        .args(["-m", "cascade._forkserver", "--preload", &key.module])
        .args(key.path.iter().flat_map(|p| ["--path", p.as_str()]))
        .env_clear()
        .envs(key.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&key.cwd)
        .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let child = crate::reaper::spawn_own(|| command.spawn(), tokio::process::Child::id)
        .map_err(|e| format!("{}: {e}", key.program.to_string_lossy()));
    // The command holds the server's end of the pair: only the server may, or its end
    // would never be seen (by us, when it dies; by it, when we do).
    drop(command);
    let child = child?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| "the fork server ended at once".to_owned())?;
    crate::guard::register(pid);
    ours.set_nonblocking(true)
        .map_err(|e| format!("cannot use the socket pair: {e}"))?;
    let stream = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| format!("cannot use the socket pair: {e}"))?;
    let (read, write) = stream.into_split();
    let server = Arc::new(Server {
        pid,
        child: Mutex::new(Some(child)),
        writer: tokio::sync::Mutex::new(write),
        pending: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
        alive: AtomicBool::new(true),
    });
    let mut lines = tokio::io::BufReader::new(read);
    let mut first = Vec::new();
    let ready = tokio::time::timeout(START_TIMEOUT, lines.read_until(b'\n', &mut first)).await;
    let ok = matches!(ready, Ok(Ok(1..)))
        && serde_json::from_slice::<Value>(&first)
            .ok()
            .and_then(|v| v.get("ready")?.as_bool())
            == Some(true);
    if !ok {
        let code = lock(&server.child)
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
            .and_then(|s| s.code());
        server.stop();
        return Err(match (ready, code) {
            (Err(_), _) => format!(
                "its fork server did not import it within {}s",
                START_TIMEOUT.as_secs()
            ),
            (_, Some(code)) => format!("its fork server exited with code {code}"),
            _ => "its fork server could not import it".to_owned(),
        });
    }
    tokio::spawn(read_replies(lines, Arc::downgrade(&server)));
    Ok(server)
}

/// Hands each reply to the attempt waiting for it, until the server's socket closes.
async fn read_replies(
    mut lines: tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
    server: std::sync::Weak<Server>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = lines.read_until(b'\n', &mut line).await;
        let Some(server) = server.upgrade() else {
            return;
        };
        if !matches!(read, Ok(1..)) {
            server.alive.store(false, Ordering::SeqCst);
            // Every waiting attempt learns the server is gone.
            lock(&server.pending).clear();
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let Some(id) = value.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let number = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        let reply = if let Some(pid) = number("pid") {
            Reply::Pid(pid)
        } else if let Some(code) = number("exit") {
            Reply::Exit(Exit::Code(code))
        } else if let Some(signal) = number("signal") {
            Reply::Exit(Exit::Signal(signal))
        } else {
            Reply::Error(
                value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("an unknown reply")
                    .to_owned(),
            )
        };
        let done = matches!(reply, Reply::Exit(_) | Reply::Error(_));
        let mut pending = lock(&server.pending);
        if let Some(tx) = pending.get(&id) {
            let _ = tx.send(reply);
        }
        if done {
            pending.remove(&id);
        }
    }
}

/// Asks `server` to fork one attempt; the attempt runs once this returns.
async fn fork(
    server: &Arc<Server>,
    launch: &Launch,
    env: &[(String, String)],
) -> Result<Forked, String> {
    let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot make a pipe: {e}"))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let null = std::fs::File::open("/dev/null").map_err(io("cannot open /dev/null"))?;
    let stdout = pipe::Receiver::from_owned_fd(out_r).map_err(io("cannot read a pipe"))?;
    let stderr = pipe::Receiver::from_owned_fd(err_r).map_err(io("cannot read a pipe"))?;

    let id = server.next.fetch_add(1, Ordering::Relaxed);
    let request = serde_json::json!({
        "id": id,
        "env": env,
        "cwd": launch.cwd.to_str().ok_or("the working directory is not UTF-8")?,
    });
    let mut bytes = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let (tx, mut replies) = mpsc::unbounded_channel();
    lock(&server.pending).insert(id, tx);
    let mut forked = Forked {
        pid: Pid::from_raw(0),
        stdout: Some(stdout),
        stderr: Some(stderr),
        id,
        server: Arc::clone(server),
        replies: mpsc::unbounded_channel().1,
        exit: None,
    };
    {
        let mut writer = server.writer.lock().await;
        let fds = [
            null.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
            go_r.as_raw_fd(),
        ];
        let socket: &tokio::net::UnixStream = (*writer).as_ref();
        let sent = loop {
            socket.writable().await.map_err(io("the fork server"))?;
            let attempt = socket.try_io(tokio::io::Interest::WRITABLE, || {
                nix::sys::socket::sendmsg::<()>(
                    socket.as_raw_fd(),
                    &[IoSlice::new(&bytes)],
                    &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
                    nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(std::io::Error::from)
            });
            match attempt {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("the fork server: {e}")),
            }
        };
        writer
            .write_all(&bytes[sent..])
            .await
            .map_err(io("the fork server"))?;
    }
    // The child holds its ends now.
    drop((null, out_w, err_w, go_r));
    let pid = match replies.recv().await {
        Some(Reply::Pid(pid)) if pid > 1 => pid,
        Some(Reply::Error(e)) => return Err(format!("the fork server refused: {e}")),
        _ => return Err("the fork server ended".to_owned()),
    };
    forked.pid = Pid::from_raw(pid);
    forked.replies = replies;
    crate::guard::register(forked.pid);
    // Registered: the child may run (a failed write leaves it at end of file: it exits).
    let go = std::fs::File::from(go_w);
    let _ = std::io::Write::write_all(&mut &go, b"g");
    drop(go);
    Ok(forked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_comes_from_the_entry_in_either_form() {
        use base64::Engine as _;
        assert_eq!(
            module_of(r#"{"entry": "ci/pipe.py:lint", "args": {}}"#),
            Some(("ci/pipe.py".to_owned(), None))
        );
        assert_eq!(
            module_of(r#"{"entry": "pkg.mod:Klass.fn", "path": "src"}"#),
            Some(("pkg.mod".to_owned(), Some("src".to_owned())))
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(
            r#"{"entry": "a.py:f", "args": {"x": {"kind": "const", "value": "${{ y }}"}}}"#,
        );
        assert_eq!(
            module_of(&format!(r#"{{"b64": "{b64}"}}"#)),
            Some(("a.py".to_owned(), None))
        );
        for bad in [
            "",
            "{}",
            r#"{"entry": "nocolon"}"#,
            r#"{"entry": ":f"}"#,
            "[1]",
        ] {
            assert_eq!(module_of(bad), None, "{bad}");
        }
    }

    fn launch(argv: &[&str], env: &[(&str, &str)]) -> Launch {
        Launch {
            argv: argv.iter().map(OsString::from).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            cwd: "/work".into(),
            timeout: None,
            grace: Duration::ZERO,
            masker: crate::mask::Masker::default(),
            capture_stdout: 0,
            on_stop: None,
            tracking: None,
            sandboxed: false,
            warm: None,
        }
    }

    #[test]
    fn tasks_differing_only_in_their_own_variables_share_a_server() {
        let python = ["/usr/bin/python3", "-m", "cascade.runner"];
        let task = r#"{"entry": "p.py:f", "args": {}}"#;
        let other = r#"{"entry": "p.py:g", "args": {}}"#;
        let (a, env) = key(&launch(
            &python,
            &[
                ("PATH", "/bin"),
                ("CSPY_TASK", task),
                ("CSPY_ARG_0", "1"),
                ("CASCADE_TASK", "f"),
                ("X", "old"),
                ("X", "new"),
            ],
        ))
        .unwrap();
        // The last value of a name, as a spawned process gets it.
        assert_eq!(env.iter().filter(|(k, _)| k == "X").count(), 1);
        assert!(env.contains(&("X".to_owned(), "new".to_owned())));
        assert_eq!(a.module, "p.py");
        assert_eq!(
            a.env,
            vec![
                ("PATH".to_owned(), "/bin".to_owned()),
                ("X".to_owned(), "new".to_owned())
            ]
        );
        let (b, _) = key(&launch(
            &python,
            &[
                ("PATH", "/bin"),
                ("CSPY_TASK", other),
                ("CSPY_ARG_0", "2"),
                ("CASCADE_TASK", "g"),
                ("X", "new"),
            ],
        ))
        .unwrap();
        assert_eq!(a, b);
        // Another value of a shared variable (a secret, say): another server.
        let (c, _) = key(&launch(
            &python,
            &[("PATH", "/bin"), ("CSPY_TASK", task), ("X", "other")],
        ))
        .unwrap();
        assert_ne!(a, c);
        // Not found on PATH (run through the shell), or no task: cold.
        let shell = ["/bin/sh", "-ec", "python3 -m cascade.runner"];
        assert!(key(&launch(&shell, &[("CSPY_TASK", task)])).is_none());
        assert!(key(&launch(&python, &[("PATH", "/bin")])).is_none());
    }

    #[test]
    fn only_the_runner_script_is_a_python_task() {
        assert!(is_python_task("python3 -m cascade.runner"));
        assert!(is_python_task("  python3 -m cascade.runner\n"));
        assert!(!is_python_task("python3 -m cascade.runner --x"));
        assert!(!is_python_task("python3 -m cascade.runner; rm -rf /"));
    }
}
