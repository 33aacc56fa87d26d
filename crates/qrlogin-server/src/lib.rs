//! The qrlogin HTTP service: browser and phone APIs, Server-Sent Events and
//! long-poll, the demo pages, health and metrics.
//!
//! Assemble it with [`QrLogin::builder`] (the binary does the same), then
//! [`QrLogin::serve`] it, take its [`QrLogin::router`], or
//! [`QrLoginBuilder::spawn`] it in the background. [`serve`] is the
//! binary's whole life: build, serve, stop on Ctrl-C or SIGTERM.
//!
//! Where things are: [`builder`] (assembly), [`config`] (flags, environment,
//! config file), [`identity`] (which phone verifier), [`app`] (state and
//! routes), [`site`] (mount path, branding, pages), [`routes`] (thin handlers), [`http1`] (the accept loop),
//! [`signals`].

pub mod admin_token;
pub mod app;
pub mod audit;
pub mod builder;
pub mod config;
pub mod error;
pub mod geoip;
pub mod http1;
pub mod identity;
pub mod jwt;
pub mod keys;
pub mod limit;
pub mod matching;
pub mod oidc;
pub mod openapi;
pub mod qr;
pub mod revoke;
pub mod routes;
pub mod signals;
pub mod site;
pub mod watch;
pub mod webhooks;

pub use app::AppState;
pub use builder::{QrLogin, QrLoginBuilder, Running};
pub use config::ServeConfig;
pub use error::ApiError;
pub use qrlogin_core::{MobileVerifier, User, VerifyError};

use std::time::Duration;

/// A store URL without its password, for messages (the Redis store's rule).
pub use qrlogin_redis::redact_url;

/// Binds `cfg.listen`, opens the store, and serves in the background.
pub async fn spawn(cfg: ServeConfig) -> anyhow::Result<Running> {
    QrLogin::builder(cfg).spawn().await
}

/// Runs until Ctrl-C / SIGTERM.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let store_desc = redact_url(&cfg.store);
    let users_file = cfg.users_file.is_some();
    let mut running = QrLogin::builder(cfg).spawn().await?;
    // The first line on stdout is machine-readable: tests and scripts read
    // the bound address from it.
    println!("listening on http://{}", running.addr);
    tracing::info!(
        addr = %running.addr,
        public_url = %running.public_url,
        store = %store_desc,
        "qrlogin serving; login page at {}/ and phone at {}/phone",
        running.public_url,
        running.public_url
    );
    if store_desc == "memory" {
        tracing::info!(
            "store: in-memory (single node; use --store redis://… to run several instances)"
        );
    }
    if running.state.demo_on() {
        if users_file {
            tracing::warn!(
                "demo identity is ON (users from --users-file): for trying qrlogin, not for production"
            );
        } else {
            tracing::warn!("demo identity is ON (alice/wonderland, bob/builder): for trying qrlogin, not for production");
        }
    }
    signals::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut running.task).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::builder;
    /// A store URL that is neither `memory` nor a Redis URL is refused at
    /// start-up, naming the choices, without echoing a password.
    #[tokio::test]
    async fn unknown_store_urls_are_refused() {
        for url in [
            "postgres://u:hunter2@db/x",
            "nonsense",
            "redis+sentinel://:hunter2@s1",
        ] {
            let mut cfg = crate::ServeConfig::defaults();
            cfg.store = url.into();
            let msg = match builder::open_store(&cfg).await {
                Ok(_) => panic!("{url} was accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(msg.contains("`memory` or a Redis URL"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }
}
