//! Which phone-token verifier this service uses, from configuration
//! (`--mobile-verifier` and the `--mobile-*` flags), and whether the demo
//! users are on. The verifiers themselves live in `qrlogin-identity`.
//!
//! The demo users are a first-run convenience and must never be live by
//! accident on a real site: they default to on only with the in-memory
//! store and an `http://` public URL (a laptop), are off whenever a real
//! verifier is configured, and the demo verifier refuses to start without
//! them, naming the flags that fix it.

use crate::config::{ServeConfig, VerifierKind};
use anyhow::Context as _;
use qrlogin_core::{Clock, MobileVerifier, Store};
use qrlogin_identity::introspection::ClientSecret;
use qrlogin_identity::{
    ClaimMapping, DemoIdentity, HttpSettings, IntrospectionSettings, IntrospectionVerifier,
    JwtSettings, JwtVerifier, StoreTokenVerifier, Upstream, UserinfoSettings, UserinfoVerifier,
};
use std::sync::Arc;
use std::time::Duration;

pub use qrlogin_identity::hash_password;

/// Whether the demo users are on, by `--demo-users` or its default, or an
/// error when the combination cannot be meant.
pub fn demo_users_on(cfg: &ServeConfig, public_url: &str) -> anyhow::Result<bool> {
    let laptop = cfg.store == "memory" && public_url.starts_with("http://");
    match (cfg.mobile_verifier, cfg.demo_users) {
        (VerifierKind::Demo, Some(true)) => Ok(true),
        (VerifierKind::Demo, None) if laptop => Ok(true),
        (VerifierKind::Demo, _) => anyhow::bail!(
            "the demo phone identity (alice/wonderland) is off {}: choose your own with \
             --mobile-verifier jwt|introspection|userinfo (README \"Use your own identity\"), \
             or pass --demo-users true to run the demo users anyway",
            if cfg.demo_users == Some(false) {
                "(--demo-users false)".to_string()
            } else if cfg.store != "memory" {
                "by default with a shared store".to_string()
            } else {
                "by default with an https public URL".to_string()
            }
        ),
        (_, Some(true)) => anyhow::bail!(
            "--demo-users true needs --mobile-verifier demo: with a real verifier the demo users are always off"
        ),
        (_, _) => Ok(false),
    }
}

/// The verifier `cfg` names, and the demo identity when it is on. Reads
/// every file it needs (users, client secret, CA bundle) now, so a bad one
/// stops start-up (and `check-config`); contacts no upstream.
pub fn from_config(
    cfg: &ServeConfig,
    public_url: &str,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<dyn MobileVerifier>, Option<DemoIdentity>)> {
    if demo_users_on(cfg, public_url)? {
        let demo = match &cfg.users_file {
            Some(path) => DemoIdentity::from_file(path)?,
            None => DemoIdentity::seeded()?,
        };
        return Ok((Arc::new(StoreTokenVerifier::new(store, clock)), Some(demo)));
    }
    let claims = ClaimMapping {
        id_claim: cfg.mobile_user_id_claim.clone(),
        name_claim: cfg.mobile_user_name_claim.clone(),
    };
    let upstream = Upstream::new(&HttpSettings {
        timeout: Duration::from_millis(cfg.mobile_verifier_timeout_ms.max(1)),
        ca_file: cfg.mobile_verifier_ca_file.clone(),
    })?;
    let need = |v: &Option<String>, flag: &str| {
        v.clone().with_context(|| {
            format!(
                "--mobile-verifier {} needs {flag}",
                kind_name(cfg.mobile_verifier)
            )
        })
    };
    let verifier: Arc<dyn MobileVerifier> = match cfg.mobile_verifier {
        VerifierKind::Demo => {
            anyhow::bail!("--mobile-verifier demo needs the demo users (--demo-users true)")
        }
        VerifierKind::Jwt => Arc::new(JwtVerifier::new(
            JwtSettings {
                issuer: need(&cfg.mobile_jwt_issuer, "--mobile-jwt-issuer")?,
                jwks_url: cfg.mobile_jwks_url.clone(),
                audience: need(&cfg.mobile_jwt_audience, "--mobile-jwt-audience")?,
                algorithms: qrlogin_identity::jwt::parse_algorithms(&cfg.mobile_jwt_algorithms)?,
                leeway: Duration::from_secs(cfg.mobile_jwt_leeway),
                typ: cfg.mobile_jwt_typ.clone(),
                claims,
            },
            upstream,
            clock,
        )?),
        VerifierKind::Introspection => {
            let secret_file = cfg
                .mobile_introspection_client_secret_file
                .as_ref()
                .context(
                "--mobile-verifier introspection needs --mobile-introspection-client-secret-file",
            )?;
            Arc::new(IntrospectionVerifier::new(
                IntrospectionSettings {
                    url: need(&cfg.mobile_introspection_url, "--mobile-introspection-url")?,
                    client_id: need(
                        &cfg.mobile_introspection_client_id,
                        "--mobile-introspection-client-id",
                    )?,
                    client_secret: ClientSecret::from_file(secret_file)?,
                    cache: Duration::from_secs(cfg.mobile_introspection_cache_seconds),
                    claims,
                },
                upstream,
                clock,
            )?)
        }
        VerifierKind::Userinfo => Arc::new(UserinfoVerifier::new(
            UserinfoSettings {
                url: need(&cfg.mobile_userinfo_url, "--mobile-userinfo-url")?,
                cache: Duration::from_secs(cfg.mobile_userinfo_cache_seconds),
                claims,
            },
            upstream,
            clock,
        )?),
    };
    Ok((verifier, None))
}

fn kind_name(k: VerifierKind) -> &'static str {
    match k {
        VerifierKind::Demo => "demo",
        VerifierKind::Jwt => "jwt",
        VerifierKind::Introspection => "introspection",
        VerifierKind::Userinfo => "userinfo",
    }
}
