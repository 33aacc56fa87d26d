//! Signed events for the site's backend (`--webhook-url`,
//! `--webhook-secret-file`): Standard Webhooks payloads and signatures,
//! delivered at least once from the store's event queue.
//!
//! * [`signing`] — the secret and the `webhook-signature` header.
//! * [`payload`] — an event's JSON body.
//! * [`delivery`] — the background task: take, POST, retry, acknowledge.

pub mod delivery;
pub mod payload;
pub mod signing;

use crate::config::ServeConfig;
pub use delivery::Delivery;
pub use signing::WebhookSecret;
use std::time::Duration;

/// The delivery task the configuration asks for, if any; refuses half a
/// configuration (a URL without a secret or the reverse) and URLs that are
/// not http(s).
pub fn from_config(cfg: &ServeConfig) -> anyhow::Result<Option<Delivery>> {
    let (url, file) = match (&cfg.webhook_url, &cfg.webhook_secret_file) {
        (None, None) => return Ok(None),
        (Some(_), None) => anyhow::bail!("--webhook-url needs --webhook-secret-file"),
        (None, Some(_)) => anyhow::bail!("--webhook-secret-file needs --webhook-url"),
        (Some(u), Some(f)) => (u, f),
    };
    let url: reqwest::Url = url
        .parse()
        .map_err(|_| anyhow::anyhow!("--webhook-url is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        anyhow::bail!("--webhook-url must be an http:// or https:// URL");
    }
    Ok(Some(Delivery {
        url,
        secret: WebhookSecret::read(file)?,
        timeout: Duration::from_secs(cfg.webhook_timeout),
        max_age_ms: cfg.webhook_max_age.saturating_mul(1000),
        reclaim_after_ms: cfg.webhook_reclaim_after.saturating_mul(1000),
    }))
}
