//! A private, throw-away Sentinel setup per test: a master, one replica and
//! one or more Sentinels (quorum 1 each) on free 127.0.0.1 ports, all
//! children of the test process, killed (and their directories removed)
//! on drop. A Sentinel can be frozen with SIGSTOP
//! ([`RedisSentinel::freeze_sentinel`]): it keeps accepting TCP connections
//! (the kernel does) but never answers, which is what a hung host looks
//! like to a client.
//!
//! The Sentinel's `down-after-milliseconds` is long (60 s), so it never
//! fails over on its own during a test: a test that kills the master sees
//! a dead master, and a failover happens only when a test asks for one
//! ([`RedisSentinel::failover`]).

use crate::redis_cluster::redis_cli;
use crate::redis_server::{free_port, RedisServer, NOT_FOUND};
use std::fs::File;
use std::io::ErrorKind;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The monitored master's name.
pub const MASTER_NAME: &str = "qrl";

/// How long the setup gets to be ready (replica synced, Sentinel knows it),
/// and a failover to be reported.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One `redis-server <conf> --sentinel` child.
struct SentinelProc {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// Stopped with SIGSTOP (resumed before it is killed).
    frozen: bool,
}

impl SentinelProc {
    fn start(master_port: u16) -> SentinelProc {
        let dir = tempfile::Builder::new()
            .prefix("qrlogin-sentinel-")
            .tempdir()
            .unwrap_or_else(|e| panic!("could not create a temp dir for a sentinel: {e}"));
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 60000\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display()
            ),
        )
        .unwrap_or_else(|e| panic!("could not write sentinel.conf: {e}"));
        let log = File::create(dir.path().join("sentinel.log"))
            .unwrap_or_else(|e| panic!("could not create the sentinel log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("could not clone the sentinel log: {e}"));
        let child = match Command::new("redis-server")
            .current_dir(dir.path())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{NOT_FOUND}"),
            Err(e) => panic!("could not start a sentinel: {e}"),
        };
        SentinelProc {
            dir,
            port,
            child: Some(child),
            frozen: false,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }

    /// Sends `signal` (`STOP`, `CONT`) with kill(1).
    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
            assert!(
                matches!(status, Ok(s) if s.success()),
                "kill -{signal} {} failed: {status:?}",
                child.id()
            );
        }
    }

    fn freeze(&mut self) {
        self.signal("STOP");
        self.frozen = true;
    }

    fn kill(&mut self) {
        if self.frozen {
            // SIGKILL works on a stopped process too; resuming first just
            // lets it die the ordinary way. Best effort: this runs on drop.
            if let Some(child) = &self.child {
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(child.id().to_string())
                    .status();
            }
            self.frozen = false;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private master + replica + Sentinel(s).
pub struct RedisSentinel {
    // Sentinels first: they go before the servers they watch.
    /// The helpers ask (and tell to fail over) the first one not frozen.
    sentinels: Vec<SentinelProc>,
    /// `servers[0]` started as master, `servers[1]` as its replica; after a
    /// failover the roles are swapped (see [`RedisSentinel::master_port`]).
    servers: Vec<RedisServer>,
}

impl RedisSentinel {
    /// Starts the master, the replica (waits until it is synced) and the
    /// Sentinel (waits until it knows the replica, so a failover can pick
    /// it). Panics with the install command if redis-server is missing, or
    /// if the setup is not ready within ~20 s.
    pub fn start() -> RedisSentinel {
        Self::launch(&[], 1)
    }

    /// [`RedisSentinel::start`] with `n` Sentinels (at least one), each
    /// monitoring the master with quorum 1; waits until every Sentinel
    /// knows the others, so all of them learn of a failover.
    pub fn start_with_sentinels(n: usize) -> RedisSentinel {
        Self::launch(&[], n)
    }

    /// [`RedisSentinel::start`] with a master the Sentinel cannot demote
    /// after a failover (its `REPLICAOF`/`SLAVEOF` are renamed away, so the
    /// Sentinel's reconfiguration, which also disconnects its clients,
    /// fails): the old master keeps accepting writes, as it does for a
    /// while after any failover, or for long when the Sentinels cannot
    /// reach it but clients can. A client that only reacts to errors would
    /// keep writing there.
    pub fn start_with_stuck_master() -> RedisSentinel {
        Self::start_with_stuck_master_and_sentinels(1)
    }

    /// [`RedisSentinel::start_with_stuck_master`] with `n` Sentinels (see
    /// [`RedisSentinel::start_with_sentinels`]).
    pub fn start_with_stuck_master_and_sentinels(n: usize) -> RedisSentinel {
        Self::launch(
            &[
                "--rename-command",
                "REPLICAOF",
                "",
                "--rename-command",
                "SLAVEOF",
                "",
            ],
            n,
        )
    }

    fn launch(master_args: &[&str], sentinels: usize) -> RedisSentinel {
        let master = RedisServer::start_tcp_with(master_args);
        let master_port = master.port().unwrap_or_default();
        let replica =
            RedisServer::start_tcp_with(&["--replicaof", "127.0.0.1", &master_port.to_string()]);
        let sentinels = (0..sentinels.max(1))
            .map(|_| SentinelProc::start(master_port))
            .collect();
        let setup = RedisSentinel {
            sentinels,
            servers: vec![master, replica],
        };
        setup.wait_until("the replica is synced and known to the sentinels", |s| {
            let replica = s.servers[1].port().unwrap_or_default();
            redis_cli(replica, &["INFO", "replication"]).contains("master_link_status:up")
                && s.sentinels.iter().all(|sp| {
                    redis_cli(sp.port, &["SENTINEL", "REPLICAS", MASTER_NAME])
                        .contains(&replica.to_string())
                })
        });
        setup.wait_until("every sentinel knows the others", |s| {
            s.sentinels.iter().all(|sp| {
                let known = redis_cli(sp.port, &["SENTINEL", "SENTINELS", MASTER_NAME]);
                s.sentinels
                    .iter()
                    .filter(|other| other.port != sp.port)
                    .all(|other| known.contains(&other.port.to_string()))
            })
        });
        setup
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2…/qrl`, the Sentinels in
    /// start order.
    pub fn url(&self) -> String {
        let hosts = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",");
        format!("redis+sentinel://{hosts}/{MASTER_NAME}")
    }

    /// The first Sentinel's port.
    pub fn sentinel_port(&self) -> u16 {
        self.sentinels[0].port
    }

    /// Stops Sentinel `i` (start order) with SIGSTOP: connections to it
    /// are accepted but never answered. It is killed on drop.
    pub fn freeze_sentinel(&mut self, i: usize) {
        self.sentinels[i].freeze();
    }

    /// The first Sentinel that is not frozen: the one the helpers ask (a
    /// frozen one would never answer redis-cli).
    fn live(&self) -> &SentinelProc {
        self.sentinels
            .iter()
            .find(|s| !s.frozen)
            .unwrap_or_else(|| panic!("every sentinel is frozen"))
    }

    /// The master's port, as the first live Sentinel reports it now.
    pub fn master_port(&self) -> u16 {
        let out = redis_cli(
            self.live().port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the sentinel names no master: {out:?}"))
    }

    /// The data servers' ports (master and replica, in start order).
    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().filter_map(RedisServer::port).collect()
    }

    /// The data server listening on `port` (master or replica).
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.port() == Some(port))
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// Forces a failover (`SENTINEL FAILOVER`, retried while the Sentinel
    /// refuses, e.g. `INPROG`) and waits until the Sentinel names the old
    /// replica as master and that server says it is master. Returns the new
    /// master's port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = redis_cli(self.live().port, &["SENTINEL", "FAILOVER", MASTER_NAME]);
            if out.trim() == "OK" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SENTINEL FAILOVER refused: {out}; sentinel log:\n{}",
                self.live().log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_until("the sentinel reports the new master", |s| {
            let port = s.master_port();
            port != old && redis_cli(port, &["ROLE"]).starts_with("master")
        });
        self.master_port()
    }

    /// Waits until the server on `port` says it is a replica (after a
    /// failover: the Sentinel has demoted the old master, which also
    /// disconnected its clients).
    pub fn wait_demoted(&self, port: u16) {
        self.wait_until("the old master is demoted", |_| {
            redis_cli(port, &["ROLE"]).starts_with("slave")
        });
    }

    fn wait_until(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "sentinel setup: not ready within {READY_TIMEOUT:?}: {what}; sentinel log:\n{}",
                self.live().log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl std::fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("url", &self.url())
            .finish()
    }
}
