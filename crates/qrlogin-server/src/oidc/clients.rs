//! The relying parties qrlogin serves as an OpenID Provider, from
//! `--oidc-clients FILE` (JSON, SPEC §7):
//!
//! ```json
//! [{"client_id": "shop-web", "name": "Example Shop",
//!   "redirect_uris": ["https://shop.example/callback"],
//!   "client_secret_hash": "$argon2id$…",            // or "public": true
//!   "grant_types": ["authorization_code", "refresh_token"],
//!   "post_logout_redirect_uris": ["https://shop.example/"]}]
//! ```
//!
//! Checked at start-up: a file that does not parse or a client that makes no
//! sense stops the service with the line (or the client) and the reason.

use anyhow::Context as _;
use argon2::password_hash::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub const GRANT_CODE: &str = "authorization_code";
pub const GRANT_REFRESH: &str = "refresh_token";
pub const GRANT_DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    client_id: String,
    name: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_secret_hash: Option<String>,
    #[serde(default)]
    public: bool,
    #[serde(default = "default_grants")]
    grant_types: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
}

fn default_grants() -> Vec<String> {
    vec![GRANT_CODE.into()]
}

/// One registered client.
#[derive(Debug)]
pub struct Client {
    pub id: String,
    /// Shown on the authorize page and on the phone.
    pub name: String,
    /// Exact strings; no wildcards, no prefix matching.
    pub redirect_uris: Vec<String>,
    /// argon2 PHC string; `None` for a public client.
    secret_hash: Option<String>,
    /// Public clients (SPAs, native apps) have no secret and must use PKCE.
    pub public: bool,
    pub grant_types: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

impl Client {
    pub fn allows(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Checks a presented secret. argon2 is deliberately slow: it runs on
    /// the blocking pool. A public client has no secret to check.
    pub async fn secret_matches(&self, secret: &str) -> bool {
        let Some(hash) = self.secret_hash.clone() else {
            return false;
        };
        let secret = secret.to_owned();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(secret.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

/// The registry, by client id.
#[derive(Debug, Default)]
pub struct Clients(HashMap<String, Arc<Client>>);

impl Clients {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --oidc-clients {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("--oidc-clients {}", path.display()))
    }

    /// Parses and checks a clients document.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let entries: Vec<ClientEntry> = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("line {}, column {}: {e}", e.line(), e.column()))?;
        let mut map = HashMap::new();
        for (i, e) in entries.into_iter().enumerate() {
            let what = format!("client {} ({:?})", i + 1, e.client_id);
            let c = check(e).with_context(|| what.clone())?;
            if map.insert(c.id.clone(), Arc::new(c)).is_some() {
                anyhow::bail!("{what}: client_id used twice");
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Client>> {
        self.0.get(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn check(e: ClientEntry) -> anyhow::Result<Client> {
    anyhow::ensure!(
        !e.client_id.is_empty()
            && e.client_id.len() <= 128
            && e.client_id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':'),
        "client_id must be 1-128 visible ASCII characters without ':'"
    );
    anyhow::ensure!(!e.name.trim().is_empty(), "name is empty");
    match (&e.client_secret_hash, e.public) {
        (Some(_), true) => anyhow::bail!("a public client has no client_secret_hash"),
        (None, false) => anyhow::bail!(
            "give client_secret_hash (from `qrlogin hash-password`) or \"public\": true"
        ),
        (Some(h), false) => {
            PasswordHash::new(h).map_err(|e| anyhow::anyhow!("client_secret_hash: {e}"))?;
        }
        (None, true) => {}
    }
    anyhow::ensure!(!e.grant_types.is_empty(), "grant_types is empty");
    for g in &e.grant_types {
        anyhow::ensure!(
            [GRANT_CODE, GRANT_REFRESH, GRANT_DEVICE].contains(&g.as_str()),
            "unknown grant type {g:?} (authorization_code, refresh_token, {GRANT_DEVICE})"
        );
    }
    if e.grant_types.iter().any(|g| g == GRANT_CODE) {
        anyhow::ensure!(
            !e.redirect_uris.is_empty(),
            "authorization_code needs at least one redirect_uri"
        );
    }
    for u in e.redirect_uris.iter().chain(&e.post_logout_redirect_uris) {
        check_redirect(u)?;
    }
    Ok(Client {
        id: e.client_id,
        name: e.name.trim().to_string(),
        redirect_uris: e.redirect_uris,
        secret_hash: e.client_secret_hash,
        public: e.public,
        grant_types: e.grant_types,
        post_logout_redirect_uris: e.post_logout_redirect_uris,
    })
}

/// A registered redirect URI: absolute, no fragment (RFC 6749 §3.1.2), and
/// https unless it is a loopback or a native app's private scheme (RFC 8252).
fn check_redirect(u: &str) -> anyhow::Result<()> {
    let parsed =
        url::Url::parse(u).map_err(|_| anyhow::anyhow!("redirect URI {u:?} is not absolute"))?;
    anyhow::ensure!(
        parsed.fragment().is_none(),
        "redirect URI {u:?} has a fragment"
    );
    let scheme = parsed.scheme();
    anyhow::ensure!(
        !["javascript", "data", "file", "vbscript"].contains(&scheme),
        "redirect URI {u:?}: scheme {scheme} is never a redirect target"
    );
    if scheme == "http" {
        let host = parsed.host_str().unwrap_or("");
        let loopback = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        anyhow::ensure!(
            loopback,
            "redirect URI {u:?}: http only for loopback; use https"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_the_line_or_the_client() {
        let e = Clients::parse("[{\"client_id\": \"a\",\n \"name\": }]").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        let e =
            Clients::parse(r#"[{"client_id":"a","name":"A","redirect_uris":["https://a/cb"]}]"#)
                .unwrap_err();
        assert!(format!("{e:#}").contains("client 1 (\"a\")"), "{e:#}");
        assert!(format!("{e:#}").contains("public"), "{e:#}");
        let e = Clients::parse(
            r#"[{"client_id":"a","name":"A","public":true,"redirect_uris":["http://evil.example/cb"]}]"#,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("loopback"), "{e:#}");
        let e = Clients::parse(
            r#"[{"client_id":"a","name":"A","public":true,"redirect_uris":["https://a/cb#x"]}]"#,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("fragment"), "{e:#}");
        let e = Clients::parse(r#"[{"client_id":"a","name":"A","public":true,"colour":"red"}]"#)
            .unwrap_err();
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        let two = r#"[{"client_id":"a","name":"A","public":true,"grant_types":["urn:ietf:params:oauth:grant-type:device_code"]},
                      {"client_id":"a","name":"B","public":true,"grant_types":["urn:ietf:params:oauth:grant-type:device_code"]}]"#;
        assert!(format!("{:#}", Clients::parse(two).unwrap_err()).contains("twice"));
    }

    #[test]
    fn a_good_file_parses() {
        let c = Clients::parse(
            r#"[{"client_id":"tv","name":"Living-room TV","public":true,
                 "grant_types":["urn:ietf:params:oauth:grant-type:device_code"]},
                {"client_id":"spa","name":"Shop","public":true,
                 "redirect_uris":["http://127.0.0.1:9/cb","com.example.app:/cb"]}]"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.get("tv").unwrap().allows(GRANT_DEVICE));
        assert!(!c.get("tv").unwrap().allows(GRANT_CODE));
        assert!(c.get("spa").unwrap().allows(GRANT_CODE));
    }
}
