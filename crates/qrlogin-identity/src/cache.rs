//! Verified tokens, remembered briefly.
//!
//! A phone calls scan and approve within seconds of each other; without a
//! cache each call would cost a signature check or an upstream round trip.
//! Entries are keyed by the token's SHA-256 (the token itself is never
//! kept), live at most until the caller's bound (the token's own expiry, and
//! a verifier-chosen maximum), and the whole map is cleared when it grows
//! past [`MAX_ENTRIES`], so spraying random tokens cannot grow memory.

use qrlogin_core::User;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries before the cache is cleared.
pub const MAX_ENTRIES: usize = 10_000;

/// The SHA-256 of a bearer: the cache key.
pub fn token_key(bearer: &str) -> [u8; 32] {
    Sha256::digest(bearer.as_bytes()).into()
}

/// token hash → (user, trusted until in ms since the epoch).
#[derive(Default)]
pub struct VerifiedCache {
    map: Mutex<HashMap<[u8; 32], (User, u64)>>,
}

impl VerifiedCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The user for `key` if it was verified and `now_ms` is before its bound.
    pub fn get(&self, key: &[u8; 32], now_ms: u64) -> Option<User> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, until)| now_ms < *until)
            .map(|(u, _)| u.clone())
    }

    /// Remembers `user` for `key` until `until_ms` (nothing if that is not
    /// in the future).
    pub fn put(&self, key: [u8; 32], user: &User, now_ms: u64, until_ms: u64) {
        if until_ms <= now_ms {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (user.clone(), until_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> User {
        User {
            id: "a".into(),
            name: "A".into(),
        }
    }

    #[test]
    fn entries_live_until_their_bound_and_not_past_it() {
        let c = VerifiedCache::new();
        let k = token_key("t");
        c.put(k, &alice(), 1_000, 2_000);
        assert_eq!(c.get(&k, 1_999), Some(alice()));
        assert_eq!(c.get(&k, 2_000), None);
        assert_eq!(c.get(&token_key("other"), 1_500), None);
        c.put(token_key("past"), &alice(), 1_000, 1_000);
        assert_eq!(c.get(&token_key("past"), 999), None);
    }

    #[test]
    fn a_full_cache_is_cleared_not_grown() {
        let c = VerifiedCache::new();
        for i in 0..MAX_ENTRIES + 1 {
            c.put(token_key(&i.to_string()), &alice(), 0, 10);
        }
        let len = c.map.lock().unwrap().len();
        assert_eq!(len, 1, "cleared when full, then the newest entry added");
    }
}
