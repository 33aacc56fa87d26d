//! Opaque phone tokens, asked about at the provider's RFC 7662
//! introspection endpoint.
//!
//! Each check is a `POST` of the token with our client credentials
//! (`client_secret_basic`). `active: false` (and an `exp` in the past) is
//! `Invalid`; anything but a 200 JSON object — including a 401 for our own
//! credentials, which is a configuration error, not the phone's — is
//! `Unavailable`. No cache by default, so a token revoked at the provider
//! stops working at once; `cache` opts into remembering an active answer
//! (never past the token's `exp`, at most 60 s).

use crate::cache::{token_key, VerifiedCache};
use crate::claims::ClaimMapping;
use crate::upstream::Upstream;
use async_trait::async_trait;
use qrlogin_core::{Clock, MobileVerifier, User, VerifyError};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The longest `--mobile-introspection-cache-seconds` (and userinfo's).
pub const CACHE_CAP: Duration = Duration::from_secs(60);

/// A client secret read from its file once at start-up. Never printed.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Reads the first line of `path` (a trailing newline is not part of it).
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "reading --mobile-introspection-client-secret-file {}: {e}",
                path.display()
            )
        })?;
        let secret = text.lines().next().unwrap_or("").trim().to_string();
        anyhow::ensure!(
            !secret.is_empty(),
            "--mobile-introspection-client-secret-file {} is empty",
            path.display()
        );
        Ok(Self(secret))
    }

    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// `--mobile-introspection-*`.
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    pub url: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// How long an active answer is remembered; zero (the default) for never.
    pub cache: Duration,
    pub claims: ClaimMapping,
}

pub struct IntrospectionVerifier {
    settings: IntrospectionSettings,
    upstream: Upstream,
    clock: Arc<dyn Clock>,
    cache: VerifiedCache,
}

impl IntrospectionVerifier {
    pub fn new(
        settings: IntrospectionSettings,
        upstream: Upstream,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        crate::upstream::check_url("--mobile-introspection-url", &settings.url)?;
        anyhow::ensure!(
            !settings.client_id.is_empty(),
            "--mobile-introspection-client-id is required"
        );
        anyhow::ensure!(
            settings.cache <= CACHE_CAP,
            "--mobile-introspection-cache-seconds: at most {} s",
            CACHE_CAP.as_secs()
        );
        Ok(Self {
            settings,
            upstream,
            clock,
            cache: VerifiedCache::new(),
        })
    }
}

#[async_trait]
impl MobileVerifier for IntrospectionVerifier {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError> {
        if bearer.len() > crate::MAX_TOKEN_LEN {
            return Err(VerifyError::Invalid);
        }
        let key = token_key(bearer);
        let now = self.clock.now_ms();
        if !self.settings.cache.is_zero() {
            if let Some(u) = self.cache.get(&key, now) {
                return Ok(u);
            }
        }
        let req = self
            .upstream
            .client()
            .post(&self.settings.url)
            .basic_auth(
                &self.settings.client_id,
                Some(&self.settings.client_secret.0),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", bearer), ("token_type_hint", "access_token")]);
        let (status, _, body) = self.upstream.json(req, "token introspection").await?;
        if status != reqwest::StatusCode::OK {
            return Err(VerifyError::Unavailable(format!(
                "token introspection answered {status}"
            )));
        }
        let body = body.ok_or_else(|| {
            VerifyError::Unavailable("token introspection answer is not a JSON object".into())
        })?;
        match body.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(VerifyError::Invalid),
            _ => {
                return Err(VerifyError::Unavailable(
                    "token introspection answer has no boolean `active`".into(),
                ))
            }
        }
        let exp_ms = body
            .get("exp")
            .and_then(Value::as_u64)
            .map(|s| s.saturating_mul(1000));
        if exp_ms.is_some_and(|e| e <= now) {
            return Err(VerifyError::Invalid);
        }
        let user = self
            .settings
            .claims
            .user(&body)
            .ok_or(VerifyError::Invalid)?;
        if !self.settings.cache.is_zero() {
            let until =
                (now + self.settings.cache.as_millis() as u64).min(exp_ms.unwrap_or(u64::MAX));
            self.cache.put(key, &user, now, until);
        }
        Ok(user)
    }

    fn kind(&self) -> &'static str {
        "introspection"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_prints() {
        let s = ClientSecret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let settings = IntrospectionSettings {
            url: "https://idp.example/introspect".into(),
            client_id: "qrlogin".into(),
            client_secret: s,
            cache: Duration::ZERO,
            claims: ClaimMapping::default(),
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
