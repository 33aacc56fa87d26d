//! `qrlogin-bench` — see `qrlogin-bench --help` and BENCHMARKS.md.

use clap::{Args, Parser, Subcommand};
use qrlogin_bench::idp::{IdpAlg, DEFAULT_AUDIENCE};
use qrlogin_bench::{idle, run, Binding, IdleConfig, PhoneAuth, PhoneTokens, RunConfig, WaitMode};
use std::net::SocketAddr;
use std::time::Duration;

/// mimalloc: the load generator shares the machine with the server it
/// measures, so its own allocator time is taken from the server.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "qrlogin-bench",
    version,
    about = "Load generator for qrlogin (loopback targets only)",
    after_help = "With a real phone-token verifier (JWT):\n\n  \
    qrlogin-bench idp --listen 127.0.0.1:0 --tokens 50000 &   # first line: issuer http://127.0.0.1:PORT\n  \
    qrlogin serve --rate-limits false --mobile-verifier jwt \\\n      \
    --mobile-jwt-issuer http://127.0.0.1:PORT --mobile-jwt-audience qrlogin-bench &\n  \
    qrlogin-bench run --url http://127.0.0.1:8080 --phone-auth jwt --idp http://127.0.0.1:PORT\n\n\
    crates/qrlogin-bench/scripts/measure.sh OUT jwt does all of it (BENCHMARKS.md).\n\n\
    Several instances on one store: --url and --server-pid once per instance (the phone\n\
    always on another instance than the browser); measure.sh OUT scaleout runs 1, 2, 4, 8."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Complete logins back to back: create, wait, scan, approve, wake, redeem.
    Run(RunArgs),
    /// Hold N waiting browsers open and report the server's RSS per waiter.
    Idle(IdleArgs),
    /// Logins at a fixed rate for minutes (restart Redis meanwhile): 503s
    /// retried, second approve and redeem of every login checked, and a
    /// per-second timeline of completions, errors and RSS. measure.sh OUT
    /// soak does the whole soak (capacity, restart, Redis keys at the end).
    Soak(SoakArgs),
    /// A tiny OpenID provider for `run --phone-auth jwt`: serves discovery
    /// and a JWKS with one fresh key, and mints the phones' access tokens.
    /// The first stdout line is `issuer http://127.0.0.1:PORT`; start
    /// `qrlogin serve --mobile-verifier jwt --mobile-jwt-issuer <that>
    /// --mobile-jwt-audience <--audience>` after it.
    Idp(IdpArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Runtime worker threads for the load generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timeout of each request, seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Base URL of a running qrlogin (loopback only), e.g.
    /// http://127.0.0.1:8080. Give it several times for instances sharing
    /// one store: login k's browser uses instance k mod N, its phone
    /// instance k+1 mod N.
    #[arg(long, required = true)]
    url: Vec<String>,
    #[command(flatten)]
    common: Common,
    /// Virtual browsers (each with its phone), doing logins back to back.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds after which no login is started (the ones in flight finish).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Start at most this many logins.
    #[arg(long)]
    max_logins: Option<u64>,
    /// How the browser waits.
    #[arg(long, value_enum, default_value = "sse")]
    wait: WaitMode,
    /// How the browser secret travels.
    #[arg(long, value_enum, default_value = "header")]
    binding: Binding,
    /// Start logins at this total rate (per second) instead of as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Milliseconds the phone waits before scanning (a person's delay).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Long-poll `wait` parameter, seconds.
    #[arg(long, default_value_t = 30)]
    longpoll_wait: u64,
    /// Redis URL to count commands per login from (INFO commandstats).
    #[arg(long)]
    redis_url: Option<String>,
    /// Also count commands by origin (client vs Lua) with MONITOR; slows Redis.
    #[arg(long, requires = "redis_url")]
    redis_monitor: bool,
    /// The server's pid, for its CPU and RSS; once per --url, in the same
    /// order, for CPU per instance.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// With several --url: the browser waits on the next instance instead
    /// of the one it created the login on (the phone then uses the
    /// creator's), as behind a load balancer that spreads every request.
    #[arg(long)]
    wait_elsewhere: bool,
    /// Demo phone user (`--phone-auth demo`).
    #[arg(long, default_value = "alice")]
    username: String,
    #[arg(long, default_value = "wonderland")]
    password: String,
    /// What the phones present: the demo user's token (server with
    /// `--mobile-verifier demo`), or JWTs minted by `qrlogin-bench idp`
    /// (server with `--mobile-verifier jwt`).
    #[arg(long, value_enum, default_value = "demo")]
    phone_auth: PhoneAuth,
    /// `--phone-auth jwt`: the idp's URL (its first stdout line).
    #[arg(long, required_if_eq("phone_auth", "jwt"))]
    idp: Option<String>,
    /// `--phone-auth jwt`: a distinct token (user) per login, never reused
    /// (the server verifies one signature per login), or one for all.
    #[arg(long, value_enum, default_value = "per-login")]
    phone_tokens: PhoneTokens,
    /// `--phone-tokens per-login`: how many tokens to fetch, which is also
    /// the most logins the run starts. Default: --max-logins, else 50000.
    #[arg(long)]
    token_pool: Option<u64>,
    /// Before the logins, send this many `GET /healthz` (paced at 5 per
    /// login at --rate, spread over the instances) and report a login's
    /// server CPU in trivial requests.
    #[arg(long, default_value_t = 0)]
    healthz_baseline: u64,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// Base URL of an instance (loopback only); once per instance, all on
    /// one store. Login k's browser uses instance k mod N, its phone k+1.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// The instances' pids, once per --url in the same order (RSS over time).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// The store the instances use (redis://127.0.0.1:PORT or
    /// redis+unix:///path): probed every 20 ms to time its outages.
    #[arg(long)]
    redis_url: String,
    #[command(flatten)]
    common: Common,
    /// Logins started per second, in total.
    #[arg(long)]
    rate: f64,
    /// Virtual browsers (each with its phone).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds after which no login is started.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Milliseconds to wait before sending a step answered 503 again.
    #[arg(long, default_value_t = 100)]
    retry_pause_ms: u64,
    /// Seconds after a step's first attempt beyond which a 503 is final.
    #[arg(long, default_value_t = 15.0)]
    retry_for: f64,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 2.0)]
    rss_every: f64,
    /// Demo phone user.
    #[arg(long, default_value = "alice")]
    username: String,
    #[arg(long, default_value = "wonderland")]
    password: String,
}

#[derive(Debug, Args)]
struct IdpArgs {
    /// Address to serve on (loopback only; port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The signing key's algorithm.
    #[arg(long, value_enum, default_value = "rs256")]
    alg: IdpAlg,
    /// The tokens' `aud` (give qrlogin the same `--mobile-jwt-audience`).
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// Tokens to mint before announcing the issuer (more are minted when
    /// asked for; RS256 costs about a millisecond each).
    #[arg(long, default_value_t = 0)]
    tokens: usize,
    /// Seconds after which it exits by itself (a bound, not a timeout).
    #[arg(long, default_value_t = 7200)]
    exit_after: u64,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// Base URL of a running qrlogin (loopback only), e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    #[command(flatten)]
    common: Common,
    /// Waiting browsers to open and hold.
    #[arg(long, default_value_t = 1000)]
    waiters: usize,
    /// sse or longpoll.
    #[arg(long, value_enum, default_value = "sse")]
    wait: WaitMode,
    /// Seconds to hold them (RSS is sampled meanwhile).
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// The server's pid (its /proc/PID/status is read).
    #[arg(long)]
    server_pid: u32,
    /// Connections opened at once.
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// Spread the waiters over this many source addresses (127.0.0.2 …),
    /// for more waiters than one address may hold (`--max-streams-per-ip`).
    #[arg(long, default_value_t = 1)]
    sources: usize,
    /// Write this file once the RSS samples are taken (another program can
    /// then start its load beside the waiters).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
    /// Seconds to keep the waiters open after the ready file.
    #[arg(long, default_value_t = 0)]
    keep: u64,
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => {
            anyhow::ensure!(
                a.duration > 0.0 && a.duration <= 600.0,
                "--duration must be in (0, 600] seconds"
            );
            anyhow::ensure!(
                a.server_pid.is_empty() || a.server_pid.len() == a.url.len(),
                "give --server-pid once per --url, in the same order ({} URLs, {} pids)",
                a.url.len(),
                a.server_pid.len()
            );
            let (first, more) = a
                .url
                .split_first()
                .ok_or_else(|| anyhow::anyhow!("--url is required"))?;
            let cfg = RunConfig {
                url: first.clone(),
                more_urls: more.to_vec(),
                concurrency: a.concurrency,
                duration: Duration::from_secs_f64(a.duration),
                max_logins: a.max_logins,
                wait: a.wait,
                binding: a.binding,
                rate: a.rate,
                think: Duration::from_millis(a.think_ms),
                timeout: Duration::from_secs(a.common.timeout.max(1)),
                longpoll_wait: a.longpoll_wait.clamp(1, 60),
                redis_url: a.redis_url,
                redis_monitor: a.redis_monitor,
                server_pid: a.server_pid.first().copied(),
                more_server_pids: a.server_pid.iter().skip(1).copied().collect(),
                wait_elsewhere: a.wait_elsewhere,
                username: a.username,
                password: a.password,
                phone_auth: a.phone_auth,
                idp: a.idp,
                phone_tokens: a.phone_tokens,
                token_pool: a.token_pool,
                healthz_baseline: a.healthz_baseline,
            };
            let report = runtime(a.common.threads)?.block_on(run(cfg))?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", qrlogin_bench::run::render(&report));
            }
        }
        Command::Soak(a) => {
            anyhow::ensure!(
                a.duration > 0.0 && a.duration <= 3600.0,
                "--duration must be in (0, 3600] seconds"
            );
            anyhow::ensure!(
                a.retry_for >= 0.0 && a.retry_for <= 120.0,
                "--retry-for must be in [0, 120] seconds"
            );
            anyhow::ensure!(
                a.rss_every >= 0.1 && a.rss_every <= 60.0,
                "--rss-every must be in [0.1, 60] seconds"
            );
            let cfg = qrlogin_bench::soak::SoakConfig {
                urls: a.url,
                server_pids: a.server_pid,
                redis_url: a.redis_url,
                rate: a.rate,
                concurrency: a.concurrency,
                duration: Duration::from_secs_f64(a.duration),
                timeout: Duration::from_secs(a.common.timeout.max(1)),
                retry_pause: Duration::from_millis(a.retry_pause_ms.max(1)),
                retry_for: Duration::from_secs_f64(a.retry_for),
                rss_every: Duration::from_secs_f64(a.rss_every),
                username: a.username,
                password: a.password,
            };
            let report = runtime(a.common.threads)?.block_on(qrlogin_bench::soak::soak(cfg))?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", qrlogin_bench::soak::render(&report));
            }
        }
        Command::Idle(a) => {
            anyhow::ensure!(a.hold <= 55, "--hold must be at most 55 seconds");
            anyhow::ensure!(
                a.hold + a.keep <= 100,
                "--hold + --keep must be at most 100 seconds (logins expire after 120)"
            );
            let mut cfg = IdleConfig::new(&a.url, a.waiters, a.wait, a.server_pid);
            cfg.hold = Duration::from_secs(a.hold);
            cfg.open_concurrency = a.open_concurrency;
            cfg.sources = a.sources;
            cfg.ready_file = a.ready_file;
            cfg.keep = Duration::from_secs(a.keep);
            cfg.timeout = Duration::from_secs(a.common.timeout.max(1));
            let report = runtime(a.common.threads)?.block_on(idle(cfg))?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", qrlogin_bench::idle::render(&report));
            }
        }
        Command::Idp(a) => {
            anyhow::ensure!(
                a.tokens <= qrlogin_bench::idp::MAX_TOKENS,
                "--tokens must be at most {}",
                qrlogin_bench::idp::MAX_TOKENS
            );
            let rt = runtime(2)?;
            rt.block_on(async {
                let running = qrlogin_bench::idp::spawn(a.listen, &a.audience, a.alg).await?;
                running.idp.tokens(a.tokens).await?;
                // The first line is machine-readable: scripts read the issuer from it.
                println!("issuer {}", running.idp.issuer());
                println!("audience {}", running.idp.audience());
                eprintln!(
                    "qrlogin-bench idp: {:?} key, {} tokens minted; serving {}/.well-known/openid-configuration",
                    running.idp.alg(),
                    a.tokens,
                    running.idp.issuer()
                );
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = tokio::time::sleep(Duration::from_secs(a.exit_after)) => {}
                }
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}
