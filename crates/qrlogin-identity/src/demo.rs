//! The built-in demo identity: username and password → an opaque phone
//! token kept in the store.
//!
//! It exists so qrlogin can be tried and tested without an identity
//! provider (`alice` / `wonderland`, `bob` / `builder`, or a users file of
//! argon2 hashes). The server switches it off whenever a real verifier is
//! configured, and by default with a shared store or an https public URL.

use crate::cache::VerifiedCache;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use async_trait::async_trait;
use qrlogin_core::{Clock, MobileToken, MobileVerifier, Store, User, VerifyError};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    cache: VerifiedCache,
}

/// How long a verified demo token is trusted without asking the store.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

impl StoreTokenVerifier {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: VerifiedCache::new(),
        }
    }
}

#[async_trait]
impl MobileVerifier for StoreTokenVerifier {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError> {
        let token: MobileToken = bearer.parse().map_err(|_| VerifyError::Invalid)?;
        let hash = token.hash();
        let now = self.clock.now_ms();
        if let Some(user) = self.cache.get(hash.as_bytes(), now) {
            return Ok(user);
        }
        let (user, expires_at) = self
            .store
            .mobile_token(&hash, now)
            .await?
            .ok_or(VerifyError::Invalid)?;
        let until = expires_at.min(now + TOKEN_CACHE_TTL.as_millis() as u64);
        self.cache.put(*hash.as_bytes(), &user, now, until);
        Ok(user)
    }

    fn kind(&self) -> &'static str {
        "demo"
    }
}
