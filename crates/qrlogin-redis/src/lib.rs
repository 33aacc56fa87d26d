//! qrlogin's Redis store: any number of stateless qrlogin instances share
//! one Redis (SPEC §4).
//!
//! * Every transition is ONE Lua script (`src/lua/*.lua`): it checks and
//!   changes the login atomically, so of any number of concurrent callers
//!   exactly one wins, and it publishes the wake-up hint in the same step.
//!   One round trip per transition; no read-before-write from Rust.
//! * Expiry is decided inside the scripts by comparing the caller's `now`
//!   with the stored expiry; Redis TTLs only garbage-collect.
//! * Only SHA-256 hashes of browser secrets and session tokens are stored.
//! * One multiplexed connection for commands, one pub/sub connection for
//!   hints (see [`hints`](crate::hints)), and every operation bounded by a
//!   timeout, so a dead Redis gives a fast [`StoreError::Unavailable`],
//!   never a hang.
//! * Three deployments (SPEC §4), chosen by the URL scheme: one Redis
//!   (`redis://`, `rediss://`, `redis+unix://`), Redis Cluster
//!   (`redis+cluster://h1:p1,h2:p2`) and Sentinel
//!   (`redis+sentinel://s1:p1,s2:p2/<master>`). They differ only in the
//!   command connection and where the hint subscription lives (see
//!   [`conn`](crate::conn) and [`hints`](crate::hints)); the scripts and all
//!   store logic are the same.
//!
//! The key layout is described in [`keys`].

mod conn;
mod events;
mod hints;
pub mod keys;
mod record;
mod route;
mod scripts;
mod sessions;
mod shard_hints;

pub use conn::redact_url;
pub use events::{EVENTS_KEY, GROUP as EVENTS_GROUP};
pub use keys::HINT_CHANNEL;

use async_trait::async_trait;
use conn::{Conn, SentinelConn, Target};
use qrlogin_core::{
    network_of, Approval, Event, GrantKey, LoginId, LoginRecord, MatchPolicy, NewLogin, Notifier,
    QueuedEvent, ScanPolicy, SecretHash, Session, SessionInfo, SessionRef, SessionToken, Store,
    StoreError, Taken, TransitionError, Ttls, User,
};
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClientBuilder;
use redis::{AsyncCommands, Client, ErrorKind, RedisError, RedisResult};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

type TransitionResult<T> = Result<T, TransitionError>;

/// Reconnection attempts the connection manager makes per reconnect before
/// failing pending commands; small, because callers get a bounded timeout
/// anyway and the next command starts a new reconnect.
const RECONNECT_RETRIES: usize = 2;
/// The connection manager's first reconnect delay.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(20);
/// The connection manager's longest reconnect delay.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// Maps a Redis client error to the store's error: replies it could not
/// understand are `Corrupt`; everything else (I/O, refused, timeouts, a
/// server that is loading, read-only or failing over) is `Unavailable`,
/// which the HTTP layer answers with a quick 503.
fn store_error(e: RedisError) -> StoreError {
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// A duration in whole milliseconds (as redis-rs's cluster retry waits
/// take them).
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one Redis operation under `timeout`, so no caller ever waits on a
/// dead or stuck Redis for longer than that.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    op: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_error(e)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from redis within {timeout:?}"
        ))),
    }
}

/// Checks a store URL without connecting: `redis://`, `rediss://` (TLS),
/// `redis+unix://`, `unix://`, `redis+cluster://h1:p1,h2:p2` and
/// `redis+sentinel://s1:p1,s2:p2/<master>[?db=N]`; anything else is refused
/// rather than misread.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    conn::parse(url).map(|_| ())
}

/// How this store hears hints: a classic subscription (one Redis,
/// Sentinel) or sharded channels through the cluster (see [`route`]).
enum Hints {
    Pubsub(hints::Source),
    Cluster(Vec<String>),
}

/// A demo phone-app token's value: the user and the caller-clock expiry,
/// which decides liveness exactly (the Redis TTL only garbage-collects).
#[derive(Serialize, Deserialize)]
struct MobileEntry {
    id: String,
    name: String,
    exp: u64,
}

/// The Redis-backed [`Store`]. Cheap to share behind an `Arc`; dropping it
/// stops its hint subscriber.
pub struct RedisStore {
    conn: Conn,
    notifier: Notifier,
    ttls: Ttls,
    op_timeout: Duration,
    scripts: scripts::Scripts,
    /// Whether transitions record events (see [`events`]).
    events_on: AtomicBool,
    /// `--redis-min-replicas`: replicas that must acknowledge redeem,
    /// logout and revoke writes (`WAIT`) before they count; 0 = no wait.
    min_replicas: u32,
    /// This instance's hint channels (see [`route`]).
    route: route::HintRoute,
    // Last: the subscriber task is aborted when the store goes away.
    _hints: hints::HintTask,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("ttls", &self.ttls)
            .field("op_timeout", &self.op_timeout)
            .field("min_replicas", &self.min_replicas)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis deployment named by `url` and subscribes to
    /// hints before returning, so a watcher that registers and then reads
    /// cannot miss a change:
    ///
    /// * `redis://host:port/db`, `rediss://…` (TLS), `redis+unix:///path`:
    ///   one Redis;
    /// * `redis+cluster://[user:pass@]h1:p1,h2:p2,…`: Redis Cluster, the
    ///   listed nodes being seeds (the slot map is read from them);
    /// * `redis+sentinel://[user:pass@]s1:p1,s2:p2,…/<master>[?db=N]`: the
    ///   master the Sentinels name (the credentials and `db` are the
    ///   master's), followed across failovers.
    ///
    /// `op_timeout` bounds every operation (and each connect step): when
    /// Redis is unreachable, calls fail with [`StoreError::Unavailable`]
    /// after at most that long, and the store recovers by itself when Redis
    /// is back.
    pub async fn connect(url: &str, ttls: Ttls, op_timeout: Duration) -> Result<Self, StoreError> {
        let (conn, source) = match conn::parse(url)? {
            Target::Single(url) => {
                let client = Client::open(url).map_err(store_error)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(op_timeout))
                    .set_response_timeout(Some(op_timeout))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_min_delay(RECONNECT_MIN_DELAY)
                    .set_max_delay(RECONNECT_MAX_DELAY);
                let conn = bounded(
                    op_timeout,
                    ConnectionManager::new_with_config(client.clone(), config),
                )
                .await?;
                (
                    Conn::Single(conn),
                    Hints::Pubsub(hints::Source::Single(Box::new(client))),
                )
            }
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(op_timeout)
                    .response_timeout(op_timeout)
                    .retries(u32::try_from(RECONNECT_RETRIES).unwrap_or(2))
                    .min_retry_wait(duration_ms(RECONNECT_MIN_DELAY))
                    .max_retry_wait(duration_ms(RECONNECT_MAX_DELAY))
                    .build()
                    .map_err(store_error)?;
                let conn = bounded(op_timeout, client.get_async_connection()).await?;
                (Conn::Cluster(conn), Hints::Cluster(nodes))
            }
            Target::Sentinel(target) => {
                // The master connection answers (or times out) a little
                // before `op_timeout`, so a stuck master is seen as an error
                // (and re-resolved) rather than only cut off from outside.
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(op_timeout))
                    .set_response_timeout(Some(op_timeout.mul_f64(0.9)));
                // Resolving tries every Sentinel, then the master.
                let conn = bounded(
                    op_timeout.saturating_mul(2),
                    SentinelConn::connect(&target, config, op_timeout),
                )
                .await?;
                (
                    Conn::Sentinel(conn.clone()),
                    Hints::Pubsub(hints::Source::Sentinel(conn)),
                )
            }
        };
        let notifier = Notifier::remote();
        let (route, hints) = match source {
            Hints::Pubsub(source) => {
                let route = route::HintRoute::new(false);
                let task =
                    hints::start(source, route.clone(), notifier.clone(), op_timeout).await?;
                (route, task)
            }
            Hints::Cluster(nodes) => {
                let route = route::HintRoute::new(true);
                let task =
                    shard_hints::start(&nodes, route.clone(), notifier.clone(), op_timeout).await?;
                (route, task)
            }
        };
        Ok(Self {
            conn,
            notifier,
            ttls,
            op_timeout,
            scripts: scripts::Scripts::new(),
            events_on: AtomicBool::new(false),
            min_replicas: 0,
            route,
            _hints: hints,
        })
    }

    /// Makes redeem, logout and revoke wait (`WAIT n timeout`, pipelined
    /// behind the write on the same connection, so on the master that ran
    /// it) until `n` replicas have the write; fewer in time is
    /// [`StoreError::Unavailable`] and the caller fails closed (redeem
    /// withholds the token; the login stays consumed). `WAIT` narrows, but
    /// does not close, the window in which a failover loses an
    /// acknowledged write: Redis stays eventually consistent.
    pub fn with_min_replicas(mut self, n: u32) -> Self {
        self.min_replicas = n;
        self
    }

    /// The `WAIT` timeout: a third of the op timeout, so a missing replica
    /// is a clear answer ("only k replicas") before the op timeout cuts the
    /// call off, even when a `NOSCRIPT` makes the script (and its `WAIT`)
    /// go twice.
    fn wait_ms(&self) -> u64 {
        duration_ms(self.op_timeout / 3).max(1)
    }

    /// Checks a `WAIT` reply against `min_replicas`.
    fn check_acks(&self, acks: i64) -> Result<(), StoreError> {
        if acks >= i64::from(self.min_replicas) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "only {acks} of {} replicas acknowledged the write in time",
                self.min_replicas
            )))
        }
    }

    /// Runs `cmd` (a write) and, when `--redis-min-replicas` is set, `WAIT`
    /// in the same pipeline: one round trip, one connection, and on Redis
    /// Cluster the pipeline goes to the node owning the write's slot (a
    /// keyless command in a pipeline follows the keyed one).
    async fn durable<T: redis::FromRedisValue + Send + 'static>(
        &self,
        cmd: redis::Cmd,
    ) -> RedisResult<(T, Option<i64>)> {
        let mut conn = self.conn.clone();
        if self.min_replicas == 0 {
            let v: T = cmd.query_async(&mut conn).await?;
            return Ok((v, None));
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.min_replicas).arg(self.wait_ms());
        let mut pipe = redis::pipe();
        pipe.add_command(cmd).add_command(wait);
        let (v, acks): (T, i64) = pipe.query_async(&mut conn).await?;
        Ok((v, Some(acks)))
    }

    /// [`durable`](Self::durable) when `wait`, else the plain command.
    async fn durable_if<T: redis::FromRedisValue + Send + 'static>(
        &self,
        wait: bool,
        cmd: redis::Cmd,
    ) -> RedisResult<(T, Option<i64>)> {
        if wait {
            return self.durable(cmd).await;
        }
        let mut conn = self.conn.clone();
        let v: T = cmd.query_async(&mut conn).await?;
        Ok((v, None))
    }

    /// The channel on which this instance hears `id`'s hints (route.rs):
    /// what a tool or test subscribes to (`SSUBSCRIBE` on Redis Cluster)
    /// to see what the scripts send here.
    pub fn hint_channel_for(&self, id: &LoginId) -> String {
        self.route.channel_for(id)
    }

    /// Runs `watch.lua`: the login's hints go to `channel` from now on.
    /// Returns the record as stored then, `None` when it is gone.
    async fn point_hints_here(
        &self,
        login_key: &str,
        channel: &str,
    ) -> Result<Option<String>, StoreError> {
        let (keys, args) = ([login_key], [channel]);
        self.run(self.scripts.watch.run_with(&keys, &args, |c| self.send(c)))
            .await
    }

    /// Runs one command on the store's connection (a clone: multiplexed).
    async fn send<T: redis::FromRedisValue + Send + 'static>(
        &self,
        cmd: redis::Cmd,
    ) -> RedisResult<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await
    }

    /// The per-operation timeout this store applies.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    async fn run<T>(&self, op: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        bounded(self.op_timeout, op).await
    }

    /// Runs a transition script on the login `id` with the common
    /// arguments (now, final_keep, id, channel) followed by `extra`: one
    /// `EVALSHA`, and only on `NOSCRIPT` one `EVAL` with the source (see
    /// [`scripts`]).
    async fn eval(
        &self,
        script: &scripts::Lua,
        id: &LoginId,
        extra_key: Option<String>,
        now_ms: u64,
        extra: &[&str],
    ) -> TransitionResult<Vec<String>> {
        let extra_keys: Vec<String> = extra_key.into_iter().collect();
        self.eval_keys(script, id, &extra_keys, now_ms, extra, false)
            .await
    }

    /// [`eval`](Self::eval) with any number of extra keys (all under the
    /// login's hash tag), and with `durable`, `WAIT` for
    /// `--redis-min-replicas` pipelined behind the script.
    async fn eval_keys(
        &self,
        script: &scripts::Lua,
        id: &LoginId,
        extra_keys: &[String],
        now_ms: u64,
        extra: &[&str],
        durable: bool,
    ) -> TransitionResult<Vec<String>> {
        let login_key = keys::login_key(id);
        let mut keys: Vec<&str> = Vec::with_capacity(2 + extra_keys.len());
        keys.push(&login_key);
        keys.extend(extra_keys.iter().map(String::as_str));
        // Events on, not Cluster: the script appends the event itself (the
        // stream is always the last key, see common.lua).
        if self.script_emits() {
            keys.push(events::EVENTS_KEY);
        }
        let keys = &keys[..];
        let now = now_ms.to_string();
        let final_keep = self.ttls.final_keep_ms.to_string();
        let id = id.to_string();
        let mut args: Vec<&str> = Vec::with_capacity(4 + extra.len());
        args.extend_from_slice(&[&now, &final_keep, &id, self.route.publish_verb()]);
        args.extend_from_slice(extra);
        if durable && self.min_replicas > 0 {
            let (reply, acks): (Vec<String>, Option<i64>) = self
                .run(script.run_with(keys, &args, |c| self.durable(c)))
                .await?;
            let out = record::outcome(reply);
            // Only a write that happened needs its replicas; an error
            // reply changed nothing.
            if out.is_ok() {
                self.check_acks(acks.unwrap_or(0))?;
            }
            return out;
        }
        let reply: Vec<String> = self
            .run(script.run_with(keys, &args, |c| self.send(c)))
            .await?;
        record::outcome(reply)
    }

    /// Whether transition scripts append events (events on, and the stream
    /// is in the login's node: not Cluster).
    fn script_emits(&self) -> bool {
        self.events_on.load(Ordering::Relaxed) && !events::is_cluster(&self.conn)
    }

    /// Whether the instance must append events after the script (Cluster).
    fn appends_after(&self) -> bool {
        self.events_on.load(Ordering::Relaxed) && events::is_cluster(&self.conn)
    }

    /// Appends `event` to the stream (Cluster only; see [`events`]).
    async fn append_event(&self, event: Option<Event>) -> Result<(), StoreError> {
        let Some(event) = event else { return Ok(()) };
        let mut conn = self.conn.clone();
        self.run(async move { events::append(&event).query_async::<()>(&mut conn).await })
            .await
    }

    /// Runs an event-stream command, creating the group (and the stream)
    /// first when Redis says it is missing.
    async fn stream_cmd(&self, cmd: redis::Cmd) -> Result<redis::Value, StoreError> {
        let mut conn = self.conn.clone();
        self.run(async move {
            match cmd.query_async::<redis::Value>(&mut conn).await {
                Err(e) if events::is_nogroup(&e) => {
                    match events::create_group().query_async::<()>(&mut conn).await {
                        Err(e) if !events::is_busygroup(&e) => return Err(e),
                        _ => {}
                    }
                    cmd.query_async(&mut conn).await
                }
                r => r,
            }
        })
        .await
    }

    /// `GET key`: the string value, if any.
    async fn get_string(&self, key: String) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        self.run(async move { conn.get(key).await }).await
    }

    /// `SET key value PX ttl`: a value and its garbage-collection TTL in one
    /// command (at least 1 ms: Redis refuses 0).
    async fn set_px(&self, key: String, value: String, ttl_ms: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.run(async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms.max(1))
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Logout of one session (`revoke.lua`), `durable`: with `WAIT` for
    /// `--redis-min-replicas`.
    async fn revoke(&self, session: &SessionRef, durable: bool) -> Result<(), StoreError> {
        // The session and its index entry: one slot (the login's tag).
        let (skey, ikey) = (
            keys::session_key(session),
            keys::sid_key(&session.login_id()),
        );
        // Events on Cluster: the instance appends session.revoked after the
        // script, so it reads who held the session first.
        let before = if self.appends_after() {
            self.get_string(skey.clone()).await?
        } else {
            None
        };
        let mut keys = vec![skey.as_str(), ikey.as_str()];
        if self.script_emits() {
            keys.push(events::EVENTS_KEY);
        }
        let (hash, lid) = (session.hash().to_hex(), session.login_id().to_string());
        let now = qrlogin_core::Clock::now_ms(&qrlogin_core::SystemClock);
        let at = now.to_string();
        let args = [hash.as_str(), lid.as_str(), at.as_str()];
        let script = &self.scripts.revoke;
        let (deleted, acks): (i64, Option<i64>) = self
            .run(script.run_with(&keys, &args, |c| self.durable_if(durable, c)))
            .await?;
        acks.map_or(Ok(()), |a| self.check_acks(a))?;
        if let (Some(json), true) = (before, deleted > 0) {
            if let Some(s) = record::session(&json, 0)? {
                let event = Event::revoked(session.login_id(), s.user, now);
                if let Err(e) = self.append_event(Some(event)).await {
                    tracing::warn!(error = %e, "could not record a session event");
                }
            }
        }
        Ok(())
    }

    /// A transition whose success reply is the record's JSON.
    async fn transition(
        &self,
        script: &scripts::Lua,
        id: &LoginId,
        now_ms: u64,
        extra: &[&str],
    ) -> TransitionResult<LoginRecord> {
        let reply = self.eval(script, id, None, now_ms, extra).await?;
        let json = reply
            .first()
            .ok_or_else(|| StoreError::Corrupt("script reply without a record".into()))?;
        let rec = record::login(*id, json)?.0;
        if self.appends_after() {
            // The transition happened: a failed append loses the event,
            // not the login (the weaker Cluster guarantee).
            if let Err(e) = self.append_event(Event::of_transition(&rec, now_ms)).await {
                tracing::warn!(error = %e, "could not record a login event");
            }
        }
        Ok(rec)
    }
}

#[async_trait]
impl Store for RedisStore {
    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// A new login needs no check (its id is fresh from the CSPRNG), so it
    /// is one plain `SET ... PX`, not a script; like the memory store, a
    /// (practically impossible) id collision replaces the old login. No
    /// hint: nobody can be watching a login not yet created.
    async fn create(&self, login: NewLogin, now_ms: u64) -> Result<LoginRecord, StoreError> {
        let net = network_of(&login.browser.ip);
        let rec = LoginRecord::pending(login, now_ms, self.ttls.pending_ms);
        let purge = rec.expires_at_ms + self.ttls.final_keep_ms;
        let channel = self.route.channel_for(&rec.id);
        let json = record::to_json(&rec, &net, purge, Some(&channel))?;
        self.set_px(keys::login_key(&rec.id), json, purge - now_ms)
            .await?;
        Ok(rec)
    }

    async fn get(&self, id: &LoginId, now_ms: u64) -> Result<Option<LoginRecord>, StoreError> {
        let Some(json) = self.get_string(keys::login_key(id)).await? else {
            return Ok(None);
        };
        let (rec, purge) = record::login(*id, &json)?;
        // Past its purge deadline the login is gone, as the scripts' load()
        // says, even if Redis has not evicted the key yet.
        Ok((now_ms < purge).then_some(rec))
    }

    /// A plain `GET`, as `get`, when the login's hints already come here
    /// (this instance created it, or waited on it last); otherwise one more
    /// round trip, `watch.lua`, which points them here (see [`route`]).
    async fn get_watched(
        &self,
        id: &LoginId,
        now_ms: u64,
    ) -> Result<Option<LoginRecord>, StoreError> {
        let login_key = keys::login_key(id);
        let Some(json) = self.get_string(login_key.clone()).await? else {
            return Ok(None);
        };
        let channel = self.route.channel_for(id);
        let (rec, purge, here) = record::login_and_channel(*id, &json)?;
        if here.as_deref() == Some(channel.as_str()) {
            return Ok((now_ms < purge).then_some(rec));
        }
        let Some(json) = self.point_hints_here(&login_key, &channel).await? else {
            return Ok(None);
        };
        let (rec, purge) = record::login(*id, &json)?;
        Ok((now_ms < purge).then_some(rec))
    }

    async fn scan_assessed(
        &self,
        id: &LoginId,
        user: &User,
        policy: &ScanPolicy,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        let ext = self.ttls.scan_extension_ms.to_string();
        let required = match &policy.matching {
            MatchPolicy::Never => "never".to_string(),
            MatchPolicy::Always => "always".to_string(),
            MatchPolicy::IfOtherNetwork(net) => format!("net:{net}"),
            MatchPolicy::IfHighRisk => "risk".to_string(),
        };
        // The phone's side of the risk rule (scan.lua's ARGV[9..14]).
        let (on, cc, lat, lon, net, km) = match &policy.risk {
            None => (
                "0",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Some(c) => (
                "1",
                c.phone.country_code.clone().unwrap_or_default(),
                c.phone
                    .coords
                    .map(|x| x.lat_e6.to_string())
                    .unwrap_or_default(),
                c.phone
                    .coords
                    .map(|x| x.lon_e6.to_string())
                    .unwrap_or_default(),
                c.phone_network.clone(),
                c.max_distance_km.to_string(),
            ),
        };
        self.transition(
            &self.scripts.scan,
            id,
            now_ms,
            &[
                &ext, &user.id, &user.name, &required, on, &cc, &lat, &lon, &net, &km,
            ],
        )
        .await
    }

    async fn approve_checked(
        &self,
        id: &LoginId,
        user_id: &str,
        approval: &Approval,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        let code = approval
            .match_code
            .map(|c| c.to_string())
            .unwrap_or_default();
        let present = if approval.confirm_presence { "1" } else { "0" };
        let result = if matches!(self.conn, Conn::Cluster(_)) {
            // The index is in another slot: written first (fail closed).
            sessions::index_before_approve(self, user_id, id, now_ms).await?;
            self.transition(
                &self.scripts.approve,
                id,
                now_ms,
                &[user_id, &code, present],
            )
            .await
        } else {
            // One Redis (or Sentinel's master): inside the approve script.
            let (score, life) = sessions::index_bound(self, now_ms);
            let (score, life) = (score.to_string(), life.to_string());
            match self
                .eval_keys(
                    &self.scripts.approve,
                    id,
                    &[keys::user_sessions_key(user_id)],
                    now_ms,
                    &[user_id, &code, present, &score, &life],
                    false,
                )
                .await
            {
                Ok(reply) => match reply.first() {
                    Some(json) => record::login(*id, json)
                        .map(|(rec, _)| rec)
                        .map_err(TransitionError::from),
                    None => Err(StoreError::Corrupt("script reply without a record".into()).into()),
                },
                Err(e) => Err(e),
            }
        };
        if matches!(result, Err(TransitionError::WrongMatchCode)) && self.appends_after() {
            // The script denied the login (a change, with its event) but
            // answered with an error: read the denied record (Cluster).
            if let Ok(Some(rec)) = self.get(id, now_ms).await {
                if let Err(e) = self.append_event(Event::of_transition(&rec, now_ms)).await {
                    tracing::warn!(error = %e, "could not record a login event");
                }
            }
        }
        result
    }

    async fn deny(
        &self,
        id: &LoginId,
        user_id: &str,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        self.transition(&self.scripts.deny, id, now_ms, &[user_id])
            .await
    }

    async fn cancel(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        self.transition(&self.scripts.cancel, id, now_ms, &[&secret.to_hex()])
            .await
    }

    async fn redeem(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        token: &SessionToken,
        now_ms: u64,
    ) -> TransitionResult<User> {
        if token.login_id() != *id {
            // The session key lives under the token's login; a token made
            // for another login would put it in the wrong slot.
            return Err(
                StoreError::Corrupt("session token belongs to another login".into()).into(),
            );
        }
        let session_ms = self.ttls.session_ms.to_string();
        let reply = self
            .eval_keys(
                &self.scripts.redeem,
                id,
                &[keys::session_key(&token.session_ref()), keys::sid_key(id)],
                now_ms,
                &[&secret.to_hex(), &session_ms, &token.hash().to_hex()],
                true,
            )
            .await;
        let reply = match reply {
            Err(TransitionError::Store(StoreError::Unavailable(why))) if self.min_replicas > 0 => {
                // Too few replicas have it (or no answer): the token is
                // withheld and the login stays consumed (fail closed). The
                // session nobody will ever hold is removed, best effort, so
                // the user's list does not show it.
                // (The revoke script: the login's index entry goes only if
                // it names this token, not an earlier redeem's session.)
                let _ = self.revoke(&token.session_ref(), false).await;
                return Err(StoreError::Unavailable(why).into());
            }
            other => other?,
        };
        let user = match <[String; 2]>::try_from(reply) {
            Ok([id, name]) => User { id, name },
            Err(_) => return Err(StoreError::Corrupt("malformed redeem reply".into()).into()),
        };
        if self.appends_after() {
            // The reply has no browser context: read the consumed record.
            let event = match self.get(id, now_ms).await {
                Ok(Some(rec)) => Event::of_transition(&rec, now_ms),
                _ => None,
            };
            if let Err(e) = self.append_event(event).await {
                tracing::warn!(error = %e, "could not record a login event");
            }
        }
        Ok(user)
    }

    async fn session(
        &self,
        session: &SessionRef,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError> {
        match self.get_string(keys::session_key(session)).await? {
            Some(json) => record::session(&json, now_ms),
            None => Ok(None),
        }
    }

    async fn revoke_session(&self, session: &SessionRef) -> Result<(), StoreError> {
        self.revoke(session, true).await
    }

    async fn user_sessions(
        &self,
        user_id: &str,
        now_ms: u64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        sessions::list(self, user_id, now_ms).await
    }

    async fn revoke_user_session(
        &self,
        user_id: &str,
        sid: &LoginId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        sessions::revoke_one(self, user_id, sid, now_ms).await
    }

    async fn revoke_user_sessions(&self, user_id: &str, now_ms: u64) -> Result<u64, StoreError> {
        sessions::revoke_all(self, user_id, now_ms).await
    }

    fn set_events(&self, on: bool) {
        self.events_on.store(on, Ordering::Relaxed);
    }

    async fn events_take(
        &self,
        consumer: &str,
        max: usize,
        idle_ms: u64,
        _now_ms: u64,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        // A dead consumer's events first, all at once and in order (Redis
        // measures idleness on its own clock), then new ones.
        let mut out = Vec::new();
        let reply = self.stream_cmd(events::consumers()).await?;
        for dead in events::parse_consumers(&reply)?
            .into_iter()
            .filter(|c| c.name != consumer && c.idle_ms >= idle_ms)
        {
            let want = max.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            if dead.pending > 0 {
                let reply = self
                    .stream_cmd(events::pending_of(&dead.name, want))
                    .await?;
                let ids = events::parse_pending_ids(&reply)?;
                if !ids.is_empty() {
                    let reply = self
                        .stream_cmd(events::claim(consumer, idle_ms, &ids))
                        .await?;
                    out.extend(events::parse_claimed(&reply)?);
                }
                if ids.len() as u64 >= dead.pending {
                    self.stream_cmd(events::delete_consumer(&dead.name)).await?;
                }
            } else {
                self.stream_cmd(events::delete_consumer(&dead.name)).await?;
            }
        }
        let want = max.saturating_sub(out.len());
        if want > 0 {
            let reply = self.stream_cmd(events::read_new(consumer, want)).await?;
            out.extend(events::parse_read(&reply)?);
        }
        Ok(out)
    }

    async fn events_hold(
        &self,
        consumer: &str,
        receipts: &[String],
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        self.stream_cmd(events::hold(consumer, receipts)).await?;
        Ok(())
    }

    async fn events_ack(&self, receipts: &[String]) -> Result<(), StoreError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let pipe = events::ack(receipts);
        self.run(async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    async fn put_mobile_token(
        &self,
        hash: &SecretHash,
        user: &User,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_string(&MobileEntry {
            id: user.id.clone(),
            name: user.name.clone(),
            exp: now_ms + ttl_ms,
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.set_px(keys::mobile_token_key(hash), value, ttl_ms)
            .await
    }

    async fn mobile_token(
        &self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<(User, u64)>, StoreError> {
        let Some(value) = self.get_string(keys::mobile_token_key(hash)).await? else {
            return Ok(None);
        };
        let entry: MobileEntry = serde_json::from_str(&value)
            .map_err(|e| StoreError::Corrupt(format!("mobile token entry: {e}")))?;
        Ok((entry.exp > now_ms).then_some((
            User {
                id: entry.id,
                name: entry.name,
            },
            entry.exp,
        )))
    }

    async fn put_grant(
        &self,
        key: &GrantKey,
        value: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let json = record::grant_json(value, now_ms + ttl_ms)?;
        self.set_px(keys::grant_key(key), json, ttl_ms).await
    }

    async fn grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<String>, StoreError> {
        match self.get_string(keys::grant_key(key)).await? {
            Some(json) => record::grant(&json, now_ms),
            None => Ok(None),
        }
    }

    async fn take_grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<Taken>, StoreError> {
        let key = keys::grant_key(key);
        let now = now_ms.to_string();
        let (keys, args) = ([key.as_str()], [now.as_str()]);
        let reply: Vec<String> = self
            .run(
                self.scripts
                    .take_grant
                    .run_with(&keys, &args, |c| self.send(c)),
            )
            .await?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("none"), _) => Ok(None),
            (Some("first"), Some(v)) => Ok(Some(Taken::First(v.clone()))),
            (Some("again"), Some(v)) => Ok(Some(Taken::Again(v.clone()))),
            _ => Err(StoreError::Corrupt("grant entry is not valid".into())),
        }
    }

    async fn delete_grant(&self, key: &GrantKey) -> Result<(), StoreError> {
        let key = keys::grant_key(key);
        let mut conn = self.conn.clone();
        self.run(async move { conn.del::<_, ()>(key).await }).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let pong: String = self
            .run(async move { redis::cmd("PING").query_async(&mut conn).await })
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("PING answered {pong:?}")))
        }
    }

    fn ttls(&self) -> Ttls {
        self.ttls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_single_cluster_and_sentinel_urls() {
        for ok in [
            "redis://127.0.0.1:6379",
            "rediss://example.com",
            "redis+unix:///tmp/r.sock",
            "unix:///tmp/r.sock",
            "redis+cluster://a,b",
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
            "redis+sentinel://s1:26379,s2:26379/mymaster",
            "redis+sentinel://:pw@s1/mymaster?db=2",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "redis+sentinel://x",
            "redis+cluster://",
            "http://x",
            "nonsense",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_script_is_prelude_plus_its_own_file() {
        for (name, src) in [
            ("scan.lua", scripts::SCAN),
            ("approve.lua", scripts::APPROVE),
            ("deny.lua", scripts::DENY),
            ("cancel.lua", scripts::CANCEL),
            ("redeem.lua", scripts::REDEEM),
            ("revoke_sid.lua", scripts::REVOKE_SID),
        ] {
            assert!(src.starts_with("-- Shared prelude"), "{name}");
            assert!(src.contains(&format!("-- ---- {name} ----")), "{name}");
        }
    }

    /// The scripts bound the stream like the memory store bounds its queue.
    #[test]
    fn scripts_bound_the_event_stream_like_the_memory_queue() {
        let bound = format!(
            "'MAXLEN', '~', '{}'",
            qrlogin_core::events::MAX_QUEUED_EVENTS
        );
        assert!(scripts::SCAN.contains(&bound));
        assert!(scripts::REVOKE.contains(&bound));
        assert!(scripts::SCAN.contains(&format!("'{EVENTS_KEY}'")));
    }
}
