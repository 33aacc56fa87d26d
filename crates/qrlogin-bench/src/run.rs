//! `qrlogin-bench run`: complete logins, back to back, from N virtual
//! browsers, each with a virtual phone.
//!
//! One login, as a browser and a phone would do it:
//!
//! 1. the browser creates it (`POST /v1/logins`, header or cookie binding);
//! 2. the browser starts waiting: an SSE stream (connected once its first
//!    event arrived), a long-poll (`?wait=30&since=STATE`), or — the seed's
//!    design — a plain status poll every second, at a random phase (a person
//!    scans at no particular moment of the poll cycle);
//! 3. after the optional think time the phone scans and approves; the moment
//!    approve's answer arrived is noted;
//! 4. the browser sees `approved`: wake latency = that moment − approve's
//!    answer (0 when the event arrived first, counted as `wake_early`);
//! 5. the browser redeems; for SSE it then reads the stream to its end (the
//!    `consumed` event), which also lets the connection be reused.
//!
//! With several `urls` the logins are spread over the instances, the
//! phone on another instance than the browser ([`crate::instances`]).
//!
//! The run stops starting logins at the deadline or after `max_logins`, lets
//! the ones in flight finish (each step has a timeout), and reports.
//!
//! The phone's credential ([`PhoneAuth`]): the demo user's token (signed in
//! once, shared by every virtual phone), or JWT access tokens minted by a
//! `qrlogin-bench idp` ([`crate::idp`]) for a server started with
//! `--mobile-verifier jwt`: by default each login has its own token, i.e.
//! its own phone user, so the server's verified-token cache misses on scan
//! and hits on approve, as for a real user who logs in now and then.

use crate::baseline::{self, Baseline};
use crate::http::{check_status, Auth, Failure, Http, SseReader};
use crate::instances::{self, HintTotals, Instance, InstanceReport};
use crate::redis_stats::{
    commandstats_delta, parse_redis_url, pubsub_delta, CommandStats, Monitor, MonitorStats,
    PubSubStats, RedisConn,
};
use crate::stats::{Hist, Summary};
use crate::sys::{self, Machine, Rss};
use bytes::Bytes;
use hyper::header::{HeaderMap, SET_COOKIE};
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the virtual browser waits for the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WaitMode {
    /// `GET /v1/logins/{id}/events` (Server-Sent Events).
    Sse,
    /// `GET /v1/logins/{id}?wait=30&since=STATE`.
    Longpoll,
    /// `GET /v1/logins/{id}` every second, like the seed's browser.
    Poll1s,
}

impl WaitMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitMode::Sse => "sse",
            WaitMode::Longpoll => "longpoll",
            WaitMode::Poll1s => "poll1s",
        }
    }
}

/// How the browser secret travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    /// `{"binding":"header"}` → `Authorization: Bearer <browser_secret>`.
    Header,
    /// The `qrl_bs` cookie, as a web browser does.
    Cookie,
}

/// What the virtual phones present as `Authorization: Bearer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PhoneAuth {
    /// The demo user's token from `POST /v1/mobile/session` (server with
    /// `--mobile-verifier demo`).
    Demo,
    /// JWT access tokens minted by `qrlogin-bench idp` (server with
    /// `--mobile-verifier jwt --mobile-jwt-issuer <the idp's issuer>`).
    Jwt,
}

/// How the minted JWTs are spread over logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PhoneTokens {
    /// A distinct token (and user) for every login, never reused in a run:
    /// one full verification per login (scan), approve a cache hit.
    PerLogin,
    /// One token for every login: all but the first verification are
    /// cache hits (the best case).
    Shared,
}

/// Distinct tokens fetched for `--phone-tokens per-login` when neither
/// `--token-pool` nor `--max-logins` says how many.
pub const DEFAULT_TOKEN_POOL: u64 = 50_000;

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URL of the service (loopback only): the first instance.
    pub url: String,
    /// More instances of the same service (same store), spread over as
    /// described in [`crate::instances`]; empty for a single instance.
    pub more_urls: Vec<String>,
    /// Virtual browsers, each doing logins back to back.
    pub concurrency: usize,
    /// Stop starting logins after this long.
    pub duration: Duration,
    /// Stop starting logins after this many.
    pub max_logins: Option<u64>,
    pub wait: WaitMode,
    pub binding: Binding,
    /// Pace login starts to this many per second in total (open loop,
    /// bounded by `concurrency`); `None` = as fast as the browsers go.
    pub rate: Option<f64>,
    /// The phone waits this long after the browser started waiting (a
    /// person reading the screen). Zero by default.
    pub think: Duration,
    /// Timeout of each request (long-polls get their wait on top).
    pub timeout: Duration,
    /// Long-poll `wait` parameter, seconds.
    pub longpoll_wait: u64,
    /// Redis to read `INFO commandstats` from before and after.
    pub redis_url: Option<String>,
    /// Also count commands by origin with `MONITOR` (slows Redis).
    pub redis_monitor: bool,
    /// The server process, for its resident memory.
    pub server_pid: Option<u32>,
    /// The processes of `more_urls`, in the same order (CPU and RSS per
    /// instance); empty, or as many as `more_urls`.
    pub more_server_pids: Vec<u32>,
    /// The browser waits on another instance than the one it created the
    /// login on (and than the phone's): see [`instances::assign`].
    pub wait_elsewhere: bool,
    /// Demo phone user.
    pub username: String,
    pub password: String,
    pub phone_auth: PhoneAuth,
    /// Base URL of the `qrlogin-bench idp` minting the JWTs (loopback).
    pub idp: Option<String>,
    pub phone_tokens: PhoneTokens,
    /// Distinct tokens for `per-login`; also the most logins the run starts
    /// (a token is never used for two logins). Default: `max_logins`, else
    /// [`DEFAULT_TOKEN_POOL`].
    pub token_pool: Option<u64>,
    /// `GET /healthz` requests sent before the logins, for the CPU of one
    /// trivial request (see [`crate::baseline`]); 0: none.
    pub healthz_baseline: u64,
}

impl RunConfig {
    pub fn new(url: &str, wait: WaitMode) -> RunConfig {
        RunConfig {
            url: url.to_string(),
            more_urls: Vec::new(),
            concurrency: 8,
            duration: Duration::from_secs(10),
            max_logins: None,
            wait,
            binding: Binding::Header,
            rate: None,
            think: Duration::ZERO,
            timeout: Duration::from_secs(10),
            longpoll_wait: 30,
            redis_url: None,
            redis_monitor: false,
            server_pid: None,
            more_server_pids: Vec::new(),
            wait_elsewhere: false,
            username: "alice".into(),
            password: "wonderland".into(),
            phone_auth: PhoneAuth::Demo,
            idp: None,
            phone_tokens: PhoneTokens::PerLogin,
            token_pool: None,
            healthz_baseline: 0,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub url: String,
    pub wait: WaitMode,
    pub binding: Binding,
    pub concurrency: usize,
    pub duration_s: f64,
    pub max_logins: Option<u64>,
    pub rate: Option<f64>,
    pub think_ms: u64,
    /// Whether the browser waited on another instance than its creator's.
    pub wait_elsewhere: bool,
    pub phone_auth: PhoneAuth,
    /// With `jwt`: how tokens were spread, how many distinct ones, their
    /// `alg`, and whether the run stopped early because every token of the
    /// pool had been used.
    pub phone_tokens: Option<PhoneTokens>,
    pub phone_token_count: u64,
    pub phone_token_alg: Option<String>,
    pub phone_tokens_exhausted: bool,
    /// From the first login's start to the last one's end.
    pub elapsed_s: f64,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// `completed / elapsed_s` (the drain of the last logins included).
    pub logins_per_s: f64,
    /// Logins completed before the deadline / duration: the steady rate,
    /// without the tail of in-flight logins finishing after it (which for
    /// 1 s polling is up to a second).
    pub window_logins_per_s: f64,
    /// Error kind (`step: what`) → count.
    pub errors: BTreeMap<String, u64>,
    /// create, events (SSE connect to first event), scan, approve, wake,
    /// redeem, full (create to redeem answered), in milliseconds.
    pub steps: BTreeMap<String, Summary>,
    /// Logins whose browser saw `approved` before approve's own answer
    /// arrived (recorded as a wake latency of 0).
    pub wake_early: u64,
    /// Status requests (long-polls or polls) per completed login.
    pub status_requests_per_login: f64,
    pub redis: Option<CommandStats>,
    pub redis_monitor: Option<MonitorStats>,
    /// RSS of `server_pid` (the first instance; every one's is in
    /// `instances`).
    pub server_rss_before: Option<Rss>,
    pub server_rss_after: Option<Rss>,
    /// CPU time used during the run by the server (all instances), Redis
    /// and this tool.
    pub cpu: Cpu,
    /// Every instance's base URL (`url` is the first).
    pub urls: Vec<String>,
    /// What each instance did: logins sent there, requests it counted,
    /// CPU, RSS and hint messages received (from its /metrics).
    pub instances: Vec<InstanceReport>,
    /// Hint messages received by all instances, per login; `None` when no
    /// instance exposes the counter (memory store, older binary).
    pub hints: Option<HintTotals>,
    /// Redis's pub/sub publishes and network output per login (with
    /// `redis_url`).
    pub redis_pubsub: Option<PubSubStats>,
    /// The trivial-request baseline, when asked for.
    pub healthz: Option<Baseline>,
    /// Server CPU per login ÷ server CPU per `/healthz`: how many trivial
    /// requests' worth of work one login is.
    pub login_in_healthz: Option<f64>,
    pub machine: Machine,
}

/// CPU seconds (user + system) used during the run, and per completed
/// login in microseconds: where a 2-core machine's budget goes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    pub server_s: Option<f64>,
    pub redis_s: Option<f64>,
    pub bench_s: f64,
    pub server_us_per_login: Option<f64>,
    pub redis_us_per_login: Option<f64>,
    pub bench_us_per_login: f64,
    /// Busy CPU seconds of the whole machine during the run.
    pub machine_busy_s: Option<f64>,
    /// Of which not the server, Redis or this tool: other work competing
    /// for the same cores (it makes the figures pessimistic).
    pub other_s: Option<f64>,
    /// Wall-clock seconds × cores: the capacity during the run.
    pub capacity_s: f64,
}

/// Per-worker tallies, merged at the end.
#[derive(Default)]
struct Tally {
    create: Hist,
    events: Hist,
    scan: Hist,
    approve: Hist,
    wake: Hist,
    redeem: Hist,
    full: Hist,
    completed: u64,
    completed_in_window: u64,
    failed: u64,
    wake_early: u64,
    status_requests: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.create.add(&o.create);
        self.events.add(&o.events);
        self.scan.add(&o.scan);
        self.approve.add(&o.approve);
        self.wake.add(&o.wake);
        self.redeem.add(&o.redeem);
        self.full.add(&o.full);
        self.completed += o.completed;
        self.completed_in_window += o.completed_in_window;
        self.failed += o.failed;
        self.wake_early += o.wake_early;
        self.status_requests += o.status_requests;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
    }

    fn error(&mut self, step: &str, f: &Failure) {
        *self.errors.entry(format!("{step}: {f}")).or_insert(0) += 1;
    }
}

struct Ctx {
    /// The instances; `instances[0]` is `url`.
    instances: Vec<Instance>,
    cfg: RunConfig,
    phones: Phones,
    /// Logins to start at most (`max_logins`, or fewer: the token pool).
    limit: Option<u64>,
    start: Instant,
    deadline: Instant,
    tickets: AtomicU64,
}

/// The virtual phones' credentials.
enum Phones {
    /// Every phone presents this.
    Shared(Auth),
    /// Login number `k` presents `tokens[k]`.
    PerLogin(Vec<Auth>),
}

impl Phones {
    fn for_login(&self, k: u64) -> &Auth {
        match self {
            Phones::Shared(a) => a,
            Phones::PerLogin(v) => &v[k as usize % v.len()],
        }
    }

    fn count(&self) -> u64 {
        match self {
            Phones::Shared(_) => 1,
            Phones::PerLogin(v) => v.len() as u64,
        }
    }
}

/// A failed step: its name and what went wrong.
type StepResult<T> = Result<T, (&'static str, Failure)>;

trait StepExt<T> {
    fn step(self, name: &'static str) -> StepResult<T>;
}
impl<T> StepExt<T> for Result<T, Failure> {
    fn step(self, name: &'static str) -> StepResult<T> {
        self.map_err(|f| (name, f))
    }
}

#[derive(Deserialize)]
struct Created {
    login_id: String,
    #[serde(default)]
    browser_secret: Option<String>,
}

#[derive(Deserialize)]
struct StatusBody {
    state: String,
}

#[derive(Deserialize)]
struct Redeemed {
    token: String,
}

#[derive(Deserialize)]
struct SignedIn {
    token: String,
}

/// Signs the demo phone user in once; every virtual phone shares the token.
pub async fn sign_in(http: &Http, username: &str, password: &str) -> anyhow::Result<Auth> {
    let body =
        serde_json::to_vec(&serde_json::json!({"username": username, "password": password}))?;
    let (_, bytes) = http
        .expect(
            StatusCode::OK,
            Method::POST,
            "/v1/mobile/session",
            &Auth::None,
            Some(body.into()),
        )
        .await
        .map_err(|f| {
            let hint = match f {
                Failure::Status(404, _) => {
                    " (the server's demo users are off: a server with --mobile-verifier jwt \
                     needs --phone-auth jwt --idp URL)"
                }
                _ => "",
            };
            anyhow::anyhow!("phone sign-in as {username} failed: {f}{hint}")
        })?;
    let s: SignedIn = serde_json::from_slice(&bytes)?;
    Ok(Auth::bearer(&s.token)?)
}

/// Fetches `count` minted access tokens from a `qrlogin-bench idp`
/// (minting them there can take a while: RSA signatures).
pub async fn fetch_tokens(idp: &str, count: u64) -> anyhow::Result<Vec<String>> {
    let base = sys::loopback_http_url(idp)?;
    let http = Http::new(&base, Duration::from_secs(10));
    let (status, _, body) = http
        .call_within(
            Duration::from_secs(600),
            Method::GET,
            &format!("/bench/tokens?count={count}"),
            &Auth::None,
            None,
        )
        .await
        .map_err(|f| anyhow::anyhow!("fetching {count} tokens from the idp at {base}: {f}"))?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "the idp at {base} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let tokens: Vec<String> = std::str::from_utf8(&body)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        tokens.len() as u64 == count,
        "the idp at {base} sent {} tokens instead of {count}",
        tokens.len()
    );
    Ok(tokens)
}

/// The phones' credentials for `cfg`, and the JWTs' `alg`.
async fn phones(http: &Http, cfg: &RunConfig) -> anyhow::Result<(Phones, Option<String>)> {
    match cfg.phone_auth {
        PhoneAuth::Demo => Ok((
            Phones::Shared(sign_in(http, &cfg.username, &cfg.password).await?),
            None,
        )),
        PhoneAuth::Jwt => {
            let idp = cfg
                .idp
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("--phone-auth jwt needs --idp URL"))?;
            let count = match cfg.phone_tokens {
                PhoneTokens::Shared => 1,
                PhoneTokens::PerLogin => cfg
                    .token_pool
                    .or(cfg.max_logins)
                    .unwrap_or(DEFAULT_TOKEN_POOL)
                    .max(1),
            };
            let tokens = fetch_tokens(idp, count).await?;
            let alg = jsonwebtoken::decode_header(&tokens[0])
                .map(|h| format!("{:?}", h.alg))
                .map_err(|e| anyhow::anyhow!("the idp's token is not a JWT: {e}"))?;
            let auths = tokens
                .iter()
                .map(|t| Auth::bearer(t))
                .collect::<Result<Vec<_>, _>>()?;
            let phones = match cfg.phone_tokens {
                PhoneTokens::Shared => Phones::Shared(auths[0].clone()),
                PhoneTokens::PerLogin => Phones::PerLogin(auths),
            };
            Ok((phones, Some(alg)))
        }
    }
}

/// Creates a login; returns its id and the browser's credential.
pub async fn create_login(http: &Http, binding: Binding) -> Result<(String, Auth), Failure> {
    let body = match binding {
        Binding::Header => Some(Bytes::from_static(br#"{"binding":"header"}"#)),
        Binding::Cookie => None,
    };
    let (headers, bytes) = http
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/v1/logins",
            &Auth::None,
            body,
        )
        .await?;
    let c: Created = serde_json::from_slice(&bytes).map_err(|_| Failure::Decode("create"))?;
    let auth = match binding {
        Binding::Header => Auth::bearer(
            c.browser_secret
                .as_deref()
                .ok_or(Failure::Decode("no browser_secret"))?,
        )?,
        Binding::Cookie => Auth::cookie(&browser_cookie(&headers)?)?,
    };
    Ok((c.login_id, auth))
}

/// The `qrl_bs=...` pair from `Set-Cookie`.
fn browser_cookie(headers: &HeaderMap) -> Result<String, Failure> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with("qrl_bs="))
        .map(str::to_string)
        .ok_or(Failure::Decode("no qrl_bs cookie"))
}

/// Runs the load and returns the report.
pub async fn run(cfg: RunConfig) -> anyhow::Result<RunReport> {
    let url = sys::loopback_http_url(&cfg.url)?;
    let mut urls = vec![url.clone()];
    for u in &cfg.more_urls {
        urls.push(sys::loopback_http_url(u)?);
    }
    anyhow::ensure!(cfg.concurrency > 0, "concurrency must be at least 1");
    anyhow::ensure!(
        cfg.more_server_pids.is_empty()
            || (cfg.server_pid.is_some() && cfg.more_server_pids.len() == cfg.more_urls.len()),
        "give --server-pid once per --url, in the same order ({} URLs, {} pids)",
        urls.len(),
        usize::from(cfg.server_pid.is_some()) + cfg.more_server_pids.len()
    );
    let redis_target = cfg.redis_url.as_deref().map(parse_redis_url).transpose()?;
    sys::raise_nofile();
    let pids = std::iter::once(cfg.server_pid).chain(cfg.more_server_pids.iter().map(|p| Some(*p)));
    let instances: Vec<Instance> = urls
        .iter()
        .zip(pids.chain(std::iter::repeat(None)))
        .map(|(u, pid)| Instance::new(u.clone(), Http::new(u, cfg.timeout), pid))
        .collect();
    // Demo tokens live in the store: one sign-in serves every instance.
    let (phones, phone_token_alg) = phones(&instances[0].http, &cfg).await?;
    let limit = match &phones {
        Phones::PerLogin(v) => Some(cfg.max_logins.unwrap_or(u64::MAX).min(v.len() as u64)),
        Phones::Shared(_) => cfg.max_logins,
    };

    let mut redis_conn = match &redis_target {
        Some(t) => Some(RedisConn::connect(t).await?),
        None => None,
    };
    let monitor = match (&redis_target, cfg.redis_monitor) {
        (Some(t), true) => Some(Monitor::start(t).await?),
        _ => None,
    };
    let redis_pid = match redis_conn.as_mut() {
        // Readable only when Redis runs on this machine (it must: loopback).
        Some(c) => c
            .server_pid()
            .await
            .ok()
            .filter(|p| sys::cpu_seconds(*p).is_ok()),
        None => None,
    };
    let healthz = match cfg.healthz_baseline {
        0 => None,
        n => Some(
            baseline::healthz(
                &instances,
                n,
                cfg.concurrency,
                cfg.rate.map(|r| r * baseline::REQUESTS_PER_LOGIN),
            )
            .await,
        ),
    };
    let server_rss_before = cfg.server_pid.map(sys::rss_of).transpose()?;
    let mut inst_before = Vec::with_capacity(instances.len());
    for i in &instances {
        inst_before.push(instances::before(i).await);
    }
    let redis_before = match redis_conn.as_mut() {
        Some(c) => Some((c.commandstats().await?, c.info("stats").await?)),
        None => None,
    };
    let me = std::process::id();
    let cpu_of = |pid: Option<u32>| pid.and_then(|p| sys::cpu_seconds(p).ok());
    let cpu_before = (cpu_of(redis_pid), cpu_of(Some(me)));
    let busy_before = sys::machine_busy_seconds().ok();

    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        instances,
        phones,
        limit,
        start,
        deadline: start + cfg.duration,
        tickets: AtomicU64::new(0),
        cfg: cfg.clone(),
    });
    let mut workers = Vec::with_capacity(cfg.concurrency);
    for i in 0..cfg.concurrency {
        let ctx = ctx.clone();
        workers.push(tokio::spawn(worker(ctx, i as u64)));
    }
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await?);
    }
    let elapsed = start.elapsed();
    let inst_cpu_after: Vec<Option<f64>> = ctx.instances.iter().map(instances::cpu_after).collect();
    let cpu_after = (cpu_of(redis_pid), cpu_of(Some(me)));
    let busy_after = sys::machine_busy_seconds().ok();

    let redis_after = match redis_conn.as_mut() {
        Some(c) => Some((c.commandstats().await?, c.info("stats").await?)),
        None => None,
    };
    let server_rss_after = cfg.server_pid.map(sys::rss_of).transpose()?;
    let mut instance_reports = Vec::with_capacity(ctx.instances.len());
    for ((i, b), cpu) in ctx.instances.iter().zip(inst_before).zip(inst_cpu_after) {
        instance_reports.push(instances::report(i, b, cpu, tally.completed).await);
    }
    let hints = instances::hint_totals(&instance_reports, tally.completed);
    let redis_monitor = match monitor {
        Some(m) => Some(m.finish(tally.completed).await),
        None => None,
    };
    let (redis, redis_pubsub) = match (redis_before, redis_after) {
        (Some((bc, bs)), Some((ac, as_))) => {
            let cmds = commandstats_delta(&bc, &ac, tally.completed);
            let pubsub = pubsub_delta(&bs, &as_, &cmds, tally.completed);
            (Some(cmds), Some(pubsub))
        }
        _ => (None, None),
    };

    let mut steps = BTreeMap::new();
    for (name, h) in [
        ("create", &tally.create),
        ("events", &tally.events),
        ("scan", &tally.scan),
        ("approve", &tally.approve),
        ("wake", &tally.wake),
        ("redeem", &tally.redeem),
        ("full", &tally.full),
    ] {
        if !h.is_empty() {
            steps.insert(name.to_string(), h.summary());
        }
    }
    let secs = elapsed.as_secs_f64();
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some((b - a).max(0.0)),
        _ => None,
    };
    let per_login = |x: Option<f64>| {
        x.filter(|_| tally.completed > 0)
            .map(|s| s * 1e6 / tally.completed as f64)
    };
    // The server's CPU: every instance's, when every one was measured.
    let server_s = instance_reports
        .iter()
        .map(|r| r.cpu_s)
        .sum::<Option<f64>>();
    let redis_s = diff(cpu_before.0, cpu_after.0);
    let bench_s = diff(cpu_before.1, cpu_after.1);
    let machine = sys::machine();
    let machine_busy_s = diff(busy_before, busy_after);
    let other_s = machine_busy_s.map(|m| {
        (m - server_s.unwrap_or(0.0) - redis_s.unwrap_or(0.0) - bench_s.unwrap_or(0.0)).max(0.0)
    });
    let phone_token_count = ctx.phones.count();
    let phone_tokens_exhausted = matches!(ctx.phones, Phones::PerLogin(_))
        && cfg.max_logins.is_none_or(|m| m > phone_token_count)
        && tally.completed + tally.failed >= phone_token_count;
    let cpu = Cpu {
        machine_busy_s,
        other_s,
        capacity_s: secs * machine.nproc as f64,
        server_s,
        redis_s,
        bench_s: bench_s.unwrap_or(0.0),
        server_us_per_login: per_login(server_s),
        redis_us_per_login: per_login(redis_s),
        bench_us_per_login: per_login(bench_s).unwrap_or(0.0),
    };
    let login_in_healthz = match (
        cpu.server_us_per_login,
        healthz.as_ref().and_then(|h| h.server_us_per_request),
    ) {
        (Some(l), Some(h)) if h > 0.0 => Some(l / h),
        _ => None,
    };
    Ok(RunReport {
        url,
        wait: cfg.wait,
        binding: cfg.binding,
        concurrency: cfg.concurrency,
        duration_s: cfg.duration.as_secs_f64(),
        max_logins: cfg.max_logins,
        rate: cfg.rate,
        think_ms: cfg.think.as_millis() as u64,
        wait_elsewhere: cfg.wait_elsewhere,
        phone_auth: cfg.phone_auth,
        phone_tokens: (cfg.phone_auth == PhoneAuth::Jwt).then_some(cfg.phone_tokens),
        phone_token_count,
        phone_token_alg,
        phone_tokens_exhausted,
        elapsed_s: secs,
        started: tally.completed + tally.failed,
        completed: tally.completed,
        failed: tally.failed,
        logins_per_s: if secs > 0.0 {
            tally.completed as f64 / secs
        } else {
            0.0
        },
        window_logins_per_s: {
            // A run cut short by max_logins ends before its deadline.
            let window = cfg.duration.as_secs_f64().min(secs);
            if window > 0.0 {
                tally.completed_in_window as f64 / window
            } else {
                0.0
            }
        },
        errors: tally.errors,
        steps,
        wake_early: tally.wake_early,
        status_requests_per_login: if tally.completed > 0 {
            tally.status_requests as f64 / tally.completed as f64
        } else {
            0.0
        },
        redis,
        redis_monitor,
        server_rss_before,
        server_rss_after,
        cpu,
        urls,
        instances: instance_reports,
        hints,
        redis_pubsub,
        login_in_healthz,
        healthz,
        machine,
    })
}

/// Takes the next login ticket, sleeping for the pacer; `None` = stop.
async fn next_ticket(ctx: &Ctx) -> Option<u64> {
    if Instant::now() >= ctx.deadline {
        return None;
    }
    let k = ctx.tickets.fetch_add(1, Ordering::Relaxed);
    if ctx.limit.is_some_and(|max| k >= max) {
        return None;
    }
    if let Some(rate) = ctx.cfg.rate.filter(|r| *r > 0.0) {
        let at = ctx.start + Duration::from_secs_f64(k as f64 / rate);
        if at >= ctx.deadline {
            return None;
        }
        tokio::time::sleep_until(at.into()).await;
    }
    Some(k)
}

async fn worker(ctx: Arc<Ctx>, seed: u64) -> Tally {
    let mut t = Tally::default();
    let mut rng =
        Rng(0x9E37_79B9_7F4A_7C15 ^ (seed.wrapping_add(1)).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    while let Some(k) = next_ticket(&ctx).await {
        let (b, w, p) = instances::assign(k, ctx.instances.len(), ctx.cfg.wait_elsewhere);
        let (browser, phone) = (&ctx.instances[b], &ctx.instances[p]);
        browser.browser_logins.fetch_add(1, Ordering::Relaxed);
        phone.phone_logins.fetch_add(1, Ordering::Relaxed);
        let on = On {
            browser: &browser.http,
            wait: &ctx.instances[w].http,
            phone: &phone.http,
        };
        match one_login(&ctx, on, &mut t, &mut rng, ctx.phones.for_login(k)).await {
            Ok(()) => {
                t.completed += 1;
                if Instant::now() <= ctx.deadline {
                    t.completed_in_window += 1;
                }
            }
            Err((step, f)) => {
                t.failed += 1;
                t.error(step, &f);
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

/// A tiny xorshift generator for poll phases (no need for a CSPRNG).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n.max(1)
    }
}

/// The instances one login's browser and phone talk to.
#[derive(Clone, Copy)]
struct On<'a> {
    browser: &'a Http,
    /// Where the browser waits (SSE or status); the creator's unless
    /// `--wait-elsewhere`.
    wait: &'a Http,
    phone: &'a Http,
}

/// The phone: scan, then approve. Returns both latencies and the moment
/// approve's answer was read.
async fn phone(
    ctx: &Ctx,
    http: &Http,
    id: &str,
    auth: &Auth,
) -> StepResult<(Duration, Duration, Instant)> {
    if !ctx.cfg.think.is_zero() {
        tokio::time::sleep(ctx.cfg.think).await;
    }
    let t = Instant::now();
    http.expect(
        StatusCode::OK,
        Method::POST,
        &format!("/v1/mobile/logins/{id}/scan"),
        auth,
        None,
    )
    .await
    .step("scan")?;
    let scan = t.elapsed();
    let t = Instant::now();
    http.expect(
        StatusCode::OK,
        Method::POST,
        &format!("/v1/mobile/logins/{id}/approve"),
        auth,
        Some(Bytes::from_static(b"{}")),
    )
    .await
    .step("approve")?;
    let at = Instant::now();
    Ok((scan, at - t, at))
}

/// One status request; returns the state.
async fn status(
    http: &Http,
    path: &str,
    auth: &Auth,
    timeout: Duration,
) -> Result<String, Failure> {
    let (st, _, body) = http
        .call_within(timeout, Method::GET, path, auth, None)
        .await?;
    check_status(StatusCode::OK, st, &body)?;
    let s: StatusBody = serde_json::from_slice(&body).map_err(|_| Failure::Decode("status"))?;
    Ok(s.state)
}

fn unexpected(what: &str, state: &str) -> Failure {
    Failure::Protocol(format!("unexpected {what} {state}"))
}

async fn one_login(
    ctx: &Ctx,
    on: On<'_>,
    t: &mut Tally,
    rng: &mut Rng,
    phone_auth: &Auth,
) -> StepResult<()> {
    let http = on.browser;
    let t0 = Instant::now();
    let (id, auth) = create_login(http, ctx.cfg.binding).await.step("create")?;
    t.create.record(t0.elapsed());
    let base = format!("/v1/logins/{id}");
    let wait_budget = ctx.cfg.think + ctx.cfg.timeout * 2;

    let mut sse = None;
    let (seen_at, (scan, approve, approved_at)) = match ctx.cfg.wait {
        WaitMode::Sse => {
            let te = Instant::now();
            let resp = on
                .wait
                .open(Method::GET, &format!("{base}/events"), &auth, None)
                .await
                .step("events")?;
            if resp.status() != StatusCode::OK {
                return Err((
                    "events",
                    Failure::Status(resp.status().as_u16(), String::new()),
                ));
            }
            let mut reader = SseReader::new(resp.into_body());
            match tokio::time::timeout(http.timeout(), reader.next()).await {
                Err(_) => return Err(("events", Failure::Timeout)),
                Ok(Err(f)) => return Err(("events", f)),
                Ok(Ok(None)) => return Err(("events", Failure::Protocol("stream ended".into()))),
                Ok(Ok(Some(_first))) => {}
            }
            t.events.record(te.elapsed());
            let browser = async {
                let wait = async {
                    loop {
                        match reader.next().await? {
                            None => return Err(Failure::Protocol("stream ended".into())),
                            Some(ev) => match ev.name.as_str() {
                                "approved" => return Ok(Instant::now()),
                                "pending" | "scanned" | "state" => {}
                                other => return Err(unexpected("event", other)),
                            },
                        }
                    }
                };
                tokio::time::timeout(wait_budget, wait)
                    .await
                    .unwrap_or(Err(Failure::Timeout))
                    .step("wake")
            };
            let r = tokio::try_join!(browser, phone(ctx, on.phone, &id, phone_auth))?;
            sse = Some(reader);
            r
        }
        WaitMode::Longpoll => {
            let w = ctx.cfg.longpoll_wait;
            let per_request = Duration::from_secs(w) + http.timeout();
            let mut requests = 0u64;
            let browser = async {
                let mut since = String::from("pending");
                let wait = async {
                    loop {
                        let st = status(
                            on.wait,
                            &format!("{base}?wait={w}&since={since}"),
                            &auth,
                            per_request,
                        )
                        .await?;
                        requests += 1;
                        match st.as_str() {
                            "approved" => return Ok(Instant::now()),
                            "pending" | "scanned" => since = st,
                            other => return Err(unexpected("state", other)),
                        }
                    }
                };
                tokio::time::timeout(wait_budget, wait)
                    .await
                    .unwrap_or(Err(Failure::Timeout))
                    .step("wake")
            };
            let r = tokio::try_join!(browser, phone(ctx, on.phone, &id, phone_auth))?;
            t.status_requests += requests;
            r
        }
        WaitMode::Poll1s => {
            let phase = Duration::from_millis(rng.below(1000));
            let mut requests = 0u64;
            let browser = async {
                let wait = async {
                    tokio::time::sleep(phase).await;
                    let mut next = tokio::time::Instant::now();
                    loop {
                        let st = status(on.wait, &base, &auth, http.timeout()).await?;
                        requests += 1;
                        match st.as_str() {
                            "approved" => return Ok(Instant::now()),
                            "pending" | "scanned" => {}
                            other => return Err(unexpected("state", other)),
                        }
                        next += Duration::from_secs(1);
                        tokio::time::sleep_until(next).await;
                    }
                };
                tokio::time::timeout(wait_budget + Duration::from_secs(2), wait)
                    .await
                    .unwrap_or(Err(Failure::Timeout))
                    .step("wake")
            };
            let r = tokio::try_join!(browser, phone(ctx, on.phone, &id, phone_auth))?;
            t.status_requests += requests;
            r
        }
    };
    t.scan.record(scan);
    t.approve.record(approve);
    if seen_at < approved_at {
        t.wake_early += 1;
    }
    t.wake
        .record(seen_at.saturating_duration_since(approved_at));

    let tr = Instant::now();
    let (_, body) = http
        .expect(
            StatusCode::OK,
            Method::POST,
            &format!("{base}/redeem"),
            &auth,
            None,
        )
        .await
        .step("redeem")?;
    let r: Redeemed = serde_json::from_slice(&body)
        .map_err(|_| Failure::Decode("redeem"))
        .step("redeem")?;
    if r.token.is_empty() {
        return Err(("redeem", Failure::Decode("empty token")));
    }
    let done = Instant::now();
    t.redeem.record(done - tr);
    t.full.record(done - t0);

    if let Some(mut reader) = sse {
        // The stream reports `consumed` and ends; reading it to the end
        // checks that and returns the connection to the pool.
        let drain = async {
            let mut consumed = false;
            while let Some(ev) = reader.next().await? {
                consumed |= ev.name == "consumed";
            }
            if consumed {
                Ok(())
            } else {
                Err(Failure::Protocol("stream ended without consumed".into()))
            }
        };
        let res = tokio::time::timeout(http.timeout(), drain)
            .await
            .unwrap_or(Err(Failure::Timeout));
        if let Err(f) = res {
            // The login itself completed; the stream's ending is reported.
            t.error("sse-end", &f);
        }
    }
    Ok(())
}

/// Human-readable report.
pub fn render(r: &RunReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "qrlogin-bench run: {} wait={} binding={:?} concurrency={}{}{}",
        r.url,
        r.wait.as_str(),
        r.binding,
        r.concurrency,
        r.rate.map(|x| format!(" rate={x}/s")).unwrap_or_default(),
        if r.think_ms > 0 {
            format!(" think={}ms", r.think_ms)
        } else {
            String::new()
        }
    );
    match (r.phone_auth, r.phone_tokens) {
        (PhoneAuth::Jwt, Some(spread)) => {
            let _ = writeln!(
                s,
                "phones: {} JWT access tokens ({}), {}{}",
                r.phone_token_count,
                r.phone_token_alg.as_deref().unwrap_or("?"),
                match spread {
                    PhoneTokens::PerLogin => "a distinct one per login",
                    PhoneTokens::Shared => "one shared by all logins",
                },
                if r.phone_tokens_exhausted {
                    "; the run stopped early: every token was used (raise --token-pool)"
                } else {
                    ""
                }
            );
        }
        _ => {
            let _ = writeln!(s, "phones: the demo user's token, shared");
        }
    }
    let _ = writeln!(
        s,
        "machine: {} cores, {}; {}",
        r.machine.nproc, r.machine.cpu_model, r.machine.date
    );
    let _ = writeln!(
        s,
        "logins: {} completed, {} failed in {:.2} s → {:.0} logins/s ({:.0}/s within the {:.0} s window)",
        r.completed, r.failed, r.elapsed_s, r.logins_per_s, r.window_logins_per_s, r.duration_s
    );
    if r.errors.is_empty() {
        let _ = writeln!(s, "errors: none");
    } else {
        let _ = writeln!(s, "errors:");
        for (k, v) in &r.errors {
            let _ = writeln!(s, "  {v:>8}  {k}");
        }
    }
    let _ = writeln!(
        s,
        "{:<8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}   (ms)",
        "step", "count", "p50", "p99", "p99.9", "max", "mean"
    );
    for name in [
        "create", "events", "scan", "approve", "wake", "redeem", "full",
    ] {
        if let Some(x) = r.steps.get(name) {
            let _ = writeln!(
                s,
                "{:<8} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name, x.count, x.p50_ms, x.p99_ms, x.p999_ms, x.max_ms, x.mean_ms
            );
        }
    }
    if r.wake_early > 0 {
        let _ = writeln!(
            s,
            "wake: {} browsers saw `approved` before approve's answer arrived (counted as 0 ms)",
            r.wake_early
        );
    }
    if r.wait != WaitMode::Sse {
        let _ = writeln!(
            s,
            "status requests per login: {:.2}",
            r.status_requests_per_login
        );
    }
    if let Some(x) = &r.redis {
        let _ = writeln!(
            s,
            "redis (INFO commandstats, script-internal calls included): {} calls, {:.2} per login",
            x.total_calls, x.per_login
        );
        for (k, v) in &x.commands {
            let _ = writeln!(s, "  {:<20} {:>10} {:>8.2}/login", k, v.calls, v.per_login);
        }
    }
    if let Some(m) = &r.redis_monitor {
        let _ = writeln!(
            s,
            "redis (MONITOR): {:.2} client commands per login (round trips, fewer if pipelined), {:.2} script-internal",
            m.client_per_login, m.script_per_login
        );
        for (k, v) in &m.client {
            let _ = writeln!(s, "  client {:<13} {:>10}", k, v);
        }
        for (k, v) in &m.script {
            let _ = writeln!(s, "  lua    {:<13} {:>10}", k, v);
        }
    }
    let c = &r.cpu;
    let part = |name: &str, s: Option<f64>, per: Option<f64>| match (s, per) {
        (Some(s), Some(p)) => format!("{name} {s:.2} s ({p:.0} µs/login)"),
        (Some(s), None) => format!("{name} {s:.2} s"),
        _ => String::new(),
    };
    let parts: Vec<String> = [
        part("server", c.server_s, c.server_us_per_login),
        part("redis", c.redis_s, c.redis_us_per_login),
        part("bench", Some(c.bench_s), Some(c.bench_us_per_login)),
    ]
    .into_iter()
    .filter(|p| !p.is_empty())
    .collect();
    let _ = writeln!(s, "CPU used: {}", parts.join(", "));
    if let Some(h) = &r.healthz {
        let _ = writeln!(
            s,
            "baseline: {} GET /healthz ({} failed) at {:.0}/s, server {}; a login = {}",
            h.requests,
            h.failed,
            h.per_s,
            h.server_us_per_request
                .map(|u| format!("{u:.1} µs each"))
                .unwrap_or_else(|| "CPU unknown (give --server-pid)".into()),
            r.login_in_healthz
                .map(|x| format!("{x:.1} trivial requests' CPU"))
                .unwrap_or_else(|| "?".into())
        );
    }
    if let (Some(busy), Some(other)) = (c.machine_busy_s, c.other_s) {
        let _ = writeln!(
            s,
            "machine: {busy:.2} of {:.2} CPU-seconds busy; {other:.2} s by other processes",
            c.capacity_s
        );
    }
    if let (Some(b), Some(a)) = (&r.server_rss_before, &r.server_rss_after) {
        let _ = writeln!(
            s,
            "server RSS: {} KiB before, {} KiB after (peak {} KiB)",
            b.rss_kb, a.rss_kb, a.hwm_kb
        );
    }
    if let Some(h) = &r.hints {
        let _ = writeln!(
            s,
            "hint messages received: {} ({:.2} per login) by {} instance(s); {} ({:.2} per login) for logins nobody waited on there",
            h.messages, h.per_login, h.instances_reporting, h.unwatched, h.unwatched_per_login
        );
    }
    if r.instances.len() > 1 {
        let _ = writeln!(
            s,
            "{:<28} {:>8} {:>8} {:>9} {:>10} {:>11} {:>12}",
            "instance",
            "browser",
            "phone",
            "requests",
            "hints/login",
            "unwatched/l",
            "CPU µs/login"
        );
        let opt = |x: Option<f64>, nd: usize| x.map_or("–".to_string(), |v| format!("{v:.nd$}"));
        for i in &r.instances {
            let _ = writeln!(
                s,
                "{:<28} {:>8} {:>8} {:>9} {:>10} {:>11} {:>12}",
                i.url,
                i.browser_logins,
                i.phone_logins,
                i.requests
                    .as_ref()
                    .map_or("–".to_string(), |m| m.values().sum::<u64>().to_string()),
                opt(i.hint_messages_per_login, 2),
                opt(i.hint_messages_unwatched_per_login, 2),
                opt(i.cpu_us_per_login, 0),
            );
            if let Some(e) = &i.metrics_error {
                let _ = writeln!(s, "  (/metrics: {e})");
            }
        }
    }
    if let Some(p) = &r.redis_pubsub {
        let _ = writeln!(
            s,
            "redis pub/sub: {:.2} publishes per login ({} PUBLISH, {} SPUBLISH); {:.0} bytes out, {:.0} bytes in per login; {} channels, {} shard channels",
            p.publishes_per_login,
            p.publish_calls,
            p.spublish_calls,
            p.net_output_bytes_per_login,
            p.net_input_bytes_per_login,
            p.channels.map_or("?".to_string(), |c| c.to_string()),
            p.shard_channels.map_or("?".to_string(), |c| c.to_string()),
        );
    }
    s
}
