//! Set-up shared by the store benchmarks (memory and Redis), so both time
//! the same logins brought to the same stages.

use crate::contract::{alice, new_login};
use qrlogin_core::{LoginId, NewLogin, SecretHash, Store, User};

/// The user every benchmarked login is scanned and approved by.
pub fn user() -> User {
    alice()
}

/// A new login without number matching, and its browser-secret hash.
pub fn login() -> (NewLogin, SecretHash) {
    let (new, secret) = new_login(None);
    (new, secret.hash())
}

/// How far a prepared login has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Pending,
    Scanned,
    Approved,
}

/// Creates one login at `now_ms` and brings it to `stage` (untimed set-up).
pub async fn staged_login<S: Store + ?Sized>(
    store: &S,
    stage: Stage,
    now_ms: u64,
) -> (LoginId, SecretHash) {
    let u = user();
    let (new, hash) = login();
    let id = new.id;
    store.create(new, now_ms).await.expect("create");
    if stage >= Stage::Scanned {
        store.scan(&id, &u, now_ms).await.expect("scan");
    }
    if stage >= Stage::Approved {
        store.approve(&id, &u.id, now_ms).await.expect("approve");
    }
    (id, hash)
}
