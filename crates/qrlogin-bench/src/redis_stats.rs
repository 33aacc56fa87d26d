//! Counting what the server asks of Redis, from Redis's side.
//!
//! * `INFO commandstats` before and after a run: every command Redis
//!   executed, *including* the ones a Lua script called (`redis.call`), so
//!   it over-counts round trips when the store uses scripts.
//! * `MONITOR` during a run (opt-in, it slows Redis down): every command
//!   with its origin, so commands sent by clients (round trips, or fewer
//!   when pipelined) and commands run inside scripts are told apart.
//!
//! A minimal RESP client is enough for both; it speaks to `redis://host:port`
//! (loopback only), `redis+unix:///path` and `unix:///path`.

use crate::sys::is_loopback_host;
use serde::Serialize;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Where Redis is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub addr: RedisAddr,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    Tcp(String),
    Unix(String),
}

/// Parses a Redis URL, refusing hosts off the loopback and TLS.
pub fn parse_redis_url(url: &str) -> anyhow::Result<RedisTarget> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("not a Redis URL: {url:?}"))?;
    match scheme {
        "redis+unix" | "unix" => {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut password = None;
            let mut username = None;
            for kv in query.split('&').filter(|s| !s.is_empty()) {
                match kv.split_once('=') {
                    Some(("pass" | "password", v)) => password = Some(v.to_string()),
                    Some(("user" | "username", v)) => username = Some(v.to_string()),
                    _ => {}
                }
            }
            anyhow::ensure!(path.starts_with('/'), "unix socket path must be absolute");
            Ok(RedisTarget {
                addr: RedisAddr::Unix(path.to_string()),
                username,
                password,
            })
        }
        "redis" => {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
                let (h, after) = h
                    .split_once(']')
                    .ok_or_else(|| anyhow::anyhow!("bad IPv6 host in {url:?}"))?;
                (h.to_string(), after.strip_prefix(':').unwrap_or("6379"))
            } else {
                match hostport.split_once(':') {
                    Some((h, p)) => (h.to_string(), p),
                    None => (hostport.to_string(), "6379"),
                }
            };
            anyhow::ensure!(
                is_loopback_host(&host),
                "refusing Redis at {host}: loopback or unix socket only"
            );
            let port: u16 = port
                .parse()
                .map_err(|_| anyhow::anyhow!("bad port in {url:?}"))?;
            let (username, password) = match userinfo {
                None => (None, None),
                Some(u) => match u.split_once(':') {
                    Some((user, pass)) => (
                        (!user.is_empty()).then(|| user.to_string()),
                        Some(pass.to_string()),
                    ),
                    None => (None, Some(u.to_string())),
                },
            };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Ok(RedisTarget {
                addr: RedisAddr::Tcp(format!("{host}:{port}")),
                username,
                password,
            })
        }
        other => anyhow::bail!("unsupported Redis URL scheme {other:?} (redis://, redis+unix://)"),
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One RESP connection.
pub struct RedisConn {
    io: BufReader<Pin<Box<dyn Io>>>,
}

/// A RESP reply (the parts we need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl RedisConn {
    pub async fn connect(target: &RedisTarget) -> anyhow::Result<RedisConn> {
        let io: Pin<Box<dyn Io>> = match &target.addr {
            RedisAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Box::pin(s)
            }
            RedisAddr::Unix(p) => Box::pin(tokio::net::UnixStream::connect(p).await?),
        };
        let mut conn = RedisConn {
            io: BufReader::new(io),
        };
        if let Some(pass) = &target.password {
            let mut args = vec!["AUTH"];
            if let Some(user) = &target.username {
                args.push(user);
            }
            args.push(pass);
            if let Reply::Error(e) = conn.command(&args).await? {
                anyhow::bail!("Redis AUTH failed: {e}");
            }
        }
        Ok(conn)
    }

    pub async fn send(&mut self, args: &[&str]) -> anyhow::Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&out).await?;
        Ok(())
    }

    pub async fn command(&mut self, args: &[&str]) -> anyhow::Result<Reply> {
        self.send(args).await?;
        self.read_reply().await
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        let n = self.io.read_until(b'\n', &mut buf).await?;
        anyhow::ensure!(n > 0, "Redis closed the connection");
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    pub fn read_reply(
        &mut self,
    ) -> Pin<Box<dyn std::future::Future<Output = anyhow::Result<Reply>> + Send + '_>> {
        Box::pin(async move {
            let line = self.line().await?;
            let (kind, rest) = line.split_at(1.min(line.len()));
            Ok(match kind {
                "+" => Reply::Simple(rest.to_string()),
                "-" => Reply::Error(rest.to_string()),
                ":" => Reply::Int(rest.parse()?),
                "$" => {
                    let len: i64 = rest.parse()?;
                    if len < 0 {
                        Reply::Bulk(None)
                    } else {
                        let mut data = vec![0u8; len as usize + 2];
                        self.io.read_exact(&mut data).await?;
                        data.truncate(len as usize);
                        Reply::Bulk(Some(data))
                    }
                }
                "*" => {
                    let n: i64 = rest.parse()?;
                    let mut items = Vec::new();
                    for _ in 0..n.max(0) {
                        items.push(self.read_reply().await?);
                    }
                    Reply::Array(items)
                }
                _ => anyhow::bail!("unexpected RESP line {line:?}"),
            })
        })
    }

    /// The redis-server's pid (`INFO server`), to read its CPU time.
    pub async fn server_pid(&mut self) -> anyhow::Result<u32> {
        match self.command(&["INFO", "server"]).await? {
            Reply::Bulk(Some(text)) => String::from_utf8_lossy(&text)
                .lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no process_id in INFO server")),
            other => anyhow::bail!("unexpected INFO reply {other:?}"),
        }
    }

    /// One `INFO` section as `key → value` (e.g. `stats`:
    /// `total_net_output_bytes`).
    pub async fn info(&mut self, section: &str) -> anyhow::Result<BTreeMap<String, String>> {
        match self.command(&["INFO", section]).await? {
            Reply::Bulk(Some(text)) => Ok(parse_info(&String::from_utf8_lossy(&text))),
            other => anyhow::bail!("unexpected INFO reply {other:?}"),
        }
    }

    /// `INFO commandstats`, parsed.
    pub async fn commandstats(&mut self) -> anyhow::Result<BTreeMap<String, u64>> {
        match self.command(&["INFO", "commandstats"]).await? {
            Reply::Bulk(Some(text)) => Ok(parse_commandstats(&String::from_utf8_lossy(&text))),
            other => anyhow::bail!("unexpected INFO reply {other:?}"),
        }
    }
}

/// `cmdstat_NAME:calls=N,...` lines into NAME → N.
pub fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let l = l.strip_prefix("cmdstat_")?;
            let (name, rest) = l.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// `key:value` lines of an `INFO` reply (comments and blank lines skipped).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Redis's pub/sub work during a run: the hint publishes (scripts'
/// `PUBLISH`/`SPUBLISH`, from `INFO commandstats`) and the bytes Redis sent
/// (`INFO stats` `total_net_output_bytes`, which with N subscribed
/// instances grows by N copies of every hint), per completed login.
#[derive(Debug, Clone, Serialize)]
pub struct PubSubStats {
    pub publish_calls: u64,
    pub spublish_calls: u64,
    /// `(publish + spublish) / logins`.
    pub publishes_per_login: f64,
    /// Everything Redis wrote to its clients during the run (replies and
    /// pub/sub deliveries; the bench's own few `INFO` replies included).
    pub net_output_bytes: u64,
    pub net_output_bytes_per_login: f64,
    /// Everything Redis read from its clients during the run.
    pub net_input_bytes: u64,
    pub net_input_bytes_per_login: f64,
    /// Channels with subscribers at the end (`pubsub_channels`), and
    /// sharded ones (`pubsubshard_channels`, Redis 7.0+).
    pub channels: Option<u64>,
    pub shard_channels: Option<u64>,
}

/// [`PubSubStats`] from `INFO stats` and `INFO commandstats` snapshots
/// taken before and after a run.
pub fn pubsub_delta(
    stats_before: &BTreeMap<String, String>,
    stats_after: &BTreeMap<String, String>,
    commands: &CommandStats,
    logins: u64,
) -> PubSubStats {
    let num = |m: &BTreeMap<String, String>, k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
    let delta = |k: &str| {
        num(stats_after, k)
            .unwrap_or(0)
            .saturating_sub(num(stats_before, k).unwrap_or(0))
    };
    let per = |n: u64| {
        if logins == 0 {
            0.0
        } else {
            n as f64 / logins as f64
        }
    };
    let calls = |name: &str| commands.commands.get(name).map_or(0, |c| c.calls);
    let (publish_calls, spublish_calls) = (calls("publish"), calls("spublish"));
    let (out, inb) = (
        delta("total_net_output_bytes"),
        delta("total_net_input_bytes"),
    );
    PubSubStats {
        publish_calls,
        spublish_calls,
        publishes_per_login: per(publish_calls + spublish_calls),
        net_output_bytes: out,
        net_output_bytes_per_login: per(out),
        net_input_bytes: inb,
        net_input_bytes_per_login: per(inb),
        channels: num(stats_after, "pubsub_channels"),
        shard_channels: num(stats_after, "pubsubshard_channels"),
    }
}

/// Redis's commands executed during a run, per login.
#[derive(Debug, Clone, Serialize)]
pub struct CommandStats {
    /// All commands executed, including those called from inside Lua
    /// scripts; excludes the benchmark's own `INFO`.
    pub total_calls: u64,
    pub per_login: f64,
    pub commands: BTreeMap<String, CommandCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommandCount {
    pub calls: u64,
    pub per_login: f64,
}

/// The difference of two `INFO commandstats` snapshots.
pub fn commandstats_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    logins: u64,
) -> CommandStats {
    let per = |n: u64| {
        if logins == 0 {
            0.0
        } else {
            n as f64 / logins as f64
        }
    };
    let mut commands = BTreeMap::new();
    let mut total = 0;
    for (name, &a) in after {
        if name == "info" {
            continue;
        }
        let d = a.saturating_sub(before.get(name).copied().unwrap_or(0));
        if d == 0 {
            continue;
        }
        total += d;
        commands.insert(
            name.clone(),
            CommandCount {
                calls: d,
                per_login: per(d),
            },
        );
    }
    CommandStats {
        total_calls: total,
        per_login: per(total),
        commands,
    }
}

/// Commands seen by `MONITOR`, split by origin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorStats {
    /// Commands sent by clients (each a round trip unless pipelined).
    pub client_commands: u64,
    pub client_per_login: f64,
    /// Commands run by Lua scripts (no round trip of their own).
    pub script_commands: u64,
    pub script_per_login: f64,
    pub client: BTreeMap<String, u64>,
    pub script: BTreeMap<String, u64>,
}

/// Commands counted by MONITOR: (from clients, from scripts).
type Counts = Arc<Mutex<(BTreeMap<String, u64>, BTreeMap<String, u64>)>>;

/// A running `MONITOR` session; [`Monitor::finish`] stops it.
pub struct Monitor {
    counts: Counts,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    pub async fn start(target: &RedisTarget) -> anyhow::Result<Monitor> {
        let mut conn = RedisConn::connect(target).await?;
        match conn.command(&["MONITOR"]).await? {
            Reply::Simple(s) if s == "OK" => {}
            other => anyhow::bail!("MONITOR refused: {other:?}"),
        }
        let counts: Counts = Arc::new(Mutex::new((BTreeMap::new(), BTreeMap::new())));
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok(line) = conn.line().await {
                if let Some((from_script, cmd)) = parse_monitor_line(&line) {
                    let mut g = c.lock().unwrap_or_else(|e| e.into_inner());
                    let map = if from_script { &mut g.1 } else { &mut g.0 };
                    *map.entry(cmd).or_insert(0) += 1;
                }
            }
        });
        Ok(Monitor { counts, task })
    }

    pub async fn finish(self, logins: u64) -> MonitorStats {
        // Let the last lines arrive.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.task.abort();
        let (client, script) = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut client = client;
        client.remove("info");
        let per = |n: u64| {
            if logins == 0 {
                0.0
            } else {
                n as f64 / logins as f64
            }
        };
        let cn: u64 = client.values().sum();
        let sn: u64 = script.values().sum();
        MonitorStats {
            client_commands: cn,
            client_per_login: per(cn),
            script_commands: sn,
            script_per_login: per(sn),
            client,
            script,
        }
    }
}

/// `+1700000000.123456 [0 127.0.0.1:5000] "evalsha" "..."` →
/// (from a script?, `evalsha`).
pub fn parse_monitor_line(line: &str) -> Option<(bool, String)> {
    let line = line.strip_prefix('+')?;
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let origin = &line[open + 1..close];
    let from_script = origin.split_whitespace().nth(1) == Some("lua");
    let rest = line[close + 1..].trim_start().strip_prefix('"')?;
    let cmd = rest.split('"').next()?.to_ascii_lowercase();
    Some((from_script, cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_redis_url("redis+unix:///tmp/r.sock").unwrap();
        assert_eq!(t.addr, RedisAddr::Unix("/tmp/r.sock".into()));
        let t = parse_redis_url("redis://:pw@127.0.0.1:7000/0").unwrap();
        assert_eq!(t.addr, RedisAddr::Tcp("127.0.0.1:7000".into()));
        assert_eq!(t.password.as_deref(), Some("pw"));
        let t = parse_redis_url("redis://localhost").unwrap();
        assert_eq!(t.addr, RedisAddr::Tcp("localhost:6379".into()));
        assert!(parse_redis_url("redis://10.1.2.3:6379").is_err());
        assert!(parse_redis_url("rediss://127.0.0.1:6379").is_err());
    }

    #[test]
    fn commandstats() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_info:calls=2,usec=43\r\ncmdstat_get:calls=1,usec=1\r\n",
        );
        let after = parse_commandstats(
            "cmdstat_info:calls=3,usec=43\r\ncmdstat_get:calls=5,usec=1\r\ncmdstat_evalsha:calls=8,usec=9\r\n",
        );
        let d = commandstats_delta(&before, &after, 4);
        assert_eq!(d.total_calls, 12);
        assert_eq!(d.per_login, 3.0);
        assert_eq!(d.commands["get"].calls, 4);
        assert!(!d.commands.contains_key("info"));
    }

    #[test]
    fn pubsub_traffic() {
        let before = parse_info(
            "# Stats\r\ntotal_net_input_bytes:100\r\ntotal_net_output_bytes:1000\r\npubsub_channels:1\r\n",
        );
        let after = parse_info(
            "# Stats\r\ntotal_net_input_bytes:500\r\ntotal_net_output_bytes:5000\r\npubsub_channels:1\r\npubsubshard_channels:0\r\n",
        );
        let cmds = commandstats_delta(
            &parse_commandstats("cmdstat_publish:calls=1,usec=1\r\n"),
            &parse_commandstats(
                "cmdstat_publish:calls=13,usec=9\r\ncmdstat_spublish:calls=4,usec=1\r\n",
            ),
            4,
        );
        let p = pubsub_delta(&before, &after, &cmds, 4);
        assert_eq!((p.publish_calls, p.spublish_calls), (12, 4));
        assert_eq!(p.publishes_per_login, 4.0);
        assert_eq!(p.net_output_bytes, 4000);
        assert_eq!(p.net_output_bytes_per_login, 1000.0);
        assert_eq!(p.net_input_bytes_per_login, 100.0);
        assert_eq!((p.channels, p.shard_channels), (Some(1), Some(0)));
    }

    #[test]
    fn monitor_lines() {
        assert_eq!(
            parse_monitor_line(r#"+1700000000.123456 [0 127.0.0.1:5000] "EVALSHA" "abc" "1""#),
            Some((false, "evalsha".into()))
        );
        assert_eq!(
            parse_monitor_line(r#"+1700000000.123456 [0 lua] "hgetall" "k""#),
            Some((true, "hgetall".into()))
        );
        assert_eq!(
            parse_monitor_line(r#"+1700000000.1 [0 unix:/tmp/r.sock] "publish" "c" "x""#),
            Some((false, "publish".into()))
        );
    }
}
