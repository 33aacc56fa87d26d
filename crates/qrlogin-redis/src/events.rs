//! The event queue on Redis: one stream, [`EVENTS_KEY`], read through one
//! consumer group, [`GROUP`], by every instance (see
//! `qrlogin_core::events`).
//!
//! * Appending: on one Redis or Sentinel the transition scripts `XADD` the
//!   event themselves (`emit` in common.lua; revoke.lua), atomically with
//!   the change. On Cluster the stream is in another slot than the login,
//!   so the instance appends right after the script succeeded
//!   ([`append`]); an instance that dies between the two loses that one
//!   event (docs/DECISIONS.md).
//! * Taking: first everything a dead consumer holds — one that has not
//!   talked to Redis for the bound (`XINFO CONSUMERS` idle; a live instance
//!   polls several times a second): `XPENDING` of its entries, `XCLAIM` of
//!   them all at once, in stream order (so one login's events keep their
//!   order across a takeover), then `XGROUP DELCONSUMER` once it holds
//!   nothing (every restart is a new consumer); then `XREADGROUP … >` for
//!   new ones. Holding: `XCLAIM … JUSTID` by the holder. Acknowledging:
//!   `XACK` + `XDEL`.

use crate::conn::Conn;
use qrlogin_core::events::MAX_QUEUED_EVENTS;
use qrlogin_core::{Event, QueuedEvent, StoreError};
use redis::{Cmd, Value};

/// The stream every event goes to (no hash tag: one slot of its own).
pub const EVENTS_KEY: &str = "qrl:events";
/// The consumer group all instances share: each event goes to one of them.
pub const GROUP: &str = "qrl-webhooks";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("event stream: {what}"))
}

/// `XADD qrl:events MAXLEN ~ N * e <json>`.
pub(crate) fn append(event: &Event) -> Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(EVENTS_KEY)
        .arg("MAXLEN")
        .arg("~")
        .arg(MAX_QUEUED_EVENTS)
        .arg("*")
        .arg("e")
        .arg(event.to_json());
    cmd
}

/// `XGROUP CREATE qrl:events qrl-webhooks 0 MKSTREAM`: from the start, so
/// events recorded before the first instance took any are delivered.
pub(crate) fn create_group() -> Cmd {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(EVENTS_KEY)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM");
    cmd
}

/// `XINFO CONSUMERS qrl:events qrl-webhooks`.
pub(crate) fn consumers() -> Cmd {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("CONSUMERS").arg(EVENTS_KEY).arg(GROUP);
    cmd
}

/// `XPENDING qrl:events qrl-webhooks - + n <consumer>`.
pub(crate) fn pending_of(consumer: &str, max: usize) -> Cmd {
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(EVENTS_KEY)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(max)
        .arg(consumer);
    cmd
}

/// `XCLAIM qrl:events qrl-webhooks <consumer> <min idle> <ids…>`: the
/// entries, for `consumer`; the idle bound makes a second claimer of the
/// same dead consumer get nothing.
pub(crate) fn claim(consumer: &str, min_idle_ms: u64, ids: &[String]) -> Cmd {
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(EVENTS_KEY)
        .arg(GROUP)
        .arg(consumer)
        .arg(min_idle_ms)
        .arg(ids);
    cmd
}

/// `XGROUP DELCONSUMER qrl:events qrl-webhooks <consumer>`.
pub(crate) fn delete_consumer(consumer: &str) -> Cmd {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("DELCONSUMER")
        .arg(EVENTS_KEY)
        .arg(GROUP)
        .arg(consumer);
    cmd
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

/// One consumer of `XINFO CONSUMERS`: name, pending count, idle ms.
pub(crate) struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

/// An `XINFO CONSUMERS` reply (RESP2 flat pairs or RESP3 maps).
pub(crate) fn parse_consumers(v: &Value) -> Result<Vec<ConsumerInfo>, StoreError> {
    let Value::Array(list) = v else {
        return Err(corrupt("XINFO CONSUMERS reply"));
    };
    let mut out = Vec::new();
    for c in list {
        let pairs: Vec<(String, &Value)> = match c {
            Value::Array(kv) => kv
                .chunks(2)
                .filter_map(|p| Some((text(p.first()?)?, p.get(1)?)))
                .collect(),
            Value::Map(kv) => kv.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
            _ => return Err(corrupt("XINFO CONSUMERS entry")),
        };
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let (Some(name), Some(pending), Some(idle_ms)) = (
            get("name").and_then(text),
            get("pending").and_then(int),
            get("idle").and_then(int),
        ) else {
            return Err(corrupt("XINFO CONSUMERS fields"));
        };
        out.push(ConsumerInfo {
            name,
            pending,
            idle_ms,
        });
    }
    Ok(out)
}

/// The entry ids of an `XPENDING … - + n consumer` reply.
pub(crate) fn parse_pending_ids(v: &Value) -> Result<Vec<String>, StoreError> {
    let Value::Array(list) = v else {
        return Err(corrupt("XPENDING reply"));
    };
    list.iter()
        .map(|e| match e {
            Value::Array(parts) => parts
                .first()
                .and_then(text)
                .ok_or_else(|| corrupt("XPENDING id")),
            _ => Err(corrupt("XPENDING entry")),
        })
        .collect()
}

/// The entries of an `XCLAIM` reply (trimmed ones skipped).
pub(crate) fn parse_claimed(v: &Value) -> Result<Vec<QueuedEvent>, StoreError> {
    let mut out = Vec::new();
    entries(v, &mut out)?;
    Ok(out)
}

/// `XREADGROUP GROUP qrl-webhooks <consumer> COUNT n STREAMS qrl:events >`
/// (never `BLOCK`: it would stall the shared multiplexed connection).
pub(crate) fn read_new(consumer: &str, max: usize) -> Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(max)
        .arg("STREAMS")
        .arg(EVENTS_KEY)
        .arg(">");
    cmd
}

/// `XCLAIM qrl:events qrl-webhooks <consumer> 0 <ids…> JUSTID`.
pub(crate) fn hold(consumer: &str, receipts: &[String]) -> Cmd {
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(EVENTS_KEY)
        .arg(GROUP)
        .arg(consumer)
        .arg(0)
        .arg(receipts)
        .arg("JUSTID");
    cmd
}

/// `XACK` then `XDEL` of `receipts`, one pipeline (one slot).
pub(crate) fn ack(receipts: &[String]) -> redis::Pipeline {
    let mut p = redis::pipe();
    p.cmd("XACK")
        .arg(EVENTS_KEY)
        .arg(GROUP)
        .arg(receipts)
        .ignore()
        .cmd("XDEL")
        .arg(EVENTS_KEY)
        .arg(receipts)
        .ignore();
    p
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// One stream entry `[id, [field, value, …]]` as a queued event; `None`
/// for an entry trimmed away (nil fields).
fn entry(v: &Value) -> Result<Option<QueuedEvent>, StoreError> {
    let Value::Array(parts) = v else {
        return Err(corrupt("entry is not an array"));
    };
    let [id, fields] = parts.as_slice() else {
        return Err(corrupt("entry is not [id, fields]"));
    };
    let receipt = text(id).ok_or_else(|| corrupt("entry id"))?;
    let Value::Array(fields) = fields else {
        return Ok(None);
    };
    let json = fields
        .chunks(2)
        .find(|kv| kv.first().and_then(text).as_deref() == Some("e"))
        .and_then(|kv| kv.get(1).and_then(text))
        .ok_or_else(|| corrupt("entry without its event"))?;
    Ok(Some(QueuedEvent {
        receipt,
        event: Event::from_json(&json)?,
    }))
}

fn entries(v: &Value, out: &mut Vec<QueuedEvent>) -> Result<(), StoreError> {
    match v {
        Value::Array(list) => {
            for e in list {
                if let Some(q) = entry(e)? {
                    out.push(q);
                }
            }
            Ok(())
        }
        Value::Nil => Ok(()),
        _ => Err(corrupt("entries are not an array")),
    }
}

/// An `XREADGROUP` reply (`nil`, or `[[key, entries]]`, or a RESP3 map).
pub(crate) fn parse_read(v: &Value) -> Result<Vec<QueuedEvent>, StoreError> {
    let mut out = Vec::new();
    match v {
        Value::Nil => {}
        Value::Array(streams) => {
            for s in streams {
                if let Value::Array(kv) = s {
                    if let Some(list) = kv.get(1) {
                        entries(list, &mut out)?;
                    }
                }
            }
        }
        Value::Map(streams) => {
            for (_, list) in streams {
                entries(list, &mut out)?;
            }
        }
        _ => return Err(corrupt("XREADGROUP reply")),
    }
    Ok(out)
}

/// Whether the error says the group (or the stream) is missing: Redis lost
/// its data or this is the first use (`XINFO` says "no such key").
pub(crate) fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("no such key")
}

/// Whether `XGROUP CREATE` failed only because the group exists.
pub(crate) fn is_busygroup(e: &redis::RedisError) -> bool {
    e.code() == Some("BUSYGROUP")
}

/// The deployment's connection, for the helpers above.
pub(crate) fn is_cluster(conn: &Conn) -> bool {
    matches!(conn, Conn::Cluster(_))
}
