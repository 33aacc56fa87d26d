//! Where and as whom qrlogin shows itself: the mount path (where routes
//! live) and the public path (what links, the QR and cookies use), the
//! site's branding, native app links, and the pages, rendered from their
//! templates once at start-up (docs/DECISIONS.md §15).
//!
//! Two paths, because a reverse proxy may strip the prefix: with
//! `--public-url https://site.example/auth/qr` the browser sees
//! `/auth/qr/...` (the public path) whether qrlogin itself serves under
//! `/auth/qr` (the default `--base-path`) or under `/` (`--base-path /`,
//! the proxy strips the prefix).

use crate::config::ServeConfig;
use anyhow::{bail, Context as _};
use axum::http::HeaderValue;
use bytes::Bytes;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Where qrlogin's own files live under the public path.
pub const ASSETS_DIR: &str = "/_qrlogin/assets";
/// Where the browser SDK lives under the public path.
pub const SDK_DIR: &str = "/_qrlogin/sdk";

/// A path prefix: `""` for the root, else `/a/b` (no trailing slash).
/// Only unreserved URL characters, so it can go into links, cookie paths
/// and router patterns as it is.
pub fn normalize_path(raw: &str) -> anyhow::Result<String> {
    let p = raw.trim();
    if p.is_empty() || p == "/" {
        return Ok(String::new());
    }
    if !p.starts_with('/') {
        bail!("a path must start with `/`: {raw:?}");
    }
    let p = p.trim_end_matches('/');
    let ok_chars = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~/".contains(c));
    let ok_segments = p[1..]
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != "..");
    if !ok_chars || !ok_segments {
        bail!(
            "the path {raw:?} may only hold segments of letters, digits and -._~ separated by single `/`"
        );
    }
    Ok(p.to_string())
}

/// The path part of a public URL (normalized, see [`normalize_path`]).
pub fn url_path(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .with_context(|| format!("--public-url must start with http:// or https://: {url:?}"))?;
    if rest.contains(['?', '#']) {
        bail!("--public-url may not hold a query or fragment: {url:?}");
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        bail!("--public-url has no host: {url:?}");
    }
    normalize_path(path).context("the path of --public-url")
}

/// The two paths: routes under `base`, links under `public`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where the router serves (`""` = the root).
    pub base: String,
    /// What browsers see (`""` = the root): the path of the public URL.
    pub public: String,
}

impl Mount {
    pub fn new(public_url: &str, base_path: Option<&str>) -> anyhow::Result<Self> {
        let public = url_path(public_url)?;
        let base = match base_path {
            Some(b) => normalize_path(b).context("--base-path")?,
            None => public.clone(),
        };
        Ok(Self { base, public })
    }

    /// `{public}{path}` (`path` starts with `/`).
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public)
    }

    /// The public path as a cookie `Path` (never empty).
    pub fn cookie_root(&self) -> &str {
        if self.public.is_empty() {
            "/"
        } else {
            &self.public
        }
    }
}

/// The site's name, logo, colour and support link (`--site-*`).
#[derive(Debug, Clone)]
pub struct Branding {
    pub name: String,
    pub logo_url: Option<String>,
    pub color: Option<String>,
    pub support_url: Option<String>,
}

impl Branding {
    pub fn from_config(cfg: &ServeConfig) -> anyhow::Result<Self> {
        if let Some(c) = &cfg.site_color {
            let hex = c.strip_prefix('#').unwrap_or("");
            if !matches!(hex.len(), 3 | 6) || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                bail!("--site-color must be #rrggbb or #rgb: {c:?}");
            }
        }
        if let Some(u) = &cfg.site_logo_url {
            let ok = (u.starts_with("https://") || u.starts_with("http://") || u.starts_with('/'))
                && !u.starts_with("//")
                && !u.contains(['"', '<', '>', ' ', '\'']);
            if !ok {
                bail!("--site-logo-url must be an http(s) URL or a path starting with `/`: {u:?}");
            }
        }
        if let Some(u) = &cfg.support_url {
            let ok = ["https://", "http://", "mailto:"]
                .iter()
                .any(|p| u.starts_with(p))
                && !u.contains(['"', '<', '>', ' ', '\'']);
            if !ok {
                bail!("--support-url must be an https://, http:// or mailto: URL: {u:?}");
            }
        }
        Ok(Self {
            name: cfg.site_name.clone(),
            logo_url: cfg.site_logo_url.clone(),
            color: cfg.site_color.clone(),
            support_url: cfg.support_url.clone(),
        })
    }
}

/// The native apps of `--app-links`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppLinks {
    /// `<TEAM ID>.<bundle id>`
    pub ios: Vec<String>,
    /// (package, SHA-256 certificate fingerprints as `AA:BB:…`)
    pub android: Vec<(String, Vec<String>)>,
}

impl AppLinks {
    /// Parses `ios:TEAMID.bundle.id` and `android:package@FINGERPRINT`
    /// entries; `None` when there are none.
    pub fn parse(entries: &[String]) -> anyhow::Result<Option<Self>> {
        let mut links = AppLinks::default();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Some(id) = e.strip_prefix("ios:") {
                let (team, bundle) = id.split_once('.').unwrap_or(("", ""));
                let team_ok = team.len() == 10 && team.chars().all(|c| c.is_ascii_alphanumeric());
                let bundle_ok = !bundle.is_empty()
                    && bundle
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                if !team_ok || !bundle_ok {
                    bail!("--app-links {e:?}: expected ios:<10-character team id>.<bundle id>");
                }
                links.ios.push(id.to_string());
            } else if let Some(rest) = e.strip_prefix("android:") {
                let (package, print) = rest.split_once('@').with_context(|| {
                    format!("--app-links {e:?}: expected android:<package>@<SHA-256 fingerprint>")
                })?;
                let package_ok = !package.is_empty()
                    && package
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                if !package_ok {
                    bail!("--app-links {e:?}: not an Android package name");
                }
                let print = fingerprint(print)
                    .with_context(|| format!("--app-links {e:?}: the fingerprint must be the 32-byte SHA-256 of the signing certificate (AA:BB:… or 64 hex digits)"))?;
                match links.android.iter_mut().find(|(p, _)| p == package) {
                    Some((_, prints)) => prints.push(print),
                    None => links.android.push((package.to_string(), vec![print])),
                }
            } else {
                bail!("--app-links {e:?}: entries start with ios: or android:");
            }
        }
        Ok((!links.ios.is_empty() || !links.android.is_empty()).then_some(links))
    }

    /// `/.well-known/apple-app-site-association` for the confirm pages
    /// under `public`: the iOS 13+ `components` form and the older `paths`.
    pub fn apple_json(&self, public: &str) -> Option<String> {
        if self.ios.is_empty() {
            return None;
        }
        let path = format!("{public}/m/*");
        let details: Vec<serde_json::Value> = self
            .ios
            .iter()
            .map(|id| {
                serde_json::json!({
                    "appID": id,
                    "appIDs": [id],
                    "paths": [path],
                    "components": [{ "/": path, "comment": "qrlogin: confirm a login" }],
                })
            })
            .collect();
        Some(serde_json::json!({ "applinks": { "apps": [], "details": details } }).to_string())
    }

    /// `/.well-known/assetlinks.json` (Android App Links).
    pub fn android_json(&self) -> Option<String> {
        if self.android.is_empty() {
            return None;
        }
        let statements: Vec<serde_json::Value> = self
            .android
            .iter()
            .map(|(package, prints)| {
                serde_json::json!({
                    "relation": ["delegate_permission/common.handle_all_urls"],
                    "target": {
                        "namespace": "android_app",
                        "package_name": package,
                        "sha256_cert_fingerprints": prints,
                    }
                })
            })
            .collect();
        Some(serde_json::Value::Array(statements).to_string())
    }
}

/// `AA:BB:…` (upper case) from a fingerprint with or without colons.
fn fingerprint(raw: &str) -> Option<String> {
    let hex: String = raw.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &up[2 * i..2 * i + 2]).collect();
    Some(pairs.join(":"))
}

/// FNV-1a, 64 bit: a cache-busting version, not a security measure.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `&`, `<`, `>`, `"` and `'` as entities, for text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The embedded file at `path` (under `assets/`).
pub fn asset(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// Everything the pages need, rendered once.
pub struct Site {
    pub mount: Mount,
    pub branding: Branding,
    pub app_links: Option<AppLinks>,
    /// Changes with the embedded files and the branding, so assets under
    /// `{public}/_qrlogin/assets/{version}/` can be cached for good.
    pub version: String,
    pub login: Bytes,
    pub confirm: Bytes,
    pub phone: Bytes,
    /// The OpenID Provider's pages.
    pub authorize: Bytes,
    pub device: Bytes,
    /// `:root { --accent: … }` from `--site-color` (empty without one).
    pub brand_css: Bytes,
    pub apple_json: Option<Bytes>,
    pub android_json: Option<Bytes>,
    /// The pages' Content-Security-Policy (the logo's origin allowed).
    pub csp: HeaderValue,
}

/// Strict CSP for our own pages: only our scripts and styles, nothing
/// inline, and no framing anywhere (no clickjacking of "Approve").
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:{LOGO}; media-src 'self' blob:; connect-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

impl Site {
    pub fn build(cfg: &ServeConfig, public_url: &str, demo_on: bool) -> anyhow::Result<Self> {
        let mount = Mount::new(public_url, cfg.base_path.as_deref())?;
        let branding = Branding::from_config(cfg)?;
        let app_links = AppLinks::parse(&cfg.app_links)?;
        let color = branding.color.clone().unwrap_or_default();
        let version = format!(
            "{:016x}",
            fnv1a(&[ASSET_VERSION.as_bytes(), color.as_bytes()])
        );
        let assets = mount.link(&format!("{ASSETS_DIR}/{version}"));
        let logo = match &branding.logo_url {
            Some(u) => escape_html(u),
            None => format!("{assets}/favicon.svg"),
        };
        let support = match &branding.support_url {
            Some(u) => format!(
                r#" · <a id="support-link" href="{}" rel="noopener">Need help?</a>"#,
                escape_html(u)
            ),
            None => String::new(),
        };
        let config = serde_json::json!({
            "base": mount.public,
            "site": branding.name,
            "demo": demo_on,
            "support": branding.support_url,
        })
        .to_string();
        let demo_note = if demo_on {
            format!(
                r#"<p id="demo-note">No phone at hand? Try the <a href="{}/phone" target="_blank" rel="noopener">simulated phone app</a> (demo users: alice / wonderland, bob / builder).</p>"#,
                mount.public
            )
        } else {
            String::new()
        };
        let render = |name: &str| -> anyhow::Result<Bytes> {
            let raw = asset(name).with_context(|| format!("page template {name} missing"))?;
            let text = std::str::from_utf8(raw).context("page templates are UTF-8")?;
            let html = text
                .replace("{{ASSETS}}", &assets)
                .replace("{{SDK}}", &mount.link(SDK_DIR))
                .replace("{{BASE}}", &mount.public)
                .replace("{{SITE}}", &escape_html(&branding.name))
                .replace("{{LOGO}}", &logo)
                .replace("{{SUPPORT}}", &support)
                .replace("{{DEMO_NOTE}}", &demo_note)
                .replace("{{CONFIG}}", &escape_html(&config));
            Ok(Bytes::from(html))
        };
        let logo_origin = branding
            .logo_url
            .as_deref()
            .filter(|u| !u.starts_with('/'))
            .map(|u| format!(" {}", crate::app::origin_of(u)))
            .unwrap_or_default();
        let csp = HeaderValue::from_str(&CSP.replace("{LOGO}", &logo_origin))
            .context("the logo URL does not fit a Content-Security-Policy")?;
        let brand_css = match &branding.color {
            Some(c) => format!(
                ":root {{ --accent: {c}; --accent-dark: color-mix(in srgb, {c} 78%, black); }}\n\
                 @media (prefers-color-scheme: dark) {{ :root {{ --accent: color-mix(in srgb, {c} 70%, white); --accent-dark: {c}; }} }}\n"
            ),
            None => String::new(),
        };
        Ok(Self {
            apple_json: app_links
                .as_ref()
                .and_then(|l| l.apple_json(&mount.public))
                .map(Bytes::from),
            android_json: app_links
                .as_ref()
                .and_then(AppLinks::android_json)
                .map(Bytes::from),
            login: render("login.html")?,
            confirm: render("confirm.html")?,
            phone: render("phone.html")?,
            authorize: render("authorize.html")?,
            device: render("device.html")?,
            brand_css: Bytes::from(brand_css),
            csp,
            version,
            mount,
            branding,
            app_links,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_and_refuse_what_cannot_be_a_prefix() {
        assert_eq!(normalize_path("/").unwrap(), "");
        assert_eq!(normalize_path("").unwrap(), "");
        assert_eq!(normalize_path("/auth/qr/").unwrap(), "/auth/qr");
        for bad in ["auth", "/a//b", "/a/../b", "/a b", "/a?x", "/%2e", "/a/./b"] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
        assert_eq!(url_path("https://x.example").unwrap(), "");
        assert_eq!(url_path("https://x.example/").unwrap(), "");
        assert_eq!(url_path("https://x.example/auth/qr").unwrap(), "/auth/qr");
        assert!(url_path("ftp://x").is_err());
        assert!(url_path("https://x.example/a?b=c").is_err());
        let m = Mount::new("https://x.example/auth/qr", None).unwrap();
        assert_eq!(
            (m.base.as_str(), m.public.as_str()),
            ("/auth/qr", "/auth/qr")
        );
        let m = Mount::new("https://x.example/auth/qr", Some("/")).unwrap();
        assert_eq!((m.base.as_str(), m.cookie_root()), ("", "/auth/qr"));
        assert_eq!(Mount::new("http://h:1", None).unwrap().cookie_root(), "/");
    }

    #[test]
    fn app_links_parse_and_render() {
        let fp = "14:6d:e9:83:c5:73:06:50:d8:ee:b9:95:2f:34:fc:64:16:a0:83:42:e6:1d:be:a8:8a:04:96:b2:3f:cf:44:e5";
        let links = AppLinks::parse(&[
            "ios:ABCDE12345.com.example.shop".into(),
            format!("android:com.example.shop@{fp}"),
            format!("android:com.example.shop@{}", "AB".repeat(32)),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(links.ios, ["ABCDE12345.com.example.shop"]);
        assert_eq!(links.android.len(), 1);
        assert_eq!(links.android[0].1[0], fp.to_ascii_uppercase());
        assert_eq!(links.android[0].1[1].len(), 95);
        let apple: serde_json::Value =
            serde_json::from_str(&links.apple_json("/auth/qr").unwrap()).unwrap();
        assert_eq!(
            apple["applinks"]["details"][0]["components"][0]["/"],
            "/auth/qr/m/*"
        );
        let android: serde_json::Value =
            serde_json::from_str(&links.android_json().unwrap()).unwrap();
        assert_eq!(android[0]["target"]["package_name"], "com.example.shop");
        for bad in [
            "ios:SHORT.com.x",
            "ios:ABCDE12345",
            "android:com.x",
            "android:com.x@12:34",
            "windows:x",
        ] {
            assert!(AppLinks::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(AppLinks::parse(&[]).unwrap(), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
