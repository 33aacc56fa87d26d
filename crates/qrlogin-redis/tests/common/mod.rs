//! Helpers the Redis store's test files share.
// Each test file uses its own subset.
#![allow(dead_code)]

use qrlogin_core::{StoreError, TransitionError};
use std::future::Future;
use std::time::Duration;

/// A plain connection to the Redis at `url`, beside the store under test:
/// to look at what the store wrote, or to reach one node of a deployment.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// Awaits `fut`, failing if it takes longer than 10 s (a hang guard, not a
/// timing assertion).
pub async fn no_hang<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for more than 10 s"))
}

/// Asserts that a store call failed with `Unavailable`.
pub fn unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "{what}: expected Unavailable, got {r:?}"
    );
}

/// Asserts that a transition failed with `Store(Unavailable)`.
pub fn t_unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, TransitionError>) {
    assert!(
        matches!(r, Err(TransitionError::Store(StoreError::Unavailable(_)))),
        "{what}: expected Store(Unavailable), got {r:?}"
    );
}

/// The user session index of a user who logs in often holds only the
/// sessions that can still be live: three logins by alice, each approved
/// just past the previous one's bound (session life + the longest
/// approve-to-redeem wait); after each approve the index has one entry,
/// and its key's TTL is that bound, not a day. `c` is a plain connection
/// to the node that holds the index key.
pub async fn index_keeps_only_live_sessions(
    s: &qrlogin_redis::RedisStore,
    mut c: redis::aio::MultiplexedConnection,
) {
    use qrlogin_core::Store;
    use qrlogin_testkit::contract::{alice, new_login, T0, TTLS};
    let bound = TTLS.session_ms + qrlogin_core::sessions::index_slack_ms(&TTLS);
    let key = qrlogin_redis::keys::user_sessions_key("alice");
    for k in 0..3u64 {
        let at = T0 + k * (bound + 10);
        let (new, _) = new_login(None);
        let id = new.id;
        s.create(new, at).await.expect("create");
        s.scan(&id, &alice(), at + 1).await.expect("scan");
        s.approve(&id, "alice", at + 2).await.expect("approve");
        let (n, pttl): (u64, i64) = redis::pipe()
            .cmd("ZCARD")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .expect("ZCARD, PTTL");
        assert_eq!(n, 1, "login {k}: the index kept entries past their bound");
        assert!(
            pttl > 0 && pttl as u64 <= bound,
            "login {k}: the index key's TTL is {pttl} ms, bound {bound} ms"
        );
    }
}
