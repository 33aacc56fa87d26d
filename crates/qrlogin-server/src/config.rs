//! Command line and environment. Every flag has an environment variable
//! (`QRLOGIN_*`), so the same binary configures the same way in a shell, a
//! container or a unit file. With no flags at all it serves the demo on
//! 127.0.0.1:8080 with the in-memory store.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "qrlogin",
    version,
    about = "Scan a QR code with your phone to log in"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<ServeConfig>),
    /// Print an argon2 hash of a password read from stdin, for a users file.
    HashPassword,
}

/// When the phone must pick the browser's 2-digit code among 3 (number
/// matching, against remote phishing of the QR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatchMode {
    /// Never.
    Off,
    /// On every login.
    Always,
    /// When browser and phone are on different networks (different /24 for
    /// IPv4, /64 for IPv6): the tell-tale of a QR relayed by a phisher.
    OnRisk,
}

/// What the browser's web session is (SPEC §1 "web session").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionFormat {
    /// An opaque token (`<login id>.<256-bit secret>`); only qrlogin can
    /// check it (`GET /v1/session`).
    Opaque,
    /// A signed JWT (ES256) that other services can verify offline with the
    /// keys at `/.well-known/jwks.json`.
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "QRLOGIN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The URL browsers and phones reach this service at; the QR code points
    /// to PUBLIC_URL/m/{id}. Defaults to http://<listen address>.
    #[arg(long, env = "QRLOGIN_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// `memory`, or a Redis URL: redis://, rediss://, redis+unix:///path,
    /// redis+cluster://h1:p1,h2:p2 (Redis Cluster seeds) or
    /// redis+sentinel://s1:p1,s2:p2/<master>[?db=N] (Sentinel).
    #[arg(long, env = "QRLOGIN_STORE", default_value = "memory")]
    pub store: String,

    /// Seconds a new login lives before it expires.
    #[arg(long, env = "QRLOGIN_PENDING_TTL", default_value_t = 120)]
    pub pending_ttl: u64,

    /// Seconds added once when the phone scans.
    #[arg(long, env = "QRLOGIN_SCAN_EXTENSION", default_value_t = 60)]
    pub scan_extension: u64,

    /// Seconds a final state is kept so late watchers see the outcome.
    #[arg(long, env = "QRLOGIN_FINAL_KEEP", default_value_t = 30)]
    pub final_keep: u64,

    /// Seconds a web session lives.
    #[arg(long, env = "QRLOGIN_SESSION_TTL", default_value_t = 43_200)]
    pub session_ttl: u64,

    /// The web session a redeem issues: `opaque` (a token only qrlogin can
    /// check) or `jwt` (signed, verifiable with /.well-known/jwks.json).
    #[arg(
        long,
        env = "QRLOGIN_SESSION_FORMAT",
        value_enum,
        default_value = "opaque"
    )]
    pub session_format: SessionFormat,

    /// PEM file with the EC P-256 private key that signs session JWTs
    /// (ES256). Without it, JWT mode makes a key at start-up that only this
    /// process knows: several instances need one shared key file.
    #[arg(long, env = "QRLOGIN_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,

    /// With a shared (Redis) store and no `--jwt-key-file`, JWT mode refuses
    /// to start: instances behind one load balancer would each sign with
    /// their own key and refuse each other's JWTs. Set this to accept a
    /// per-process key anyway (one instance, or trying it out).
    #[arg(long, env = "QRLOGIN_JWT_EPHEMERAL_KEY", default_value_t = false, action = clap::ArgAction::Set)]
    pub jwt_ephemeral_key: bool,

    /// The JWT `iss` claim. Default: the public URL.
    #[arg(long, env = "QRLOGIN_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The JWT `aud` claim, when the services that verify the JWTs want one
    /// (then required on every presented JWT). Default: no `aud`.
    #[arg(long, env = "QRLOGIN_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Seconds a demo phone-app token lives.
    #[arg(long, env = "QRLOGIN_MOBILE_TOKEN_TTL", default_value_t = 86_400)]
    pub mobile_token_ttl: u64,

    /// Site name the phone shows ("… wants to log you in").
    #[arg(long, env = "QRLOGIN_SITE_NAME", default_value = "qrlogin demo")]
    pub site_name: String,

    /// JSON file of demo-identity users: [{"id","name","username","password_hash"}]
    /// (hashes from `qrlogin hash-password`). Default: the seeded demo users.
    #[arg(long, env = "QRLOGIN_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Milliseconds one store operation may take before the request fails
    /// with 503 store_unavailable.
    #[arg(long, env = "QRLOGIN_STORE_TIMEOUT_MS", default_value_t = 500)]
    pub store_timeout_ms: u64,

    /// Seconds between backstop re-reads of a watched login, in case a
    /// wake-up hint was lost.
    #[arg(long, env = "QRLOGIN_BACKSTOP", default_value_t = 10)]
    pub backstop: u64,

    /// Longest long-poll wait, in seconds.
    #[arg(long, env = "QRLOGIN_MAX_WAIT", default_value_t = 60)]
    pub max_wait: u64,

    /// Peers whose X-Forwarded-For is believed (comma-separated IPs).
    #[arg(long, env = "QRLOGIN_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "QRLOGIN_MAX_BODY", default_value_t = 16 * 1024)]
    pub max_body: usize,

    /// Number matching: off, always, or on-risk.
    #[arg(
        long,
        env = "QRLOGIN_MATCH_CODE",
        value_enum,
        default_value = "on-risk"
    )]
    pub match_code: MatchMode,

    /// Per-IP and per-user rate limits (turn off only for load tests).
    #[arg(long, env = "QRLOGIN_RATE_LIMITS", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limits: bool,

    #[arg(long, env = "QRLOGIN_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Runtime worker threads; 0 means one per CPU core. Fewer than the cores
    /// pays off when Redis (and, in a benchmark, the load generator) share the
    /// machine: threads that would compete with them for the same cores cost
    /// more in cross-thread wake-ups than they add (BENCHMARKS.md §2).
    #[arg(long, env = "QRLOGIN_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
}

impl ServeConfig {
    /// The defaults, as `qrlogin serve` with no flags (environment ignored);
    /// for tests and embedding.
    pub fn defaults() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            store: "memory".into(),
            pending_ttl: 120,
            scan_extension: 60,
            final_keep: 30,
            session_ttl: 43_200,
            session_format: SessionFormat::Opaque,
            jwt_key_file: None,
            jwt_ephemeral_key: false,
            jwt_issuer: None,
            jwt_audience: None,
            mobile_token_ttl: 86_400,
            site_name: "qrlogin demo".into(),
            users_file: None,
            store_timeout_ms: 500,
            backstop: 10,
            max_wait: 60,
            trusted_proxies: Vec::new(),
            max_body: 16 * 1024,
            match_code: MatchMode::OnRisk,
            rate_limits: true,
            log_format: LogFormat::Text,
            worker_threads: 0,
        }
    }

    pub fn ttls(&self) -> qrlogin_core::Ttls {
        qrlogin_core::Ttls {
            pending_ms: self.pending_ttl * 1000,
            scan_extension_ms: self.scan_extension * 1000,
            final_keep_ms: self.final_keep * 1000,
            session_ms: self.session_ttl * 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_format_defaults_to_opaque_and_takes_jwt_flags() {
        let cli = Cli::try_parse_from(["qrlogin"]).expect("parse");
        assert_eq!(cli.serve.session_format, SessionFormat::Opaque);
        assert_eq!(cli.serve.jwt_key_file, None);
        let cli = Cli::try_parse_from([
            "qrlogin",
            "--session-format",
            "jwt",
            "--jwt-key-file",
            "/etc/qrlogin/jwt.pem",
            "--jwt-issuer",
            "https://login.example",
            "--jwt-audience",
            "shop",
        ])
        .expect("parse");
        let cfg = cli.serve;
        assert_eq!(cfg.session_format, SessionFormat::Jwt);
        assert_eq!(
            cfg.jwt_key_file,
            Some(PathBuf::from("/etc/qrlogin/jwt.pem"))
        );
        assert_eq!(cfg.jwt_issuer.as_deref(), Some("https://login.example"));
        assert_eq!(cfg.jwt_audience.as_deref(), Some("shop"));
        assert!(Cli::try_parse_from(["qrlogin", "--session-format", "paseto"]).is_err());
    }

    #[test]
    fn worker_threads_default_to_one_per_core_and_can_be_set() {
        let cli = Cli::try_parse_from(["qrlogin", "serve"]).expect("parse");
        let Some(Command::Serve(cfg)) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(cfg.worker_threads, 0);
        let cli =
            Cli::try_parse_from(["qrlogin", "serve", "--worker-threads", "1"]).expect("parse");
        let Some(Command::Serve(cfg)) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(cfg.worker_threads, 1);
        assert!(Cli::try_parse_from(["qrlogin", "serve", "--worker-threads", "x"]).is_err());
    }
}
