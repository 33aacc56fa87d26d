//! Extractors: untrusted request parts become typed values here, or the
//! request ends with a clear 4xx JSON error.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use qrlogin_core::{BrowserSecret, LoginId, SessionRef, SessionToken, User};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Cookie holding the browser secret, scoped to `/v1/logins/{id}`.
pub const BROWSER_COOKIE: &str = "qrl_bs";
/// Cookie holding the web session token.
pub const SESSION_COOKIE: &str = "qrl_session";

/// A login id from the path, well formed or a 400.
pub struct LoginPath(pub LoginId);

impl<S: Send + Sync> FromRequestParts<S> for LoginPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("malformed login id"))?;
        raw.parse()
            .map(LoginPath)
            .map_err(|_| ApiError::bad_request("malformed login id"))
    }
}

/// JSON body whose rejections are our JSON errors (400 / 413 / 415): it
/// must be declared `application/json` (or `application/*+json`) and be a
/// JSON object.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body_bytes(req, state).await?;
        object_body(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: empty is `None`, anything else (even blanks)
/// must be a JSON object that parses, whatever the declared content type
/// (`curl -d` declares a form).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        // No body at all is "no body"; anything else must be a JSON
        // object (whitespace alone is not JSON).
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        object_body(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// The whole body, within the body limit (413 beyond it).
async fn body_bytes<S: Send + Sync>(
    req: axum::extract::Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::bad_request("unreadable body")
            }
        })
}

/// `Content-Type: application/json` or `application/<something>+json`,
/// parameters allowed.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON object as `T`. serde would also read a struct from a JSON array,
/// by position; the API documents objects, so anything else is a 400.
fn object_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

/// Value of cookie `name`, if present.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Authorization: Bearer <x>` value, if present.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A credential from the bearer header if that parses as `T`, else from
/// cookie `name`. A bearer that is not a `T` (say, the site's own
/// Authorization header) must not hide a valid cookie.
fn bearer_or_cookie<T: FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    bearer(headers)
        .and_then(|s| s.parse().ok())
        .or_else(|| cookie(headers, name).and_then(|s| s.parse().ok()))
}

/// The browser secret (cookie, or bearer for header binding). Missing or
/// malformed secrets are not a distinct error: the handler answers 404 like
/// for a wrong secret.
pub struct BrowserAuth(pub Option<BrowserSecret>);

impl<S: Send + Sync> FromRequestParts<S> for BrowserAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(BrowserAuth(bearer_or_cookie(
            &parts.headers,
            BROWSER_COOKIE,
        )))
    }
}

impl BrowserAuth {
    pub fn require(self) -> Result<BrowserSecret, ApiError> {
        self.0.ok_or(ApiError::NotFound)
    }
}

/// The web session a request presents (bearer, else the `qrl_session`
/// cookie), checked as far as that is possible without the store: in opaque
/// mode a well-formed token, in JWT mode a JWT that verifies (signature,
/// algorithm, issuer, audience, expiry). Either way the result is the
/// reference to the session record, which the handler then looks up.
/// `None` for anything else; the handler answers 401.
pub struct SessionAuth(pub Option<SessionRef>);

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let found = match &state.jwt {
            None => bearer_or_cookie::<SessionToken>(&parts.headers, SESSION_COOKIE)
                .map(|t| t.session_ref()),
            Some(keys) => {
                let now = state.now_ms();
                let check = |s: &str| keys.verify(s, now).ok().map(|v| v.session);
                // As for opaque tokens: a bearer that is not ours (the
                // site's own Authorization header) must not hide the cookie.
                bearer(&parts.headers)
                    .and_then(check)
                    .or_else(|| cookie(&parts.headers, SESSION_COOKIE).and_then(check))
            }
        };
        Ok(SessionAuth(found))
    }
}

/// The signed-in phone user, from a verified mobile token. The only source
/// of a user id on the phone side.
pub struct PhoneUser(pub User);

impl FromRequestParts<AppState> for PhoneUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let result = state.verifier.verify(token).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(qrlogin_core::VerifyError::Invalid) => "invalid",
            Err(_) => "unavailable",
        };
        metrics::counter!(
            "qrlogin_mobile_verifications_total",
            "verifier" => state.verifier.kind(),
            "outcome" => outcome
        )
        .increment(1);
        Ok(PhoneUser(result?))
    }
}

/// The client's IP: the socket peer, or, when the peer is a configured
/// trusted proxy, the right-most untrusted address of `X-Forwarded-For`
/// (see [`client_ip`]). Always canonical: an IPv4 client that reached a
/// dual-stack (`[::]`) listener is its IPv4 address, not `::ffff:a.b.c.d`.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(ClientIp(client_ip(
            peer_ip(&parts.extensions),
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

/// The socket peer's address (from [`ConnectInfo`]), canonical (see
/// [`ClientIp`]); loopback when absent (a router driven without a
/// listener, as in tests).
pub fn peer_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// One `--trusted-proxies` entry: an address (`10.0.0.1`, `2001:db8::1`) or
/// a CIDR range (`10.0.0.0/8`, `2001:db8::/32`). An IPv4-mapped IPv6 range
/// (`::ffff:10.0.0.0/104`) is stored as the IPv4 range it means, because
/// client addresses are compared in their canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRange(ipnet::IpNet);

impl ProxyRange {
    /// Whether `ip` (canonical) lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl From<IpAddr> for ProxyRange {
    fn from(ip: IpAddr) -> Self {
        ProxyRange(ipnet::IpNet::from(ip.to_canonical()))
    }
}

impl FromStr for ProxyRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!("{s:?} is neither an IP address nor a CIDR range (10.0.0.0/8, 2001:db8::/32)")
        };
        let net = match s.split_once('/') {
            None => return s.parse::<IpAddr>().map(ProxyRange::from).map_err(|_| bad()),
            Some(_) => s.parse::<ipnet::IpNet>().map_err(|_| bad())?,
        };
        let net = match net {
            ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(ipnet::IpNet::V4)
                    .map_err(|_| bad())?,
                None => net,
            },
            other => other,
        };
        // `10.1.2.3/8` means `10.0.0.0/8`.
        Ok(ProxyRange(net.trunc()))
    }
}

impl std::fmt::Display for ProxyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.prefix_len() == self.0.max_prefix_len() {
            true => self.0.addr().fmt(f),
            false => self.0.fmt(f),
        }
    }
}

/// The client's address for a request from `peer` (canonical, see
/// [`ClientIp`]).
///
/// From an untrusted peer, the peer itself: `X-Forwarded-For` is then the
/// client's own claim. From a trusted proxy, `X-Forwarded-For` is walked
/// from the right (the hop nearest us; several headers read as one list, in
/// order): the first entry that is not a trusted proxy is the client. An
/// entry that cannot be read ends the walk, and the last address the walk
/// established (a trusted proxy) is the answer: fail closed, never the
/// value to the left of the garbage, which whoever wrote the garbage may
/// have chosen. Entries may carry a port (`203.0.113.7:4711`, as Azure
/// Application Gateway writes them) and IPv6 may be bracketed
/// (`[2001:db8::7]`, `[2001:db8::7]:443`).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ProxyRange]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return peer;
    }
    let mut last = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return last;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = forwarded_addr(entry) else {
                return last;
            };
            if !is_trusted(ip) {
                return ip;
            }
            last = ip;
        }
    }
    last
}

/// One `X-Forwarded-For` entry as a canonical address: `a.b.c.d`,
/// `a.b.c.d:port`, a bare IPv6 address, `[v6]` or `[v6]:port`, with
/// optional spaces or tabs around it. `None` for anything else (`unknown`,
/// an RFC 7239 obfuscated name, a host name, an empty entry).
pub fn forwarded_addr(entry: &str) -> Option<IpAddr> {
    let s = entry.trim_matches([' ', '\t']);
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|v6| IpAddr::V6(v6).to_canonical());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    // `a.b.c.d:port` (an IPv6 address with a port must be bracketed).
    let (host, port) = s.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A decimal TCP port.
fn is_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

/// The request's User-Agent (see [`user_agent`]), read without cloning the
/// whole header map as a `HeaderMap` extractor would.
pub struct UserAgent(pub String);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(UserAgent(user_agent(&parts.headers)))
    }
}

/// `Last-Event-ID` as a version, when present and a number.
pub struct LastEventId(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(LastEventId(
            parts
                .headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        ))
    }
}

/// The request's User-Agent, truncated; what the phone shows about the browser.
pub fn user_agent(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ua.chars().take(512).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Vec<ProxyRange> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let h = xff(&["203.0.113.9, 10.0.0.2"]);
        let proxy = ip("10.0.0.1");
        let other = ip("198.51.100.7");
        let trusted = ranges(&["10.0.0.1", "10.0.0.2"]);
        assert_eq!(client_ip(other, &h, &trusted), other);
        assert_eq!(client_ip(proxy, &h, &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        // Several headers read as one list, in order: the last one is nearest.
        let h = xff(&["203.0.113.9, 10.0.0.2", "198.51.100.1, 10.0.0.2"]);
        assert_eq!(client_ip(proxy, &h, &trusted), ip("198.51.100.1"));
    }

    #[test]
    fn entries_with_ports_and_brackets_are_read() {
        for (entry, want) in [
            ("203.0.113.7", "203.0.113.7"),
            (" 203.0.113.7:4711 ", "203.0.113.7"),
            ("\t203.0.113.7:0", "203.0.113.7"),
            ("2001:db8::7", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("[::ffff:203.0.113.7]:80", "203.0.113.7"),
        ] {
            assert_eq!(forwarded_addr(entry), Some(ip(want)), "{entry:?}");
        }
        for junk in [
            "",
            " ",
            "unknown",
            "_hidden",
            "example.com",
            "203.0.113.7:",
            "203.0.113.7:99999",
            "203.0.113.7:80:80",
            "2001:db8::7:443x",
            "[2001:db8::7",
            "[2001:db8::7]x",
            "[2001:db8::7]:",
            "[203.0.113.7]",
            "203.0.113.7/24",
            "for=203.0.113.7",
            "203.0.113.7 198.51.100.1",
            "0x7f.0.0.1",
            "+1.2.3.4",
        ] {
            assert_eq!(forwarded_addr(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn an_unreadable_entry_ends_the_walk_at_the_last_trusted_hop() {
        let proxy = ip("10.0.0.1");
        let trusted = ranges(&["10.0.0.0/8"]);
        // The attacker's value to the left of the garbage is never believed.
        for h in [
            xff(&["198.51.100.66, unknown"]),
            xff(&["198.51.100.66, garbage, 10.0.0.2"]),
            xff(&["198.51.100.66,, 10.0.0.2"]),
            xff(&["198.51.100.66", ""]),
            xff(&["198.51.100.66, 203.0.113.7:"]),
        ] {
            let got = client_ip(proxy, &h, &trusted);
            assert!(got == proxy || got == ip("10.0.0.2"), "{h:?} -> {got}");
        }
        assert_eq!(
            client_ip(proxy, &xff(&["198.51.100.66, garbage, 10.0.0.2"]), &trusted),
            ip("10.0.0.2")
        );
        // Not UTF-8 text: also the end of the walk.
        let mut h = xff(&["198.51.100.66"]);
        h.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
        // Ports and brackets are read, not skipped.
        let h = xff(&["198.51.100.66, [2001:db8::5]:443, 10.0.0.3:8080"]);
        assert_eq!(client_ip(proxy, &h, &trusted), ip("2001:db8::5"));
    }

    #[test]
    fn addresses_are_canonical_and_ranges_match() {
        // An IPv4 peer on a dual-stack listener, and an IPv4 proxy listed
        // as IPv4, as a range, or as a mapped address.
        let mapped = ip("::ffff:10.1.2.3");
        let h = xff(&["198.51.100.7"]);
        for list in [
            ["10.1.2.3"],
            ["10.0.0.0/8"],
            ["::ffff:10.1.2.3"],
            ["::ffff:10.0.0.0/104"],
        ] {
            assert_eq!(
                client_ip(mapped, &h, &ranges(&list)),
                ip("198.51.100.7"),
                "{list:?}"
            );
        }
        assert_eq!(client_ip(mapped, &h, &[]), ip("10.1.2.3"));
        assert_eq!(
            client_ip(mapped, &h, &ranges(&["11.0.0.0/8"])),
            ip("10.1.2.3")
        );
        let v6 = ranges(&["2001:db8::/32"]);
        assert_eq!(client_ip(ip("2001:db8:5::1"), &h, &v6), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("2001:db9::1"), &h, &v6), ip("2001:db9::1"));
        // Forwarded entries are canonical too.
        let h = xff(&["::ffff:198.51.100.7"]);
        assert_eq!(
            client_ip(mapped, &h, &ranges(&["10.0.0.0/8"])),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn proxy_ranges_parse_and_print() {
        for (text, shown) in [
            ("10.0.0.1", "10.0.0.1"),
            (" 10.0.0.0/8 ", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ] {
            let r: ProxyRange = text.parse().unwrap();
            assert_eq!(r.to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "proxy.internal",
            "10.0.0.1/",
            "/8",
        ] {
            assert!(bad.parse::<ProxyRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_cookies_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; qrl_bs=xyz; b=2".parse().unwrap());
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert_eq!(cookie(&h, "qrl_bs"), Some("xyz"));
        assert_eq!(cookie(&h, "nope"), None);
        assert_eq!(bearer(&h), Some("tok"));
    }
}
