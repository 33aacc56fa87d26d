//! Phone tokens checked by asking an OIDC userinfo endpoint — or the site's
//! own "who am I" API — with the phone's bearer.
//!
//! A 200 with a JSON object names the user ([`ClaimMapping`]); 401 or 403
//! is `Invalid`; anything else (5xx, a redirect, garbage, a timeout) is
//! `Unavailable`. Not cached unless `cache` says so (at most 60 s): the
//! endpoint is the authority on revocation.

use crate::cache::{token_key, VerifiedCache};
use crate::claims::ClaimMapping;
use crate::introspection::CACHE_CAP;
use crate::upstream::Upstream;
use async_trait::async_trait;
use qrlogin_core::{Clock, MobileVerifier, User, VerifyError};
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Duration;

/// `--mobile-userinfo-*`.
#[derive(Debug, Clone)]
pub struct UserinfoSettings {
    pub url: String,
    /// How long an answer is remembered; zero (the default) for never.
    pub cache: Duration,
    pub claims: ClaimMapping,
}

pub struct UserinfoVerifier {
    settings: UserinfoSettings,
    upstream: Upstream,
    clock: Arc<dyn Clock>,
    cache: VerifiedCache,
}

impl UserinfoVerifier {
    pub fn new(
        settings: UserinfoSettings,
        upstream: Upstream,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        crate::upstream::check_url("--mobile-userinfo-url", &settings.url)?;
        anyhow::ensure!(
            settings.cache <= CACHE_CAP,
            "--mobile-userinfo-cache-seconds: at most {} s",
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
impl MobileVerifier for UserinfoVerifier {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError> {
        // Only token68 characters may go into the header we send on.
        if bearer.len() > crate::MAX_TOKEN_LEN
            || !bearer
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        {
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
            .get(&self.settings.url)
            .bearer_auth(bearer)
            .header(reqwest::header::ACCEPT, "application/json");
        let (status, _, body) = self.upstream.json(req, "userinfo").await?;
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(VerifyError::Invalid),
            s => return Err(VerifyError::Unavailable(format!("userinfo answered {s}"))),
        }
        let body = body.ok_or_else(|| {
            VerifyError::Unavailable("userinfo answer is not a JSON object".into())
        })?;
        let user = self
            .settings
            .claims
            .user(&body)
            .ok_or(VerifyError::Invalid)?;
        if !self.settings.cache.is_zero() {
            self.cache.put(
                key,
                &user,
                now,
                now + self.settings.cache.as_millis() as u64,
            );
        }
        Ok(user)
    }

    fn kind(&self) -> &'static str {
        "userinfo"
    }
}
