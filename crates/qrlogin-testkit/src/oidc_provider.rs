//! A private, throw-away OpenID provider per test.
//!
//! Tests of token verification must run against a real OpenID provider, not
//! a mock that answers the way its author believes providers answer: the
//! provider here is panva's `oidc-provider` (the certified Node OP), run by
//! `oidc/provider.mjs` in this crate as a child process of the test on a
//! free 127.0.0.1 port. It serves discovery, JWKS, token introspection,
//! revocation and userinfo exactly as in production; only the `/__test/`
//! routes of the script are harness controls (mint a token for a subject
//! without a browser login, sign arbitrary JWTs for refusal tests, rotate
//! the keys, count JWKS fetches).
//!
//! Its signing keys are kept in the provider's temporary state directory, so
//! [`OidcProvider::restart`] brings back the same issuer with the same keys,
//! as a real provider comes back after a crash; tokens and grants are held
//! in the process's memory and do not survive it.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::redis_server::free_port;

/// How long a fresh provider gets to listen and serve discovery. Node and
/// oidc-provider load in well under a second; a loaded machine (another
/// build running) can take several.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports [`OidcProvider::start`] tries: the port is free when
/// picked, but another process can take it before node binds it.
const PORT_ATTEMPTS: usize = 3;

/// The status `provider.mjs` exits with when its port is taken.
const EXIT_ADDR_IN_USE: i32 = 98;

/// The message for a machine without Node.js. Tests must not silently pass
/// without exercising a provider, so a missing runtime is a loud failure.
const NODE_NOT_FOUND: &str =
    "node not found: install Node.js with `apt-get install -y nodejs npm`, \
     then the provider's packages with `npm ci --prefix crates/qrlogin-testkit/oidc` \
     (scripts/test does both)";

/// The message for a checkout whose `oidc/node_modules` was never installed
/// (it is not committed; `package-lock.json` is).
const MODULES_MISSING: &str = "crates/qrlogin-testkit/oidc/node_modules is missing: install the \
     provider's packages with `npm ci --prefix crates/qrlogin-testkit/oidc` (scripts/test does \
     this; it needs `apt-get install -y nodejs npm`)";

/// The directory of `provider.mjs`, `package.json` and `node_modules`.
fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// The endpoints the provider's discovery document names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    introspection_endpoint: String,
    userinfo_endpoint: String,
}

/// Why a spawn did not produce a running provider, when the caller can do
/// something about it (every other failure panics on the spot).
enum SpawnError {
    AddrInUse,
}

/// A private OpenID provider (`node oidc/provider.mjs`) on a free
/// `127.0.0.1` port. Killed (and its state directory removed) on drop.
///
/// It knows one confidential client, [`OidcProvider::CLIENT_ID`] /
/// [`OidcProvider::CLIENT_SECRET`] (`client_secret_basic` or
/// `client_secret_post`, introspection, revocation, client credentials), and
/// one resource server, [`OidcProvider::AUDIENCE`], whose access tokens are
/// RFC 9068 JWTs (`typ: at+jwt`, RS256 unless asked for ES256).
pub struct OidcProvider {
    /// State directory: `keys.json` (the signing keys, private), the log.
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    discovery: Discovery,
    http: reqwest::Client,
}

impl OidcProvider {
    /// The provider's one confidential client.
    pub const CLIENT_ID: &'static str = "qrlogin";
    /// [`OidcProvider::CLIENT_ID`]'s secret.
    pub const CLIENT_SECRET: &'static str = "qrlogin-secret";
    /// The resource indicator (and `aud`) of the JWT access tokens.
    pub const AUDIENCE: &'static str = "https://qrlogin.test/api";

    /// Starts a provider on a free `127.0.0.1` port with fresh signing keys
    /// and waits (up to 10 s) until it serves discovery. Panics if `node` or
    /// the script's `node_modules` is missing, naming the command that
    /// installs it, or if the provider does not come up (with its log).
    pub fn start() -> OidcProvider {
        if !script_dir()
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            panic!("{MODULES_MISSING}");
        }
        let dir = tempfile::Builder::new()
            .prefix("qrlogin-oidc-")
            .tempdir()
            .unwrap_or_else(|e| panic!("could not create a temp dir for the OpenID provider: {e}"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|e| panic!("could not build an HTTP client: {e}"));
        let mut provider = OidcProvider {
            dir,
            port: free_port(),
            child: None,
            discovery: Discovery::default(),
            http,
        };
        let mut attempts = 1;
        loop {
            match provider.spawn() {
                Ok(discovery) => {
                    provider.discovery = discovery;
                    return provider;
                }
                Err(SpawnError::AddrInUse) if attempts < PORT_ATTEMPTS => {
                    attempts += 1;
                    provider.port = free_port();
                }
                Err(SpawnError::AddrInUse) => panic!(
                    "the OpenID provider found its port taken {PORT_ATTEMPTS} times in a row; its log:\n{}",
                    provider.log_tail()
                ),
            }
        }
    }

    /// `http://127.0.0.1:PORT`, exactly the discovery document's `issuer`
    /// (and so the `iss` of every token it issues).
    pub fn issuer(&self) -> String {
        self.discovery.issuer.clone()
    }

    /// The discovery document's `jwks_uri`.
    pub fn jwks_url(&self) -> String {
        self.discovery.jwks_uri.clone()
    }

    /// The discovery document's `introspection_endpoint` (RFC 7662).
    pub fn introspection_url(&self) -> String {
        self.discovery.introspection_endpoint.clone()
    }

    /// The discovery document's `userinfo_endpoint`.
    pub fn userinfo_url(&self) -> String {
        self.discovery.userinfo_endpoint.clone()
    }

    /// The TCP port (the same across [`OidcProvider::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An RS256 RFC 9068 access token (`typ: at+jwt`) for
    /// [`OidcProvider::AUDIENCE`], subject `sub`, scope `openid profile`,
    /// valid for an hour; `name` is what the provider's userinfo says.
    pub async fn jwt_token(&self, sub: &str, name: &str) -> String {
        self.mint(json!({ "sub": sub, "name": name, "format": "jwt" }))
            .await
    }

    /// An opaque access token (no audience) for `sub`, scope
    /// `openid profile`: active at the introspection endpoint and accepted
    /// by the userinfo endpoint, which answers `name`.
    pub async fn opaque_token(&self, sub: &str, name: &str) -> String {
        self.mint(json!({ "sub": sub, "name": name, "format": "opaque" }))
            .await
    }

    /// Mints an access token through the provider's own models (a Grant and
    /// an AccessToken, as after an authorization-code flow) and returns it.
    /// `req` is `{sub, name?, preferred_username?, format: "jwt"|"opaque",
    /// alg?: "RS256"|"ES256", scope?, expires_in?}` (defaults: jwt, RS256,
    /// `openid profile`, 3600 s). Panics if the provider refuses it.
    pub async fn mint(&self, req: Value) -> String {
        let answer = self.post("/__test/token", req).await;
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("/__test/token answered no access_token: {answer}"))
            .to_owned()
    }

    /// Revokes `token` through the provider's revocation endpoint (RFC
    /// 7009): introspection then answers `active: false`. The provider
    /// refuses to revoke JWT access tokens (they are self-contained), and so
    /// does this (a panic).
    pub async fn revoke(&self, token: &str) {
        self.post("/__test/revoke", json!({ "token": token })).await;
    }

    /// A JWS over `claims`, verbatim (nothing added), signed with the
    /// provider's current key of `header.alg` (RS256 or ES256, default
    /// RS256). The header defaults to `typ: at+jwt` and the key's `kid`; a
    /// member given as `null` is left out. For refusal tests: expired, not
    /// yet valid, foreign issuer or audience, missing claims.
    pub async fn sign(&self, header: Value, claims: Value) -> String {
        let answer = self
            .post(
                "/__test/sign",
                json!({ "header": header, "claims": claims }),
            )
            .await;
        answer["jwt"]
            .as_str()
            .unwrap_or_else(|| panic!("/__test/sign answered no jwt: {answer}"))
            .to_owned()
    }

    /// Generates new RS256 and ES256 signing keys, in the running process
    /// (same port) and in the state directory (kept across a restart). The
    /// JWKS then lists the new keys first and the previous ones only if
    /// `keep_old`; new tokens are signed with the new keys. Tokens minted
    /// before stay known to introspection and userinfo.
    pub async fn rotate(&self, keep_old: bool) {
        self.post("/__test/rotate", json!({ "keep_old": keep_old }))
            .await;
    }

    /// The current public JWK for `alg` (`"RS256"` or `"ES256"`), e.g. for a
    /// token forged with HS256 keyed by the public key.
    pub async fn public_jwk(&self, alg: &str) -> Value {
        self.get(&format!("/__test/public_jwk?alg={alg}")).await
    }

    /// How many requests the JWKS endpoint has served since the process
    /// started (a restart starts from 0), to test a verifier's key cache.
    pub async fn jwks_requests(&self) -> u64 {
        let stats = self.get("/__test/stats").await;
        stats["jwks_requests"]
            .as_u64()
            .unwrap_or_else(|| panic!("/__test/stats answered no jwks_requests: {stats}"))
    }

    /// Kills the provider with SIGKILL (no clean shutdown, like a crash or a
    /// lost host) and waits for it to be gone; connections to its port are
    /// then refused. The port and the state directory are kept for
    /// [`OidcProvider::restart`]. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the provider again on the same port with the same signing
    /// keys (the same issuer and JWKS) and waits until it serves discovery.
    /// Kills it first if it is still running. Minted tokens are gone.
    pub fn restart(&mut self) {
        self.stop();
        match self.spawn() {
            Ok(discovery) => {
                assert_eq!(
                    discovery, self.discovery,
                    "the restarted OpenID provider's discovery differs"
                );
            }
            Err(SpawnError::AddrInUse) => panic!(
                "the OpenID provider could not restart: port {} was taken meanwhile; its log:\n{}",
                self.port,
                self.log_tail()
            ),
        }
    }

    /// Whether the child process is currently running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The provider's stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The state directory (signing keys and log); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("provider.log")
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("provider.stdout")
    }

    /// The last lines of the log: enough to see why it failed, short enough
    /// for a panic message.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn spawn(&mut self) -> Result<Discovery, SpawnError> {
        let log = File::create(self.log_path())
            .unwrap_or_else(|e| panic!("could not create the OpenID provider's log file: {e}"));
        let stdout = File::create(self.stdout_path())
            .unwrap_or_else(|e| panic!("could not create the OpenID provider's stdout file: {e}"));
        let mut cmd = Command::new("node");
        cmd.current_dir(script_dir())
            .arg(script_dir().join("provider.mjs"))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--state-dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{NODE_NOT_FOUND}"),
            Err(e) => panic!("could not start node: {e}"),
        };
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits for the `ready http://127.0.0.1:PORT` line, then fetches the
    /// discovery document, until the child dies or [`START_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> Result<Discovery, SpawnError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let ready_line = format!("ready http://127.0.0.1:{}\n", self.port);
        let mut delay = Duration::from_millis(5);
        loop {
            let ready = std::fs::read_to_string(self.stdout_path())
                .is_ok_and(|out| out.contains(&ready_line));
            if ready {
                match get_discovery(self.port) {
                    Ok(discovery) => {
                        let expected = format!("http://127.0.0.1:{}", self.port);
                        if discovery.issuer != expected {
                            self.stop();
                            panic!(
                                "the OpenID provider's issuer is {:?}, not {expected:?}",
                                discovery.issuer
                            );
                        }
                        return Ok(discovery);
                    }
                    Err(e) if Instant::now() >= deadline => {
                        self.stop();
                        panic!(
                            "the OpenID provider did not serve discovery within {START_TIMEOUT:?} \
                             ({e}); its log:\n{}",
                            self.log_tail()
                        );
                    }
                    Err(_) => {}
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    if status.code() == Some(EXIT_ADDR_IN_USE) {
                        return Err(SpawnError::AddrInUse);
                    }
                    panic!(
                        "the OpenID provider (node oidc/provider.mjs) exited during start-up \
                         ({status}); its log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "the OpenID provider did not start within {START_TIMEOUT:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.discovery.issuer);
        let response = self.http.post(&url).json(&body).send().await;
        self.answer(&url, response).await
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.discovery.issuer);
        let response = self.http.get(&url).send().await;
        self.answer(&url, response).await
    }

    /// The JSON of a 2xx answer of a `/__test/` control; a panic (with the
    /// provider's error and log) for anything else.
    async fn answer(&self, url: &str, response: reqwest::Result<reqwest::Response>) -> Value {
        let response = response.unwrap_or_else(|e| {
            panic!(
                "OpenID provider test control {url}: {e}; its log:\n{}",
                self.log_tail()
            )
        });
        let status = response.status();
        let text = response.text().await.unwrap_or_else(|e| {
            panic!("OpenID provider test control {url}: reading the answer: {e}")
        });
        if !status.is_success() {
            panic!(
                "OpenID provider test control {url} answered {status}: {text}; its log:\n{}",
                self.log_tail()
            );
        }
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("OpenID provider test control {url} answered non-JSON ({e}): {text}")
        })
    }
}

/// Fetches the discovery document with a plain HTTP/1.0 GET: start-up is
/// synchronous (it runs inside `#[tokio::test]`s and outside them alike), and
/// an HTTP/1.0 answer is never chunked and ends when the connection closes.
fn get_discovery(port: u16) -> Result<Discovery, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /.well-known/openid-configuration HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {raw:?}"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!("discovery answered {head:?}"));
    }
    let doc: Value = serde_json::from_str(body).map_err(|e| format!("discovery: {e}: {body}"))?;
    let field = |name: &str| {
        doc[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("discovery has no {name}: {doc}"))
    };
    Ok(Discovery {
        issuer: field("issuer")?,
        jwks_uri: field("jwks_uri")?,
        introspection_endpoint: field("introspection_endpoint")?,
        userinfo_endpoint: field("userinfo_endpoint")?,
    })
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.discovery.issuer)
            .field("pid", &self.child.as_ref().map(|c| c.id()))
            .finish()
    }
}
