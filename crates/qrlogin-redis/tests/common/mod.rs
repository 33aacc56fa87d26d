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
