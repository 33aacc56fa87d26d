//! Helpers shared by the HTTP integration tests.
//!
//! * [`App`] — the service running in-process on `127.0.0.1:0` (real HTTP on
//!   loopback) over a chosen store ([`StoreKind`]): the in-memory store, or
//!   the Redis store on a private `redis-server` child
//!   ([`qrlogin_testkit::RedisServer`]) through `qrlogin_redis::RedisStore`.
//! * [`Browser`] — a reqwest client with a cookie store (cookie binding), or
//!   sending the browser secret as a bearer header (header binding).
//! * [`Phone`] — the phone app: signs in through the demo identity and calls
//!   the phone API with its bearer token.
//! * [`SseStream`] — reads a `text/event-stream` body event by event.
//! * [`per_store!`] — turns `async fn name(kind: StoreKind)` test bodies into
//!   `memory::name` and `redis::name` tests, so one test runs on both stores.

#![allow(dead_code)]

pub mod mmdb;

use futures_util::{Stream, StreamExt};
use qrlogin_core::{Clock, MemoryStore, Store};
use qrlogin_server::{AppState, Running, ServeConfig};
use qrlogin_testkit::RedisServer;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Upper bound for anything that must happen: only catches hangs.
pub const HANG: Duration = Duration::from_secs(20);

/// The demo users.
pub const ALICE: (&str, &str) = ("alice", "wonderland");
pub const BOB: (&str, &str) = ("bob", "builder");
pub const ALICE_ID: &str = "u-alice";
pub const BOB_ID: &str = "u-bob";

/// Asserts a 429 with the JSON error `code` and a `Retry-After` of at
/// least one second (every limit refuses this way).
pub fn assert_rate_limited(r: &Reply, code: &str) {
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, code);
    let ra: u64 = r
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {}", r.text()))
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Retry-After in seconds");
    assert!(ra >= 1, "Retry-After {ra}");
}

/// Runs `f`, panicking (with `what`) if it does not finish within [`HANG`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(HANG, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {HANG:?} (hang)"),
    }
}

// ---------------------------------------------------------------------------
// the service

/// Which store the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redis,
}

/// The number the browser that created `login` is shown: from the create
/// answer (`--match-code always`), else from its status once a scan has
/// asked the phone for it (`on-risk`); `None` when it is not shown.
pub async fn shown_code(base: &str, login: &Login) -> Option<String> {
    if let Some(c) = login.created["match_code"].as_str() {
        return Some(c.to_string());
    }
    let v = Browser::new(base)
        .status(login, "")
        .await
        .ok_json(StatusCode::OK);
    v["match_code"].as_str().map(str::to_owned)
}

/// Both stores, for tests that loop instead of using [`per_store!`].
pub fn stores() -> [StoreKind; 2] {
    [StoreKind::Memory, StoreKind::Redis]
}

/// `ServeConfig::defaults()` listening on a free loopback port, with the
/// demo users on (they default to off on a shared store, and most tests
/// sign in as alice and bob on both stores).
pub fn config() -> ServeConfig {
    let mut cfg = ServeConfig::defaults();
    cfg.listen = "127.0.0.1:0".parse().expect("loopback address");
    cfg.demo_users = Some(true);
    cfg
}

/// A private redis-server, started off the async workers (it blocks while
/// it waits for the server to answer PING).
pub async fn redis_server() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("starting redis-server")
}

/// Opens a Redis store on `url` with the TTLs and op timeout of `cfg`.
pub async fn redis_store(url: &str, cfg: &ServeConfig) -> Arc<dyn Store> {
    let store = qrlogin_redis::RedisStore::connect(
        url,
        cfg.ttls(),
        Duration::from_millis(cfg.store_timeout_ms),
    )
    .await
    .unwrap_or_else(|e| panic!("connecting the Redis store: {e}"));
    Arc::new(store)
}

/// A running service plus whatever it needs alive. Fields drop in order:
/// the service, then the store, then the redis-server.
pub struct App {
    pub running: Running,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub store: Arc<dyn Store>,
    pub kind: StoreKind,
    pub redis: Option<RedisServer>,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
    pub fn state(&self) -> &AppState {
        &self.running.state
    }
    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }
    pub async fn phone(&self, who: (&str, &str)) -> Phone {
        Phone::sign_in(&self.base, who).await
    }
}

/// The service with default settings on `kind`.
pub async fn app(kind: StoreKind) -> App {
    app_with(kind, config(), None).await
}

/// The service with `cfg` (its `listen` and `store` are overridden) on
/// `kind`, with `clock` (default: the system clock).
pub async fn app_with(kind: StoreKind, cfg: ServeConfig, clock: Option<Arc<dyn Clock>>) -> App {
    app_at(kind, cfg, clock, "127.0.0.1:0").await
}

/// Like [`app_with`], listening on `listen` (e.g. `[::]:0`, a dual-stack
/// listener). `base` still names the bound address.
pub async fn app_at(
    kind: StoreKind,
    mut cfg: ServeConfig,
    clock: Option<Arc<dyn Clock>>,
    listen: &str,
) -> App {
    let (store, redis): (Arc<dyn Store>, Option<RedisServer>) = match kind {
        StoreKind::Memory => {
            cfg.store = "memory".into();
            (Arc::new(MemoryStore::new(cfg.ttls())), None)
        }
        StoreKind::Redis => {
            let server = redis_server().await;
            cfg.store = server.url();
            (redis_store(&server.url(), &cfg).await, Some(server))
        }
    };
    cfg.listen = listen.parse().expect("listen address");
    let mut app = spawn_listening(cfg, store.clone(), clock).await;
    app.kind = kind;
    app.redis = redis;
    app
}

/// The service on an already-open store (e.g. a second instance sharing one
/// Redis). `cfg.listen` is overridden.
pub async fn spawn_on(
    mut cfg: ServeConfig,
    store: Arc<dyn Store>,
    clock: Option<Arc<dyn Clock>>,
) -> App {
    cfg.listen = "127.0.0.1:0".parse().expect("loopback address");
    spawn_listening(cfg, store, clock).await
}

/// The service on `store`, listening on `cfg.listen`.
async fn spawn_listening(
    cfg: ServeConfig,
    store: Arc<dyn Store>,
    clock: Option<Arc<dyn Clock>>,
) -> App {
    let clock = clock.unwrap_or_else(AppState::system_clock);
    let kind = if cfg.store == "memory" {
        StoreKind::Memory
    } else {
        StoreKind::Redis
    };
    let running = qrlogin_server::QrLogin::builder(cfg)
        .store(store.clone())
        .clock(clock)
        .spawn()
        .await
        .expect("spawning the service");
    App {
        base: format!("http://{}", running.addr),
        running,
        store,
        kind,
        redis: None,
    }
}

// ---------------------------------------------------------------------------
// responses

/// Status, headers and body of a response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub async fn of(resp: Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = within("reading a body", resp.bytes())
            .await
            .expect("reading a response body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing the body) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {:?}", self.status, self.text()))
    }

    /// Asserts the status, returning the JSON body.
    pub fn ok_json(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self.json()
    }

    /// Asserts a JSON error `{"error": code, "message": text}` with `status`.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self.assert_json_error();
        assert_eq!(
            self.json()["error"],
            code,
            "error code; body: {}",
            self.text()
        );
    }

    /// Asserts the body is a JSON error object with string `error` and
    /// `message` and a JSON content type.
    pub fn assert_json_error(&self) {
        let ct = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{} error has content-type {ct:?}, body {:?}",
            self.status,
            self.text()
        );
        let v = self.json();
        assert!(
            v["error"].as_str().is_some_and(|s| !s.is_empty()),
            "no error code in {v}"
        );
        assert!(v["message"].is_string(), "no message in {v}");
    }

    /// All `Set-Cookie` header values.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The `Set-Cookie` value for cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

/// Sends a request (with the hang guard) and reads the whole reply.
pub async fn send(rb: reqwest::RequestBuilder) -> Reply {
    let resp = within("request", rb.send())
        .await
        .expect("sending a request");
    Reply::of(resp).await
}

/// A client without cookies, for raw requests.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .build()
        .expect("building a client")
}

// ---------------------------------------------------------------------------
// browser

/// One login as the browser that created it knows it.
#[derive(Debug, Clone)]
pub struct Login {
    pub id: String,
    /// The browser secret, with header binding.
    pub secret: Option<String>,
    /// The create response body.
    pub created: Value,
    /// The create response.
    pub set_cookie: Option<String>,
}

/// A browser: a client with a cookie store, like a real browser; logins
/// created with header binding send their secret as a bearer header.
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("building a client"),
        }
    }

    /// The same cookie jar against another instance (another port on the
    /// same host: cookies are per host, not per port).
    pub fn at(&self, base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            http: self.http.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn with_secret(&self, rb: reqwest::RequestBuilder, login: &Login) -> reqwest::RequestBuilder {
        match &login.secret {
            Some(s) => rb.bearer_auth(s),
            None => rb,
        }
    }

    /// `POST /v1/logins` (cookie binding) → 201.
    pub async fn create(&self) -> Login {
        self.create_with(None).await
    }

    /// `POST /v1/logins` with `{"binding":"header"}` → 201 with the secret.
    pub async fn create_header(&self) -> Login {
        self.create_with(Some(r#"{"binding":"header"}"#)).await
    }

    async fn create_with(&self, body: Option<&'static str>) -> Login {
        let mut rb = self.http.post(self.url("/v1/logins"));
        if let Some(b) = body {
            rb = rb.header(CONTENT_TYPE, "application/json").body(b);
        }
        let r = send(rb).await;
        let v = r.ok_json(StatusCode::CREATED);
        let id = v["login_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no login_id in {v}"))
            .to_string();
        Login {
            id,
            secret: v["browser_secret"].as_str().map(str::to_owned),
            set_cookie: r.set_cookie("qrl_bs"),
            created: v,
        }
    }

    /// `GET /v1/logins/{id}{query}` (query like `?wait=5&since=pending`).
    pub async fn status(&self, login: &Login, query: &str) -> Reply {
        let rb = self
            .http
            .get(self.url(&format!("/v1/logins/{}{query}", login.id)));
        send(self.with_secret(rb, login)).await
    }

    /// The state of a login, asserting 200.
    pub async fn state(&self, login: &Login) -> String {
        let v = self.status(login, "").await.ok_json(StatusCode::OK);
        v["state"].as_str().expect("state").to_string()
    }

    /// Opens `GET /v1/logins/{id}/events`, asserting 200 `text/event-stream`.
    pub async fn events(&self, login: &Login, last_event_id: Option<&str>) -> SseStream {
        let mut rb = self
            .http
            .get(self.url(&format!("/v1/logins/{}/events", login.id)))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id);
        }
        let resp = within("opening SSE", self.with_secret(rb, login).send())
            .await
            .expect("opening SSE");
        assert_eq!(resp.status(), StatusCode::OK, "SSE status");
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            ct.starts_with("text/event-stream"),
            "SSE content type {ct:?}"
        );
        SseStream::new(resp)
    }

    /// Raw events request (for error answers).
    pub async fn events_reply(&self, login: &Login) -> Reply {
        let rb = self
            .http
            .get(self.url(&format!("/v1/logins/{}/events", login.id)));
        send(self.with_secret(rb, login)).await
    }

    /// `POST /v1/logins/{id}/redeem`
    pub async fn redeem(&self, login: &Login) -> Reply {
        let rb = self
            .http
            .post(self.url(&format!("/v1/logins/{}/redeem", login.id)));
        send(self.with_secret(rb, login)).await
    }

    /// `DELETE /v1/logins/{id}`
    pub async fn cancel(&self, login: &Login) -> Reply {
        let rb = self
            .http
            .delete(self.url(&format!("/v1/logins/{}", login.id)));
        send(self.with_secret(rb, login)).await
    }

    /// `GET /v1/session` by cookie.
    pub async fn whoami(&self) -> Reply {
        send(self.http.get(self.url("/v1/session"))).await
    }

    /// `GET /v1/session` by bearer token (no cookie).
    pub async fn whoami_bearer(&self, token: &str) -> Reply {
        send(raw_client().get(self.url("/v1/session")).bearer_auth(token)).await
    }

    /// `POST /v1/session/logout` by cookie.
    pub async fn logout(&self) -> Reply {
        send(self.http.post(self.url("/v1/session/logout"))).await
    }
}

// ---------------------------------------------------------------------------
// phone

/// The phone app, signed in as one demo user.
#[derive(Clone)]
pub struct Phone {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    pub user: Value,
}

impl Phone {
    /// `POST /v1/mobile/session`, asserting 200 and the user.
    pub async fn sign_in(base: &str, (username, password): (&str, &str)) -> Phone {
        let http = raw_client();
        let r = send(
            http.post(format!("{base}/v1/mobile/session"))
                .json(&serde_json::json!({"username": username, "password": password})),
        )
        .await;
        let v = r.ok_json(StatusCode::OK);
        let token = v["token"].as_str().expect("token").to_string();
        assert!(!token.is_empty());
        assert_eq!(v["user"]["id"], format!("u-{username}"), "signed-in user");
        Phone {
            base: base.to_string(),
            http,
            token,
            user: v["user"].clone(),
        }
    }

    /// A phone app holding `token` from the site's own identity provider
    /// (no demo sign-in).
    pub fn with_token(base: &str, token: &str) -> Phone {
        Phone {
            base: base.to_string(),
            http: raw_client(),
            token: token.to_string(),
            user: Value::Null,
        }
    }

    /// The same phone talking to another instance.
    pub fn at(&self, base: &str) -> Phone {
        Phone {
            base: base.to_string(),
            ..self.clone()
        }
    }

    fn post(&self, id: &str, action: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/v1/mobile/logins/{id}/{action}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
    }

    pub async fn scan(&self, id: &str) -> Reply {
        send(self.post(id, "scan")).await
    }
    pub async fn approve(&self, id: &str) -> Reply {
        send(self.post(id, "approve")).await
    }
    pub async fn deny(&self, id: &str) -> Reply {
        send(self.post(id, "deny")).await
    }

    /// Scan, asserting 200 `scanned`.
    pub async fn scan_ok(&self, id: &str) -> Value {
        let v = self.scan(id).await.ok_json(StatusCode::OK);
        assert_eq!(v["state"], "scanned", "scan answer {v}");
        v
    }

    /// Approve, asserting 200 `approved`.
    pub async fn approve_ok(&self, id: &str) {
        let v = self.approve(id).await.ok_json(StatusCode::OK);
        assert_eq!(v["state"], "approved", "approve answer {v}");
    }
}

// ---------------------------------------------------------------------------
// Server-Sent Events

/// One event of a `text/event-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `id:` field of this event, if it had one.
    pub id: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
    /// `data.state`
    pub fn state(&self) -> String {
        self.json()["state"]
            .as_str()
            .unwrap_or_else(|| panic!("SSE data has no state: {:?}", self.data))
            .to_string()
    }
    /// The id as a number (ids are versions).
    pub fn version(&self) -> u64 {
        self.id
            .as_deref()
            .unwrap_or_else(|| panic!("SSE event without id: {self:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("SSE id is not a number: {self:?}"))
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Reads an SSE body. Comments and `ping` events (the server's
/// keep-alives) are skipped. Cancel-safe: a timed-out [`SseStream::next`]
/// loses nothing.
pub struct SseStream {
    body: Body,
    buf: String,
    ended: bool,
    /// Comment lines seen so far.
    pub comments: usize,
    /// The `ping` keep-alive events seen so far.
    pub pings: Vec<SseEvent>,
}

impl SseStream {
    pub fn new(resp: Response) -> SseStream {
        SseStream {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
            ended: false,
            comments: 0,
            pings: Vec::new(),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(ev) = self.parse_one() {
                return Some(ev);
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    let text = std::str::from_utf8(&chunk).expect("SSE body is UTF-8");
                    self.buf
                        .push_str(&text.replace("\r\n", "\n").replace('\r', "\n"));
                }
                Some(Err(_)) | None => self.ended = true,
            }
        }
    }

    /// The next event, which must come (within the hang guard).
    pub async fn expect(&mut self) -> SseEvent {
        within("waiting for an SSE event", self.next())
            .await
            .expect("the SSE stream ended, an event was expected")
    }

    /// The next event must be named `name` with `data.state == name`.
    pub async fn expect_named(&mut self, name: &str) -> SseEvent {
        let ev = self.expect().await;
        assert_eq!(ev.event, name, "SSE event name: {ev:?}");
        assert_eq!(ev.state(), name, "SSE data.state: {ev:?}");
        assert_eq!(
            ev.json()["version"].as_u64(),
            Some(ev.version()),
            "SSE id is the version: {ev:?}"
        );
        ev
    }

    /// The stream must end (after a final state).
    pub async fn expect_end(&mut self) {
        if let Some(ev) = within("waiting for the SSE stream to end", self.next()).await {
            panic!("expected the SSE stream to end, got {ev:?}");
        }
    }

    /// No event (and no end) for `d`.
    pub async fn expect_quiet(&mut self, d: Duration) {
        if let Ok(got) = tokio::time::timeout(d, self.next()).await {
            panic!("expected no SSE event for {d:?}, got {got:?}");
        }
    }

    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buf.find("\n\n")?;
            let block: String = self.buf[..end].to_string();
            self.buf.drain(..end + 2);
            let mut event = None;
            let mut id = None;
            let mut data: Option<String> = None;
            for line in block.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => event = Some(value.to_string()),
                    "id" => id = Some(value.to_string()),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_string()),
                    },
                    _ => {}
                }
            }
            // A block without data (a comment) dispatches nothing; a
            // `ping` is a keep-alive, not news about the login.
            if let Some(data) = data {
                let ev = SseEvent {
                    event: event.unwrap_or_else(|| "message".into()),
                    id,
                    data,
                };
                if ev.event == "ping" {
                    self.pings.push(ev);
                    continue;
                }
                return Some(ev);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// several stores

/// `per_store!(a, b)` turns `async fn a(kind: StoreKind)` into the tests
/// `memory::a` and `redis::a`.
#[allow(unused_macros)]
macro_rules! per_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::StoreKind::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::StoreKind::Redis).await
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// the real binary

/// A `qrlogin serve` child process; killed on drop.
pub struct Proc {
    pub base: String,
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl Proc {
    /// Starts `qrlogin serve --listen 127.0.0.1:0 ARGS…` (no `--listen` of
    /// its own when ARGS has one) and waits for its `listening on
    /// http://ADDR` line.
    pub fn start(args: &[&str]) -> Proc {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_qrlogin"))
            .arg("serve")
            .args(
                (!args.contains(&"--listen"))
                    .then_some(["--listen", "127.0.0.1:0"])
                    .into_iter()
                    .flatten(),
            )
            .args(args)
            .env("QRLOGIN_LOG", "warn")
            // The demo users (which the tests sign in as) default to off
            // with a shared store; on here unless the test picks a real
            // verifier. A flag in `args` still wins over the environment.
            .envs((!args.contains(&"--mobile-verifier")).then_some(("QRLOGIN_DEMO_USERS", "true")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.reopen().expect("log file")))
            .spawn()
            .expect("spawning the qrlogin binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keep reading so the pipe never fills up.
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(30));
        let mut proc = Proc {
            base: String::new(),
            child,
            log,
        };
        match first {
            Ok(line) => match line.trim().strip_prefix("listening on ") {
                Some(url) => proc.base = url.trim_end_matches('/').to_string(),
                None => panic!("first stdout line {line:?}; log:\n{}", proc.log()),
            },
            Err(_) => {
                let status = proc.child.try_wait().ok().flatten();
                panic!(
                    "qrlogin did not print `listening on …` (exit status {status:?}); log:\n{}",
                    proc.log()
                )
            }
        }
        proc
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The child's process id (to signal it, e.g. SIGHUP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:PORT`, the address it listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Kills the process (SIGKILL, like a crashed instance) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /v1/logins` (header binding) as a browser at `xff`, presented
/// through `X-Forwarded-For` from the trusted 127.0.0.1.
pub async fn create_from(app: &App, xff: &str) -> Login {
    let v = send(
        raw_client()
            .post(app.url("/v1/logins"))
            .header("x-forwarded-for", xff)
            .header("content-type", "application/json")
            .body(r#"{"binding":"header"}"#),
    )
    .await
    .ok_json(StatusCode::CREATED);
    Login {
        id: v["login_id"].as_str().unwrap().to_string(),
        secret: v["browser_secret"].as_str().map(str::to_owned),
        created: v,
        set_cookie: None,
    }
}
