//! `qrlogin-bench` — see `qrlogin-bench --help` and BENCHMARKS.md.

use clap::{Args, Parser, Subcommand};
use qrlogin_bench::{idle, run, Binding, IdleConfig, RunConfig, WaitMode};
use std::time::Duration;

/// mimalloc: the load generator shares the machine with the server it
/// measures, so its own allocator time is taken from the server.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "qrlogin-bench",
    version,
    about = "Load generator for qrlogin (loopback targets only)"
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
}

#[derive(Debug, Args)]
struct Common {
    /// Base URL of a running qrlogin (loopback only), e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
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
    /// The server's pid, for its RSS before and after.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Demo phone user.
    #[arg(long, default_value = "alice")]
    username: String,
    #[arg(long, default_value = "wonderland")]
    password: String,
}

#[derive(Debug, Args)]
struct IdleArgs {
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
            let cfg = RunConfig {
                url: a.common.url.clone(),
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
                server_pid: a.server_pid,
                username: a.username,
                password: a.password,
            };
            let report = runtime(a.common.threads)?.block_on(run(cfg))?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", qrlogin_bench::run::render(&report));
            }
        }
        Command::Idle(a) => {
            anyhow::ensure!(a.hold <= 55, "--hold must be at most 55 seconds");
            let mut cfg = IdleConfig::new(&a.common.url, a.waiters, a.wait, a.server_pid);
            cfg.hold = Duration::from_secs(a.hold);
            cfg.open_concurrency = a.open_concurrency;
            cfg.timeout = Duration::from_secs(a.common.timeout.max(1));
            let report = runtime(a.common.threads)?.block_on(idle(cfg))?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", qrlogin_bench::idle::render(&report));
            }
        }
    }
    Ok(())
}
