//! Cookie, bearer and client-IP extraction from request headers. The input
//! is split into a peer address, a trust pattern, and three header values
//! (Cookie, Authorization, X-Forwarded-For) separated by 0xff bytes. The
//! peer is given IPv4-mapped half of the time (a dual-stack listener), and
//! the trusted proxies are addresses or a range.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use qrlogin_server::routes::extract::{bearer, client_ip, cookie, forwarded_addr, ProxyRange};
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let peer4 = IpAddr::from([data[0], data[1], data[2], data[3]]);
    let trust = data[4];
    let peer = if trust & 4 == 4 {
        IpAddr::V6(std::net::Ipv4Addr::from([data[0], data[1], data[2], data[3]]).to_ipv6_mapped())
    } else {
        peer4
    };
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
    let mut trusted: Vec<ProxyRange> = Vec::new();
    if trust & 1 == 1 {
        trusted.push(ProxyRange::from(peer4));
    }
    if trust & 2 == 2 {
        trusted.push("10.0.0.0/8".parse().expect("a range"));
    }
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    let ip = client_ip(peer, &headers, &trusted);
    if !is_trusted(peer4) {
        assert_eq!(ip, peer4, "X-Forwarded-For believed from an untrusted peer");
    }
    // Always canonical: never an IPv4-mapped address.
    if let IpAddr::V6(v6) = ip {
        assert!(v6.to_ipv4_mapped().is_none(), "{ip} is not canonical");
    }
    if let Some(xff) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        for entry in xff.split(',') {
            let _ = forwarded_addr(entry);
        }
    }
});
