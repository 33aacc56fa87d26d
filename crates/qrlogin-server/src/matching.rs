//! Number matching: the browser shows a 2-digit code, the phone must pick
//! it among three. A phisher who relays our QR to a victim cannot show the
//! victim the code on *their* screen, so a relayed login fails (a wrong pick
//! denies the login).

use qrlogin_core::{LoginRecord, SecretHash};

/// A fresh code, 10..=99 (always two digits), uniform, from the OS CSPRNG.
pub fn new_code() -> Result<u8, getrandom::Error> {
    loop {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b)?;
        // 180 = 2 × 90: reject the tail so every code is equally likely.
        if b[0] < 180 {
            return Ok(10 + b[0] % 90);
        }
    }
}

/// The three choices the phone shows: the code and two decoys, in an order
/// that does not give the code away. Derived from the login's secret hash,
/// so a reloaded phone page shows the same three (fresh decoys on every
/// reload would reveal the code as the one number that never changes).
pub fn choices(rec: &LoginRecord) -> Option<Vec<String>> {
    let code = rec.match_code?;
    let mut seed = rec.secret_hash.as_bytes().to_vec();
    seed.extend_from_slice(b"qrlogin match decoys");
    let bytes = *SecretHash::of(&seed).as_bytes();
    let mut picks = vec![code];
    for b in bytes.iter().take(30) {
        let d = 10 + b % 90;
        if !picks.contains(&d) {
            picks.push(d);
        }
        if picks.len() == 3 {
            break;
        }
    }
    // Place the code at position bytes[31] % 3 among the decoys.
    let pos = (bytes[31] % 3) as usize;
    let last = picks.len() - 1;
    picks.swap(0, pos.min(last));
    Some(picks.into_iter().map(|c| format!("{c:02}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qrlogin_core::{BrowserContext, BrowserSecret, LoginId, State};

    fn rec(code: u8) -> LoginRecord {
        LoginRecord {
            id: LoginId::random(),
            state: State::Scanned,
            version: 2,
            secret_hash: BrowserSecret::random().hash(),
            created_at_ms: 0,
            expires_at_ms: 1,
            browser: BrowserContext::default(),
            match_code: Some(code),
            match_required: true,
            risk: None,
            user: None,
            client_id: None,
        }
    }

    #[test]
    fn codes_are_two_digits() {
        for _ in 0..1000 {
            let c = new_code().unwrap();
            assert!((10..=99).contains(&c));
        }
    }

    #[test]
    fn choices_hold_the_code_once_are_stable_and_vary_in_position() {
        let mut positions = [0usize; 3];
        for _ in 0..300 {
            let r = rec(42);
            let c = choices(&r).unwrap();
            assert_eq!(c.len(), 3);
            assert_eq!(c.iter().filter(|x| *x == "42").count(), 1);
            assert_eq!(choices(&r).unwrap(), c, "stable across reloads");
            positions[c.iter().position(|x| x == "42").unwrap()] += 1;
        }
        assert!(positions.iter().all(|&n| n > 50), "{positions:?}");
    }
}
