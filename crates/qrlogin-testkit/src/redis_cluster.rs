//! A private, throw-away Redis Cluster per test: three masters (no
//! replicas) on free 127.0.0.1 ports, each a [`RedisServer`] child with
//! cluster mode on, joined by `redis-cli --cluster create`.
//!
//! Each node keeps its `nodes.conf` in its own temporary directory, so a
//! killed node restarted with [`RedisCluster::restart_node`] rejoins the
//! cluster with its old identity and slots (empty, as there is no
//! persistence).

use crate::redis_server::{free_port, RedisServer};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long the cluster gets to agree on `cluster_state:ok`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The message for a machine without `redis-cli` (it ships with Debian's
/// redis-server package, through redis-tools).
const CLI_NOT_FOUND: &str =
    "redis-cli not found: install it with `apt-get install -y redis-server` (scripts/test does this)";

/// Runs `redis-cli -p <port> <args…>` and returns its stdout; panics (with
/// the install command) when redis-cli is missing.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = run_cli(port, args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_cli(port: u16, args: &[&str]) -> Output {
    match Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{CLI_NOT_FOUND}"),
        Err(e) => panic!("could not run redis-cli: {e}"),
    }
}

/// A private Redis Cluster; every node is killed (and its directory
/// removed) on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters covering all 16384 slots and waits until every
    /// node reports `cluster_state:ok`. Panics (with the install command)
    /// if redis-server or redis-cli is missing, or if the cluster does not
    /// form within ~20 s.
    pub fn start() -> RedisCluster {
        Self::start_with(3)
    }

    /// [`RedisCluster::start`] with `masters` masters (at least 3, as
    /// `redis-cli --cluster create` demands).
    pub fn start_with(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                // The cluster bus port is chosen too: the default, port +
                // 10000, may be beyond 65535 for an ephemeral port.
                let bus = free_port().to_string();
                RedisServer::start_tcp_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let cluster = RedisCluster { nodes };
        let addrs: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = run_cli(cluster.ports()[0], &args);
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// Polls `CLUSTER INFO` on every running node until each says
    /// `cluster_state:ok` and knows all nodes, or panics after ~20 s.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let want_known = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let ok = self.ports().iter().all(|&p| {
                let info = redis_cli(p, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains(&want_known)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {READY_TIMEOUT:?}: {}",
                redis_cli(self.ports()[0], &["CLUSTER", "INFO"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…`: every node a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes' client ports, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().filter_map(RedisServer::port).collect()
    }

    /// `redis://127.0.0.1:P` of node `i`, for a plain connection to it.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes (never, for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The index of the node serving `key`'s slot.
    pub fn node_of(&self, key: &str) -> usize {
        let slot: u16 = redis_cli(self.ports()[0], &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"));
        self.node_of_slot(slot)
    }

    /// The index of the node owning `slot`, per the nodes' own
    /// `CLUSTER NODES` view of themselves (`myself`).
    pub fn node_of_slot(&self, slot: u16) -> usize {
        for (i, &port) in self.ports().iter().enumerate() {
            let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
            let Some(me) = nodes.lines().find(|l| l.contains("myself")) else {
                continue;
            };
            // Fields 8.. are slots: `n` or `a-b`.
            for range in me.split_whitespace().skip(8) {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    if (a..=b).contains(&slot) {
                        return i;
                    }
                }
            }
        }
        panic!("no node owns slot {slot}")
    }

    /// Node `i`, e.g. to kill or inspect it.
    pub fn node(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// Restarts node `i` (empty; same port, same cluster identity) and
    /// waits until the cluster is `ok` again.
    pub fn restart_node(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_ok();
    }
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("url", &self.url())
            .finish()
    }
}
