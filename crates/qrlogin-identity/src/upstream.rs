//! The HTTP client every verifier uses to reach the identity provider.
//!
//! One pooled client per verifier (connections are kept alive between
//! phones), TLS verified against the system roots plus an optional private
//! CA bundle, no redirects followed (a redirect from a token endpoint is a
//! misconfiguration, not something to chase), and one overall timeout per
//! call. Whatever goes wrong with the upstream — refused, slow, a 5xx, a
//! body that is not the JSON asked for — is `Unavailable`: the phone app
//! must say "try again", not "you are signed out".

use anyhow::Context as _;
use qrlogin_core::VerifyError;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// `--mobile-verifier-timeout-ms` and `--mobile-verifier-ca-file`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The longest one upstream call may take, connect to last byte.
    pub timeout: Duration,
    /// A PEM bundle of extra CA certificates (a private PKI), trusted in
    /// addition to the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(2000),
            ca_file: None,
        }
    }
}

/// The largest upstream answer read (JWKS, introspection, userinfo); a
/// bigger one is garbage for our purposes and is not buffered.
pub const MAX_BODY: usize = 256 * 1024;

/// A pooled client with the verifier's timeout.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: reqwest::Client,
    timeout: Duration,
}

impl Upstream {
    pub fn new(settings: &HttpSettings) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("qrlogin/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA bundle {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("parsing the CA bundle {}", path.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "the CA bundle {} holds no certificate",
                path.display()
            );
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(Self {
            client: b.build().context("building the HTTPS client")?,
            timeout: settings.timeout,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `req` and reads a JSON object answer of at most [`MAX_BODY`].
    /// Returns the status with the object (`None` when the body is not a
    /// JSON object), or `Unavailable` when the call itself failed. The whole
    /// exchange is bounded by the timeout, body included.
    pub async fn json(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<
        (
            reqwest::StatusCode,
            reqwest::header::HeaderMap,
            Option<Map<String, Value>>,
        ),
        VerifyError,
    > {
        let call = async {
            let mut resp = req.send().await.map_err(|e| unavailable(what, &e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(what, &e))? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(VerifyError::Unavailable(format!(
                        "{what}: answer larger than {MAX_BODY} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            let obj = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            };
            Ok((status, headers, obj))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(VerifyError::Unavailable(format!(
                "{what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// An upstream failure, described without the URL's query or any token
/// (reqwest's message names the URL; ours are configuration, not secrets,
/// but the query part is dropped all the same).
fn unavailable(what: &str, e: &reqwest::Error) -> VerifyError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    VerifyError::Unavailable(format!("{what}: {kind}"))
}

/// Checks an upstream URL from configuration: http(s) only, no userinfo
/// part (credentials go in their own options, never in a URL that is
/// logged), and a warning for plain http off loopback.
pub fn check_url(flag: &str, url: &str) -> anyhow::Result<reqwest::Url> {
    let u = reqwest::Url::parse(url).with_context(|| format!("{flag}: not a URL"))?;
    anyhow::ensure!(
        matches!(u.scheme(), "https" | "http"),
        "{flag}: must be an https:// URL"
    );
    anyhow::ensure!(
        u.username().is_empty() && u.password().is_none(),
        "{flag}: put no credentials in the URL"
    );
    anyhow::ensure!(u.host_str().is_some(), "{flag}: the URL has no host");
    if u.scheme() == "http" && !is_loopback(&u) {
        tracing::warn!(
            "{flag} is plain http to a host off this machine: tokens would cross the network unencrypted"
        );
    }
    Ok(u)
}

fn is_loopback(u: &reqwest::Url) -> bool {
    let host = u.host_str().unwrap_or("");
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_without_credentials() {
        assert!(check_url("--x", "https://idp.example/userinfo").is_ok());
        assert!(check_url("--x", "http://127.0.0.1:9/x").is_ok());
        let e = check_url("--x", "ftp://idp.example/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--x"), "{e}");
        let e = format!(
            "{:#}",
            check_url("--x", "https://u:hunter2@idp.example/").unwrap_err()
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(check_url("--x", "not a url").is_err());
    }
}
