//! The bearer of the site-backend API (`--admin-token-file`): read once at
//! start-up, kept only as its SHA-256, compared in constant time.

use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// Shortest token accepted: a guessable bearer would guard "log out
/// everyone" for anybody.
const MIN_LEN: usize = 32;

/// The admin bearer, as its SHA-256 (the text is dropped after hashing, so
/// no dump or `Debug` of the state shows it).
#[derive(Clone)]
pub struct AdminToken {
    hash: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token from `path` (surrounding whitespace, e.g. a final
    /// newline, is not part of it). The error names the file, never the
    /// content.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading --admin-token-file {}: {e}", path.display()))?;
        Self::new(text.trim())
            .map_err(|why| anyhow::anyhow!("--admin-token-file {}: {why}", path.display()))
    }

    /// A token from its text.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() < MIN_LEN {
            return Err(format!("the token must be at least {MIN_LEN} characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        Ok(Self {
            hash: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token. Both sides are hashed first, so
    /// the comparison takes the same time whatever the length or content.
    pub fn matches(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h.ct_eq(&self.hash).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_token_and_redacts() {
        let t = AdminToken::new("0123456789abcdef0123456789abcdef").unwrap();
        assert!(t.matches("0123456789abcdef0123456789abcdef"));
        assert!(!t.matches("0123456789abcdef0123456789abcdeF"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("0123456789abcdef 0123456789abcdef").is_err());
    }

    #[test]
    fn file_errors_never_echo_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "tooshort-secret\n").unwrap();
        let e = AdminToken::from_file(&p).unwrap_err().to_string();
        assert!(!e.contains("tooshort-secret"), "{e}");
        std::fs::write(&p, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert!(AdminToken::from_file(&p)
            .unwrap()
            .matches("0123456789abcdef0123456789abcdef"));
    }
}
