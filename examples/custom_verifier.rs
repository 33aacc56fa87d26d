//! Embedding qrlogin with your own phone-token check.
//!
//! Your phone app already has a session with your backend. Implement
//! [`MobileVerifier`] to turn the app's bearer into your user (here: a
//! call to your own "who am I" logic), and hand it to the builder. Run it:
//!
//! ```sh
//! cargo run -p qrlogin-server --example custom_verifier
//! ```
//!
//! then a phone call with `Authorization: Bearer app-session:42` scans and
//! approves as user 42.

use qrlogin_server::{MobileVerifier, QrLogin, ServeConfig, User, VerifyError};
use std::sync::Arc;

/// Your backend's session check. `Invalid` means "sign in again" (the phone
/// gets 401); `Unavailable` means "try again" (503), e.g. when your session
/// service is down — never report an outage as an invalid token.
struct AppSessions;

#[async_trait::async_trait]
impl MobileVerifier for AppSessions {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError> {
        // Stand-in for your lookup (database, cache, internal API).
        let id = bearer
            .strip_prefix("app-session:")
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
            .ok_or(VerifyError::Invalid)?;
        Ok(User {
            id: format!("user-{id}"),
            name: format!("Customer {id}"),
        })
    }

    fn kind(&self) -> &'static str {
        "app-sessions"
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cfg = ServeConfig::defaults();
    cfg.site_name = "Example Shop".into();
    let app = QrLogin::builder(cfg)
        .verifier(Arc::new(AppSessions))
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("listening on http://{}", listener.local_addr()?);
    app.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
