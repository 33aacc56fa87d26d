//! Where a login's wake-up hints go: to the instances that watch it, and
//! to no other (issue 13).
//!
//! Every instance has its own hint channel. A login remembers the channels
//! of the instances that wait on it:
//! * the creating instance's channel is written into the record at create
//!   (field `w`), for free: the common single-instance case, and any
//!   deployment whose load balancer keeps a browser on one instance, needs
//!   nothing more;
//! * an instance that opens a wait on a login it did not create runs
//!   `watch.lua` instead of the plain `GET`: the same one round trip, which
//!   also adds its channel to the login's watcher hash `qrl:{<id>}:w`.
//!
//! The transition scripts publish each hint to those channels only, so an
//! instance receives hints only for the logins it serves, whatever the
//! number of instances. A browser that reconnects to another instance
//! registers there on its next wait; the old instance's channel stays in
//! the hash and costs one more (ignored) message per transition.
//!
//! * One Redis and Sentinel: the channel is `qrl:h:<instance>`, classic
//!   `PUBLISH`/`SUBSCRIBE` (replicated, so it survives a failover's
//!   re-subscribe on the new master).
//! * Redis Cluster: a classic `PUBLISH` is broadcast to every node over the
//!   cluster bus, so hints are sharded (`SPUBLISH`/`SSUBSCRIBE`, Redis ≥
//!   7.0), which stay in the shard that runs the script. A script may only
//!   publish to a channel of its own slot, so an instance has one channel
//!   per slot, `qrl:h:<instance>:{<tag>}`, where `<tag>` is a short string
//!   hashing to that slot; it subscribes to all 16,384 once at start.

use qrlogin_core::LoginId;
use std::sync::OnceLock;

/// Redis Cluster's number of hash slots.
pub(crate) const SLOTS: usize = 16384;

/// The hash slot of `key`'s hash tag (or the whole key without one), as
/// Redis Cluster computes it: CRC16/XMODEM modulo 16,384.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS as u16
}

/// The slot a login's keys live in (its keys' hash tag is the id).
pub(crate) fn login_slot(id: &LoginId) -> u16 {
    slot(id.to_string().as_bytes())
}

/// For every slot, the shortest decimal string hashing to it (found once
/// per process by counting up; about 170,000 CRCs, a few milliseconds).
fn slot_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags: Vec<Option<String>> = vec![None; SLOTS];
        let mut left = SLOTS;
        let mut n: u64 = 0;
        while left > 0 {
            let s = n.to_string();
            let t = &mut tags[usize::from(slot(s.as_bytes()))];
            if t.is_none() {
                *t = Some(s);
                left -= 1;
            }
            n += 1;
        }
        tags.into_iter().map(Option::unwrap_or_default).collect()
    })
}

/// This instance's hint channel(s) and how the scripts publish to them.
#[derive(Debug, Clone)]
pub(crate) struct HintRoute {
    /// A random instance id (72 bits): unique per process, never reused.
    instance: String,
    /// Redis Cluster: sharded channels, one per slot.
    sharded: bool,
}

impl HintRoute {
    /// A fresh route for this process; `sharded` on Redis Cluster.
    pub fn new(sharded: bool) -> Self {
        let id = LoginId::random().to_string();
        Self {
            instance: id[..12].to_string(),
            sharded,
        }
    }

    /// The command the scripts publish with.
    pub fn publish_verb(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// The channel this instance hears `id`'s hints on.
    pub fn channel_for(&self, id: &LoginId) -> String {
        if self.sharded {
            self.slot_channel(usize::from(login_slot(id)))
        } else {
            format!("qrl:h:{}", self.instance)
        }
    }

    /// The sharded channel of one slot.
    pub fn slot_channel(&self, slot: usize) -> String {
        format!("qrl:h:{}:{{{}}}", self.instance, slot_tags()[slot])
    }

    /// Every channel this instance subscribes to: one, or one per slot.
    pub fn channels(&self) -> Vec<String> {
        if self.sharded {
            (0..SLOTS).map(|s| self.slot_channel(s)).collect()
        } else {
            vec![format!("qrl:h:{}", self.instance)]
        }
    }

    /// A `PUBSUB SHARDCHANNELS` pattern matching this instance's slot
    /// channels and no other instance's (the id has no glob characters).
    pub fn slot_pattern(&self) -> String {
        format!("qrl:h:{}:*", self.instance)
    }

    /// Whether `channel` is one of this instance's.
    pub fn owns(&self, channel: &str) -> bool {
        channel
            .strip_prefix("qrl:h:")
            .and_then(|rest| rest.strip_prefix(self.instance.as_str()))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(":{"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31C3); // 12739, below 16384
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(
            slot(b"foo{}{bar}"),
            crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % 16384
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        let tags = slot_tags();
        assert_eq!(tags.len(), SLOTS);
        for (s, t) in tags.iter().enumerate() {
            assert_eq!(usize::from(slot(t.as_bytes())), s, "tag {t}");
        }
    }

    #[test]
    fn a_login_channel_is_in_the_login_slot() {
        let r = HintRoute::new(true);
        for _ in 0..200 {
            let id = LoginId::random();
            let ch = r.channel_for(&id);
            assert_eq!(
                slot(ch.as_bytes()),
                slot(crate::keys::login_key(&id).as_bytes())
            );
            assert!(r.owns(&ch));
        }
        assert!(!HintRoute::new(true).owns(&r.channel_for(&LoginId::random())));
        let single = HintRoute::new(false);
        assert_eq!(single.channels().len(), 1);
        assert!(single.owns(&single.channel_for(&LoginId::random())));
        assert!(!single.owns("qrl:hints"));
    }
}
