//! Adversarial suite, part 10: every parser of untrusted input, in the
//! normal test run (SECURITY.md; the same parsers are cargo-fuzz targets
//! under `fuzz/`, see SECURITY.md for how to run them).
//!
//! Property tests: none panics on anything; what they accept they accept
//! exactly (ids, secrets and tokens have one spelling and print back as
//! received); cookie and bearer extraction never mistake one name for
//! another; the client IP is the socket peer unless the peer is a trusted
//! proxy, and then the right-most untrusted `X-Forwarded-For` hop, read
//! with ports, brackets, IPv4-mapped spellings and whitespace, IPv4 and
//! IPv6 hops and peers, proxies trusted by address or CIDR range, and never
//! anything at or left of an entry that cannot be read; always canonical.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use qrlogin_core::{
    BrowserSecret, LoginId, MobileToken, SecretHash, SessionRef, SessionToken, User,
};
use qrlogin_server::jwt::JwtSessions;
use qrlogin_server::routes::browser::CreateBody;
use qrlogin_server::routes::extract::{bearer, client_ip, cookie, ProxyRange};
use qrlogin_server::routes::phone::{describe_agent, Decision, SignIn};
use std::net::IpAddr;
use std::sync::OnceLock;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text from the base64url alphabet, near the lengths that matter.
fn b64ish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{22}",
        "[A-Za-z0-9_-]{43}",
        "[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}",
        "[A-Za-z0-9_=+/.-]{0,70}",
    ]
}

/// Any text: arbitrary Unicode, and lossy-decoded arbitrary bytes.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,120}",
        prop::collection::vec(any::<u8>(), 0..120)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        b64ish(),
    ]
}

/// A JSON document of bounded depth.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("header"),
            Just("cookie"),
            Just("42"),
            Just("alice"),
            Just("binding"),
            Just("match_code"),
            Just("username"),
            Just("password")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("binding".to_string()),
                    Just("match_code".to_string()),
                    Just("username".to_string()),
                    Just("password".to_string()),
                    "[a-z_]{0,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A client or proxy address: any IPv4 or IPv6 address, or one of a few
/// from one IPv4 /24 and one IPv6 /64, so that a trusted range sometimes
/// holds other hops (or the peer) than the one it was made from.
fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
        (0..8u8).prop_map(|h| IpAddr::from([10, 0, 0, h])),
        (0..8u16).prop_map(|h| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, h])),
    ]
}

/// `how` 0: not trusted; 1: trusted as the address itself; 2: through its
/// IPv4 /24 or IPv6 /64, parsed as `--trusted-proxies` reads it.
fn trust(ip: IpAddr, how: u8) -> Option<ProxyRange> {
    let ip = ip.to_canonical();
    match how {
        0 => None,
        1 => Some(ProxyRange::from(ip)),
        _ => {
            let bits = if ip.is_ipv4() { 24 } else { 64 };
            Some(format!("{ip}/{bits}").parse().expect("a CIDR range"))
        }
    }
}

fn header_map(name: &'static str, values: &[Vec<u8>]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    h
}

const JWT_NOW: u64 = 1_800_000_000_000;

/// One signing key and one token it issued, shared by the property cases.
fn jwt_fixture() -> &'static (JwtSessions, String) {
    static FIXTURE: OnceLock<(JwtSessions, String)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = JwtSessions::generate("https://login.example".into(), None).expect("key");
        let user = User {
            id: "u-alice".into(),
            name: "Alice".into(),
        };
        let session = SessionToken::new_for(LoginId::random()).session_ref();
        let jwt = keys
            .issue(&session, &user, JWT_NOW, JWT_NOW + 3_600_000)
            .expect("sign");
        assert!(keys.verify(&jwt, JWT_NOW).is_ok());
        (keys, jwt)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ids_secrets_and_tokens_parse_exactly_or_not_at_all(s in any_text()) {
        if let Ok(id) = s.parse::<LoginId>() {
            prop_assert_eq!(id.to_string(), s.clone());
        }
        if let Ok(bs) = s.parse::<BrowserSecret>() {
            prop_assert_eq!(bs.expose(), s.clone());
        }
        if let Ok(mt) = s.parse::<MobileToken>() {
            prop_assert_eq!(mt.expose(), s.clone());
        }
        if let Ok(t) = s.parse::<SessionToken>() {
            prop_assert_eq!(t.expose(), s.clone());
            prop_assert_eq!(t.login_id().to_string(), s[..22].to_string());
        }
        if let Some(h) = SecretHash::from_hex(&s) {
            prop_assert_eq!(h.to_hex(), s.to_ascii_lowercase());
        }
        if let Ok(r) = s.parse::<SessionRef>() {
            prop_assert_eq!(r.to_string(), s.clone());
        }
    }

    #[test]
    fn session_jwts_verify_exactly_or_not_at_all(
        s in any_text(),
        jws in "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let (keys, jwt) = jwt_fixture();
        // Arbitrary text and JWS-shaped junk: refused, never a panic.
        prop_assert!(keys.verify(&s, JWT_NOW).is_err());
        prop_assert!(keys.verify(&jws, JWT_NOW).is_err());
        // A real token with one byte changed anywhere: refused, unless the
        // change left the token as it was.
        let mut bytes = jwt.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        if changed != *jwt {
            prop_assert!(keys.verify(&changed, JWT_NOW).is_err(), "{changed}");
        }
    }

    #[test]
    fn generated_values_round_trip(_seed in any::<u8>()) {
        let id = LoginId::random();
        prop_assert_eq!(id.to_string().parse::<LoginId>(), Ok(id));
        let t = SessionToken::new_for(id);
        prop_assert_eq!(t.expose().parse::<SessionToken>(), Ok(t.clone()));
        let bs = BrowserSecret::random();
        prop_assert_eq!(bs.expose().parse::<BrowserSecret>(), Ok(bs.clone()));
        // A secret is not a token and a token is not a secret.
        prop_assert!(bs.expose().parse::<SessionToken>().is_err());
        prop_assert!(t.expose().parse::<BrowserSecret>().is_err());
        prop_assert!(id.to_string().parse::<BrowserSecret>().is_err());
    }

    #[test]
    fn request_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), v in json_value()) {
        let _ = serde_json::from_slice::<CreateBody>(&bytes);
        let _ = serde_json::from_slice::<SignIn>(&bytes);
        let _ = serde_json::from_slice::<Decision>(&bytes);
        let text = v.to_string();
        let _ = serde_json::from_str::<CreateBody>(&text);
        let _ = serde_json::from_str::<SignIn>(&text);
        let _ = serde_json::from_str::<Decision>(&text);
        // A body that names a user only ever yields what the types hold:
        // Decision has nothing but the match code. (serde also reads a
        // struct from a JSON array, by position; harmless here.)
        if let (true, Ok(d)) = (v.is_object(), serde_json::from_str::<Decision>(&text)) {
            let expect = v.get("match_code").and_then(|c| c.as_str()).map(str::to_owned);
            prop_assert_eq!(d.match_code, expect);
        }
    }

    #[test]
    fn user_agents_never_panic(ua in any_text(), parts in prop::collection::vec(prop_oneof![
        Just("Mozilla/5.0 ".to_string()), Just("(Windows NT 10.0; Win64; x64) ".to_string()),
        Just("(iPhone; CPU iPhone OS 17_0 like Mac OS X) ".to_string()),
        Just("AppleWebKit/537.36 (KHTML, like Gecko) ".to_string()),
        Just("Chrome/126.0.0.0 ".to_string()), Just("Safari/537.36".to_string()),
        Just("Firefox/".to_string()), "[0-9.]{0,12}", ".{0,8}",
    ], 0..10)) {
        for ua in [ua, parts.concat()] {
            let (browser, os) = describe_agent(&ua);
            prop_assert!(!browser.is_empty() && !os.is_empty(), "{ua:?} -> {browser:?} {os:?}");
            prop_assert!(browser.len() < 600 && os.len() < 600);
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name_only(
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..4),
        secret in "[A-Za-z0-9_-]{43}",
        decoy in "[A-Za-z0-9_-]{1,10}",
    ) {
        let h = header_map("cookie", &values);
        let _ = cookie(&h, "qrl_bs");
        let _ = cookie(&h, "");
        // Look-alike names never match; the real one does, wherever it is.
        let v = format!("xqrl_bs={decoy}; qrl_bsx={decoy}; qrl_bs={secret}; qrl_session={decoy}");
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_str(&v).unwrap());
        prop_assert_eq!(cookie(&h, "qrl_bs"), Some(secret.as_str()));
        let v = format!("xqrl_bs={decoy}; qrl_bs_={decoy}");
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_str(&v).unwrap());
        prop_assert_eq!(cookie(&h, "qrl_bs"), None);
        // Whatever is found is part of a header value.
        let h = header_map("cookie", &values);
        if let Some(found) = cookie(&h, "qrl_bs") {
            prop_assert!(h.get_all("cookie").iter().any(|v| v.to_str().is_ok_and(|s| s.contains(found))));
        }
    }

    #[test]
    fn bearer_needs_the_scheme(raw in prop::collection::vec(any::<u8>(), 0..90), token in "[A-Za-z0-9._-]{1,60}") {
        let h = header_map("authorization", &[raw]);
        if let Some(t) = bearer(&h) {
            let full = h.get("authorization").unwrap().to_str().unwrap();
            prop_assert!(full.starts_with("Bearer "));
            prop_assert_eq!(t, full["Bearer ".len()..].trim());
        }
        for (v, want) in [
            (format!("Bearer {token}"), Some(token.as_str())),
            (format!("Basic {token}"), None),
            (format!("Bearer{token}"), None),
            (token.clone(), None),
        ] {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_str(&v).unwrap());
            prop_assert_eq!(bearer(&h), want);
        }
    }

    #[test]
    fn client_ip_trusts_forwarded_for_only_from_trusted_proxies(
        xff in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..3),
        hops in prop::collection::vec((any_ip(), any::<u16>(), 0..4u8, 0..3u8), 0..5),
        peer in any_ip(),
        trust_peer in 0..3u8,
        peer_mapped in any::<bool>(),
    ) {
        // The peer as a dual-stack listener may report an IPv4 client.
        let peer_seen = match peer {
            IpAddr::V4(v4) if peer_mapped => IpAddr::V6(v4.to_ipv6_mapped()),
            other => other,
        };
        let mut trusted: Vec<ProxyRange> = Vec::new();
        if let Some(r) = trust(peer, trust_peer) {
            trusted.push(r);
        }
        let hop_ips: Vec<IpAddr> = hops.iter().map(|(ip, _, _, _)| ip.to_canonical()).collect();
        for (ip, _, _, how) in &hops {
            if let Some(r) = trust(*ip, *how) {
                trusted.push(r);
            }
        }
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|r| r.contains(*ip));
        // A hop's range may hold the peer too: what counts is whether the
        // peer is in the trusted set, not how it got there.
        let peer_trusted = is_trusted(&peer);
        // Garbage headers never panic, and never yield a trusted address
        // other than the walk's own.
        let h = header_map("x-forwarded-for", &xff);
        let got = client_ip(peer_seen, &h, &trusted);
        if !peer_trusted {
            prop_assert_eq!(got, peer);
        }
        // A well-formed chain. IPv4 hops are spelt plain, with a port, and
        // (IPv4-mapped) bare or bracketed with a port; IPv6 hops bare,
        // bracketed, and bracketed with a port; with spaces and tabs around.
        let spelt: Vec<String> = hops.iter().map(|(ip, port, how, _)| match ip {
            IpAddr::V4(v4) => match how {
                0 => format!("{v4}"),
                1 => format!("\t{v4}:{port} "),
                2 => format!(" {}", v4.to_ipv6_mapped()),
                _ => format!("[{}]:{port}", v4.to_ipv6_mapped()),
            },
            IpAddr::V6(v6) => match how {
                0 => format!(" {v6}"),
                1 => format!("[{v6}]\t"),
                2 => format!("[{v6}]:{port}"),
                _ => format!(" [{v6}]:{port} "),
            },
        }).collect();
        let chain = spelt.join(",");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(&chain).unwrap());
        let got = client_ip(peer_seen, &h, &trusted);
        if !peer_trusted {
            prop_assert_eq!(got, peer, "an untrusted peer's X-Forwarded-For was believed");
        } else {
            // The right-most untrusted hop, or the left-most hop if all are
            // trusted (the peer when there are none); always canonical.
            let want = hop_ips.iter().rev().find(|ip| !is_trusted(ip)).copied()
                .or(hop_ips.first().copied()).unwrap_or(peer);
            prop_assert_eq!(got, want, "{:?} from {} trusting {:?}", chain, peer_seen, trusted);
        }
        // Garbage anywhere in the chain: the walk stops at it, so neither
        // the garbage nor anything to its left is the answer unless the
        // walk reached an untrusted hop first.
        if peer_trusted && !hop_ips.is_empty() {
            let cut = xff.len() % (hop_ips.len() + 1);
            for junk in [
                "unknown", "", "garbage", "1.2.3.4:", "[::1", "2001:db8::1:8x",
                "[10.0.0.1]", "[2001:db8::1]:", "[2001:db8::1]x",
            ] {
                let mut parts = spelt.clone();
                parts.insert(cut, junk.to_string());
                let mut h = HeaderMap::new();
                h.insert("x-forwarded-for", HeaderValue::from_str(&parts.join(",")).unwrap());
                let got = client_ip(peer_seen, &h, &trusted);
                let right = &hop_ips[cut..];
                let want = right.iter().rev().find(|ip| !is_trusted(ip)).copied()
                    .or(right.first().copied()).unwrap_or(peer);
                prop_assert_eq!(got, want, "{:?}", parts);
            }
        }
    }
}
