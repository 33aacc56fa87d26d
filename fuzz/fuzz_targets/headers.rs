//! Cookie, bearer and client-IP extraction from request headers. The input
//! is split into a peer address, a trust pattern, and three header values
//! (Cookie, Authorization, X-Forwarded-For) separated by 0xff bytes.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use qrlogin_server::routes::extract::{bearer, client_ip, cookie};
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let peer = IpAddr::from([data[0], data[1], data[2], data[3]]);
    let trust = data[4];
    let mut parts = data[5..].split(|b| *b == 0xff);
    let mut headers = HeaderMap::new();
    for name in ["cookie", "authorization", "x-forwarded-for"] {
        if let Some(v) = parts.next().and_then(|p| HeaderValue::from_bytes(p).ok()) {
            headers.append(name, v);
        }
    }
    if let Some(found) = cookie(&headers, "qrl_bs") {
        let all = headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(all.contains(found));
    }
    let _ = cookie(&headers, "qrl_session");
    if let Some(token) = bearer(&headers) {
        let all = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(all.starts_with("Bearer "));
        assert!(all.contains(token));
    }
    let mut trusted: Vec<IpAddr> = Vec::new();
    if trust & 1 == 1 {
        trusted.push(peer);
    }
    if trust & 2 == 2 {
        trusted.push(IpAddr::from([10, 0, 0, 1]));
    }
    let ip = client_ip(peer, &headers, &trusted);
    if !trusted.contains(&peer) {
        assert_eq!(ip, peer, "X-Forwarded-For believed from an untrusted peer");
    } else {
        assert!(ip == peer || !trusted.contains(&ip));
    }
});
