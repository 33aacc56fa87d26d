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
//! sense stops the service with the line and the reason (for the config
//! file's `[[oidc-clients]]` tables: the table's number and the reason).

use anyhow::Context as _;
use argon2::password_hash::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use serde::Deserialize;
use serde_json::value::RawValue;
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

    /// Parses and checks a clients document (the `--oidc-clients` file).
    /// Every error names the line: a syntax error its own, a client that
    /// makes no sense the line its object starts on (and the client's
    /// number and id), so the operator goes straight to it.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        // Each client as its raw slice of `text`: its offset in `text` is
        // its line. The whole document is parsed (syntax checked) first.
        let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "line {}, column {}: {}",
                e.line(),
                e.column(),
                without_position(&e)
            )
        })?;
        Self::from_entries(raw.into_iter().enumerate().map(|(i, r)| {
            let start = r.get().as_ptr() as usize - text.as_ptr() as usize;
            let line = text[..start].matches('\n').count() + 1;
            let e: ClientEntry = serde_json::from_str(r.get()).map_err(|e| {
                // `e.line()` counts within this client's object.
                anyhow::anyhow!(
                    "line {}: client {}: {}",
                    line + e.line().max(1) - 1,
                    i + 1,
                    without_position(&e)
                )
            })?;
            Ok((
                format!("line {line}: client {} ({:?})", i + 1, e.client_id),
                e,
            ))
        }))
    }

    /// Parses and checks the `[[oidc-clients]]` tables of the config file,
    /// which the config loader hands over as one JSON array. That JSON is
    /// made by the loader, so its lines mean nothing to the operator:
    /// errors name the table's number (1 = the file's first
    /// `[[oidc-clients]]`) and its client_id instead of a line.
    pub fn parse_tables(json: &str) -> anyhow::Result<Self> {
        let entries: Vec<serde_json::Value> =
            serde_json::from_str(json).context("the [[oidc-clients]] tables")?;
        Self::from_entries(entries.into_iter().enumerate().map(|(i, v)| {
            let n = i + 1;
            let e: ClientEntry = serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("[[oidc-clients]] table {n}: client {n}: {e}"))?;
            Ok((
                format!("[[oidc-clients]] table {n}: client {n} ({:?})", e.client_id),
                e,
            ))
        }))
    }

    /// Checks each client (named by `what` in errors) and refuses a
    /// client_id used twice.
    fn from_entries(
        entries: impl Iterator<Item = anyhow::Result<(String, ClientEntry)>>,
    ) -> anyhow::Result<Self> {
        let mut map = HashMap::new();
        for entry in entries {
            let (what, e) = entry?;
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

/// serde_json's message without its trailing " at line L column C", which
/// counts within whatever slice was parsed (the caller says the real line).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&tail).unwrap_or(&text).to_string()
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
    fn bad_files_name_the_line_and_the_reason() {
        let e = Clients::parse("[{\"client_id\": \"a\",\n \"name\": }]").unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("line 2, column 10"), "{e}");
        assert!(!e.contains(" at line "), "the position once: {e}");
        // A client that makes no sense: the line its object starts on, its
        // number and id, and the reason. The second client starts on line 4.
        let second = |client: &str| {
            let text = format!(
                "[\n  {{\"client_id\": \"ok\", \"name\": \"OK\", \"public\": true,\n   \"redirect_uris\": [\"https://ok/cb\"]}},\n  {client}\n]"
            );
            format!("{:#}", Clients::parse(&text).unwrap_err())
        };
        let e = second(r#"{"client_id":"a","name":"A","redirect_uris":["https://a/cb"]}"#);
        assert!(e.contains("line 4: client 2 (\"a\")"), "{e}");
        assert!(e.contains("client_secret_hash"), "missing secret: {e}");
        let e = second(
            r#"{"client_id":"a","name":"A","public":true,"redirect_uris":["http://evil.example/cb"]}"#,
        );
        assert!(
            e.contains("line 4: client 2") && e.contains("loopback"),
            "{e}"
        );
        let e = second(
            r#"{"client_id":"a","name":"A","public":true,"redirect_uris":["https://a/cb#x"]}"#,
        );
        assert!(
            e.contains("line 4: client 2") && e.contains("fragment"),
            "{e}"
        );
        let e = second(r#"{"client_id":"a","name":"A","public":true,"grant_types":["password"]}"#);
        assert!(
            e.contains("line 4: client 2") && e.contains("unknown grant type \"password\""),
            "{e}"
        );
        // Unknown fields (a type-level error inside the object): the line
        // of the field itself, counted from the file's start.
        let e =
            second("{\"client_id\":\"a\",\"name\":\"A\",\n   \"public\":true,\"colour\":\"red\"}");
        assert!(
            e.contains("line 5: client 2") && e.contains("colour"),
            "{e}"
        );
        assert!(!e.contains(" at line "), "{e}");
        let two = r#"[{"client_id":"a","name":"A","public":true,"grant_types":["urn:ietf:params:oauth:grant-type:device_code"]},
                      {"client_id":"a","name":"B","public":true,"grant_types":["urn:ietf:params:oauth:grant-type:device_code"]}]"#;
        let e = format!("{:#}", Clients::parse(two).unwrap_err());
        assert!(e.contains("line 2: client 2") && e.contains("twice"), "{e}");
    }

    #[test]
    fn config_file_tables_are_named_by_their_number() {
        let e = Clients::parse_tables(
            r#"[{"client_id":"ok","name":"OK","public":true,"redirect_uris":["https://ok/cb"]},
                {"client_id":"b","name":"B","public":true,"redirect_uris":["http://evil.example/cb"]}]"#,
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("[[oidc-clients]] table 2: client 2 (\"b\")") && e.contains("loopback"),
            "{e}"
        );
        assert!(
            !e.contains("line "),
            "the loader's JSON has no lines worth naming: {e}"
        );
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
