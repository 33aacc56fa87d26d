//! A small HTTP/1.1 client for the load generator: pooled keep-alive
//! connections (hyper), per-request timeouts, JSON error codes, and a
//! Server-Sent Events reader.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::time::Duration;

/// Why one HTTP step failed. The `Display` text is the error *kind* the
/// report counts by, so it carries no ids or other per-request detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect (refused, out of ports or file descriptors).
    Connect,
    /// The connection broke mid-request.
    Io,
    /// No answer within the step's timeout.
    Timeout,
    /// An unexpected HTTP status, with the `error` code of the JSON body.
    Status(u16, String),
    /// The body was not what the API promises.
    Decode(&'static str),
    /// The flow went wrong (an unexpected state or event, a stream ended).
    Protocol(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect => f.write_str("connect error"),
            Failure::Io => f.write_str("connection error"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Status(code, err) if err.is_empty() => write!(f, "http {code}"),
            Failure::Status(code, err) => write!(f, "http {code} {err}"),
            Failure::Decode(what) => write!(f, "bad body: {what}"),
            Failure::Protocol(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Failure {}

/// How a request proves who it is.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// `Authorization: Bearer <token>` (header-bound browser secret, mobile token).
    Bearer(HeaderValue),
    /// `Cookie: name=value` (cookie-bound browser secret).
    Cookie(HeaderValue),
}

impl Auth {
    pub fn bearer(token: &str) -> Result<Auth, Failure> {
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map(Auth::Bearer)
            .map_err(|_| Failure::Decode("token is not a header value"))
    }

    pub fn cookie(pair: &str) -> Result<Auth, Failure> {
        HeaderValue::from_str(pair)
            .map(Auth::Cookie)
            .map_err(|_| Failure::Decode("cookie is not a header value"))
    }
}

/// A pooled client bound to one base URL (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl Http {
    pub fn new(base: &str, timeout: Duration) -> Http {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(usize::MAX)
            .build(conn);
        Http {
            client,
            base: base.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let uri: Uri = format!("{}{}", self.base, path)
            .parse()
            .map_err(|_| Failure::Protocol("bad request path".into()))?;
        let mut req = Request::builder().method(method).uri(uri);
        match auth {
            Auth::None => {}
            Auth::Bearer(v) => req = req.header(header::AUTHORIZATION, v.clone()),
            Auth::Cookie(v) => req = req.header(header::COOKIE, v.clone()),
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                b
            }
            None => Bytes::new(),
        };
        req.body(Full::new(body))
            .map_err(|_| Failure::Protocol("unbuildable request".into()))
    }

    /// Sends a request and returns its response head; the body is left to
    /// the caller (streams).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, Failure> {
        let req = self.build(method, path, auth, body)?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) if e.is_connect() => Err(Failure::Connect),
            Ok(Err(_)) => Err(Failure::Io),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Sends a request and reads the whole answer within `timeout`.
    pub async fn call_within(
        &self,
        timeout: Duration,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
        let req = self.build(method, path, auth, body)?;
        let fut = async {
            let resp = match self.client.request(req).await {
                Ok(r) => r,
                Err(e) if e.is_connect() => return Err(Failure::Connect),
                Err(_) => return Err(Failure::Io),
            };
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(|_| Failure::Io)?.to_bytes();
            Ok((parts.status, parts.headers, bytes))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Failure::Timeout)?
    }

    /// Like [`call_within`](Self::call_within) with the default timeout,
    /// failing unless the status is `want`.
    pub async fn expect(
        &self,
        want: StatusCode,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Bytes>,
    ) -> Result<(HeaderMap, Bytes), Failure> {
        let (status, headers, bytes) = self
            .call_within(self.timeout, method, path, auth, body)
            .await?;
        check_status(want, status, &bytes)?;
        Ok((headers, bytes))
    }
}

/// `Ok` when `status == want`, else the status with the body's error code.
pub fn check_status(want: StatusCode, status: StatusCode, body: &[u8]) -> Result<(), Failure> {
    if status == want {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct ErrBody {
        error: String,
    }
    let code = serde_json::from_slice::<ErrBody>(body)
        .map(|e| e.error)
        .unwrap_or_default();
    Err(Failure::Status(status.as_u16(), code))
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

/// Reads events from a `text/event-stream` body.
pub struct SseReader<B = Incoming> {
    body: B,
    buf: BytesMut,
    ended: bool,
}

impl<B> SseReader<B>
where
    B: hyper::body::Body + Unpin,
    B::Data: Buf,
{
    pub fn new(body: B) -> Self {
        SseReader {
            body,
            buf: BytesMut::with_capacity(512),
            ended: false,
        }
    }

    /// The next event, `None` when the stream ended cleanly. Keep-alives
    /// (comment-only blocks and `ping` events) are skipped.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, Failure> {
        loop {
            while let Some(block) = self.take_block() {
                if let Some(ev) = parse_block(&block).filter(|ev| !is_keep_alive(ev)) {
                    return Ok(Some(ev));
                }
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(_)) => return Err(Failure::Io),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            self.buf.extend_from_slice(chunk);
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }

    /// Splits off one block ending in a blank line, if complete.
    fn take_block(&mut self) -> Option<BytesMut> {
        let pos = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let block = self.buf.split_to(pos + 2);
        Some(block)
    }
}

/// The server's keep-alive event (`event: ping`, no id), which says nothing
/// about the login.
pub fn is_keep_alive(ev: &SseEvent) -> bool {
    ev.name == "ping" && ev.id.is_none()
}

/// Parses one event block; `None` for a block of comments only.
pub fn parse_block(block: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(block);
    let mut ev = SseEvent::default();
    let mut any = false;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => ev.name = value.to_string(),
            "id" => ev.id = Some(value.to_string()),
            "data" => {
                if !ev.data.is_empty() {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
            }
            _ => continue,
        }
        any = true;
    }
    if !any {
        return None;
    }
    if ev.name.is_empty() {
        ev.name = "message".into();
    }
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_skips_comments() {
        assert_eq!(parse_block(b": keep-alive\n\n"), None);
        let ev =
            parse_block(b"event: approved\nid: 3\ndata: {\"state\":\"approved\"}\n\n").unwrap();
        assert_eq!(ev.name, "approved");
        assert_eq!(ev.id.as_deref(), Some("3"));
        assert_eq!(ev.data, "{\"state\":\"approved\"}");
        let ev = parse_block(b"data: a\ndata: b\n\n").unwrap();
        assert_eq!(ev.name, "message");
        assert_eq!(ev.data, "a\nb");
        let ping = parse_block(b"event: ping\ndata: {}\n\n").unwrap();
        assert!(is_keep_alive(&ping));
        assert!(!is_keep_alive(
            &parse_block(b"event: pending\nid: 1\ndata: {}\n\n").unwrap()
        ));
    }

    /// The reader skips keep-alives of both kinds and returns the events.
    #[tokio::test]
    async fn reader_skips_ping_keep_alives() {
        let body = http_body_util::Full::new(bytes::Bytes::from_static(
            b": hi\n\nevent: ping\ndata: {}\n\nevent: approved\nid: 3\ndata: {}\n\nevent: ping\ndata: {}\n\n",
        ));
        let mut r = SseReader::new(body);
        let ev = r.next().await.unwrap().unwrap();
        assert_eq!(ev.name, "approved");
        assert!(r.next().await.unwrap().is_none());
    }

    #[test]
    fn status_errors_carry_the_code() {
        let e = check_status(
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            br#"{"error":"not_found","message":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "http 404 not_found");
        assert!(check_status(StatusCode::OK, StatusCode::OK, b"").is_ok());
    }
}
