//! End to end in a real browser: headless Debian Chromium driven over the W3C
//! WebDriver protocol (chromedriver), against the `qrlogin` binary with the
//! memory store.
//!
//! 1. Window 1 opens `/` (the demo site's login page); we wait for the QR
//!    image to load and read the link printed under it.
//! 2. Window 2 (phone sized) opens that link (`/m/{id}`), signs in as
//!    alice / wonderland and taps Approve.
//! 3. Window 1, without any reload, must say "Logged in as alice".
//! 4. Then the simulated phone app: window 1 logs out and shows a new QR;
//!    window 2 opens `/phone`, "scans" the new QR by uploading its PNG (decoded
//!    in the page by the vendored jsQR) and taps Deny; window 1 must say so.
//! 5. The login page once more with EventSource taken away (so it must fall
//!    back to long-polling); bob scans and approves over the phone API; the
//!    page must say "Logged in as bob".
//! 6. The phone app's camera: Chromium's fake camera plays a video of the next
//!    QR; the page decodes it, alice approves, the login page logs her in.
//!
//! The WebDriver client is a few calls over reqwest (no extra crates).
//! Screenshots of every step land in `CARGO_TARGET_TMPDIR/browser_e2e/`.
//! The whole run is repeated with JWT web sessions (`browser_e2e_jwt/`).
//! Chromium is required: without it the test fails (it does not skip).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

#[macro_use]
#[allow(unused_macros)]
mod common;
#[path = "common/proxy.rs"]
mod proxy;
use base64::Engine as _;
use serde_json::{json, Value};

const MISSING: &str = "chromium not found: apt-get install -y chromium chromium-driver";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// processes

/// Kills its child (and the child's process group) when dropped, also when
/// the test panics.
struct ChildGuard {
    name: &'static str,
    child: Option<Child>,
    group: bool,
}

impl ChildGuard {
    fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.group {
            // chromedriver runs in its own process group with the Chromium it
            // started: end that group (our own child's id), then the child.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(200));
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("[e2e] stopped {}", self.name);
    }
}

fn find_exe(name: &str, default: &str) -> Option<PathBuf> {
    let d = PathBuf::from(default);
    if d.is_file() {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Starts `qrlogin serve` on a random port; returns the guard and the base URL.
fn start_server(log_path: &Path, extra_args: &[&str]) -> Result<(ChildGuard, String)> {
    let log = std::fs::File::create(log_path)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory"])
        .args(extra_args)
        // The binary reads QRLOGIN_LOG; info, whatever the caller's
        // environment says, so the log shows what the tests look for.
        .env("QRLOGIN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.try_clone()?))
        .spawn()
        .context("spawning the qrlogin binary")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ChildGuard {
        name: "qrlogin server",
        child: Some(child),
        group: false,
    };

    // Read stdout on a thread: the first "listening on" line tells the port,
    // the rest is copied to the log so the pipe never fills up.
    let (tx, rx) = mpsc::channel::<String>();
    let mut log_out = log;
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log_out, "[stdout] {line}");
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().trim_end_matches('/').to_string());
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => Ok((guard, url)),
        Err(_) => {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            bail!("the server did not print `listening on http://...` within 30 s; its output:\n{log}")
        }
    }
}

fn start_chromedriver(driver: &Path, log_path: &Path) -> Result<(ChildGuard, String)> {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawning chromedriver")?;
    let guard = ChildGuard {
        name: "chromedriver",
        child: Some(child),
        group: true,
    };
    let base = format!("http://127.0.0.1:{port}");
    // Wait until it answers /status.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(body) = raw_http("GET", port, "/status") {
            if body.contains("\"ready\":true") || body.contains("\"ready\": true") {
                return Ok((guard, base));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "chromedriver (pid {}) did not become ready on port {port}",
                guard.id()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tiny blocking HTTP/1.1 request to 127.0.0.1:port (usable from Drop).
/// chromedriver keeps the connection open, so read exactly Content-Length.
fn raw_http(method: &str, port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

// ---------------------------------------------------------------------------
// a minimal W3C WebDriver client

struct WebDriver {
    http: reqwest::Client,
    base: String,
    session: String,
}

/// Ends the browser session (closes Chromium) when dropped.
struct SessionGuard {
    port: u16,
    session: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let _ = raw_http("DELETE", self.port, &format!("/session/{}", self.session));
    }
}

impl WebDriver {
    async fn new_session(
        base: &str,
        chromium: &Path,
        profile: &Path,
        camera: &Path,
    ) -> Result<(Self, SessionGuard)> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-features=Translate,MediaRouter,OptimizationHints".into(),
            "--password-store=basic".into(),
            "--window-size=1024,900".into(),
            // nginx's certificate comes from a throw-away test CA.
            "--ignore-certificate-errors".into(),
            format!("--user-data-dir={}", profile.display()),
            // A fake camera (playing a file the test writes) and no permission prompt.
            "--use-fake-ui-for-media-stream".into(),
            "--use-fake-device-for-media-stream".into(),
            format!("--use-file-for-fake-video-capture={}", camera.display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": chromium, "args": args },
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "timeouts": { "script": 20000, "pageLoad": 20000, "implicit": 0 }
                }
            }
        });
        let resp = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("could not start a Chromium session: {status} {v}");
        }
        let session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId in {v}"))?
            .to_string();
        let port: u16 = base.rsplit(':').next().unwrap().parse()?;
        let guard = SessionGuard {
            port,
            session: session.clone(),
        };
        Ok((
            WebDriver {
                http,
                base: base.to_string(),
                session,
            },
            guard,
        ))
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("webdriver {method} {path}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .with_context(|| format!("webdriver {method} {path}: body"))?;
        if !status.is_success() {
            bail!(
                "webdriver {method} {path}: {status}: {} {}",
                v["value"]["error"],
                v["value"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            );
        }
        Ok(v["value"].clone())
    }

    async fn goto(&self, url: &str) -> Result<()> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    async fn js(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls `script` until it returns something truthy (not null / false /
    /// "" / 0), or fails after `timeout` with `what`.
    async fn wait_js(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Value,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last_err = None;
        loop {
            match self.js(script, args.clone()).await {
                Ok(v) => {
                    let truthy = match &v {
                        Value::Null => false,
                        Value::Bool(b) => *b,
                        Value::String(s) => !s.is_empty(),
                        Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
                        _ => true,
                    };
                    if truthy {
                        return Ok(v);
                    }
                }
                Err(e) => last_err = Some(e),
            }
            if Instant::now() > deadline {
                let detail = last_err
                    .map(|e| format!(" (last error: {e:#})"))
                    .unwrap_or_default();
                bail!("timed out after {timeout:?} waiting for {what}{detail}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> Result<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no element reference for {css}: {v}"))
    }

    async fn click(&self, css: &str) -> Result<()> {
        let id = self.find(css).await?;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/click"), None)
            .await
            .with_context(|| format!("clicking {css}"))
            .map(|_| ())
    }

    async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.find(css).await?;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .with_context(|| format!("typing into {css}"))
        .map(|_| ())
    }

    async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let b64 = v
            .as_str()
            .ok_or_else(|| anyhow!("screenshot: not a string"))?;
        let png = base64::engine::general_purpose::STANDARD.decode(b64)?;
        std::fs::write(path, png)?;
        eprintln!("[e2e] screenshot {}", path.display());
        Ok(())
    }

    async fn window(&self) -> Result<String> {
        Ok(self
            .cmd(reqwest::Method::GET, "/window", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    async fn new_window(&self) -> Result<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/window/new",
                Some(json!({ "type": "window" })),
            )
            .await?;
        Ok(v["handle"]
            .as_str()
            .ok_or_else(|| anyhow!("no window handle: {v}"))?
            .to_string())
    }

    async fn switch_to(&self, handle: &str) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/window",
            Some(json!({ "handle": handle })),
        )
        .await
        .map(|_| ())
    }

    async fn set_size(&self, width: u32, height: u32) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await
        .map(|_| ())
    }

    /// The browser console since the last call (chromedriver's log endpoint).
    async fn console(&self) -> Vec<String> {
        match self
            .cmd(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await
        {
            Ok(Value::Array(entries)) => entries
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["level"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// page scripts

/// Truthy once the QR image has loaded and the link is shown: [link, match code].
const QR_READY: &str = r#"
const img = document.querySelector('.qrl-qr');
const link = document.querySelector('.qrl-link');
if (!img || !link || !img.complete || !(img.naturalWidth > 0)) return null;
if (link.offsetParent === null) return null;
const text = (link.textContent || '').trim();
if (!text || (arguments[0] && text === arguments[0])) return null;
const mc = document.querySelector('.qrl-code');
return [text, mc ? (mc.textContent || '').trim() : ''];
"#;

/// Truthy once the element is present, visible and enabled.
const CLICKABLE: &str = r#"
const el = document.querySelector(arguments[0]);
return !!(el && !el.disabled && el.offsetParent !== null);
"#;

/// The visible text of an element (or "").
const TEXT_OF: &str = r#"
const el = document.querySelector(arguments[0]);
return el && el.offsetParent !== null ? (el.textContent || '').replace(/\s+/g, ' ').trim() : '';
"#;

const CONTAINS: &str = r#"
const el = document.querySelector(arguments[0]);
if (!el || el.offsetParent === null) return false;
return (el.textContent || '').toLowerCase().includes(arguments[1].toLowerCase());
"#;

// ---------------------------------------------------------------------------
// the test

struct Ctx {
    wd: WebDriver,
    /// The public URL pages and API live under (`http://127.0.0.1:P` or
    /// `https://127.0.0.1:P/auth/qr` through nginx).
    base: String,
    /// A client for the API calls the test makes itself.
    http: reqwest::Client,
    shots: PathBuf,
    /// The Y4M file Chromium's fake camera plays.
    camera: PathBuf,
    /// `/metrics` of the one server, to count the requests a login makes.
    metrics: Option<String>,
    /// nginx and two instances, when the run goes through the proxy.
    stack: Option<std::sync::Mutex<proxy::Stack>>,
}

/// Writes a few frames of 640x480 Y4M video showing the QR (a PNG) on grey
/// paper, for Chromium's `--use-file-for-fake-video-capture`.
fn write_y4m(png: &[u8], path: &Path) -> Result<()> {
    let qr = image::load_from_memory(png)
        .context("decoding qr.png")?
        .to_luma8();
    let (w, h) = (640usize, 480usize);
    let (qw, qh) = (qr.width() as usize, qr.height() as usize);
    // Nearest-neighbour fit into 400 px, centred.
    let scale = (400.0 / qw.max(qh) as f64).min(2.0);
    let (sw, sh) = ((qw as f64 * scale) as usize, (qh as f64 * scale) as usize);
    let (ox, oy) = ((w - sw) / 2, (h - sh) / 2);
    let mut luma = vec![200u8; w * h];
    for y in 0..sh {
        for x in 0..sw {
            let sx = ((x as f64 / scale) as u32).min(qr.width() - 1);
            let sy = ((y as f64 / scale) as u32).min(qr.height() - 1);
            luma[(oy + y) * w + ox + x] = if qr.get_pixel(sx, sy).0[0] > 127 {
                235
            } else {
                20
            };
        }
    }
    let mut out = format!("YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..5 {
        out.extend_from_slice(b"FRAME\n");
        out.extend_from_slice(&luma);
        out.extend(std::iter::repeat_n(128u8, w * h / 2));
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// A blank white 8x8 PNG.
fn placeholder_png() -> Vec<u8> {
    let img = image::GrayImage::from_pixel(8, 8, image::Luma([255u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encoding a PNG");
    out.into_inner()
}

/// Truthy when the element is entirely inside the viewport (no scrolling
/// needed to see it).
const IN_VIEW: &str = r#"
const el = document.querySelector(arguments[0]);
if (!el || el.offsetParent === null) return false;
const r = el.getBoundingClientRect();
return r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
"#;

/// The focused element's id (or tag).
const FOCUSED: &str = r#"
const el = document.activeElement;
return el ? (el.id || el.tagName.toLowerCase()) : '';
"#;

/// Browser-side requests per login route, from a server's `/metrics`.
fn login_requests(metrics: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("qrlogin_http_requests_total{") else {
            continue;
        };
        let Some((labels, n)) = rest.rsplit_once("} ") else {
            continue;
        };
        let route = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("route=\""))
            .map(|r| r.trim_end_matches('"').to_string())
            .unwrap_or_default();
        let method = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("method=\""))
            .map(|r| r.trim_end_matches('"').to_string())
            .unwrap_or_default();
        if !route.starts_with("/v1/logins") {
            continue;
        }
        let n: u64 = n.trim().parse().unwrap_or(0);
        let key = format!("{method} {route}");
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += n,
            None => out.push((key, n)),
        }
    }
    out.sort();
    out
}

impl Ctx {
    /// See [`browser_confirm_page_shows_places_and_needs_presence`].
    async fn run_geo(&self) -> Result<()> {
        let created: Value = self
            .http
            .post(format!("{}/v1/logins", self.base))
            .header("x-forwarded-for", "203.0.113.10")
            .header("content-type", "application/json")
            .body(r#"{"binding":"header"}"#)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["login_id"].as_str().unwrap_or_default().to_string();
        let secret = created["browser_secret"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.viewport(390, 844, true).await?;
        self.cdp("Network.enable", json!({})).await?;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            json!({ "headers": { "X-Forwarded-For": "192.0.2.20" } }),
        )
        .await?;
        self.wd.goto(&format!("{}/m/{id}", self.base)).await?;
        self.sign_in_on_phone("alice", "wonderland").await?;
        self.wait_text(
            "#place-summary",
            "This login is from Amsterdam, Netherlands; you are in Berlin, Germany.",
        )
        .await?;
        let computer = self.text("#ctx-browser-place").await;
        let phone = self.text("#ctx-phone-place").await;
        let net = self.text("#ctx-browser-net").await;
        eprintln!("[e2e] geo: computer {computer:?}, phone {phone:?}, network {net:?}");
        if computer != "Amsterdam, Netherlands" || phone != "Berlin, Germany" {
            bail!("the confirm page should show both places, shows {computer:?} / {phone:?}");
        }
        if !net.contains("AS64501") {
            bail!("the computer's network should be AS64501, shows {net:?}");
        }
        let disabled = || async {
            self.wd
                .js(
                    "return document.getElementById('approve').disabled",
                    json!([]),
                )
                .await
        };
        self.find("#confirm-presence").await?;
        if disabled().await? != json!(true) {
            bail!("Approve must stay disabled until the presence box is ticked");
        }
        self.shot("geo-1-confirm-unticked.png").await?;
        self.wd.click("#confirm-presence").await?;
        if disabled().await? != json!(false) {
            bail!("ticking the presence box must enable Approve");
        }
        self.shot("geo-2-confirm-ticked.png").await?;
        self.wd.click("#approve").await?;
        self.wait_text("#result", "Approved").await?;
        self.shot("geo-3-approved.png").await?;
        let r = self
            .http
            .post(format!("{}/v1/logins/{id}/redeem", self.base))
            .bearer_auth(&secret)
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::OK {
            bail!("redeem after the ticked approve: {}", r.status());
        }
        Ok(())
    }

    /// See [`browser_on_risk_number_shows_after_a_scan_from_another_network`].
    async fn run_on_risk(&self) -> Result<()> {
        let wd = &self.wd;
        wd.set_size(1024, 900).await?;
        let desk = wd.window().await?;
        wd.goto(&format!("{}/", self.base)).await?;
        let (link, at_create) = self.wait_qr(None).await?;
        if !at_create.is_empty() {
            bail!("on-risk: the login page shows {at_create:?} before any scan");
        }
        // The phone is on another network (X-Forwarded-For, trusted from
        // 127.0.0.1, sent by its window only).
        let phone = wd.new_window().await?;
        wd.switch_to(&phone).await?;
        self.viewport(390, 844, true).await?;
        self.cdp("Network.enable", json!({})).await?;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            json!({ "headers": { "X-Forwarded-For": "192.0.2.20" } }),
        )
        .await?;
        wd.goto(&link).await?;
        self.sign_in_on_phone("alice", "wonderland").await?;
        wd.wait_js(
            "the phone to ask for a number",
            WAIT,
            "return document.querySelectorAll('button.match-choice').length === 3",
            json!([]),
        )
        .await?;
        // The login page learns the number from the scanned event.
        wd.switch_to(&desk).await?;
        let shown = wd
            .wait_js(
                "the login page to show the number after the scan",
                WAIT,
                "const c = document.querySelector('.qrl-code'); const t = c && c.offsetParent !== null ? c.textContent.trim() : ''; return /^[0-9]{2}$/.test(t) ? t : null",
                json!([]),
            )
            .await?;
        let code = shown.as_str().unwrap_or_default().to_string();
        eprintln!("[e2e] on-risk: the login page shows {code:?} after the scan");
        self.shot("on-risk-1-login-number.png").await?;
        // It is the phone's right choice: picking it approves.
        wd.switch_to(&phone).await?;
        self.check_context_and_pick(&code).await?;
        self.shot("on-risk-2-phone-picked.png").await?;
        self.wait_clickable("#approve").await?;
        wd.click("#approve").await?;
        self.wait_text("#result", "approved").await?;
        wd.switch_to(&desk).await?;
        self.wait_text("#logged-in", "logged in as alice").await?;
        self.shot("on-risk-3-logged-in.png").await?;
        Ok(())
    }

    async fn find(&self, css: &str) -> Result<String> {
        self.wd.find(css).await
    }

    async fn shot(&self, name: &str) -> Result<()> {
        self.wd.screenshot(&self.shots.join(name)).await
    }

    async fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.wd
            .cmd(
                reqwest::Method::POST,
                "/goog/cdp/execute",
                Some(json!({ "cmd": cmd, "params": params })),
            )
            .await
    }

    /// The current window's viewport, exactly (a phone: 390x844).
    async fn viewport(&self, width: u32, height: u32, mobile: bool) -> Result<()> {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await
        .map(|_| ())
    }

    async fn dark(&self, on: bool) -> Result<()> {
        let value = if on { "dark" } else { "light" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": value }] }),
        )
        .await
        .map(|_| ())
    }

    async fn wait_clickable(&self, css: &str) -> Result<()> {
        self.wd
            .wait_js(
                &format!("{css} to be clickable"),
                WAIT,
                CLICKABLE,
                json!([css]),
            )
            .await
            .map(|_| ())
    }

    async fn wait_text(&self, css: &str, needle: &str) -> Result<()> {
        self.wd
            .wait_js(
                &format!("{css} to contain {needle:?}"),
                WAIT,
                CONTAINS,
                json!([css, needle]),
            )
            .await
            .map(|_| ())
    }

    async fn text(&self, css: &str) -> String {
        self.wd
            .js(TEXT_OF, json!([css]))
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    async fn focused(&self) -> String {
        self.wd
            .js(FOCUSED, json!([]))
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The focus is on the step's heading (it moves there after each step).
    async fn expect_focus(&self, id: &str, step: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let f = self.focused().await;
            if f == id {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("after {step} the focus should be on #{id}, it is on {f:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn in_view(&self, css: &str) -> Result<bool> {
        Ok(self.wd.js(IN_VIEW, json!([css])).await? == json!(true))
    }

    /// Waits for the login page's QR (different from `previous`); returns (link, match code).
    async fn wait_qr(&self, previous: Option<&str>) -> Result<(String, String)> {
        let v = self
            .wd
            .wait_js(
                "the QR image to load and its link to show",
                WAIT,
                QR_READY,
                json!([previous.unwrap_or("")]),
            )
            .await?;
        let link = v[0].as_str().unwrap_or_default().to_string();
        let code = v[1].as_str().unwrap_or_default().to_string();
        Ok((link, code))
    }

    async fn sign_in_on_phone(&self, user: &str, password: &str) -> Result<()> {
        self.wait_clickable("input[name=username]").await?;
        self.wd.type_into("input[name=username]", user).await?;
        self.wd.type_into("input[name=password]", password).await?;
        self.wd.click("#signin").await
    }

    /// On a phone confirm view: pick the match code if asked, check the context.
    async fn check_context_and_pick(&self, match_code: &str) -> Result<bool> {
        self.wait_clickable("#deny").await?;
        self.expect_focus("request-title", "showing the request")
            .await?;
        let title = self.text("#request-title").await;
        let browser = self.text("#ctx-browser").await;
        let ip = self.text("#ctx-ip").await;
        eprintln!("[e2e] confirm page: {title:?}; browser {browser:?}; ip {ip:?}");
        if !title.to_lowercase().starts_with("log in to") {
            bail!("confirm page title looks wrong: {title:?}");
        }
        if !ip.contains("127.0.0.1") {
            bail!("confirm page should show the requesting IP 127.0.0.1, shows {ip:?}");
        }
        let has_choices = self
            .wd
            .js(
                "return document.querySelectorAll('button.match-choice').length",
                json!([]),
            )
            .await?;
        let asked = has_choices.as_u64().unwrap_or(0) > 0;
        if asked {
            if match_code.is_empty() {
                bail!("the phone asks for a match code but the login page shows none");
            }
            self.wd
                .click(&format!("button.match-choice[data-code=\"{match_code}\"]"))
                .await?;
        } else if !match_code.is_empty() {
            bail!("the login page shows {match_code} but the phone asks for no number");
        }
        Ok(asked)
    }

    async fn qr_png(&self, id: &str) -> Result<bytes::Bytes> {
        let r = self
            .http
            .get(format!("{}/v1/logins/{id}/qr.png", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.bytes().await?)
    }

    /// Whether the instance at `base` holds a waiting SSE browser (its own
    /// `/metrics`, asked directly).
    async fn streams_on(&self, base: &str) -> Result<bool> {
        let Ok(r) = self
            .http
            .get(format!("{base}/auth/qr/metrics"))
            .send()
            .await
        else {
            return Ok(false);
        };
        let text = r.text().await.unwrap_or_default();
        Ok(text.lines().any(|l| {
            l.starts_with("qrlogin_waiting_browsers{via=\"sse\"}")
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)
        }))
    }

    /// The instance holding the login page's stream is killed; the page's
    /// EventSource reconnects through nginx to the other one.
    async fn kill_the_streaming_instance(&self) -> Result<()> {
        let Some(stack) = &self.stack else {
            return Ok(());
        };
        let bases: Vec<String> = stack
            .lock()
            .map_err(|_| anyhow!("stack lock"))?
            .instances
            .iter()
            .map(|p| p.base.clone())
            .collect();
        let mut holder = None;
        for (i, base) in bases.iter().enumerate() {
            if self.streams_on(base).await? {
                holder = Some(i);
            }
        }
        let holder = holder.ok_or_else(|| anyhow!("no instance holds the page's stream"))?;
        eprintln!("[e2e] killing instance {holder}, which holds the page's event stream");
        stack.lock().map_err(|_| anyhow!("stack lock"))?.instances[holder].kill();
        // The page's EventSource reconnects (Last-Event-ID) through nginx to the other.
        let other = 1 - holder;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.streams_on(&bases[other]).await? {
            if Instant::now() > deadline {
                bail!("the page's EventSource did not reconnect to the surviving instance");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    async fn run(&self) -> Result<()> {
        let wd = &self.wd;
        wd.set_size(1024, 900).await?;

        // ---- window 1: the web site's login page
        let desk = wd.window().await?;
        wd.goto(&format!("{}/", self.base)).await?;
        let (link, match_code) = self.wait_qr(None).await?;
        eprintln!("[e2e] QR link {link} match code {match_code:?}");
        let id = link
            .rsplit_once("/m/")
            .map(|(_, id)| id.trim_end_matches('/').to_string())
            .ok_or_else(|| anyhow!("the QR link {link:?} is not PUBLIC_URL/m/{{id}}"))?;
        if !link.starts_with(&self.base) {
            bail!(
                "the QR link {link:?} should start with the public URL {}",
                self.base
            );
        }
        if id.len() != 22 {
            bail!("login id {id:?} should be 22 base64url chars");
        }
        // Marks this document: if the page reloads, the marker is gone.
        wd.js("window.__e2eMarker = 'no-reload'; return true;", json!([]))
            .await?;
        self.wait_text(".qrl-status", "waiting").await?;
        self.shot("01-login-qr.png").await?;

        // ---- window 2: the phone (390x844) opens the QR link
        let phone = wd.new_window().await?;
        wd.switch_to(&phone).await?;
        self.viewport(390, 844, true).await?;
        wd.goto(&link).await?;
        self.expect_focus("step-title", "opening the link (sign-in form)")
            .await?;
        self.sign_in_on_phone("alice", "wonderland").await?;
        let asked = self.check_context_and_pick(&match_code).await?;
        self.wait_clickable("#approve").await?;
        // Approve and Deny are on screen without scrolling, numbers included.
        for b in ["#approve", "#deny"] {
            if !self.in_view(b).await? {
                bail!("{b} is below the fold at 390x844 (numbers shown: {asked})");
            }
        }
        self.shot("02-confirm-context-390x844.png").await?;
        // The phone page follows the system's dark theme (prefers-color-
        // scheme), and Approve and Deny stay on screen in it.
        self.dark(true).await?;
        let colours = wd
            .js(
                "return [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]",
                json!([]),
            )
            .await?;
        if colours != json!(["rgb(18, 22, 31)", "rgb(230, 233, 239)"]) {
            bail!("phone page in dark mode: [background, text] are {colours}");
        }
        for b in ["#approve", "#deny"] {
            if !self.in_view(b).await? {
                bail!("{b} is below the fold at 390x844 in the dark theme");
            }
        }
        self.shot("02b-confirm-context-dark.png").await?;
        self.dark(false).await?;
        let light = wd
            .js(
                "return getComputedStyle(document.body).backgroundColor",
                json!([]),
            )
            .await?;
        if light != json!("rgb(243, 245, 248)") {
            bail!("phone page back in light mode: background is {light}");
        }

        // The login page has seen the scan by now (SSE), without a reload.
        wd.switch_to(&desk).await?;
        self.wait_text(".qrl-status", "scanned by").await?;
        self.shot("03-login-scanned.png").await?;
        self.kill_the_streaming_instance().await?;

        wd.switch_to(&phone).await?;
        wd.click("#approve").await?;
        self.wait_text("#result", "approved").await?;
        self.expect_focus("step-title", "approving").await?;
        self.shot("04-confirm-approved.png").await?;

        // ---- window 1: logged in, no reload
        wd.switch_to(&desk).await?;
        self.wait_text("#logged-in", "logged in as alice").await?;
        let marker = wd
            .js("return window.__e2eMarker || null;", json!([]))
            .await?;
        if marker != json!("no-reload") {
            bail!("the login page was reloaded (marker {marker})");
        }
        let transport = wd
            .js(
                "return document.getElementById('qr-login').getAttribute('data-qrl-transport')",
                json!([]),
            )
            .await?;
        if transport != json!("sse") {
            bail!("the login page should have stayed on SSE, it used {transport}");
        }
        self.shot("05-logged-in.png").await?;

        // The SDK made no more requests for this login than a hand-written
        // page: create, the QR image, one event stream, redeem.
        if let Some(metrics) = &self.metrics {
            let text = self.http.get(metrics).send().await?.text().await?;
            let counted = login_requests(&text);
            let want: Vec<(String, u64)> = [
                "GET /v1/logins/{id}/events",
                "GET /v1/logins/{id}/qr.svg",
                "POST /v1/logins",
                "POST /v1/logins/{id}/redeem",
            ]
            .iter()
            .map(|k| (k.to_string(), 1))
            .collect();
            if counted != want {
                bail!("browser requests for one login: {counted:?}, want {want:?}");
            }
        }

        // The session is real: /v1/session from the page answers alice.
        let who = wd
            .js(
                "return fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.ok ? r.json() : {status: r.status});",
                json!([format!("{}/v1/session", self.base)]),
            )
            .await?;
        let name = who["user"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        if !name.starts_with("alice") {
            bail!("GET /v1/session after login answered {who}");
        }

        // ---- log out; a new QR appears (and the page in dark mode keeps
        // the QR dark on white)
        wd.click("#logout").await?;
        let (link2, match_code2) = self.wait_qr(Some(&link)).await?;
        eprintln!("[e2e] second QR link {link2}");
        self.dark(true).await?;
        let qr_bg = wd
            .js(
                "return [getComputedStyle(document.querySelector('.qrl-qr-box')).backgroundColor, getComputedStyle(document.body).backgroundColor]",
                json!([]),
            )
            .await?;
        if qr_bg[0] != json!("rgb(255, 255, 255)") || qr_bg[1] == json!("rgb(243, 245, 248)") {
            bail!("dark theme: QR box / page background are {qr_bg}");
        }
        self.shot("05b-login-dark.png").await?;
        self.dark(false).await?;

        // ---- window 2: the simulated phone app scans the new QR from a PNG
        let id2 = link2
            .rsplit_once("/m/")
            .map(|(_, id)| id.to_string())
            .unwrap_or_default();
        let png_path = self.shots.join("uploaded-qr.png");
        std::fs::write(&png_path, self.qr_png(&id2).await?)?;

        wd.switch_to(&phone).await?;
        wd.goto(&format!("{}/phone", self.base)).await?;
        // Still signed in from the confirm page (same origin, same localStorage).
        self.wait_clickable("#qr-file").await?;
        self.wait_text("#whoami", "alice").await?;
        self.shot("06-phone-app.png").await?;
        wd.type_into("#qr-file", &png_path.display().to_string())
            .await?;
        self.check_context_and_pick(&match_code2).await?;
        self.shot("07-phone-confirm.png").await?;
        wd.click("#deny").await?;
        self.wait_text("#result", "denied").await?;
        self.expect_focus("step-title", "denying").await?;

        wd.switch_to(&desk).await?;
        self.wait_text(".qrl-status", "denied").await?;
        self.wait_clickable(".qrl-new").await?;
        self.shot("08-login-denied.png").await?;

        // ---- long-poll fallback: the login page in a browser without EventSource
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "try { delete window.EventSource; window.EventSource = undefined; } catch (e) {}" }),
        )
        .await?;
        wd.goto(&format!("{}/", self.base)).await?;
        let (link3, match_code3) = self.wait_qr(None).await?;
        let no_sse = wd
            .js(
                "return typeof window.EventSource === 'undefined';",
                json!([]),
            )
            .await?;
        if no_sse != json!(true) {
            bail!("could not take EventSource away from the page");
        }
        let id3 = link3
            .rsplit_once("/m/")
            .map(|(_, id)| id.to_string())
            .unwrap_or_default();
        // The phone side, straight over the API this time.
        let http = &self.http;
        let signin: Value = http
            .post(format!("{}/v1/mobile/session", self.base))
            .json(&json!({ "username": "bob", "password": "builder" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = signin["token"]
            .as_str()
            .ok_or_else(|| anyhow!("no token in {signin}"))?
            .to_string();
        http.post(format!("{}/v1/mobile/logins/{id3}/scan", self.base))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        self.wait_text(".qrl-status", "scanned by").await?;
        let body = if match_code3.is_empty() {
            json!({})
        } else {
            json!({ "match_code": match_code3 })
        };
        http.post(format!("{}/v1/mobile/logins/{id3}/approve", self.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        self.wait_text("#logged-in", "logged in as bob").await?;
        self.shot("09-logged-in-by-long-poll.png").await?;
        // ---- the phone app's camera: Chromium's fake camera plays a video of the QR
        wd.click("#logout").await?;
        let (link4, match_code4) = self.wait_qr(Some(&link3)).await?;
        let id4 = link4
            .rsplit_once("/m/")
            .map(|(_, id)| id.to_string())
            .unwrap_or_default();
        write_y4m(&self.qr_png(&id4).await?, &self.camera)?;
        wd.switch_to(&phone).await?;
        wd.goto(&format!("{}/phone", self.base)).await?;
        self.wait_clickable("#camera-start").await?;
        wd.click("#camera-start").await?;
        self.check_context_and_pick(&match_code4).await?;
        let camera_off = wd
            .js(
                "return document.getElementById('video-wrap').hidden;",
                json!([]),
            )
            .await?;
        if camera_off != json!(true) {
            bail!("the camera should stop once a code is decoded");
        }
        wd.click("#approve").await?;
        self.wait_text("#result", "approved").await?;
        wd.switch_to(&desk).await?;
        self.wait_text("#logged-in", "logged in as alice").await?;
        self.shot("10-logged-in-by-camera.png").await?;
        Ok(())
    }
}

/// One Chromium at a time: the runs below would otherwise compete for
/// the cores and make each other's waits flaky.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `--geoip-db`: the confirm page (`/m/{id}`) shows the computer's place
/// and the phone's, says plainly that they differ, and on a high verdict
/// keeps Approve disabled until "I am at this computer now" is ticked.
/// The login is made from an Amsterdam address and the phone page sends
/// a Berlin one (X-Forwarded-For, trusted from 127.0.0.1, set by CDP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_confirm_page_shows_places_and_needs_presence() {
    let _one = ONE_BROWSER.lock().await;
    let name = "browser_e2e_geo";
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&out).unwrap();
    let db = out.join("GeoLite2-City.mmdb");
    common::mmdb::write(&db, &common::mmdb::world());
    let server_log = out.join("server.log");
    let args = [
        "--geoip-db",
        db.to_str().unwrap(),
        "--trusted-proxies",
        "127.0.0.1",
        "--match-code",
        "off",
    ];
    let (server, base) = start_server(&server_log, &args).unwrap_or_else(|e| panic!("{e:#}"));
    browser_run_script(name, Target::Server(server, base), Script::Geo).await;
}

/// `--match-code on-risk` (the default) with the phone on another network
/// than the computer: the login page shows no number at first, then, with
/// the `scanned` event, the number the phone asks for; picking it on the
/// phone approves and the page logs in. (The same-network case, where
/// neither side shows a number, is the default run's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_on_risk_number_shows_after_a_scan_from_another_network() {
    let _one = ONE_BROWSER.lock().await;
    let name = "browser_e2e_on_risk";
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&out).unwrap();
    let args = ["--trusted-proxies", "127.0.0.1", "--match-code", "on-risk"];
    let (server, base) =
        start_server(&out.join("server.log"), &args).unwrap_or_else(|e| panic!("{e:#}"));
    browser_run_script(name, Target::Server(server, base), Script::OnRisk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_qr_login_end_to_end() {
    let _one = ONE_BROWSER.lock().await;
    end_to_end("browser_e2e", &[]).await;
}

/// The same run with JWT web sessions (`--session-format jwt`): the pages
/// only ever see the `qrl_session` cookie and `GET /v1/session`, so they
/// must work unchanged when the cookie holds a JWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_qr_login_end_to_end_with_jwt_sessions() {
    let _one = ONE_BROWSER.lock().await;
    let log = end_to_end("browser_e2e_jwt", &["--session-format", "jwt"]).await;
    assert!(
        log.contains("JWT web sessions"),
        "the server did not run in JWT mode; log:\n{log}"
    );
}

/// The same run through nginx (`examples/nginx/qrlogin.conf`, TLS, HTTP/2)
/// in front of two instances on one Redis, under `/auth/qr`, with number
/// matching always on (so the phone page shows numbers at 390x844), and the
/// instance holding the page's event stream killed mid-wait: the page's
/// EventSource reconnects through nginx to the other and the login
/// completes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_qr_login_end_to_end_through_nginx() {
    let _one = ONE_BROWSER.lock().await;
    let stack = tokio::task::spawn_blocking(|| proxy::Stack::start(&["--match-code", "always"]))
        .await
        .expect("starting nginx, Redis and two instances");
    browser_run("browser_e2e_nginx", Target::Proxy(stack)).await;
}

enum Target {
    Server(ChildGuard, String),
    Proxy(proxy::Stack),
}

/// The whole browser run against a server started with `extra_args`;
/// screenshots and logs in `CARGO_TARGET_TMPDIR/<name>/`. Returns the
/// server's log.
async fn end_to_end(name: &str, extra_args: &[&str]) -> String {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&out).unwrap();
    let server_log = out.join("server.log");
    let (server, base) = start_server(&server_log, extra_args).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("[e2e] server at {base} (pid {})", server.id());
    browser_run(name, Target::Server(server, base)).await;
    std::fs::read_to_string(&server_log).unwrap_or_default()
}

/// Which steps a browser run takes.
#[derive(Clone, Copy)]
enum Script {
    /// [`Ctx::run`]: the whole tour.
    Full,
    /// [`Ctx::run_geo`]: the confirm page with `--geoip-db`.
    Geo,
    /// [`Ctx::run_on_risk`]: `--match-code on-risk` across networks.
    OnRisk,
}

/// Starts Chromium (through chromedriver) and runs [`Ctx::run`] against
/// `target`; fails on any step or console error.
async fn browser_run(name: &str, target: Target) {
    browser_run_script(name, target, Script::Full).await
}

/// [`browser_run`] with the steps of `script`.
async fn browser_run_script(name: &str, target: Target, script: Script) {
    let chromium = find_exe("chromium", "/usr/bin/chromium").expect(MISSING);
    let driver = find_exe("chromedriver", "/usr/bin/chromedriver").expect(MISSING);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&out).unwrap();
    // Screenshots of an earlier run would only mislead.
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // Declared first so it is removed last, after Chromium has gone.
    let profile = tempfile::Builder::new()
        .prefix("chromium-profile-")
        .tempdir_in(&out)
        .unwrap();
    let (chromedriver, driver_url) = start_chromedriver(&driver, &out.join("chromedriver.log"))
        .unwrap_or_else(|e| panic!("{e:#}"));

    let camera = out.join("camera.y4m");
    // A placeholder until the test knows which QR to film.
    write_y4m(&placeholder_png(), &camera).unwrap();
    let (wd, session) = WebDriver::new_session(&driver_url, &chromium, profile.path(), &camera)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (base, http, metrics, stack, server) = match target {
        Target::Server(guard, base) => (
            base.clone(),
            reqwest::Client::new(),
            Some(format!("{base}/metrics")),
            None,
            Some(guard),
        ),
        Target::Proxy(stack) => (
            stack.public.clone(),
            stack.client([127, 0, 0, 1]),
            None,
            Some(std::sync::Mutex::new(stack)),
            None,
        ),
    };
    let ctx = Ctx {
        wd,
        base,
        http,
        shots: out.clone(),
        camera,
        metrics,
        stack,
    };

    let steps = async {
        match script {
            Script::Full => ctx.run().await,
            Script::Geo => ctx.run_geo().await,
            Script::OnRisk => ctx.run_on_risk().await,
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(150), steps)
        .await
        .unwrap_or_else(|_| Err(anyhow!("the whole test took over 150 s")));
    finish(&ctx, result, &out).await;
    drop(session);
    drop(chromedriver);
    drop(server);
}

/// Console errors fail the run: script errors, CSP refusals and anything
/// logged as SEVERE except failed loads (a 401 from /v1/session before
/// login, a stream cut by a killed instance).
fn console_errors(console: &[String]) -> Vec<&String> {
    console
        .iter()
        .filter(|l| {
            l.contains("Content Security Policy")
                || l.contains("Uncaught")
                || (l.starts_with("SEVERE")
                    && !l.contains("Failed to load resource")
                    && !l.contains("net::ERR_")
                    && !l.contains("EventSource"))
        })
        .collect()
}

async fn finish(ctx: &Ctx, result: Result<()>, out: &Path) {
    let console = ctx.wd.console().await;
    for line in &console {
        eprintln!("[browser console] {line}");
    }
    if let Err(e) = &result {
        let _ = ctx.shot("failure.png").await;
        let text = ctx
            .wd
            .js(
                "return document.body ? document.body.innerText : ''",
                json!([]),
            )
            .await;
        eprintln!(
            "[e2e] page text at failure: {}",
            text.map(|v| v.to_string()).unwrap_or_default()
        );
        let log = std::fs::read_to_string(out.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("[e2e] server log (last lines):");
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
        if let Some(stack) = &ctx.stack {
            if let Ok(s) = stack.lock() {
                eprintln!("[e2e] nginx error.log:\n{}", s.nginx.error_log());
                for p in &s.instances {
                    eprintln!("[e2e] instance {} log:\n{}", p.base, p.log());
                }
            }
        }
        panic!("browser end-to-end failed: {e:#}");
    }
    // The pages must run under the server's strict CSP without script errors.
    let bad = console_errors(&console);
    assert!(bad.is_empty(), "the browser console shows errors: {bad:#?}");
}

// ---------------------------------------------------------------------------
// the browser SDK on its own (the demo page `/` is built on it)

/// Counts the SDK's creates and lets the test hide the tab (Page
/// Visibility): `window.__creates`, `window.__hidden`.
const SDK_PROBE: &str = r#"
window.__creates = 0;
const realFetch = window.fetch;
window.fetch = function (url, opts) {
  if (opts && opts.method === 'POST' && String(url).endsWith('/v1/logins')) window.__creates++;
  return realFetch.apply(this, arguments);
};
window.__hidden = false;
Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get() { return window.__hidden; } });
Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get() { return window.__hidden ? 'hidden' : 'visible'; } });
window.__setHidden = function (h) { window.__hidden = h; document.dispatchEvent(new Event('visibilitychange')); };
"#;

/// Watches the SDK's event stream and states: `window.__es` counts the
/// EventSources made and their `open` and `error` events (a native
/// reconnect is one EventSource opening again), `window.__states` lists
/// every `data-qrl-state` the widget sets, in order (a repeated state is
/// listed again: setting an attribute queues a mutation even when the
/// value is unchanged).
const NET_PROBE: &str = r#"
window.__states = [];
window.__es = { made: 0, opens: 0, errors: 0 };
const RealEventSource = window.EventSource;
window.EventSource = class extends RealEventSource {
  constructor(url, init) {
    super(url, init);
    window.__es.made++;
    this.addEventListener('open', () => { window.__es.opens++; });
    this.addEventListener('error', () => { window.__es.errors++; });
  }
};
new MutationObserver((records) => {
  for (const r of records) window.__states.push(r.target.getAttribute('data-qrl-state'));
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-qrl-state'] });
"#;

/// A browser on a fresh server for the SDK tests.
struct SdkRun {
    ctx: Ctx,
    out: PathBuf,
    _session: SessionGuard,
    _driver: ChildGuard,
    _server: ChildGuard,
    _profile: tempfile::TempDir,
}

async fn sdk_run(name: &str, extra_args: &[&str]) -> SdkRun {
    let chromium = find_exe("chromium", "/usr/bin/chromium").expect(MISSING);
    let driver = find_exe("chromedriver", "/usr/bin/chromedriver").expect(MISSING);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&out).unwrap();
    let profile = tempfile::Builder::new()
        .prefix("chromium-profile-")
        .tempdir_in(&out)
        .unwrap();
    let (server, base) =
        start_server(&out.join("server.log"), extra_args).unwrap_or_else(|e| panic!("{e:#}"));
    let (chromedriver, driver_url) = start_chromedriver(&driver, &out.join("chromedriver.log"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let camera = out.join("camera.y4m");
    write_y4m(&placeholder_png(), &camera).unwrap();
    let (wd, session) = WebDriver::new_session(&driver_url, &chromium, profile.path(), &camera)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let ctx = Ctx {
        wd,
        metrics: Some(format!("{base}/metrics")),
        base,
        http: reqwest::Client::new(),
        shots: out.clone(),
        camera,
        stack: None,
    };
    SdkRun {
        ctx,
        out,
        _session: session,
        _driver: chromedriver,
        _server: server,
        _profile: profile,
    }
}

impl Ctx {
    async fn js_u64(&self, script: &str) -> u64 {
        self.wd
            .js(script, json!([]))
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }

    /// Scans and approves `link`'s login as bob over the phone API.
    async fn bob_approves(&self, link: &str, code: &str) -> Result<()> {
        let (id, token) = self.bob_scans(link).await?;
        self.approve_as(&id, &token, code).await
    }

    /// Signs bob in on the phone API and scans `link`'s login: its id and
    /// bob's phone token.
    async fn bob_scans(&self, link: &str) -> Result<(String, String)> {
        let id = link
            .rsplit_once("/m/")
            .map(|(_, id)| id)
            .unwrap_or_default();
        let signin: Value = self
            .http
            .post(format!("{}/v1/mobile/session", self.base))
            .json(&json!({ "username": "bob", "password": "builder" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = signin["token"].as_str().unwrap_or_default().to_string();
        self.http
            .post(format!("{}/v1/mobile/logins/{id}/scan", self.base))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        Ok((id.to_string(), token))
    }

    /// Approves login `id` with the phone `token` (and the number `code`,
    /// if the page shows one).
    async fn approve_as(&self, id: &str, token: &str, code: &str) -> Result<()> {
        let body = if code.is_empty() {
            json!({})
        } else {
            json!({ "match_code": code })
        };
        self.http
            .post(format!("{}/v1/mobile/logins/{id}/approve", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn sdk_expiry(&self) -> Result<()> {
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": SDK_PROBE }),
        )
        .await?;
        // The default N is 5: the first code and five refreshes, then the
        // page asks.
        self.wd.goto(&format!("{}/", self.base)).await?;
        self.wd
            .wait_js(
                "five refreshes (the default), then the 'Show a new code' button",
                Duration::from_secs(40),
                "return window.__creates === 6 && document.querySelector('.qrl-new').offsetParent !== null",
                json!([]),
            )
            .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let creates = self.js_u64("return window.__creates").await;
        if creates != 6 {
            bail!("after the default 5 refreshes the page went on creating: {creates} creates");
        }
        self.wd
            .goto(&format!("{}/?max_refreshes=2", self.base))
            .await?;
        let (first, _) = self.wait_qr(None).await?;
        let countdown = self.text(".qrl-expiry").await;
        if !countdown.starts_with("Code expires in 0:0") {
            bail!("countdown reads {countdown:?}");
        }
        // Expired codes are replaced twice (N = 2), then the page asks.
        self.wd
            .wait_js(
                "two refreshes, then the 'Show a new code' button",
                Duration::from_secs(30),
                "return window.__creates === 3 && document.querySelector('.qrl-new').offsetParent !== null",
                json!([]),
            )
            .await?;
        self.shot("sdk-01-refreshes-stopped.png").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let creates = self.js_u64("return window.__creates").await;
        if creates != 3 {
            bail!("after N refreshes the page went on creating: {creates} creates");
        }
        // The button gives a new code (and N fresh refreshes).
        self.wd.click(".qrl-new").await?;
        let (second, _) = self.wait_qr(Some(&first)).await?;
        // A hidden tab lets its code expire and creates nothing ...
        self.wd
            .js("window.__setHidden(true); return true", json!([]))
            .await?;
        self.wd
            .wait_js(
                "the code to expire in the hidden tab",
                Duration::from_secs(15),
                "return document.getElementById('qr-login').getAttribute('data-qrl-state') === 'expired'",
                json!([]),
            )
            .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let creates = self.js_u64("return window.__creates").await;
        if creates != 4 {
            bail!("a hidden tab refreshed its code: {creates} creates (want 4)");
        }
        self.wait_text(".qrl-status", "come back").await?;
        // ... until it is shown again.
        self.wd
            .js("window.__setHidden(false); return true", json!([]))
            .await?;
        let (third, code) = self.wait_qr(Some(&second)).await?;
        let creates = self.js_u64("return window.__creates").await;
        if creates != 5 {
            bail!("showing the tab again should create one code: {creates} creates (want 5)");
        }
        // The refreshed code logs in.
        self.bob_approves(&third, &code).await?;
        self.wait_text("#logged-in", "logged in as bob").await?;
        Ok(())
    }

    async fn sdk_long_poll_and_locale(&self) -> Result<()> {
        // Event streams never get through: the SDK must long-poll.
        self.cdp("Network.enable", json!({})).await?;
        self.cdp("Network.setBlockedURLs", json!({ "urls": ["*/events*"] }))
            .await?;
        self.wd.goto(&format!("{}/?locale=de", self.base)).await?;
        let (link, code) = self.wait_qr(None).await?;
        self.wait_text(".qrl-status", "Warten").await?;
        let copy = self.text(".qrl-copy").await;
        if copy != "Link kopieren" {
            bail!("German copy button reads {copy:?}");
        }
        self.wd
            .wait_js(
                "the SDK to fall back to long-polling",
                Duration::from_secs(20),
                "return document.getElementById('qr-login').getAttribute('data-qrl-transport') === 'poll'",
                json!([]),
            )
            .await?;
        self.shot("sdk-02-german-long-poll.png").await?;
        // Switching the language switches the widget's texts.
        let switch = "const s = document.getElementById('locale'); s.value = arguments[0]; s.dispatchEvent(new Event('change')); return true";
        self.wd.js(switch, json!(["en"])).await?;
        self.wait_text(".qrl-status", "Waiting for your phone")
            .await?;
        self.wait_text(".qrl-copy", "Copy link").await?;
        self.wait_text("#login-title", "Log in with your phone")
            .await?;
        self.wd.js(switch, json!(["de"])).await?;
        self.wait_text(".qrl-status", "Warten").await?;
        // The login completes over long-poll.
        self.bob_approves(&link, &code).await?;
        self.wait_text("#logged-in", "logged in as bob").await?;
        self.cdp("Network.setBlockedURLs", json!({ "urls": [] }))
            .await?;
        Ok(())
    }
}

impl Ctx {
    async fn sdk_surface(&self) -> Result<()> {
        let wd = &self.wd;
        self.dark(false).await?;
        // theme: 'dark' as an option (the page passes ?theme= through),
        // with the browser itself in light mode.
        wd.goto(&format!("{}/?theme=dark", self.base)).await?;
        let (link, code) = self.wait_qr(None).await?;
        let v = wd
            .js(
                "const r = document.getElementById('qr-login'); \
                 return [r.getAttribute('data-qrl-theme'), getComputedStyle(r).color, \
                 getComputedStyle(document.querySelector('.qrl-qr-box')).backgroundColor]",
                json!([]),
            )
            .await?;
        if v != json!(["dark", "rgb(230, 233, 239)", "rgb(255, 255, 255)"]) {
            bail!("theme 'dark': [data-qrl-theme, text colour, QR box] are {v}");
        }
        self.shot("sdk-surface-1-dark-option.png").await?;
        // The QR's alt text names the site; the status is a polite live
        // region; the copy button copies the link (or selects it when the
        // clipboard is not allowed).
        let v = wd
            .js(
                "const s = document.querySelector('.qrl-status'); \
                 return [document.querySelector('.qrl-qr').alt, \
                 JSON.parse(document.querySelector('meta[name=\"qrlogin-config\"]').content).site, \
                 s.getAttribute('aria-live'), s.getAttribute('role')]",
                json!([]),
            )
            .await?;
        let site = v[1].as_str().unwrap_or_default();
        let alt = format!("QR code to log in with the {site} app on your phone");
        if site.is_empty()
            || v[0] != json!(alt)
            || v[2] != json!("polite")
            || v[3] != json!("status")
        {
            bail!("alt text / live region: {v} (want alt {alt:?}, aria-live polite, role status)");
        }
        wd.click(".qrl-copy").await?;
        wd.wait_js(
            "the copy button to copy or select the link",
            WAIT,
            "return document.querySelector('.qrl-copy').textContent === 'Copied' || String(window.getSelection()).trim() === arguments[0]",
            json!([link]),
        )
        .await?;
        self.bob_approves(&link, &code).await?;
        self.wait_text("#logged-in", "logged in as bob").await?;

        // <qr-login> without a site name: the alt text does not name one.
        let sdk = format!("{}/_qrlogin/sdk/qrlogin.js", self.base);
        let v = wd
            .js(
                "return import(arguments[0]).then(() => { \
                   const e = document.createElement('qr-login'); e.id = 'bare'; \
                   document.body.append(e); \
                   return [customElements.get('qr-login') === e.constructor, e.querySelector('.qrl-qr').alt]; })",
                json!([sdk]),
            )
            .await?;
        if v != json!([true, "QR code to log in with your phone"]) {
            bail!("<qr-login> without a site: [is the element, alt] are {v}");
        }
        wd.js(
            "document.getElementById('bare').remove(); return true",
            json!([]),
        )
        .await?;
        // <qr-login> in a locale the site adds to QrLogin.strings, with a
        // site name; its qrlogin:login event fires after the phone approves.
        wd.js(
            "return import(arguments[0]).then((m) => { \
               m.QrLogin.strings.fr = { waiting: 'En attente du téléphone…', qr_alt: 'Code QR pour {site}' }; \
               window.__elemLogin = null; \
               const e = document.createElement('qr-login'); e.id = 'elem'; \
               e.setAttribute('locale', 'fr'); e.setAttribute('site', 'Elem Shop'); \
               e.addEventListener('qrlogin:login', (ev) => { window.__elemLogin = ev.detail; }); \
               document.body.append(e); return true; })",
            json!([sdk]),
        )
        .await?;
        self.wait_text("#elem .qrl-status", "En attente du téléphone")
            .await?;
        let v = wd
            .wait_js(
                "the element's QR and link",
                WAIT,
                "const e = document.getElementById('elem'); const i = e.querySelector('.qrl-qr'); \
                 const l = e.querySelector('.qrl-link'); \
                 return i.complete && i.naturalWidth > 0 && l.textContent ? [l.textContent.trim(), i.alt, e.querySelector('.qrl-copy').textContent] : null",
                json!([]),
            )
            .await?;
        let elem_link = v[0].as_str().unwrap_or_default().to_string();
        // Keys the site left out fall back to English.
        if v[1] != json!("Code QR pour Elem Shop") || v[2] != json!("Copy link") {
            bail!("<qr-login locale=fr site=…>: [link, alt, copy] are {v}");
        }
        self.shot("sdk-surface-2-element.png").await?;
        self.bob_approves(&elem_link, "").await?;
        let detail = wd
            .wait_js(
                "the element's qrlogin:login event",
                WAIT,
                "return window.__elemLogin",
                json!([]),
            )
            .await?;
        if detail["user"]["id"] != json!("u-bob")
            || detail["token"].as_str().unwrap_or("").is_empty()
        {
            bail!("qrlogin:login detail is {detail}");
        }
        Ok(())
    }
}

/// What a site uses of the SDK besides the demo page's defaults: the
/// `theme: 'dark'` option (with the browser in light mode), the QR's alt
/// text and the polite live region, the copy button, the `<qr-login>`
/// element (with and without a site name, in a locale the site adds to
/// `QrLogin.strings`) and its `qrlogin:login` event after the phone
/// approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_options_element_and_accessibility_in_chromium() {
    let _one = ONE_BROWSER.lock().await;
    let run = sdk_run("browser_sdk_surface", &[]).await;
    let result = tokio::time::timeout(Duration::from_secs(90), run.ctx.sdk_surface())
        .await
        .unwrap_or_else(|_| Err(anyhow!("took over 90 s")));
    finish(&run.ctx, result, &run.out).await;
}

/// Expiry: the SDK replaces an expired code at most N times (the default
/// 5, then 2 by option), then
/// shows "Show a new code"; a hidden tab (Page Visibility) refreshes
/// nothing until it is shown again; the refreshed code logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_refreshes_expired_codes_at_most_n_times_and_not_while_hidden() {
    let _one = ONE_BROWSER.lock().await;
    let run = sdk_run(
        "browser_sdk_expiry",
        &["--pending-ttl", "2", "--final-keep", "1"],
    )
    .await;
    let result = tokio::time::timeout(Duration::from_secs(150), run.ctx.sdk_expiry())
        .await
        .unwrap_or_else(|_| Err(anyhow!("took over 150 s")));
    finish(&run.ctx, result, &run.out).await;
}

/// SSE blocked (every event stream request fails): the SDK long-polls and
/// the login completes; the locale switches between German and English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_long_polls_when_sse_is_blocked_and_switches_locale() {
    let _one = ONE_BROWSER.lock().await;
    let run = sdk_run("browser_sdk_long_poll", &[]).await;
    let result = tokio::time::timeout(Duration::from_secs(90), run.ctx.sdk_long_poll_and_locale())
        .await
        .unwrap_or_else(|_| Err(anyhow!("took over 90 s")));
    finish(&run.ctx, result, &run.out).await;
}

impl Ctx {
    /// The browser's network on or off (CDP network emulation; offline
    /// fails the requests in flight, the open event stream included).
    async fn network(&self, online: bool) -> Result<()> {
        self.cdp(
            "Network.emulateNetworkConditions",
            json!({ "offline": !online, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
        )
        .await
        .map(|_| ())
    }

    async fn es_count(&self, what: &str) -> u64 {
        self.js_u64(&format!("return window.__es.{what}")).await
    }

    async fn scanned_states(&self) -> u64 {
        self.js_u64("return window.__states.filter((s) => s === 'scanned').length")
            .await
    }

    async fn sdk_network_loss(&self, relay: &Relay) -> Result<()> {
        // Emulation on (and online) before the page loads, so the stream's
        // request is one the emulation can cut.
        self.cdp("Network.enable", json!({})).await?;
        self.network(true).await?;
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": NET_PROBE }),
        )
        .await?;
        self.wd.goto(&format!("{}/", self.base)).await?;
        let (link, code) = self.wait_qr(None).await?;
        self.wait_text(".qrl-status", "waiting").await?;
        self.wd
            .wait_js(
                "the event stream to open",
                WAIT,
                "return window.__es.opens >= 1",
                json!([]),
            )
            .await?;

        // 1. The network goes away while the page waits and the phone scans
        //    meanwhile: the scanned event cannot reach the page (the
        //    emulation fails the stream when it arrives). The network comes
        //    back: the page's EventSource reconnects by itself, and the scan
        //    shows, once.
        self.network(false).await?;
        relay.cut();
        let offline_at = Instant::now();
        let (id, token) = self.bob_scans(&link).await?;
        self.wd
            .wait_js(
                "the event stream to fail while offline",
                Duration::from_secs(10),
                "return window.__es.errors >= 1",
                json!([]),
            )
            .await?;
        // Offline for 4 s: EventSource retries 3 s after the loss, and that
        // retry must fail (the browser is offline); the next, 3 s later,
        // finds the network back (three failures in a row would send the
        // SDK to long-polling).
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(offline_at.elapsed())).await;
        if self.scanned_states().await != 0 {
            bail!("the page saw the scan while it was offline");
        }
        let errors = self.es_count("errors").await;
        if errors < 2 {
            bail!("the retry while offline should have failed too: {errors} stream error(s)");
        }
        self.network(true).await?;
        self.wait_text(".qrl-status", "scanned by").await?;
        self.wd
            .wait_js(
                "the stream to reopen",
                WAIT,
                "return window.__es.opens >= 2",
                json!([]),
            )
            .await?;
        self.shot("sdk-net-1-scanned-after-reconnect.png").await?;

        // 2. The network goes away again after the scan was seen, and
        //    nothing changes meanwhile. The reconnect sends Last-Event-ID
        //    (the scanned event's id), so the server does not send
        //    `scanned` again. Without it the server would start the new
        //    stream with the current state, scanned at the same version,
        //    and the widget would show it a second time.
        let opens = self.es_count("opens").await;
        let errors = self.es_count("errors").await;
        self.network(false).await?;
        relay.cut();
        self.wd
            .wait_js(
                "the event stream to fail while offline again",
                Duration::from_secs(10),
                &format!("return window.__es.errors > {errors}"),
                json!([]),
            )
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.network(true).await?;
        self.wd
            .wait_js(
                "the stream to reopen after the second loss",
                WAIT,
                &format!("return window.__es.opens > {opens}"),
                json!([]),
            )
            .await?;
        // Whatever the new stream starts with arrives right after it opens.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let scanned = self.scanned_states().await;
        if scanned != 1 {
            let states = self.wd.js("return window.__states", json!([])).await?;
            bail!("`scanned` was shown {scanned} times (states {states}), want once");
        }

        // 3. Approve: the login completes, on the same EventSource, still SSE.
        self.approve_as(&id, &token, &code).await?;
        self.wait_text("#logged-in", "logged in as bob").await?;
        let made = self.es_count("made").await;
        let transport = self
            .wd
            .js(
                "return document.getElementById('qr-login') ? document.getElementById('qr-login').getAttribute('data-qrl-transport') : null",
                json!([]),
            )
            .await?;
        let states = self.wd.js("return window.__states", json!([])).await?;
        eprintln!(
            "[e2e] network loss: states {states}, {made} EventSource(s), transport {transport}"
        );
        if made != 1 {
            bail!("the SDK made {made} EventSources; the browser's own reconnect should have done");
        }
        if transport != json!("sse") {
            bail!("the page should have stayed on SSE, it used {transport}");
        }
        if self.scanned_states().await != 1 {
            bail!("`scanned` was repeated before the login completed: {states}");
        }
        self.shot("sdk-net-2-logged-in.png").await?;
        Ok(())
    }
}

/// Network loss while the login page waits, twice (Chromium offline by CDP,
/// and the open connections cut at a relay in front of the server): the
/// SDK's EventSource reconnects by itself (one EventSource, opened three
/// times; a retry while offline fails), the scan made while offline shows after the network comes
/// back, the reconnect after the scan resumes with Last-Event-ID (`scanned`
/// is shown once, not replayed), and the login completes over SSE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_resumes_after_network_loss_without_repeating_scanned() {
    let _one = ONE_BROWSER.lock().await;
    // The browser reaches the server through the relay (the public URL).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a relay listener");
    let public = format!("http://{}", listener.local_addr().expect("its address"));
    let mut run = sdk_run("browser_sdk_network_loss", &["--public-url", &public]).await;
    let upstream = run
        .ctx
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address");
    let relay = Relay::start(listener, upstream);
    run.ctx.base = public;
    let result = tokio::time::timeout(Duration::from_secs(90), run.ctx.sdk_network_loss(&relay))
        .await
        .unwrap_or_else(|_| Err(anyhow!("took over 90 s")));
    finish(&run.ctx, result, &run.out).await;
}

/// A TCP relay in front of the server whose open connections the test can
/// cut: what a lost network does to an open event stream. (Chromium's
/// offline emulation fails new requests, but leaves a stream that is
/// already open alone: events keep arriving through it.)
struct Relay {
    cut: tokio::sync::watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    fn start(listener: tokio::net::TcpListener, upstream: std::net::SocketAddr) -> Relay {
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Relay { cut, accept }
    }

    /// Closes every connection open now; later ones pass.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

impl Ctx {
    async fn demo_off_pages(&self) -> Result<()> {
        let created: Value = self
            .http
            .post(format!("{}/v1/logins", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let link = created["qr_payload"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.viewport(390, 844, true).await?;
        for (page, shot) in [
            (link.as_str(), "demo-off-confirm.png"),
            (&format!("{}/phone", self.base), "demo-off-phone.png"),
        ] {
            self.wd.goto(page).await?;
            self.wait_text("#step-title", "Open this code with the Example Shop app")
                .await?;
            self.expect_focus("step-title", "opening the page with the demo off")
                .await?;
            let found = self
                .wd
                .js(
                    "return [document.querySelectorAll('input[name=username]').length, !!document.getElementById('confirm-error'), document.body.innerText.includes('wonderland')]",
                    json!([]),
                )
                .await?;
            if found != json!([0, false, false]) {
                bail!("{page}: with the demo off there must be no sign-in form, no error, no demo hint: {found}");
            }
            self.shot(shot).await?;
        }
        Ok(())
    }
}

/// With the demo identity off (a real verifier), the page a phone's camera
/// opens says to use the site's own app: no sign-in form, no demo hint,
/// no misleading error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_pages_with_the_demo_off_say_to_use_the_sites_app() {
    let _one = ONE_BROWSER.lock().await;
    let args = [
        "--mobile-verifier",
        "userinfo",
        "--mobile-userinfo-url",
        "http://127.0.0.1:9/userinfo",
        "--site-name",
        "Example Shop",
    ];
    let run = sdk_run("browser_demo_off", &args).await;
    let result = tokio::time::timeout(Duration::from_secs(60), run.ctx.demo_off_pages())
        .await
        .unwrap_or_else(|_| Err(anyhow!("took over 60 s")));
    finish(&run.ctx, result, &run.out).await;
}

impl Ctx {
    async fn sdk_behind_a_silent_stream(&self) -> Result<()> {
        self.wd.goto(&format!("{}/", self.base)).await?;
        let (link, code) = self.wait_qr(None).await?;
        // The stream never answers: after the first-event bound the SDK
        // long-polls instead.
        self.wd
            .wait_js(
                "the SDK to give up on the silent stream and long-poll",
                Duration::from_secs(20),
                "return document.getElementById('qr-login').getAttribute('data-qrl-transport') === 'poll'",
                json!([]),
            )
            .await?;
        let element = self
            .wd
            .js("return !!customElements.get('qr-login')", json!([]))
            .await?;
        if element != json!(true) {
            bail!("the SDK should define <qr-login>");
        }
        self.bob_approves(&link, &code).await?;
        self.wait_text("#logged-in", "logged in as bob").await?;
        self.shot("silent-stream-logged-in.png").await?;
        Ok(())
    }
}

/// The issue's first complaint: behind a proxy that holds event streams
/// back, the stream never errors and no event ever arrives, so a page that
/// only falls back on errors waits forever. Here nginx passes `…/events` to
/// an upstream that accepts the connection and never answers (what a
/// buffering hop looks like from the browser). The SDK notices the silence
/// (no first event within its bound), long-polls, and the login completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_long_polls_when_the_event_stream_stays_silent_behind_the_proxy() {
    let _one = ONE_BROWSER.lock().await;
    // Accepts connections and holds them, silent, until the test ends.
    let hole = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let hole_addr = hole.local_addr().expect("its address");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hole.incoming().flatten() {
            held.push(conn);
        }
    });
    let run = sdk_behind_events_upstream("browser_sdk_silent_stream", hole_addr).await;
    let ctx = &run.ctx;
    let result = tokio::time::timeout(Duration::from_secs(60), ctx.sdk_behind_a_silent_stream())
        .await
        .unwrap_or_else(|_| Err(anyhow!("took over 60 s")));
    finish(ctx, result, &run.out).await;
}

/// A browser run behind nginx whose `…/events` location goes to
/// `upstream` instead of qrlogin (everything else reaches the two
/// instances). Fields drop in order: the stack, then Chromium, then the
/// profile.
struct ProxiedRun {
    ctx: Ctx,
    out: PathBuf,
    _session: SessionGuard,
    _driver: ChildGuard,
    _profile: tempfile::TempDir,
}

async fn sdk_behind_events_upstream(name: &str, upstream: std::net::SocketAddr) -> ProxiedRun {
    let stack = tokio::task::spawn_blocking(move || {
        proxy::Stack::start_with(&[], move |conf| {
            let events = "proxy_pass http://qrlogin;\n            proxy_buffering off;";
            assert_eq!(conf.matches(events).count(), 1, "the events location");
            conf.replace(
                events,
                &format!("proxy_pass http://{upstream};\n            proxy_buffering off;"),
            )
        })
    })
    .await
    .expect("starting nginx, Redis and two instances");
    let chromium = find_exe("chromium", "/usr/bin/chromium").expect(MISSING);
    let driver = find_exe("chromedriver", "/usr/bin/chromedriver").expect(MISSING);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&out).unwrap();
    let profile = tempfile::Builder::new()
        .prefix("chromium-profile-")
        .tempdir_in(&out)
        .unwrap();
    let (chromedriver, driver_url) = start_chromedriver(&driver, &out.join("chromedriver.log"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let camera = out.join("camera.y4m");
    write_y4m(&placeholder_png(), &camera).unwrap();
    let (wd, session) = WebDriver::new_session(&driver_url, &chromium, profile.path(), &camera)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let ctx = Ctx {
        wd,
        base: stack.public.clone(),
        http: stack.client([127, 0, 0, 1]),
        shots: out.clone(),
        camera,
        metrics: None,
        stack: Some(std::sync::Mutex::new(stack)),
    };
    ProxiedRun {
        ctx,
        out,
        _session: session,
        _driver: chromedriver,
        _profile: profile,
    }
}

/// How many `ping` keep-alives the stalling upstream sends, one a second,
/// after its one `pending` event, before it goes silent.
const STALL_PINGS: u64 = 8;

impl Ctx {
    async fn sdk_behind_a_stalling_stream(&self) -> Result<()> {
        // A silence bound of 3 s (the default is 35 s: two keep-alives).
        self.wd
            .goto(&format!("{}/?sse_silence_ms=3000", self.base))
            .await?;
        let (link, code) = self.wait_qr(None).await?;
        let transport =
            "return document.getElementById('qr-login').getAttribute('data-qrl-transport')";
        // The pings keep the stream alive past the bound ...
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t = self.wd.js(transport, json!([])).await?;
        if t != json!("sse") {
            bail!("while pings arrive the SDK must stay on SSE, it uses {t}");
        }
        // ... and once they stop, the SDK notices and long-polls.
        self.wd
            .wait_js(
                "the SDK to give up on the stalled stream and long-poll",
                Duration::from_secs(20),
                "return document.getElementById('qr-login').getAttribute('data-qrl-transport') === 'poll'",
                json!([]),
            )
            .await?;
        self.bob_approves(&link, &code).await?;
        self.wait_text("#logged-in", "logged in as bob").await?;
        self.shot("stalled-stream-logged-in.png").await?;
        Ok(())
    }
}

/// A stream that stalls after its first event (a hop that stops passing
/// data, a half-dead connection): the upstream behind nginx's `…/events`
/// answers with one `pending` event, sends `ping` keep-alives for a while,
/// then nothing, without closing. The SDK stays on SSE while pings arrive
/// (each re-arms its silence bound) and long-polls once they stop; the
/// login completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_long_polls_when_the_event_stream_stalls_after_its_first_event() {
    let _one = ONE_BROWSER.lock().await;
    let upstream = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let upstream_addr = upstream.local_addr().expect("its address");
    std::thread::spawn(move || {
        for conn in upstream.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let start = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                             cache-control: no-cache, no-transform\r\nx-accel-buffering: no\r\n\
                             connection: close\r\n\r\n\
                             event: pending\nid: 1\ndata: {\"state\":\"pending\",\"version\":1}\n\n";
                if conn.write_all(start.as_bytes()).is_err() {
                    return;
                }
                for _ in 0..STALL_PINGS {
                    std::thread::sleep(Duration::from_secs(1));
                    if conn.write_all(b"event: ping\ndata: {}\n\n").is_err() {
                        return;
                    }
                }
                // Silent, and held open until the test ends.
                std::thread::sleep(Duration::from_secs(600));
            });
        }
    });
    let run = sdk_behind_events_upstream("browser_sdk_stalled_stream", upstream_addr).await;
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        run.ctx.sdk_behind_a_stalling_stream(),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow!("took over 60 s")));
    finish(&run.ctx, result, &run.out).await;
}
