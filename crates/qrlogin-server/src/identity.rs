//! Who the phone's user is.
//!
//! Phone calls carry `Authorization: Bearer <mobile token>`; a
//! [`MobileVerifier`] turns that into a [`User`] or refuses. The user id used
//! for scan/approve/deny comes only from here, never from a request body.
//!
//! The built-in [`DemoIdentity`] (username + password → opaque mobile token
//! kept in the store) exists so qrlogin can be tried and tested without an
//! identity provider; it logs a warning while on. Integrators plug their own
//! verifier (their app's session or JWT check) via [`MobileVerifier`].

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use async_trait::async_trait;
use qrlogin_core::{Clock, MobileToken, Store, StoreError, User};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a mobile token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid mobile token")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a phone app's credential. Implement this to use your own auth.
#[async_trait]
pub trait MobileVerifier: Send + Sync + 'static {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError>;
}

/// One demo-identity user, as in a users file.
#[derive(Debug, Clone, Deserialize)]
pub struct DemoUser {
    pub id: String,
    pub name: String,
    pub username: String,
    /// An argon2 PHC string (`qrlogin hash-password`).
    pub password_hash: String,
}

/// Username/password sign-in for the demo phone app.
pub struct DemoIdentity {
    users: HashMap<String, DemoUser>,
    /// Verified against when the username is unknown, so that a wrong
    /// username costs as long as a wrong password (no user enumeration by
    /// timing).
    dummy_hash: String,
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

impl DemoIdentity {
    /// The documented demo users: alice / wonderland and bob / builder.
    pub fn seeded() -> anyhow::Result<Self> {
        let users = [
            ("u-alice", "Alice", "alice", "wonderland"),
            ("u-bob", "Bob", "bob", "builder"),
        ]
        .into_iter()
        .map(|(id, name, username, pw)| {
            Ok(DemoUser {
                id: id.into(),
                name: name.into(),
                username: username.into(),
                password_hash: hash_password(pw)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        Self::from_users(users)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading users file {}: {e}", path.display()))?;
        let users: Vec<DemoUser> = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing users file {}: {e}", path.display()))?;
        Self::from_users(users)
    }

    fn from_users(users: Vec<DemoUser>) -> anyhow::Result<Self> {
        for u in &users {
            PasswordHash::new(&u.password_hash)
                .map_err(|e| anyhow::anyhow!("user {}: bad password hash: {e}", u.username))?;
        }
        Ok(Self {
            users: users.into_iter().map(|u| (u.username.clone(), u)).collect(),
            dummy_hash: hash_password("not a real password")?,
        })
    }

    /// Checks a password. argon2 is deliberately slow, so it runs on the
    /// blocking pool rather than stalling the async workers.
    pub async fn check(&self, username: &str, password: &str) -> Option<User> {
        let (hash, user) = match self.users.get(username) {
            Some(u) => (
                u.password_hash.clone(),
                Some(User {
                    id: u.id.clone(),
                    name: u.name.clone(),
                }),
            ),
            None => (self.dummy_hash.clone(), None),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok {
            user
        } else {
            None
        }
    }
}

/// Verifies demo mobile tokens against the store (so any instance sharing
/// the store accepts a token issued by another).
///
/// Verified tokens are remembered in-process for a short while
/// ([`TOKEN_CACHE_TTL`], never past the token's own expiry): a phone calls
/// scan and approve within seconds, and without the cache each call would
/// cost a store round trip before the transition itself. The price: a demo
/// token deleted from the store (there is no revocation call today) would
/// still be accepted by an instance that verified it for at most that long.
pub struct StoreTokenVerifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// token hash → (user, trusted until, by `clock`)
    cache: Mutex<HashMap<[u8; 32], (User, u64)>>,
}

/// How long a verified demo token is trusted without asking the store.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);
/// Cache entries before it is cleared (bounds memory under token spraying).
const TOKEN_CACHE_MAX: usize = 10_000;

impl StoreTokenVerifier {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<User> {
        let now = self.clock.now_ms();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(u, _)| u.clone())
    }
}

#[async_trait]
impl MobileVerifier for StoreTokenVerifier {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError> {
        let token: MobileToken = bearer.parse().map_err(|_| VerifyError::Invalid)?;
        let hash = token.hash();
        if let Some(user) = self.cached(hash.as_bytes()) {
            return Ok(user);
        }
        let now = self.clock.now_ms();
        let (user, expires_at) = self
            .store
            .mobile_token(&hash, now)
            .await?
            .ok_or(VerifyError::Invalid)?;
        let until = expires_at.min(now + TOKEN_CACHE_TTL.as_millis() as u64);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= TOKEN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(*hash.as_bytes(), (user.clone(), until));
        Ok(user)
    }
}
