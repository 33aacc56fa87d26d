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
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The default port of a cluster node named without one.
const REDIS_PORT: u16 = 6379;
/// The default port of a Sentinel named without one.
const SENTINEL_PORT: u16 = 26379;

/// What a store URL names. `Debug` is written by hand: it hides
/// passwords (store errors and logs may print a target).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `redis://`, `rediss://`, `redis+unix://`, `unix://`: the URL as is.
    Single(String),
    /// `redis+cluster://[cred@]h1:p1,h2:p2`: one `redis://[cred@]h:p` URL
    /// per seed node.
    Cluster(Vec<String>),
    /// `redis+sentinel://[cred@]s1:p1,s2:p2/<master>[?db=N]`.
    Sentinel(SentinelTarget),
}

/// A parsed `redis+sentinel://` URL. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
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

/// A store URL without its credentials (`scheme://***@rest`), for logs and
/// messages; the URL as is when it has none.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Single(url) => f.debug_tuple("Single").field(&redact_url(url)).finish(),
            Target::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .finish(),
            Target::Sentinel(t) => f.debug_tuple("Sentinel").field(t).finish(),
        }
    }
}

impl std::fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
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
            // Credentials first: a password may contain `?` (the query
            // starts after the last `@`).
            let (cred, rest) = split_cred(rest);
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
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
            // Option text is not echoed in errors (it may be a mistyped
            // secret); only a known key is named.
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("db", v)) => {
                        db = v
                            .parse()
                            .map_err(|_| bad_url("redis+sentinel:// db= takes an integer"))?;
                    }
                    _ => {
                        return Err(bad_url(
                            "unknown redis+sentinel:// option (only db=N is supported)",
                        ))
                    }
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
            Conn::Sentinel(c) => c.0.redis.db(),
        }
    }
}

/// A host and port, as the Sentinels name a server.
type Addr = (String, u16);

/// A connection to the master a set of Sentinels names, which follows
/// failovers: the current connection is dropped when it fails or when the
/// server answers `READONLY` (it was demoted), and the next command looks
/// the master up again (see [`SentinelConn::find_master`]). A `READONLY`
/// reply means the command was not executed (a transition script's first
/// write is refused before anything changed), so that command is retried
/// once on the new master; after an I/O error it may have run, so it is
/// not retried and the caller gets `Unavailable`.
///
/// Errors alone are not enough: after a failover the old master keeps
/// accepting writes until the Sentinels get round to demoting it (seconds
/// later), and writes it takes then are lost when it resyncs from the new
/// master. So a background task also listens for the Sentinels'
/// `+switch-master` announcements and drops the connection the moment the
/// master changes (and bumps [`SentinelConn::moves`], which makes the hint
/// subscriber move too); the next lookup goes straight to the announced
/// address, because a Sentinel that has not heard of the switch yet would
/// still name the old master.
///
/// The lookup is done here rather than by redis-rs's `SentinelClient`,
/// which asks the Sentinels one after the other with fixed timeouts (1 s
/// connect, 500 ms reply): one hung Sentinel first in the list made every
/// lookup outlast the store's op timeout, so nothing was ever connected.
#[derive(Clone)]
pub(crate) struct SentinelConn(Arc<SentinelShared>);

pub(crate) struct SentinelShared {
    /// The Sentinels' addresses, as configured.
    sentinels: Vec<Addr>,
    /// The monitored master's name.
    master: String,
    /// Credentials and database for the master.
    redis: RedisConnectionInfo,
    /// Timeouts of the master connection.
    config: AsyncConnectionConfig,
    /// Timeouts of each question to one Sentinel: a fraction of the op
    /// timeout, so a hung Sentinel is given up on while the others' answers
    /// can still be used within the same operation.
    probe: AsyncConnectionConfig,
    /// Held while looking the master up (lookups are single-flight); holds
    /// the index of the Sentinel whose answer was used last, which is asked
    /// first next time.
    lookup: tokio::sync::Mutex<usize>,
    /// The current master connection and its generation, `None` after a
    /// failure or a switch until the next lookup.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    /// The address of the master last connected to (kept when the
    /// connection is dropped): the hint subscriber's address, and what the
    /// switch listener compares a Sentinel's answer with.
    master_addr: Mutex<Option<Addr>>,
    /// The new master announced by the last `+switch-master`: connected to
    /// directly (after a `ROLE` check) instead of asking the Sentinels,
    /// until connecting to it fails or the listener's Sentinel names it too.
    announced: Mutex<Option<Addr>>,
    /// Bumped on every switch of our master (announced, or noticed by the
    /// listener); a lookup that saw it change meanwhile is not used.
    moved: tokio::sync::watch::Sender<u64>,
    /// The `+switch-master` listener; aborted with the last handle.
    switches: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SentinelShared {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.switches).take() {
            task.abort();
        }
    }
}

/// Locks a std mutex, ignoring poisoning (every critical section here only
/// replaces a value, so a panic cannot leave it half-updated).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

/// `host:port`, with IPv6 hosts bracketed (for logs).
fn show(addr: &Addr) -> String {
    if addr.0.contains(':') {
        format!("[{}]:{}", addr.0, addr.1)
    } else {
        format!("{}:{}", addr.0, addr.1)
    }
}

/// Parses `+switch-master <name> <old ip> <old port> <new ip> <new port>`
/// into the new master's address, if it is about `master`.
fn switched_to(payload: &str, master: &str) -> Option<Addr> {
    let mut words = payload.split(' ');
    if words.next() != Some(master) {
        return None;
    }
    let mut rest = words.skip(2);
    let host = rest.next()?;
    let port = rest.next()?.parse().ok()?;
    Some((host.to_string(), port))
}

impl SentinelConn {
    /// Looks the master up once, so a wrong setup fails at start-up, and
    /// starts the `+switch-master` listener. The master connection uses
    /// `config`'s timeouts; `timeout` (the op timeout) bounds each step of
    /// the listener, and a quarter of it each question to one Sentinel.
    pub(crate) async fn connect(
        target: &SentinelTarget,
        config: AsyncConnectionConfig,
        timeout: std::time::Duration,
    ) -> RedisResult<Self> {
        if target.sentinels.is_empty() {
            return Err(RedisError::from((
                ErrorKind::EmptySentinelList,
                "no sentinel address",
            )));
        }
        let mut redis = RedisConnectionInfo::default().set_db(target.db);
        if let Some(u) = &target.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &target.password {
            redis = redis.set_password(p);
        }
        let probe_timeout = (timeout / 4).max(std::time::Duration::from_millis(10));
        let conn = SentinelConn(Arc::new(SentinelShared {
            sentinels: target.sentinels.clone(),
            master: target.master.clone(),
            redis,
            config,
            probe: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(probe_timeout))
                .set_response_timeout(Some(probe_timeout)),
            lookup: tokio::sync::Mutex::new(0),
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            master_addr: Mutex::new(None),
            announced: Mutex::new(None),
            moved: tokio::sync::watch::channel(0).0,
            switches: Mutex::new(None),
        }));
        conn.connection().await?;
        let task = tokio::spawn(follow_switches(Arc::downgrade(&conn.0), timeout));
        *lock(&conn.0.switches) = Some(task);
        Ok(conn)
    }

    /// Changes whenever the master changes (announced by the Sentinels, or
    /// found different by the listener after it resubscribed).
    pub(crate) fn moves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.moved.subscribe()
    }

    /// Drops the current connection whatever its generation (the master
    /// changed), remembers the announced new master (if any) and tells the
    /// hint subscriber. The counter is bumped under the same lock a lookup
    /// installs its connection under, so a lookup that started before this
    /// sees the change and does not install a connection to the old master.
    fn master_switched(&self, announced: Option<Addr>) {
        let mut cur = lock(&self.0.current);
        *cur = None;
        *lock(&self.0.announced) = announced;
        self.0.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A client for the current master (looked up first if there is no
    /// connection); the hint subscriber uses it for its pub/sub connection.
    pub(crate) async fn master_client(&self) -> RedisResult<Client> {
        self.connection().await?;
        let addr = lock(&self.0.master_addr)
            .clone()
            .ok_or_else(|| RedisError::from((ErrorKind::Client, "no master connected yet")))?;
        Client::open(self.master_info(&addr)?)
    }

    /// Where and how to connect to the master at `addr`.
    fn master_info(&self, addr: &Addr) -> RedisResult<redis::ConnectionInfo> {
        Ok(ConnectionAddr::Tcp(addr.0.clone(), addr.1)
            .into_connection_info()?
            .set_redis_settings(self.0.redis.clone()))
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        lock(&self.0.current).clone()
    }

    /// The current master connection, looking the master up first if there
    /// is none. Unbounded in itself: every caller runs it under the op
    /// timeout (a lookup cancelled there installs nothing).
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let mut preferred = self.0.lookup.lock().await;
        loop {
            // Someone may have connected while we waited for the lock.
            if let Some(c) = self.cached() {
                return Ok(c);
            }
            let before = *self.0.moved.borrow();
            let (addr, conn) = self.find_master(&mut preferred).await?;
            let mut cur = lock(&self.0.current);
            if *self.0.moved.borrow() != before {
                // A switch was announced while we looked: what we found may
                // be the old master. Look again (at the announced one).
                continue;
            }
            let generation = self.0.generation.fetch_add(1, Ordering::Relaxed) + 1;
            *cur = Some((generation, conn.clone()));
            drop(cur);
            tracing::info!(master = %show(&addr), "connected to the master");
            *lock(&self.0.master_addr) = Some(addr);
            return Ok((generation, conn));
        }
    }

    /// Finds the master and connects to it: the address announced by the
    /// last `+switch-master` if there is one and it says `ROLE` master;
    /// otherwise all Sentinels are asked at once (the one used last time
    /// first) and their answers are tried as they come, until one names a
    /// server that says it is master. A hung or dead Sentinel thus costs
    /// nothing while another one answers.
    async fn find_master(
        &self,
        preferred: &mut usize,
    ) -> RedisResult<(Addr, MultiplexedConnection)> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let announced = lock(&self.0.announced).clone();
        if let Some(addr) = announced {
            match self.connect_master(&addr).await {
                Ok(conn) => return Ok((addr, conn)),
                Err(e) => {
                    tracing::warn!(
                        master = %show(&addr), error = %e,
                        "the announced master failed; asking the sentinels"
                    );
                    let mut a = lock(&self.0.announced);
                    if a.as_ref() == Some(&addr) {
                        *a = None;
                    }
                }
            }
        }
        let n = self.0.sentinels.len();
        let first = *preferred % n.max(1);
        let mut asks = (0..n)
            .map(|k| (first + k) % n)
            .map(|i| async move { (i, self.ask(i).await) })
            .collect::<FuturesUnordered<_>>();
        let mut tried: Vec<Addr> = Vec::new();
        let mut last = None;
        while let Some((i, answer)) = asks.next().await {
            let addr = match answer {
                Ok(addr) => addr,
                Err(e) => {
                    tracing::debug!(sentinel = %show(&self.0.sentinels[i]), error = %e, "sentinel did not answer");
                    last = Some(e);
                    continue;
                }
            };
            if tried.contains(&addr) {
                continue;
            }
            match self.connect_master(&addr).await {
                Ok(conn) => {
                    *preferred = i;
                    return Ok((addr, conn));
                }
                Err(e) => {
                    tracing::debug!(master = %show(&addr), error = %e, "named master refused");
                    tried.push(addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "no sentinel named a master",
            ))
        }))
    }

    /// Asks Sentinel `i` for the master's address, on a fresh connection
    /// with the short probe timeouts (a Sentinel connection is not kept:
    /// lookups are rare, and a kept one could be the hung one).
    async fn ask(&self, i: usize) -> RedisResult<Addr> {
        let (host, port) = &self.0.sentinels[i];
        let client = Client::open(ConnectionAddr::Tcp(host.clone(), *port))?;
        let mut c = client
            .get_multiplexed_async_connection_with_config(&self.0.probe)
            .await?;
        let addr: Option<Addr> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.0.master)
            .query_async(&mut c)
            .await?;
        addr.ok_or_else(|| {
            RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinel does not know the master",
            ))
        })
    }

    /// Connects to `addr` with the master's credentials and database, and
    /// checks that it says `ROLE` master (a Sentinel may be behind, and a
    /// demoted master answers reads but refuses writes).
    async fn connect_master(&self, addr: &Addr) -> RedisResult<MultiplexedConnection> {
        let client = Client::open(self.master_info(addr)?)?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&self.0.config)
            .await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        let is_master = match role.first() {
            Some(Value::BulkString(b)) => b.as_slice() == b"master",
            Some(Value::SimpleString(s)) => s == "master",
            _ => false,
        };
        if is_master {
            Ok(conn)
        } else {
            Err(RedisError::from((
                ErrorKind::Client,
                "the server named as master is not a master",
            )))
        }
    }

    /// Called by the listener with what a Sentinel it just subscribed to
    /// names as master: if that is not where we are connected, a switch may
    /// have gone unseen while it was not listening, so the connection is
    /// dropped (and watchers re-read). Not while an announced address is
    /// in use: the announcement is newer than a lagging Sentinel's answer;
    /// once a Sentinel names the announced address too, the Sentinels have
    /// caught up and the announcement is no longer needed.
    fn check_master(&self, named: &Addr) {
        {
            let mut announced = lock(&self.0.announced);
            if let Some(a) = announced.as_ref() {
                if a == named {
                    *announced = None;
                }
                return;
            }
        }
        let differs = lock(&self.0.master_addr)
            .as_ref()
            .is_some_and(|cur| cur != named);
        if differs {
            tracing::warn!(master = %show(named), "a sentinel names another master; reconnecting");
            self.master_switched(None);
        }
    }

    /// Forgets connection `generation` (if still current), so the next
    /// command looks the master up again.
    fn forget(&self, generation: u64, why: &RedisError) {
        let mut cur = lock(&self.0.current);
        if cur.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(error = %why, "master connection failed; looking the master up again");
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
/// port>` on one Sentinel at a time (the next one when it fails) and, when
/// our master moves, drops the master connection and remembers the new
/// address. After each (re)subscribe it also asks that Sentinel for the
/// master, since a switch announced while it was not listening would go
/// unseen. Warns once per streak of failed subscribes (it retries every
/// 200 ms). Ends when the store is gone.
async fn follow_switches(shared: std::sync::Weak<SentinelShared>, timeout: std::time::Duration) {
    use futures_util::StreamExt;
    let (sentinels, master) = match shared.upgrade() {
        Some(s) => (s.sentinels.clone(), s.master.clone()),
        None => return,
    };
    let mut next = 0usize;
    let mut failing = false;
    loop {
        let i = next % sentinels.len();
        next = next.wrapping_add(1);
        let (host, port) = &sentinels[i];
        let subscribed = tokio::time::timeout(timeout, async {
            let client = Client::open(ConnectionAddr::Tcp(host.clone(), *port))?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            RedisResult::Ok(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                failing = false;
                {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    let conn = SentinelConn(shared);
                    if let Ok(Ok(named)) = tokio::time::timeout(timeout, conn.ask(i)).await {
                        conn.check_master(&named);
                    }
                }
                let (mut sink, mut stream) = pubsub.split();
                let mut health = tokio::time::interval(SWITCH_HEALTH_EVERY);
                health.tick().await;
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let Some(msg) = msg else { break };
                            let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                            if let Some(to) = switched_to(&payload, &master) {
                                let Some(shared) = shared.upgrade() else { return };
                                tracing::warn!(%payload, "the sentinels switched the master");
                                SentinelConn(shared).master_switched(Some(to));
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
            failed => {
                if !failing {
                    failing = true;
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {timeout:?}"),
                    };
                    tracing::warn!(
                        sentinel = %show(&(host.clone(), *port)), %error,
                        "cannot listen for master switches; trying the next sentinel \
                         (not repeated until one works)"
                    );
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
    fn a_sentinel_password_with_a_question_mark_stays_out_of_the_options() {
        // Percent-encoded: parsed as the password, not as the query.
        assert_eq!(
            parse("redis+sentinel://:pa%3Fss@s1/m?db=2"),
            Ok(Target::Sentinel(SentinelTarget {
                sentinels: vec![("s1".into(), 26379)],
                master: "m".into(),
                username: None,
                password: Some("pa?ss".into()),
                db: 2,
            }))
        );
        // Raw `?` in the password, or a bad option after it: refused, and
        // no error names the secret or echoes the option text.
        for (url, secret) in [
            ("redis+sentinel://:hun?ter2@s1/m?db=1", "ter2"),
            ("redis+sentinel://:hunter2@s1/m?db=hunter3", "hunter3"),
            ("redis+sentinel://:hunter2@s1/m?hunter3=1", "hunter3"),
            ("redis+sentinel://:hun?ter2=1@s1/m?x=1", "ter2"),
        ] {
            match parse(url) {
                Err(StoreError::Unavailable(e)) => {
                    assert!(!e.contains(secret) && !e.contains("hunter"), "{url}: {e}");
                }
                other => {
                    let shown = format!("{other:?}");
                    assert!(!shown.contains(secret), "{url}: {shown}");
                }
            }
        }
    }

    #[test]
    fn debug_output_hides_passwords() {
        for url in [
            "redis+sentinel://u:hunter2@s1/m",
            "redis+cluster://:hunter2@a:1,b:2",
            "redis://:hunter2@h:6379/0",
        ] {
            let shown = format!("{:?}", parse(url).expect("parses"));
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn switch_announcements_name_the_new_master() {
        assert_eq!(
            switched_to("qrl 127.0.0.1 7000 ::1 7001", "qrl"),
            Some(("::1".into(), 7001))
        );
        assert_eq!(switched_to("other 127.0.0.1 7000 h 7001", "qrl"), None);
        assert_eq!(switched_to("qrl 127.0.0.1 7000", "qrl"), None);
    }

    #[test]
    fn other_schemes_are_refused() {
        for bad in ["http://x", "nonsense", "redis+tls://x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
