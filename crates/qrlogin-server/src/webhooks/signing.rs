//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC>`
//! over `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed by the secret's
//! bytes (the base64 after `whsec_`). Own code on the workspace's hmac,
//! sha2 and base64 (no maintained Rust crate of the spec); the tests'
//! receiver checks it with the reference Python library.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

/// The signing secret. Its bytes never leave this type except into the
/// HMAC; `Debug` is redacted.
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Fewer key bytes than this are refused (the spec suggests 24 to 64).
const MIN_KEY_BYTES: usize = 16;

impl WebhookSecret {
    /// Parses `whsec_<base64>` (surrounding whitespace ignored). The
    /// error never quotes the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or("the webhook secret must look like whsec_<base64>")?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "the webhook secret after whsec_ is not valid base64".to_string())?;
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the webhook secret is too short: at least {MIN_KEY_BYTES} bytes"
            ));
        }
        Ok(Self(key))
    }

    /// Reads the secret from `path`, once, at start-up.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--webhook-secret-file {}: {e}", path.display()))?;
        Self::parse(&text)
            .map_err(|e| anyhow::anyhow!("--webhook-secret-file {}: {e}", path.display()))
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' tests.
    #[test]
    fn matches_the_reference_example() {
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn refuses_bad_secrets_without_quoting_them() {
        for bad in ["", "MfKQ9r8GKYqrTwjU", "whsec_!!!!", "whsec_c2hvcnQ="] {
            let e = WebhookSecret::parse(bad).unwrap_err();
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{s:?}"), "WebhookSecret(<redacted>)");
    }
}
