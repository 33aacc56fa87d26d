//! Where the store's commands go: one Redis, a Redis Cluster, or whichever
//! server a set of Sentinels currently names master.
//!
//! [`Conn`] is one enum implementing [`ConnectionLike`] by delegation, so
//! every store operation (the `EVALSHA` of a transition, `GET`, `SET … PX`)
//! has one code path for all three deployments, and the single-node hot
//! path is exactly the [`ConnectionManager`] call it was: one match, no
//! extra allocation, no extra round trip.
//!
//! * **Single** — a [`ConnectionManager`], which reconnects by itself.
//! * **Cluster** — redis-rs's async [`ClusterConnection`]: it routes each
//!   command by its first key's slot, follows `MOVED`/`ASK`, and refreshes
//!   the slot map after failovers. Every key of one login shares the hash
//!   tag `{<login id>}`, so each transition script touches one slot.
//! * **Sentinel** — [`SentinelConn`]: a multiplexed connection to the master
//!   the Sentinels name, dropped and re-resolved when it fails (I/O error,
//!   timeout) or answers `READONLY` (the server was demoted by a failover).

use crate::store_error;
use qrlogin_core::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The default port of a cluster node named without one.
const REDIS_PORT: u16 = 6379;
/// The default port of a Sentinel named without one.
const SENTINEL_PORT: u16 = 26379;

/// What a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `redis://`, `rediss://`, `redis+unix://`, `unix://`: the URL as is.
    Single(String),
    /// `redis+cluster://[cred@]h1:p1,h2:p2`: one `redis://[cred@]h:p` URL
    /// per seed node.
    Cluster(Vec<String>),
    /// `redis+sentinel://[cred@]s1:p1,s2:p2/<master>[?db=N]`.
    Sentinel(SentinelTarget),
}

/// A parsed `redis+sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelTarget {
    /// The Sentinels' addresses.
    pub sentinels: Vec<(String, u16)>,
    /// The monitored master's name (`sentinel monitor <name> …`).
    pub master: String,
    /// Credentials for the master (not for the Sentinels).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The logical database on the master.
    pub db: i64,
}

fn bad_url(why: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("bad redis URL: {why}"))
}

/// Parses a store URL. Cluster and Sentinel URLs name several hosts, which
/// no URL library accepts, so they are taken apart here; each host (with
/// the optional `user:password@`) is then parsed by redis-rs, which does the
/// percent-decoding.
pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    match scheme {
        "redis" | "rediss" | "redis+unix" | "unix" => Ok(Target::Single(url.to_string())),
        "redis+cluster" => {
            let (cred, hosts) = split_cred(rest.trim_end_matches('/'));
            if hosts.contains('/') || hosts.contains('?') {
                return Err(bad_url(
                    "redis+cluster:// takes only host:port[,host:port…] (no database, no options)",
                ));
            }
            let nodes = host_list(hosts, REDIS_PORT)?
                .into_iter()
                .map(|h| format!("redis://{cred}{h}"))
                .collect::<Vec<_>>();
            for n in &nodes {
                n.as_str().into_connection_info().map_err(store_error)?;
            }
            Ok(Target::Cluster(nodes))
        }
        "redis+sentinel" => {
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (cred, rest) = split_cred(rest);
            let (hosts, master) = rest
                .split_once('/')
                .ok_or_else(|| bad_url("redis+sentinel:// needs /<master name> after the hosts"))?;
            let master = master.trim_end_matches('/');
            if master.is_empty() || master.contains('/') {
                return Err(bad_url(
                    "redis+sentinel:// needs exactly one /<master name>",
                ));
            }
            let mut db = 0;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("db", v)) => {
                        db = v.parse().map_err(|_| bad_url(format!("db={v:?}")))?;
                    }
                    _ => return Err(bad_url(format!("unknown redis+sentinel option {pair:?}"))),
                }
            }
            let hosts = host_list(hosts, SENTINEL_PORT)?;
            let mut sentinels = Vec::with_capacity(hosts.len());
            for h in &hosts {
                let info = format!("redis://{h}")
                    .into_connection_info()
                    .map_err(store_error)?;
                match info.addr() {
                    ConnectionAddr::Tcp(host, port) => sentinels.push((host.clone(), *port)),
                    other => return Err(bad_url(format!("sentinel address {other:?}"))),
                }
            }
            // The credentials, decoded by redis-rs from a one-host URL.
            let info = format!("redis://{cred}{}", hosts[0])
                .into_connection_info()
                .map_err(store_error)?;
            let redis = info.redis_settings();
            Ok(Target::Sentinel(SentinelTarget {
                sentinels,
                master: master.to_string(),
                username: redis.username().map(str::to_string),
                password: redis.password().map(str::to_string),
                db,
            }))
        }
        _ => Err(StoreError::Unavailable(format!(
            "unsupported redis URL scheme `{scheme}://` (expected redis://, rediss://, \
             redis+unix://, redis+cluster:// or redis+sentinel://)"
        ))),
    }
}

/// Splits `cred@rest` into (`"cred@"`, `rest`); (`""`, `rest`) without one.
fn split_cred(s: &str) -> (&str, &str) {
    match s.rfind('@') {
        Some(at) => (&s[..=at], &s[at + 1..]),
        None => ("", s),
    }
}

/// `h1:p1,h2,[::1]:p3` → `["h1:p1", "h2:<default>", "[::1]:p3"]`.
fn host_list(hosts: &str, default_port: u16) -> Result<Vec<String>, StoreError> {
    let list: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            let has_port = match h.rfind(']') {
                Some(close) => h[close..].contains(':'),
                None => h.contains(':'),
            };
            if has_port {
                h.to_string()
            } else {
                format!("{h}:{default_port}")
            }
        })
        .collect();
    if list.is_empty() {
        return Err(bad_url("no hosts"));
    }
    Ok(list)
}

/// The store's command connection, whatever the deployment. Cheap to clone
/// (every variant is a handle to shared state).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => Box::pin(c.request(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => Box::pin(c.pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.0.db,
        }
    }
}

/// A connection to the master a set of Sentinels names, which follows
/// failovers: the current connection is dropped when it fails or when the
/// server answers `READONLY` (it was demoted), and the next command asks the
/// Sentinels again (redis-rs checks that the named server says `ROLE`
/// master). A `READONLY` reply means the command was not executed (a
/// transition script's first write is refused before anything changed), so
/// that command is retried once on the new master; after an I/O error it
/// may have run, so it is not retried and the caller gets `Unavailable`.
///
/// Errors alone are not enough: after a failover the old master keeps
/// accepting writes until the Sentinels get round to demoting it (seconds
/// later), and writes it takes then are lost when it resyncs from the new
/// master. So a background task also listens for the Sentinels'
/// `+switch-master` announcements and drops the connection the moment the
/// master changes (and bumps [`SentinelConn::moves`], which makes the hint
/// subscriber move too).
#[derive(Clone)]
pub(crate) struct SentinelConn(Arc<SentinelShared>);

pub(crate) struct SentinelShared {
    /// The Sentinel client; the async mutex makes resolutions single-flight.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The current master connection and its generation, `None` after a
    /// failure until the next resolution.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
    db: i64,
    /// Bumped on every `+switch-master` for our master.
    moved: tokio::sync::watch::Sender<u64>,
    /// The `+switch-master` listener; aborted with the last handle.
    switches: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SentinelShared {
    fn drop(&mut self) {
        if let Some(task) = self
            .switches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Whether an error means the connection should be replaced and the master
/// looked up again.
fn needs_new_master(e: &RedisError) -> bool {
    is_read_only(e)
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::MasterDown)
                | ErrorKind::Server(ServerErrorKind::BusyLoading)
        )
}

/// `READONLY`, also when it comes wrapped in a script error.
fn is_read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
}

impl SentinelConn {
    /// Builds the Sentinel client and resolves the master once, so a wrong
    /// setup fails at start-up. The master connection uses `config`'s
    /// timeouts; `timeout` bounds each step of the `+switch-master`
    /// listener (connect, subscribe, health PING).
    pub(crate) async fn connect(
        target: &SentinelTarget,
        config: AsyncConnectionConfig,
        timeout: std::time::Duration,
    ) -> RedisResult<Self> {
        let addrs = target
            .sentinels
            .iter()
            .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
        let mut builder =
            SentinelClientBuilder::new(addrs, &target.master, SentinelServerType::Master)?
                .set_client_to_redis_db(target.db);
        if let Some(u) = &target.username {
            builder = builder.set_client_to_redis_username(u);
        }
        if let Some(p) = &target.password {
            builder = builder.set_client_to_redis_password(p);
        }
        let conn = SentinelConn(Arc::new(SentinelShared {
            sentinel: tokio::sync::Mutex::new(builder.build()?),
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            config,
            db: target.db,
            moved: tokio::sync::watch::channel(0).0,
            switches: Mutex::new(None),
        }));
        conn.connection().await?;
        let task = tokio::spawn(follow_switches(
            Arc::downgrade(&conn.0),
            target.sentinels.clone(),
            target.master.clone(),
            timeout,
        ));
        *conn.0.switches.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(conn)
    }

    /// Changes whenever the Sentinels announce a new master.
    pub(crate) fn moves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.moved.subscribe()
    }

    /// Drops the current connection whatever its generation (the master
    /// changed) and tells the hint subscriber.
    fn master_switched(&self) {
        *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.0.moved.send_modify(|n| *n += 1);
    }

    /// A client for the current master, asked of the Sentinels now (the hint
    /// subscriber uses it for its pub/sub connection).
    pub(crate) async fn master_client(&self) -> RedisResult<Client> {
        self.0.sentinel.lock().await.async_get_client().await
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.0
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current master connection, resolving the master first if there
    /// is none.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let mut sentinel = self.0.sentinel.lock().await;
        // Someone may have resolved it while we waited for the lock.
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let client = sentinel.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.0.config)
            .await?;
        let generation = self.0.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            master = %client.get_connection_info().addr(),
            "connected to the master named by the sentinels"
        );
        *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Forgets connection `generation` (if still current), so the next
    /// command resolves the master again.
    fn forget(&self, generation: u64, why: &RedisError) {
        let mut cur = self.0.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(error = %why, "master connection failed; asking the sentinels again");
            *cur = None;
        }
    }

    async fn request(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (generation, mut conn) = self.connection().await?;
        match conn.req_packed_command(cmd).await {
            Err(e) if is_read_only(&e) => {
                self.forget(generation, &e);
                let (generation, mut conn) = self.connection().await?;
                let result = conn.req_packed_command(cmd).await;
                if let Err(e) = &result {
                    if needs_new_master(e) {
                        self.forget(generation, e);
                    }
                }
                result
            }
            Err(e) => {
                if needs_new_master(&e) {
                    self.forget(generation, &e);
                }
                Err(e)
            }
            ok => ok,
        }
    }

    async fn pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let (generation, mut conn) = self.connection().await?;
        let result = conn.req_packed_commands(pipeline, offset, count).await;
        if let Err(e) = &result {
            if needs_new_master(e) {
                self.forget(generation, e);
            }
        }
        result
    }
}

/// How often the listener PINGs its Sentinel, to notice a dead one.
const SWITCH_HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Listens for `+switch-master <name> <old ip> <old port> <new ip> <new
/// port>` on one Sentinel at a time (the next one when it fails) and drops
/// the master connection when `master` moves. Ends when the store is gone.
async fn follow_switches(
    shared: std::sync::Weak<SentinelShared>,
    sentinels: Vec<(String, u16)>,
    master: String,
    timeout: std::time::Duration,
) {
    use futures_util::StreamExt;
    let mut next = 0usize;
    let mut resubscribe = false;
    loop {
        let (host, port) = &sentinels[next % sentinels.len()];
        next = next.wrapping_add(1);
        let subscribed = tokio::time::timeout(timeout, async {
            let client = Client::open(format!("redis://{host}:{port}"))?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            RedisResult::Ok(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = subscribed {
            if resubscribe {
                // A switch announced while we were not listening would go
                // unseen: look the master up again, to be sure.
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                SentinelConn(shared).master_switched();
            }
            resubscribe = true;
            let (mut sink, mut stream) = pubsub.split();
            let mut health = tokio::time::interval(SWITCH_HEALTH_EVERY);
            health.tick().await;
            loop {
                tokio::select! {
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                        if payload.split(' ').next() == Some(master.as_str()) {
                            let Some(shared) = shared.upgrade() else { return };
                            tracing::warn!(%payload, "the sentinels switched the master");
                            SentinelConn(shared).master_switched();
                        }
                    }
                    _ = health.tick() => {
                        let pong = tokio::time::timeout(timeout, sink.ping::<Value>()).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_node_urls_pass_through() {
        for url in [
            "redis://127.0.0.1:6379",
            "rediss://example.com",
            "redis+unix:///tmp/r.sock",
            "unix:///tmp/r.sock",
        ] {
            assert_eq!(parse(url), Ok(Target::Single(url.into())), "{url}");
        }
    }

    #[test]
    fn cluster_urls_name_every_seed() {
        assert_eq!(
            parse("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002/"),
            Ok(Target::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:6379".into(),
                "redis://[::1]:7002".into(),
            ]))
        );
        assert_eq!(
            parse("redis+cluster://u:p%40ss@a:1,b:2"),
            Ok(Target::Cluster(vec![
                "redis://u:p%40ss@a:1".into(),
                "redis://u:p%40ss@b:2".into(),
            ]))
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1/3",
            "redis+cluster://a:x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sentinel_urls_name_sentinels_master_and_options() {
        assert_eq!(
            parse("redis+sentinel://:s%3Acret@s1:5000,s2/mymaster?db=3"),
            Ok(Target::Sentinel(SentinelTarget {
                sentinels: vec![("s1".into(), 5000), ("s2".into(), 26379)],
                master: "mymaster".into(),
                username: None,
                password: Some("s:cret".into()),
                db: 3,
            }))
        );
        assert_eq!(
            parse("redis+sentinel://127.0.0.1:26379/m"),
            Ok(Target::Sentinel(SentinelTarget {
                sentinels: vec![("127.0.0.1".into(), 26379)],
                master: "m".into(),
                username: None,
                password: None,
                db: 0,
            }))
        );
        for bad in [
            "redis+sentinel://s1:5000",
            "redis+sentinel://s1:5000/",
            "redis+sentinel://s1:5000/a/b",
            "redis+sentinel://s1:5000/m?db=x",
            "redis+sentinel://s1:5000/m?pool=3",
            "redis+sentinel:///m",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_schemes_are_refused() {
        for bad in ["http://x", "nonsense", "redis+tls://x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
