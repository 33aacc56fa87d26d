//! A private, throw-away `redis-server` per test.
//!
//! Tests never touch a shared Redis (such as one on port 6379): a private
//! server has no data from other tests, can be killed and restarted to test
//! recovery, and disappears with the test. It listens on a unix socket in a
//! fresh temporary directory (or, with [`RedisServer::start_tcp`], on a free
//! 127.0.0.1 port as well), keeps nothing on disk, and runs in the
//! foreground as a child of the test process so it can be SIGKILLed.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server gets to answer `PING` before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The message for a machine without Redis. Tests must not silently pass
/// without exercising Redis, so a missing binary is a loud failure.
pub(crate) const NOT_FOUND: &str =
    "redis-server not found: install it with `apt-get install -y redis-server` (scripts/test does this)";

/// A private `redis-server` child process. Killed (and its temporary
/// directory removed) on drop.
pub struct RedisServer {
    dir: tempfile::TempDir,
    /// `Some(port)` for the TCP variant.
    port: Option<u16>,
    /// More command-line options (cluster mode, `--replicaof`, …), kept
    /// across [`RedisServer::restart`].
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server reachable only through a unix socket (`--port 0`).
    /// Panics if `redis-server` is missing or does not answer within ~5 s.
    pub fn start() -> RedisServer {
        Self::launch(None, &[])
    }

    /// Starts a server on a free `127.0.0.1` port (and the unix socket), for
    /// tests of the `redis://` URL form. The port is found by binding port 0
    /// and releasing it; [`RedisServer::restart`] reuses the same port.
    pub fn start_tcp() -> RedisServer {
        Self::start_tcp_with(&[])
    }

    /// [`RedisServer::start_tcp`] with more `redis-server` options (e.g.
    /// `["--cluster-enabled", "yes"]`); relative file names in them are
    /// relative to the server's temporary directory ([`RedisServer::dir`]).
    pub fn start_tcp_with(extra: &[&str]) -> RedisServer {
        Self::launch(Some(free_port()), extra)
    }

    fn launch(port: Option<u16>, extra: &[&str]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("qrlogin-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("could not create a temp dir for redis-server: {e}"));
        let mut server = RedisServer {
            dir,
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    /// The URL a store connects to: `redis+unix:///…/redis.sock`, or
    /// `redis://127.0.0.1:PORT` for the TCP variant.
    pub fn url(&self) -> String {
        match self.port {
            Some(port) => format!("redis://127.0.0.1:{port}"),
            None => format!("redis+unix://{}", self.socket_path().display()),
        }
    }

    /// The unix socket the server listens on (in both variants).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The TCP port, for the TCP variant.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether the child process is currently running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server with SIGKILL (no clean shutdown, like a crash or a
    /// lost host) and waits for it to be gone. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGSTOP, like a hung host: connections stay
    /// open and nothing answers (a frozen replica acknowledges no write)
    /// until [`RedisServer::thaw`]. Killing a frozen server works.
    pub fn freeze(&mut self) {
        self.signal("STOP");
    }

    /// Resumes a [`RedisServer::freeze`]d server (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let ok = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(child.id().to_string())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -{sig} of redis-server {} failed", child.id());
        }
    }

    /// Starts the server again on the same socket (and port), empty, as a
    /// Redis without persistence comes back after a crash. Kills it first
    /// if it is still running.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
        let sock = self.socket_path();
        let log = File::create(self.log_path())
            .unwrap_or_else(|e| panic!("could not create the redis-server log file: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("could not clone the redis-server log file: {e}"));
        let port = self.port.unwrap_or(0).to_string();
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(self.dir.path());
        cmd.arg("--port")
            .arg(&port)
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path());
        if self.port.is_some() {
            cmd.arg("--bind").arg("127.0.0.1");
        }
        cmd.args(&self.extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{NOT_FOUND}"),
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls with `PING` until the server answers, the child dies, or
    /// [`START_TIMEOUT`] passes.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut delay = Duration::from_millis(2);
        loop {
            if self.answers_ping() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "redis-server exited during start-up ({status}); its log:\n{}",
                        self.log()
                    );
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    fn answers_ping(&self) -> bool {
        let timeout = Some(Duration::from_millis(500));
        match self.port {
            Some(port) => TcpStream::connect(("127.0.0.1", port))
                .ok()
                .is_some_and(|mut s| {
                    let _ = s.set_read_timeout(timeout);
                    ping(&mut s)
                }),
            None => UnixStream::connect(self.socket_path())
                .ok()
                .is_some_and(|mut s| {
                    let _ = s.set_read_timeout(timeout);
                    ping(&mut s)
                }),
        }
    }

    /// The server's log so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The temporary directory holding the socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A TCP port that was free a moment ago (bind port 0, release it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("could not find a free TCP port: {e}"))
}

fn ping(stream: &mut (impl Read + Write)) -> bool {
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("url", &self.url())
            .field("pid", &self.child.as_ref().map(|c| c.id()))
            .finish()
    }
}
