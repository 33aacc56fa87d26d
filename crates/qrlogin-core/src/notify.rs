//! Wake-ups for browsers waiting on a login (SSE or long-poll).
//!
//! A watcher [`register`](Notifier::register)s *before* it reads the login,
//! so no change can slip between the read and the wait. Stores push a
//! [`Hint`] for every transition they see (their own, and for Redis those of
//! other instances via pub/sub). A hint carries the new state so the common
//! case needs no extra read; a [`Hint::Reread`] (sent after a pub/sub
//! reconnect, when messages may have been lost) tells watchers to read the
//! store again. Watchers also re-read on a backstop timer, so a lost hint can
//! only delay a wake-up, never lose a login.

use crate::id::LoginId;
use crate::state::State;
use crate::store::User;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a watcher is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hint {
    /// Nothing yet (the value a new registration starts with).
    None,
    /// The login moved to `state` at `version`; `user` is who scanned;
    /// `match_required` says whether the scan asked the phone for the match
    /// code (so a watcher can show the code to its browser then, and only
    /// then, without reading the store).
    Changed {
        version: u64,
        state: State,
        user: Option<User>,
        match_required: bool,
    },
    /// Hints may have been lost: read the store again.
    Reread,
}

struct Slot {
    tx: watch::Sender<Hint>,
    watchers: usize,
}

const SHARDS: usize = 64;

struct Inner {
    shards: Vec<Mutex<HashMap<LoginId, Slot>>>,
    /// In-process delivery cannot lose a hint; delivery over a network
    /// (Redis pub/sub) can, while its connection is down.
    lossless: bool,
    /// When the remote hint feed last proved alive (a message or a pong),
    /// in ms since `epoch`.
    alive_ms: AtomicU64,
    epoch: Instant,
}

/// The process-wide registry of watchers, keyed by login id. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Notifier({} watched logins)", self.watched())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard lock cannot leave a HashMap half
    // updated in a way that matters here; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Notifier {
    /// A notifier fed in-process (the memory store): hints cannot be lost.
    pub fn new() -> Self {
        Self::with_delivery(true)
    }

    /// A notifier fed over a network (Redis pub/sub): the feed must keep
    /// proving it is alive ([`mark_alive`](Self::mark_alive)), or watchers
    /// fall back to re-reading the store on their backstop timer.
    pub fn remote() -> Self {
        Self::with_delivery(false)
    }

    fn with_delivery(lossless: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                lossless,
                alive_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// The remote feed is alive now (it delivered a message or a pong).
    pub fn mark_alive(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.alive_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// The remote feed may have lost hints (a subscription is being
    /// restored): until it is alive again, watchers' backstops re-read.
    pub fn mark_lost(&self) {
        self.inner.alive_ms.store(0, Ordering::Relaxed);
    }

    /// Whether no hint can have been lost in the last `window`: always for
    /// in-process delivery; for a remote feed, when it proved alive within
    /// the window (a feed that reconnects sends [`Hint::Reread`] anyway).
    /// Watchers skip their backstop re-read when this holds, so waiting
    /// costs no store reads while the feed is healthy.
    pub fn reliable_within(&self, window: Duration) -> bool {
        if self.inner.lossless {
            return true;
        }
        let alive = self.inner.alive_ms.load(Ordering::Relaxed);
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        alive != 0 && now.saturating_sub(alive) <= window.as_millis() as u64
    }

    fn shard(&self, id: &LoginId) -> &Mutex<HashMap<LoginId, Slot>> {
        &self.inner.shards[id.as_bytes()[0] as usize % SHARDS]
    }

    /// Starts watching `id`. Register first, then read the store.
    pub fn register(&self, id: LoginId) -> Registration {
        let mut shard = lock(self.shard(&id));
        let slot = shard.entry(id).or_insert_with(|| Slot {
            tx: watch::Sender::new(Hint::None),
            watchers: 0,
        });
        slot.watchers += 1;
        let mut rx = slot.tx.subscribe();
        rx.mark_unchanged();
        Registration {
            id,
            rx,
            notifier: self.clone(),
        }
    }

    /// Delivers a hint to the watchers of `id`, if any. Cheap when none.
    /// Returns whether `id` had a watcher here (the Redis subscriber counts
    /// the hints that had none: work for logins this instance does not serve).
    pub fn notify(&self, id: &LoginId, hint: Hint) -> bool {
        match lock(self.shard(id)).get(id) {
            Some(slot) => {
                slot.tx.send_replace(hint);
                true
            }
            None => false,
        }
    }

    /// Tells every watcher to re-read (after a lost pub/sub connection).
    pub fn reread_all(&self) {
        for shard in &self.inner.shards {
            for slot in lock(shard).values() {
                slot.tx.send_replace(Hint::Reread);
            }
        }
    }

    /// Tells the watchers of the logins `which` picks to re-read (after one
    /// Redis Cluster slot's hint subscription moved).
    pub fn reread_matching(&self, which: impl Fn(&LoginId) -> bool) {
        for shard in &self.inner.shards {
            for (id, slot) in lock(shard).iter() {
                if which(id) {
                    slot.tx.send_replace(Hint::Reread);
                }
            }
        }
    }

    /// How many logins have at least one watcher here.
    pub fn watched(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn unregister(&self, id: &LoginId) {
        let mut shard = lock(self.shard(id));
        if let Some(slot) = shard.get_mut(id) {
            slot.watchers -= 1;
            if slot.watchers == 0 {
                shard.remove(id);
            }
        }
    }
}

/// One watcher's interest in one login; unregisters on drop.
pub struct Registration {
    id: LoginId,
    rx: watch::Receiver<Hint>,
    notifier: Notifier,
}

impl Registration {
    /// Waits for the next hint. Hints that arrive faster than the watcher
    /// reads collapse into the latest, which is all a watcher needs: it
    /// compares versions and re-reads when unsure.
    pub async fn next(&mut self) -> Hint {
        match self.rx.changed().await {
            Ok(()) => self.rx.borrow_and_update().clone(),
            // The sender lives as long as any registration; if it is somehow
            // gone, asking for a re-read is the safe answer.
            Err(_) => Hint::Reread,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.notifier.unregister(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_to_registered_watchers_and_cleans_up() {
        let n = Notifier::new();
        let id = LoginId::random();
        let mut a = n.register(id);
        let mut b = n.register(id);
        assert_eq!(n.watched(), 1);
        let hint = Hint::Changed {
            version: 2,
            state: State::Scanned,
            user: None,
            match_required: false,
        };
        assert!(n.notify(&id, hint.clone()), "a watched login");
        assert_eq!(a.next().await, hint);
        assert_eq!(b.next().await, hint);
        n.reread_all();
        assert_eq!(a.next().await, Hint::Reread);
        drop(a);
        assert_eq!(n.watched(), 1);
        drop(b);
        assert_eq!(n.watched(), 0);
        // Notifying a login nobody watches is a no-op, and says so.
        assert!(!n.notify(&id, Hint::Reread));
        assert_eq!(n.watched(), 0);
    }

    #[test]
    fn remote_feeds_are_reliable_only_while_alive() {
        assert!(Notifier::new().reliable_within(Duration::ZERO));
        let r = Notifier::remote();
        assert!(
            !r.reliable_within(Duration::from_secs(3600)),
            "never alive yet"
        );
        r.mark_alive();
        assert!(r.reliable_within(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!r.reliable_within(Duration::from_millis(5)));
    }
}
