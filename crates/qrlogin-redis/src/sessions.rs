//! A user's session index in Redis: list, log out one, log out everywhere.
//!
//! Layout (see [`keys`]): the index `qrl:{u:<sha256(user id)>}:sessions`
//! is a sorted set of sids (login ids) under the user's own hash tag; what
//! the phone lists sits next to each session, in `qrl:{<login id>}:sid`,
//! under the login's tag, written by the redeem script with the session.
//! So nothing here needs a cross-slot script on Redis Cluster: the index is
//! one slot, and each session is revoked by one script in its login's slot.
//!
//! Fail closed: the sid is added to the index no later than the approve
//! (approve is the last step that knows the user before redeem; redeem
//! does not): inside `approve.lua` on one Redis and Sentinel, and on Redis
//! Cluster (another slot) by one command *before* the approve script. If
//! that write fails, nothing is approved, so no session exists that
//! revoke-all could miss. A sid whose login is never approved
//! or redeemed (or whose approve was refused) is a dangling entry: it is
//! filtered out on read (no `:sid` entry, or another user's) and pruned
//! by its score.

use crate::{keys, RedisStore};
use futures_util::future::join_all;
use qrlogin_core::sessions::index_slack_ms;
use qrlogin_core::{LoginId, SessionInfo, StoreError, TransitionError};
use serde::Deserialize;

/// The `qrl:{<login id>}:sid` entry (or its tombstone).
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    created: String,
    #[serde(default)]
    exp: String,
    #[serde(default)]
    ip: String,
    #[serde(default)]
    ua: String,
    /// The browser's place, in Place's JSON form (common.lua's event_place).
    #[serde(default)]
    pl: Option<qrlogin_core::Place>,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("session index entry: {e}"))
}

fn store_only(e: TransitionError) -> StoreError {
    match e {
        TransitionError::Store(e) => e,
        other => StoreError::Corrupt(format!("unexpected revoke reply: {other}")),
    }
}

/// An index entry's prune-after score and the index key's TTL, for an
/// entry written at `now_ms`.
pub(crate) fn index_bound(store: &RedisStore, now_ms: u64) -> (u64, u64) {
    let life = store.ttls.session_ms + index_slack_ms(&store.ttls);
    (now_ms + life, life)
}

/// Redis Cluster: adds `sid` to `user_id`'s index (one pipelined
/// prune + `ZADD` + `PEXPIRE`, one round trip) before the approve script
/// runs; an error stops the approve. (Elsewhere `approve.lua` does it in
/// its own step.) Pruning on every add keeps the index of a user who logs
/// in often to the sessions that can still be live.
pub(crate) async fn index_before_approve(
    store: &RedisStore,
    user_id: &str,
    sid: &LoginId,
    now_ms: u64,
) -> Result<(), StoreError> {
    let key = keys::user_sessions_key(user_id);
    let (score, life) = index_bound(store, now_ms);
    let mut pipe = redis::pipe();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(now_ms)
        .ignore()
        .cmd("ZADD")
        .arg(&key)
        .arg(score)
        .arg(sid.to_string())
        .ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(life)
        .ignore();
    let mut conn = store.conn.clone();
    store
        .run(async move { pipe.query_async::<()>(&mut conn).await })
        .await
}

/// The sids in the index, after pruning those past their bound.
async fn sids(store: &RedisStore, user_id: &str, now_ms: u64) -> Result<Vec<LoginId>, StoreError> {
    let key = keys::user_sessions_key(user_id);
    let mut pipe = redis::pipe();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(now_ms)
        .ignore()
        .cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1);
    let mut conn = store.conn.clone();
    let (members,): (Vec<String>,) = store
        .run(async move { pipe.query_async(&mut conn).await })
        .await?;
    // A member that is not a login id was not written by us: skip it.
    Ok(members.iter().filter_map(|m| m.parse().ok()).collect())
}

pub(crate) async fn list(
    store: &RedisStore,
    user_id: &str,
    now_ms: u64,
) -> Result<Vec<SessionInfo>, StoreError> {
    let sids = sids(store, user_id, now_ms).await?;
    // One GET per sid, concurrently: each lives in its login's slot.
    let reads = join_all(sids.iter().map(|sid| store.get_string(keys::sid_key(sid)))).await;
    let mut out = Vec::new();
    for (sid, raw) in sids.into_iter().zip(reads) {
        let Some(raw) = raw? else { continue };
        let e: Entry = serde_json::from_str(&raw).map_err(corrupt)?;
        let exp: u64 = e.exp.parse().unwrap_or(0);
        if e.revoked || e.uid != user_id || exp <= now_ms {
            continue;
        }
        out.push(SessionInfo {
            sid,
            user_id: e.uid,
            created_at_ms: e.created.parse().map_err(corrupt)?,
            expires_at_ms: exp,
            ip: e.ip,
            user_agent: e.ua,
            place: e.pl,
        });
    }
    out.sort_by_key(|i| (i.created_at_ms, i.sid));
    Ok(out)
}

/// Runs `revoke_sid.lua` on one login (durable: `WAIT` when configured).
/// `Some(true)`: a live session was revoked; `Some(false)`: nothing live;
/// `None`: not this user's.
async fn revoke_sid(
    store: &RedisStore,
    user_id: &str,
    sid: &LoginId,
    now_ms: u64,
) -> Result<Option<bool>, StoreError> {
    match store
        .eval_keys(
            &store.scripts.revoke_sid,
            sid,
            &[keys::sid_key(sid)],
            now_ms,
            &[user_id],
            true,
        )
        .await
    {
        Ok(reply) => {
            let live = reply.first().is_some_and(|r| r == "1");
            if live && store.appends_after() {
                // Cluster: the stream is another slot, appended after.
                let user = qrlogin_core::User {
                    id: user_id.to_string(),
                    name: reply.get(1).cloned().unwrap_or_default(),
                };
                let event = qrlogin_core::Event::revoked(*sid, user, now_ms);
                if let Err(e) = store.append_event(Some(event)).await {
                    tracing::warn!(error = %e, "could not record a session event");
                }
            }
            Ok(Some(live))
        }
        Err(TransitionError::NotFound) => Ok(None),
        Err(e) => Err(store_only(e)),
    }
}

/// Drops sids from the index (best effort is not enough for nothing: an
/// error here is reported, though the sessions are already gone).
async fn unindex(store: &RedisStore, user_id: &str, sids: &[LoginId]) -> Result<(), StoreError> {
    if sids.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("ZREM");
    cmd.arg(keys::user_sessions_key(user_id));
    for sid in sids {
        cmd.arg(sid.to_string());
    }
    let mut conn = store.conn.clone();
    store
        .run(async move { cmd.query_async::<()>(&mut conn).await })
        .await
}

pub(crate) async fn revoke_one(
    store: &RedisStore,
    user_id: &str,
    sid: &LoginId,
    now_ms: u64,
) -> Result<bool, StoreError> {
    match revoke_sid(store, user_id, sid, now_ms).await? {
        None => Ok(false),
        Some(live) => {
            unindex(store, user_id, std::slice::from_ref(sid)).await?;
            Ok(live)
        }
    }
}

pub(crate) async fn revoke_all(
    store: &RedisStore,
    user_id: &str,
    now_ms: u64,
) -> Result<u64, StoreError> {
    let sids = sids(store, user_id, now_ms).await?;
    let mut count = 0;
    let mut done = Vec::with_capacity(sids.len());
    // One after the other, not concurrently: with `--redis-min-replicas`
    // each carries a `WAIT`, which holds the connection until the replicas
    // answer; concurrent ones would queue behind each other and outlast
    // the op timeout. The first failure fails the call (503) at once: the
    // caller retries, and a retry revokes what is left (each step is
    // idempotent).
    for sid in &sids {
        if let Some(live) = revoke_sid(store, user_id, sid, now_ms).await? {
            count += u64::from(live);
        }
        done.push(*sid);
    }
    unindex(store, user_id, &done).await?;
    Ok(count)
}
