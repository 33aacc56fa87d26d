//! Login ids, browser secrets, session and mobile tokens, session
//! references (a JWT's `sid`), secret hashes:
//! whatever text arrives, parsing never panics, and what is accepted has
//! exactly one spelling (it prints back as received).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qrlogin_core::{BrowserSecret, LoginId, MobileToken, SecretHash, SessionRef, SessionToken};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;
    if let Ok(id) = s.parse::<LoginId>() {
        assert_eq!(id.to_string(), s);
    }
    if let Ok(secret) = s.parse::<BrowserSecret>() {
        assert_eq!(secret.expose(), s);
    }
    if let Ok(token) = s.parse::<MobileToken>() {
        assert_eq!(token.expose(), s);
    }
    if let Ok(token) = s.parse::<SessionToken>() {
        assert_eq!(token.expose(), s);
        assert_eq!(token.login_id().to_string(), &s[..LoginId::TEXT_LEN]);
    }
    if let Ok(r) = s.parse::<SessionRef>() {
        assert_eq!(r.to_string(), s);
    }
    if let Some(hash) = SecretHash::from_hex(s) {
        assert_eq!(hash.to_hex(), s.to_ascii_lowercase());
    }
});
