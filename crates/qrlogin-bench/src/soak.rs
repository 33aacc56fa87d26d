//! `qrlogin-bench soak`: a long run at a fixed rate that checks, while the
//! store is restarted under it, that nothing goes wrong *except* where it
//! may.
//!
//! The logins are those of `run` (create, wait on SSE, scan, approve, wake,
//! redeem; browser on instance `k mod N`, phone on `k + 1 mod N`), done as
//! a careful client does them:
//!
//! * a step answered `503` (store unavailable) is sent again after
//!   [`SoakConfig::retry_pause`], for at most [`SoakConfig::retry_for`], so
//!   a login in flight survives a short Redis restart when it can;
//! * a retried step may find its work done (`409 login is approved` after
//!   a retried approve: the first attempt took effect, its answer was
//!   lost); that is counted as `found_done`, not as an error, and the login
//!   goes on;
//! * an SSE stream the server ends before the final event (it does when
//!   the store fails under a waiting stream) is opened again, as an
//!   `EventSource` reconnects.
//!
//! And it checks that no login is approved or redeemed twice: after every
//! successful approve the phone approves again, after every successful
//! redeem the browser redeems again (every login, not a sample); a second
//! success is counted (`double_approve`, `double_redeem`), the expected
//! refusal (`409` or `404`) is not.
//!
//! Everything is also counted per second ([`crate::timeline`]), the
//! instances' RSS is sampled every [`SoakConfig::rss_every`], and a probe
//! records when Redis went away and when logins succeeded again
//! ([`crate::outage`]), so `scripts/soak_check.py` can tell errors inside
//! the restart window from errors outside it.

use crate::http::{check_status, Auth, Failure, Http, SseReader};
use crate::instances;
use crate::outage::{self, Outage, Outages};
use crate::redis_stats::parse_redis_url;
use crate::run::sign_in;
use crate::stats::{Hist, Summary};
use crate::sys::{self, Machine};
use crate::timeline::{RssSample, Second, Timeline};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Base URLs of the instances (loopback only), sharing one store.
    pub urls: Vec<String>,
    /// Their processes, in the same order (RSS over time); may be empty.
    pub server_pids: Vec<u32>,
    /// The store, for the outage probe (loopback or unix socket only).
    pub redis_url: String,
    /// Logins started per second, in total (open loop, bounded by
    /// `concurrency`).
    pub rate: f64,
    /// Virtual browsers; a restart holds them all in retries, so this is
    /// also how many logins can wait out a restart.
    pub concurrency: usize,
    /// No login is started after this long.
    pub duration: Duration,
    /// Timeout of each request.
    pub timeout: Duration,
    /// Pause before a step answered 503 is sent again.
    pub retry_pause: Duration,
    /// A step is not retried once this long has passed since its first
    /// attempt (its last 503 is then an error).
    pub retry_for: Duration,
    /// How often the instances' RSS is sampled.
    pub rss_every: Duration,
    pub username: String,
    pub password: String,
}

/// What a soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub urls: Vec<String>,
    pub server_pids: Vec<u32>,
    pub rate: f64,
    pub concurrency: usize,
    pub duration_s: f64,
    pub retry_pause_ms: u64,
    pub retry_for_ms: u64,
    pub rss_every_s: f64,
    /// The run's start, milliseconds since the Unix epoch: every `*_ms` and
    /// `t` below is relative to it.
    pub start_unix_ms: u64,
    pub elapsed_s: f64,
    pub started: u64,
    pub completed: u64,
    /// Logins that ended with an error (one of `errors`).
    pub failed: u64,
    /// Logins whose retried redeem found them already redeemed: the
    /// browser has no token (its answer was lost) but nothing was wrong.
    pub ended_found_done: u64,
    /// `step: kind` → count, over the whole run (per second in `timeline`).
    pub errors: BTreeMap<String, u64>,
    /// Step → 503 answers retried.
    pub retried_503: BTreeMap<String, u64>,
    /// Step → retried steps that found their work done.
    pub found_done: BTreeMap<String, u64>,
    pub sse_ended_early: u64,
    /// Second approves sent / that succeeded (must be 0).
    pub approve_again_checked: u64,
    pub double_approve: u64,
    /// Second redeems sent / that succeeded (must be 0).
    pub redeem_again_checked: u64,
    pub double_redeem: u64,
    /// Create to redeem answered, retries included.
    pub full: Summary,
    /// Every second of the run.
    pub timeline: Vec<Second>,
    /// The instances' RSS, every `rss_every_s`.
    pub rss: Vec<RssSample>,
    /// Redis outages the probe saw (`outage::PROBE_EVERY` resolution).
    pub outages: Vec<Outage>,
    pub probe_every_ms: u64,
    pub machine: Machine,
}

/// One worker's (or one side of one login's) counts.
#[derive(Default)]
struct Tally {
    tl: Timeline,
    full: Hist,
    completed: u64,
    failed: u64,
    ended_found_done: u64,
    approve_again: u64,
    double_approve: u64,
    redeem_again: u64,
    double_redeem: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.tl.merge(&o.tl);
        self.full.add(&o.full);
        self.completed += o.completed;
        self.failed += o.failed;
        self.ended_found_done += o.ended_found_done;
        self.approve_again += o.approve_again;
        self.double_approve += o.double_approve;
        self.redeem_again += o.redeem_again;
        self.double_redeem += o.double_redeem;
    }
}

struct Ctx {
    cfg: SoakConfig,
    http: Vec<Http>,
    phone: Auth,
    start: Instant,
    deadline: Instant,
    tickets: AtomicU64,
    outages: Arc<Outages>,
}

impl Ctx {
    /// The current second of the run (its timeline bucket).
    fn now_s(&self) -> u64 {
        self.start.elapsed().as_secs()
    }
}

/// How a step ended when it did not fail.
enum Answer {
    Done(Bytes),
    /// A retry was refused because the step had already taken effect.
    FoundDone,
}

/// A failed step: its name and what went wrong.
type StepResult<T> = Result<T, (&'static str, Failure)>;

/// One HTTP step of a login.
struct Step<'a> {
    name: &'static str,
    http: &'a Http,
    method: Method,
    path: String,
    auth: &'a Auth,
    body: Option<Bytes>,
    want: StatusCode,
    /// After a retry, a `409` whose message is one of these means the
    /// step's work is done (the message is `login is <state>`).
    done_when: &'static [&'static str],
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

/// Sends a step, retrying 503s (see the module doc).
async fn step(ctx: &Ctx, t: &mut Tally, s: Step<'_>) -> StepResult<Answer> {
    let first = Instant::now();
    let mut retried = false;
    loop {
        let sent = Instant::now();
        let (status, _, body) = s
            .http
            .call_within(
                ctx.cfg.timeout,
                s.method.clone(),
                &s.path,
                s.auth,
                s.body.clone(),
            )
            .await
            .map_err(|f| (s.name, f))?;
        if status == s.want {
            ctx.outages.success(sent);
            return Ok(Answer::Done(body));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE
            && first.elapsed() + ctx.cfg.retry_pause < ctx.cfg.retry_for
        {
            *t.tl
                .at(ctx.now_s())
                .retried_503
                .entry(s.name.into())
                .or_insert(0) += 1;
            retried = true;
            tokio::time::sleep(ctx.cfg.retry_pause).await;
            continue;
        }
        if status == StatusCode::CONFLICT && retried {
            let msg = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.message)
                .unwrap_or_default();
            if s.done_when.contains(&msg.as_str()) {
                ctx.outages.success(sent);
                *t.tl
                    .at(ctx.now_s())
                    .found_done
                    .entry(s.name.into())
                    .or_insert(0) += 1;
                return Ok(Answer::FoundDone);
            }
        }
        // `status != want`, so check_status fails; the fallback is for form.
        let f = check_status(s.want, status, &body)
            .err()
            .unwrap_or(Failure::Status(status.as_u16(), String::new()));
        return Err((s.name, f));
    }
}

/// Opens the login's SSE stream (retrying 503s) and reads its first event
/// (the current state).
async fn open_events(
    ctx: &Ctx,
    t: &mut Tally,
    http: &Http,
    path: &str,
    auth: &Auth,
) -> StepResult<(SseReader, String)> {
    let first = Instant::now();
    loop {
        let sent = Instant::now();
        let resp = http
            .open(Method::GET, path, auth, None)
            .await
            .map_err(|f| ("events", f))?;
        let status = resp.status();
        if status == StatusCode::SERVICE_UNAVAILABLE
            && first.elapsed() + ctx.cfg.retry_pause < ctx.cfg.retry_for
        {
            drop(resp);
            *t.tl
                .at(ctx.now_s())
                .retried_503
                .entry("events".into())
                .or_insert(0) += 1;
            tokio::time::sleep(ctx.cfg.retry_pause).await;
            continue;
        }
        if status != StatusCode::OK {
            return Err(("events", Failure::Status(status.as_u16(), String::new())));
        }
        let mut reader = SseReader::new(resp.into_body());
        return match tokio::time::timeout(ctx.cfg.timeout, reader.next()).await {
            Err(_) => Err(("events", Failure::Timeout)),
            Ok(Err(f)) => Err(("events", f)),
            Ok(Ok(None)) => Err(("events", Failure::Protocol("stream ended".into()))),
            Ok(Ok(Some(ev))) => {
                ctx.outages.success(sent);
                Ok((reader, ev.name))
            }
        };
    }
}

/// The browser's wait: until an `approved` event, reconnecting when the
/// server ends the stream early. Returns the stream (to read to its end
/// after the redeem).
async fn wait_approved(
    ctx: &Ctx,
    t: &mut Tally,
    http: &Http,
    path: &str,
    auth: &Auth,
) -> StepResult<SseReader> {
    let budget = ctx.cfg.retry_for + ctx.cfg.timeout * 2;
    let until = tokio::time::Instant::now() + budget;
    let (mut reader, mut name) = open_events(ctx, t, http, path, auth).await?;
    loop {
        match name.as_str() {
            "approved" => return Ok(reader),
            "pending" | "scanned" | "state" => {}
            other => {
                return Err((
                    "wake",
                    Failure::Protocol(format!("unexpected event {other}")),
                ))
            }
        }
        match tokio::time::timeout_at(until, reader.next()).await {
            Err(_) => return Err(("wake", Failure::Timeout)),
            Ok(Ok(Some(ev))) => name = ev.name,
            Ok(Ok(None) | Err(_)) => {
                t.tl.at(ctx.now_s()).sse_ended_early += 1;
                (reader, name) = open_events(ctx, t, http, path, auth).await?;
            }
        }
    }
}

#[derive(Deserialize)]
struct Created {
    login_id: String,
    browser_secret: String,
}

/// The phone: scan, approve, and approve again (which must be refused).
async fn phone(ctx: &Ctx, t: &mut Tally, http: &Http, id: &str) -> StepResult<()> {
    let auth = &ctx.phone;
    step(
        ctx,
        t,
        Step {
            name: "scan",
            http,
            method: Method::POST,
            path: format!("/v1/mobile/logins/{id}/scan"),
            auth,
            body: None,
            want: StatusCode::OK,
            done_when: &["login is scanned", "login is approved"],
        },
    )
    .await?;
    let approve = |name| Step {
        name,
        http,
        method: Method::POST,
        path: format!("/v1/mobile/logins/{id}/approve"),
        auth,
        body: Some(Bytes::from_static(b"{}")),
        want: StatusCode::OK,
        done_when: &["login is approved"],
    };
    step(ctx, t, approve("approve")).await?;
    t.approve_again += 1;
    if again(ctx, t, approve("approve-again")).await? {
        t.double_approve += 1;
    }
    Ok(())
}

/// Sends a step that must be refused (`409` or `404`): `Ok(true)` when it
/// succeeded instead.
async fn again(ctx: &Ctx, t: &mut Tally, s: Step<'_>) -> StepResult<bool> {
    let name = s.name;
    match step(ctx, t, s).await {
        Ok(Answer::Done(_)) => Ok(true),
        Ok(Answer::FoundDone) => Ok(false),
        Err((_, Failure::Status(409 | 404, _))) => Ok(false),
        Err((_, f)) => Err((name, f)),
    }
}

/// One login; `Ok(true)` when it completed, `Ok(false)` when its retried
/// redeem found it already redeemed.
async fn one_login(ctx: &Ctx, t: &mut Tally, k: u64) -> StepResult<bool> {
    let (b, _, p) = instances::assign(k, ctx.http.len(), false);
    let (http, phone_http) = (&ctx.http[b], &ctx.http[p]);
    let t0 = Instant::now();
    let created = match step(
        ctx,
        t,
        Step {
            name: "create",
            http,
            method: Method::POST,
            path: "/v1/logins".into(),
            auth: &Auth::None,
            body: Some(Bytes::from_static(br#"{"binding":"header"}"#)),
            want: StatusCode::CREATED,
            done_when: &[],
        },
    )
    .await?
    {
        Answer::Done(b) => b,
        Answer::FoundDone => return Err(("create", Failure::Decode("create found done"))),
    };
    let c: Created =
        serde_json::from_slice(&created).map_err(|_| ("create", Failure::Decode("create")))?;
    let auth = Auth::bearer(&c.browser_secret).map_err(|f| ("create", f))?;
    let id = c.login_id;
    let base = format!("/v1/logins/{id}");
    let events = format!("{base}/events");

    // The browser waits while the phone scans and approves (concurrently,
    // as in `run`); each side counts in its own tally, merged after.
    let mut tp = Tally::default();
    let joined = tokio::try_join!(
        wait_approved(ctx, t, http, &events, &auth),
        phone(ctx, &mut tp, phone_http, &id)
    );
    t.merge(tp);
    let (mut reader, ()) = joined?;

    let redeem = |name| Step {
        name,
        http,
        method: Method::POST,
        path: format!("{base}/redeem"),
        auth: &auth,
        body: None,
        want: StatusCode::OK,
        done_when: &["login is consumed"],
    };
    let completed = match step(ctx, t, redeem("redeem")).await? {
        Answer::Done(_) => {
            t.full.record(t0.elapsed());
            // The stream reports `consumed` and ends; an early end is the
            // store failing under it, counted like any other.
            let drain = async {
                let mut consumed = false;
                while let Some(ev) = reader.next().await? {
                    consumed |= ev.name == "consumed";
                }
                Ok::<bool, Failure>(consumed)
            };
            match tokio::time::timeout(ctx.cfg.timeout, drain).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false) | Err(_)) => t.tl.at(ctx.now_s()).sse_ended_early += 1,
                Err(_) => return Err(("sse-end", Failure::Timeout)),
            }
            true
        }
        Answer::FoundDone => false,
    };
    t.redeem_again += 1;
    if again(ctx, t, redeem("redeem-again")).await? {
        t.double_redeem += 1;
    }
    Ok(completed)
}

/// Takes the next login ticket, sleeping for the pacer; `None` = stop.
async fn next_ticket(ctx: &Ctx) -> Option<u64> {
    let k = ctx.tickets.fetch_add(1, Ordering::Relaxed);
    let at = ctx.start + Duration::from_secs_f64(k as f64 / ctx.cfg.rate);
    if at >= ctx.deadline {
        return None;
    }
    tokio::time::sleep_until(at.into()).await;
    Some(k)
}

async fn worker(ctx: Arc<Ctx>) -> Tally {
    let mut t = Tally::default();
    while let Some(k) = next_ticket(&ctx).await {
        t.tl.at(ctx.now_s()).started += 1;
        match one_login(&ctx, &mut t, k).await {
            Ok(true) => {
                t.completed += 1;
                t.tl.at(ctx.now_s()).completed += 1;
            }
            Ok(false) => t.ended_found_done += 1,
            Err((step, f)) => {
                t.failed += 1;
                *t.tl
                    .at(ctx.now_s())
                    .errors
                    .entry(format!("{step}: {f}"))
                    .or_insert(0) += 1;
            }
        }
    }
    t
}

/// Samples every pid's RSS until `stop` is set.
async fn sample_rss(
    pids: Vec<u32>,
    every: Duration,
    start: Instant,
    out: Arc<Mutex<Vec<RssSample>>>,
    stop: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sample = RssSample {
            t_s: start.elapsed().as_secs_f64(),
            rss_kb: pids
                .iter()
                .map(|p| sys::rss_of(*p).ok().map(|r| r.rss_kb))
                .collect(),
        };
        out.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
        if stop.load(Ordering::Relaxed) != 0 {
            return;
        }
    }
}

/// Runs the soak and returns the report.
pub async fn soak(cfg: SoakConfig) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(!cfg.urls.is_empty(), "give at least one --url");
    anyhow::ensure!(cfg.concurrency > 0, "concurrency must be at least 1");
    anyhow::ensure!(
        cfg.rate.is_finite() && cfg.rate > 0.0,
        "--rate must be a positive number"
    );
    anyhow::ensure!(
        cfg.server_pids.is_empty() || cfg.server_pids.len() == cfg.urls.len(),
        "give --server-pid once per --url, in the same order"
    );
    let target = parse_redis_url(&cfg.redis_url)?;
    let mut http = Vec::with_capacity(cfg.urls.len());
    let mut urls = Vec::with_capacity(cfg.urls.len());
    for u in &cfg.urls {
        let u = sys::loopback_http_url(u)?;
        http.push(Http::new(&u, cfg.timeout));
        urls.push(u);
    }
    sys::raise_nofile();
    // Demo tokens live in the store: one sign-in serves every instance.
    let phone = sign_in(&http[0], &cfg.username, &cfg.password).await?;

    let start = Instant::now();
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let outages = Outages::new(start);
    let stop = Arc::new(AtomicU64::new(0));
    let probe = tokio::spawn(outage::probe(target, outages.clone(), stop.clone()));
    let rss = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_rss(
        cfg.server_pids.clone(),
        cfg.rss_every,
        start,
        rss.clone(),
        stop.clone(),
    ));
    let ctx = Arc::new(Ctx {
        http,
        phone,
        start,
        deadline: start + cfg.duration,
        tickets: AtomicU64::new(0),
        outages: outages.clone(),
        cfg: cfg.clone(),
    });
    let mut workers = Vec::with_capacity(cfg.concurrency);
    for _ in 0..cfg.concurrency {
        workers.push(tokio::spawn(worker(ctx.clone())));
    }
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await?);
    }
    let elapsed = start.elapsed();
    stop.store(1, Ordering::Relaxed);
    probe.await?;
    sampler.await?;

    let timeline = std::mem::take(&mut tally.tl).into_seconds();
    // The whole run's counts: every second's, added up.
    let mut total = Second::default();
    for s in &timeline {
        total.add(s);
    }
    let rss = std::mem::take(&mut *rss.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(SoakReport {
        urls,
        server_pids: cfg.server_pids.clone(),
        rate: cfg.rate,
        concurrency: cfg.concurrency,
        duration_s: cfg.duration.as_secs_f64(),
        retry_pause_ms: cfg.retry_pause.as_millis() as u64,
        retry_for_ms: cfg.retry_for.as_millis() as u64,
        rss_every_s: cfg.rss_every.as_secs_f64(),
        start_unix_ms,
        elapsed_s: elapsed.as_secs_f64(),
        started: total.started,
        completed: tally.completed,
        failed: tally.failed,
        ended_found_done: tally.ended_found_done,
        errors: total.errors,
        retried_503: total.retried_503,
        found_done: total.found_done,
        sse_ended_early: total.sse_ended_early,
        approve_again_checked: tally.approve_again,
        double_approve: tally.double_approve,
        redeem_again_checked: tally.redeem_again,
        double_redeem: tally.double_redeem,
        full: tally.full.summary(),
        timeline,
        rss,
        outages: outages.finish(),
        probe_every_ms: outage::PROBE_EVERY.as_millis() as u64,
        machine: sys::machine(),
    })
}

/// Human-readable summary (the JSON has the timeline).
pub fn render(r: &SoakReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "qrlogin-bench soak: {} instance(s), {:.0} logins/s, {:.0} s, concurrency {}",
        r.urls.len(),
        r.rate,
        r.duration_s,
        r.concurrency
    );
    let _ = writeln!(
        s,
        "logins: {} started, {} completed, {} failed, {} ended finding their redeem done",
        r.started, r.completed, r.failed, r.ended_found_done
    );
    let _ = writeln!(
        s,
        "double approve {} of {} checked, double redeem {} of {} checked",
        r.double_approve, r.approve_again_checked, r.double_redeem, r.redeem_again_checked
    );
    for (title, m) in [
        ("errors", &r.errors),
        ("503s retried", &r.retried_503),
        ("retries that found the step done", &r.found_done),
    ] {
        let _ = writeln!(s, "{title}: {}", if m.is_empty() { "none" } else { "" });
        for (k, v) in m {
            let _ = writeln!(s, "  {v:>8}  {k}");
        }
    }
    let _ = writeln!(s, "SSE streams ended early: {}", r.sse_ended_early);
    for o in &r.outages {
        let _ = writeln!(
            s,
            "Redis outage: down at {} ms, PONG at {}, first login step succeeding at {}",
            o.down_ms,
            o.redis_up_ms.map_or("never".into(), |x| format!("{x} ms")),
            o.first_success_ms
                .map_or("never".into(), |x| format!("{x} ms"))
        );
    }
    s
}
