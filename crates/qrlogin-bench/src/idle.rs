//! `qrlogin-bench idle`: what an idle waiting browser costs the server.
//!
//! 1. RSS of the server before anything;
//! 2. create N logins (header binding), RSS again: the logins' own cost;
//! 3. open N waiters, each on its own connection (an SSE stream that has
//!    delivered its first event, or a long-poll in flight), RSS sampled
//!    while they are held: the waiters' cost;
//! 4. close them all, RSS once more.
//!
//! Per waiter = (held − after logins) / N. Run it against a freshly started
//! server: an allocator keeps memory freed by earlier load, which would hide
//! part of the cost.
//!
//! For many waiters (`--sources`): each source address (127.0.0.2, .3, …)
//! opens its share, as browsers behind different addresses would, so the
//! per-address stream cap and the ephemeral ports of one address are not
//! what stops the run. With `--ready-file` and `--keep` the waiters stay
//! open after the RSS samples while another program (a `run` of logins)
//! measures wake-ups beside them; the report says how many were still open
//! at the end.

use crate::http::{Auth, Failure, Http, SseReader};
use crate::run::{create_login, Binding, WaitMode};
use crate::sys::{self, Machine, Rss};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

#[derive(Debug, Clone)]
pub struct IdleConfig {
    pub url: String,
    pub waiters: usize,
    pub wait: WaitMode,
    /// How long to hold the waiters open.
    pub hold: Duration,
    pub server_pid: u32,
    /// Connections being opened at once.
    pub open_concurrency: usize,
    pub timeout: Duration,
    /// Source addresses to spread the waiters over: 127.0.0.2 onwards; 1 =
    /// whatever the kernel picks (127.0.0.1).
    pub sources: usize,
    /// Written once the RSS samples are taken and the waiters still open.
    pub ready_file: Option<std::path::PathBuf>,
    /// How long to keep the waiters open after the ready file.
    pub keep: Duration,
}

impl IdleConfig {
    pub fn new(url: &str, waiters: usize, wait: WaitMode, server_pid: u32) -> IdleConfig {
        IdleConfig {
            url: url.to_string(),
            waiters,
            wait,
            hold: Duration::from_secs(10),
            server_pid,
            open_concurrency: 64,
            timeout: Duration::from_secs(10),
            sources: 1,
            ready_file: None,
            keep: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub url: String,
    pub wait: WaitMode,
    pub waiters_requested: usize,
    /// Waiters that were open while RSS was sampled.
    pub waiters_open: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub rss_before: Rss,
    pub rss_with_logins: Rss,
    /// Median of the samples taken while the waiters were held.
    pub rss_with_waiters_kb: u64,
    pub rss_with_waiters_max_kb: u64,
    pub rss_after_release: Rss,
    /// (held − with logins) / open waiters, bytes.
    pub bytes_per_waiter: f64,
    /// (held − before) / open waiters: the login and its waiter, bytes.
    pub bytes_per_login_and_waiter: f64,
    /// `qrlogin_waiting_browsers` from the server's /metrics while held.
    pub server_gauge: Option<f64>,
    pub hold_s: f64,
    pub sources: usize,
    /// Seconds kept open after the ready file.
    pub keep_s: f64,
    /// Waiters still open when the keep ended (none failed meanwhile).
    pub waiters_open_at_end: u64,
    pub machine: Machine,
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

/// Where one waiter connects and what it asks.
struct WaiterSpec {
    /// Where to connect.
    addr: std::net::SocketAddr,
    /// Local address to connect from (`None`: the kernel's choice).
    source: Option<std::net::Ipv4Addr>,
    /// `Host` header.
    host: String,
    path: String,
    auth: Auth,
    mode: WaitMode,
    timeout: Duration,
}

/// Opens one waiter on a dedicated connection and keeps it until `stop`.
/// Signals `ready` once the server holds it (SSE: first event read;
/// long-poll: request written and not answered).
async fn waiter(
    spec: WaiterSpec,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), (&'static str, Failure)> {
    let WaiterSpec {
        addr,
        source,
        host,
        path,
        auth,
        mode,
        timeout,
    } = spec;
    let connect = async {
        match source {
            None => tokio::net::TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(std::net::SocketAddr::new(ip.into(), 0))?;
                socket.connect(addr).await
            }
        }
    };
    let tcp = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ("connect", Failure::Timeout))?
        .map_err(|_| ("connect", Failure::Connect))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|_| ("connect", Failure::Io))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let mut ready = Some(ready);
        loop {
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(path.as_str())
                .header(HOST, host.as_str());
            if let Auth::Bearer(v) = &auth {
                req = req.header(AUTHORIZATION, v.clone());
            }
            let req = req
                .body(Empty::new())
                .map_err(|_| ("wait", Failure::Protocol("unbuildable request".into())))?;
            match mode {
                WaitMode::Sse => {
                    let resp = tokio::time::timeout(timeout, send.send_request(req))
                        .await
                        .map_err(|_| ("events", Failure::Timeout))?
                        .map_err(|_| ("events", Failure::Io))?;
                    if resp.status() != StatusCode::OK {
                        return Err(("events", Failure::Status(resp.status().as_u16(), String::new())));
                    }
                    let mut reader = SseReader::new(resp.into_body());
                    tokio::time::timeout(timeout, reader.next())
                        .await
                        .map_err(|_| ("events", Failure::Timeout))?
                        .map_err(|f| ("events", f))?
                        .ok_or(("events", Failure::Protocol("stream ended".into())))?;
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    // Hold: read keep-alives until told to stop.
                    loop {
                        tokio::select! {
                            _ = stop.changed() => return Ok(()),
                            ev = reader.next() => match ev {
                                Ok(Some(_)) => {}
                                Ok(None) => return Err(("hold", Failure::Protocol("stream ended".into()))),
                                Err(f) => return Err(("hold", f)),
                            }
                        }
                    }
                }
                WaitMode::Longpoll | WaitMode::Poll1s => {
                    let fut = send.send_request(req);
                    tokio::pin!(fut);
                    // Give the request a moment to be written before
                    // counting it as held.
                    let early = tokio::time::timeout(Duration::from_millis(5), &mut fut).await;
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    let resp = match early {
                        Ok(r) => r,
                        Err(_) => tokio::select! {
                            _ = stop.changed() => return Ok(()),
                            r = &mut fut => r,
                        },
                    }
                    .map_err(|_| ("wait", Failure::Io))?;
                    let status = resp.status();
                    let _ = resp.into_body().collect().await;
                    if status != StatusCode::OK {
                        return Err(("wait", Failure::Status(status.as_u16(), String::new())));
                    }
                    if *stop.borrow() {
                        return Ok(());
                    }
                    // The long-poll ran out: wait again.
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}

/// The sum of `qrlogin_waiting_browsers` samples in /metrics, if exposed.
async fn server_gauge(http: &Http) -> Option<f64> {
    let (st, _, body) = http
        .call_within(http.timeout(), Method::GET, "/metrics", &Auth::None, None)
        .await
        .ok()?;
    if st != StatusCode::OK {
        return None;
    }
    let text = String::from_utf8_lossy(&body);
    let mut total = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("qrlogin_waiting_browsers") {
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *total.get_or_insert(0.0) += v;
            }
        }
    }
    total
}

pub async fn idle(cfg: IdleConfig) -> anyhow::Result<IdleReport> {
    let url = sys::loopback_http_url(&cfg.url)?;
    anyhow::ensure!(
        cfg.wait != WaitMode::Poll1s,
        "idle measures waiters the server holds: use --wait sse or longpoll"
    );
    anyhow::ensure!(cfg.waiters > 0, "waiters must be at least 1");
    let nofile = sys::raise_nofile();
    anyhow::ensure!(
        (cfg.waiters as u64) + 64 < nofile,
        "{} waiters need more file descriptors than the limit {nofile}",
        cfg.waiters
    );
    let uri: hyper::Uri = url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("URL has no host"))?
        .to_string();
    let host = authority.clone();
    let addr: std::net::SocketAddr = match uri.host() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => {
            format!("127.0.0.1:{}", uri.port_u16().unwrap_or(80))
        }
        _ => authority.clone(),
    }
    .parse()
    .map_err(|_| anyhow::anyhow!("the URL's host must be an IP address or localhost"))?;
    anyhow::ensure!(
        cfg.sources == 1 || addr.is_ipv4(),
        "--sources needs an IPv4 loopback URL"
    );
    anyhow::ensure!(
        (1..=250).contains(&cfg.sources),
        "--sources must be 1 to 250"
    );
    let http = Http::new(&url, cfg.timeout);

    let rss_before = sys::rss_of(cfg.server_pid)?;

    // 1. The logins.
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let created: Vec<Result<(String, Auth), Failure>> = stream::iter(0..cfg.waiters)
        .map(|_| create_login(&http, Binding::Header))
        .buffer_unordered(cfg.open_concurrency.max(1))
        .collect()
        .await;
    let mut logins = Vec::with_capacity(created.len());
    for c in created {
        match c {
            Ok(x) => logins.push(x),
            Err(f) => *errors.entry(format!("create: {f}")).or_insert(0) += 1,
        }
    }
    settle().await;
    let rss_with_logins = sys::rss_of(cfg.server_pid)?;

    // 2. The waiters.
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(cfg.open_concurrency.max(1)));
    let open = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(logins.len());
    for (k, (id, auth)) in logins.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let path = match cfg.wait {
            WaitMode::Sse => format!("/v1/logins/{id}/events"),
            _ => format!("/v1/logins/{id}?wait=60&since=pending"),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let open_w = open.clone();
        tokio::spawn(async move {
            let _ = ready_rx.await;
            drop(permit);
        });
        let source = (cfg.sources > 1)
            .then(|| std::net::Ipv4Addr::new(127, 0, 0, 2 + (k % cfg.sources) as u8));
        let spec = WaiterSpec {
            addr,
            source,
            host: host.clone(),
            path,
            auth,
            mode: cfg.wait,
            timeout: cfg.timeout,
        };
        let fut = waiter(spec, ready_tx, stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            // `open` counts waiters that got ready and have not failed.
            let r = fut.await;
            if r.is_err() {
                open_w.fetch_sub(1, Ordering::Relaxed);
            }
            r
        }));
        open.fetch_add(1, Ordering::Relaxed);
    }
    // All permits back = every waiter is ready or failed.
    let all = cfg.open_concurrency.max(1) as u32;
    let _ = tokio::time::timeout(cfg.timeout * 3, sem.acquire_many(all)).await;
    settle().await;
    let server_gauge = server_gauge(&http).await;

    let hold_start = Instant::now();
    let mut samples = Vec::new();
    loop {
        samples.push(sys::rss_of(cfg.server_pid)?.rss_kb);
        if hold_start.elapsed() >= cfg.hold {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500).min(cfg.hold)).await;
    }
    let waiters_open = open.load(Ordering::Relaxed);
    if let Some(f) = &cfg.ready_file {
        std::fs::write(f, format!("{waiters_open}\n"))?;
    }
    tokio::time::sleep(cfg.keep).await;
    let waiters_open_at_end = open.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err((step, f))) => {
                failed += 1;
                *errors.entry(format!("{step}: {f}")).or_insert(0) += 1;
            }
            Err(_) => failed += 1,
        }
    }
    failed += errors
        .iter()
        .filter(|(k, _)| k.starts_with("create"))
        .map(|(_, v)| *v)
        .sum::<u64>();
    settle().await;
    let rss_after_release = sys::rss_of(cfg.server_pid)?;

    samples.sort_unstable();
    let median = samples[samples.len() / 2];
    let max = samples.iter().copied().max().unwrap_or(median);
    let n = waiters_open.max(1) as f64;
    Ok(IdleReport {
        url,
        wait: cfg.wait,
        waiters_requested: cfg.waiters,
        waiters_open,
        failed,
        errors,
        rss_before,
        rss_with_logins,
        rss_with_waiters_kb: median,
        rss_with_waiters_max_kb: max,
        rss_after_release,
        bytes_per_waiter: (median as f64 - rss_with_logins.rss_kb as f64) * 1024.0 / n,
        bytes_per_login_and_waiter: (median as f64 - rss_before.rss_kb as f64) * 1024.0 / n,
        server_gauge,
        hold_s: cfg.hold.as_secs_f64(),
        sources: cfg.sources,
        keep_s: cfg.keep.as_secs_f64(),
        waiters_open_at_end,
        machine: sys::machine(),
    })
}

pub fn render(r: &IdleReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "qrlogin-bench idle: {} wait={} waiters={} hold={:.0}s",
        r.url,
        r.wait.as_str(),
        r.waiters_requested,
        r.hold_s
    );
    let _ = writeln!(
        s,
        "machine: {} cores, {}; {}",
        r.machine.nproc, r.machine.cpu_model, r.machine.date
    );
    let _ = writeln!(
        s,
        "waiters open: {} from {} source address(es) ({} failed; {} still open after {:.0} s more){}",
        r.waiters_open,
        r.sources,
        r.failed,
        r.waiters_open_at_end,
        r.keep_s,
        r.server_gauge
            .map(|g| format!("; server's qrlogin_waiting_browsers = {g}"))
            .unwrap_or_default()
    );
    for (k, v) in &r.errors {
        let _ = writeln!(s, "  {v:>8}  {k}");
    }
    let _ = writeln!(
        s,
        "server RSS: {} KiB before, {} KiB with logins, {} KiB with waiters (max {}), {} KiB after release",
        r.rss_before.rss_kb,
        r.rss_with_logins.rss_kb,
        r.rss_with_waiters_kb,
        r.rss_with_waiters_max_kb,
        r.rss_after_release.rss_kb
    );
    let _ = writeln!(
        s,
        "per waiter: {:.0} bytes ({:.1} KiB); login + waiter: {:.0} bytes ({:.1} KiB)",
        r.bytes_per_waiter,
        r.bytes_per_waiter / 1024.0,
        r.bytes_per_login_and_waiter,
        r.bytes_per_login_and_waiter / 1024.0
    );
    s
}
