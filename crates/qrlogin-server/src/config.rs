//! Command line, environment and config file. Every flag has an environment
//! variable (`QRLOGIN_*`) and a key in the TOML config file (`--config`,
//! spelled as the flag without its dashes), so the same binary configures
//! the same way in a shell, a container, a unit file or a deploy pipeline.
//! Precedence: flags > environment > file > built-in defaults. With nothing
//! set at all it serves the demo on 127.0.0.1:8080 with the in-memory store.
//!
//! The file is layered in by [`load`]: each key becomes the default of its
//! flag before clap parses, so clap's own rules give the precedence, and a
//! flag added later has its key without any code here.

use crate::routes::extract::ProxyRange;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
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
    /// Validate the configuration (flags, environment, `--config` file) and
    /// print the effective settings with secrets redacted; exits non-zero
    /// on any error. Contacts nothing.
    CheckConfig(Box<ServeConfig>),
}

/// Which verifier turns a phone's bearer into a user (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifierKind {
    /// The built-in demo users (username + password, tokens in the store).
    Demo,
    /// JWT access tokens from your identity provider (OIDC discovery / JWKS).
    Jwt,
    /// Opaque tokens, checked at an RFC 7662 introspection endpoint.
    Introspection,
    /// Tokens checked by calling an OIDC userinfo (or "who am I") endpoint.
    Userinfo,
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
    /// TOML file with defaults for every flag (keys spelled as the flags
    /// without dashes: `store = "redis://…"`). Flags and environment win.
    #[arg(help_heading = "Service", long, env = "QRLOGIN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(
        help_heading = "Service",
        long,
        env = "QRLOGIN_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// The URL browsers and phones reach this service at, with the path it
    /// is mounted under if any (https://site.example/auth/qr): the QR code
    /// points to PUBLIC_URL/m/{id}, and every link and cookie path starts
    /// with its path. Defaults to http://<listen address>.
    #[arg(help_heading = "Service", long, env = "QRLOGIN_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The path qrlogin serves everything under (API, pages, assets, SSE,
    /// QR images, metrics). Default: the path of --public-url; `/` when
    /// your reverse proxy strips that prefix before passing requests on.
    #[arg(help_heading = "Service", long, env = "QRLOGIN_BASE_PATH")]
    pub base_path: Option<String>,

    /// `memory`, or a Redis URL: redis://, rediss://, redis+unix:///path,
    /// redis+cluster://h1:p1,h2:p2 (Redis Cluster seeds) or
    /// redis+sentinel://s1:p1,s2:p2/<master>[?db=N] (Sentinel).
    #[arg(
        help_heading = "Store",
        long,
        env = "QRLOGIN_STORE",
        default_value = "memory"
    )]
    pub store: String,

    /// Seconds a new login lives before it expires.
    #[arg(
        help_heading = "Logins",
        long,
        env = "QRLOGIN_PENDING_TTL",
        default_value_t = 120
    )]
    pub pending_ttl: u64,

    /// Seconds added once when the phone scans.
    #[arg(
        help_heading = "Logins",
        long,
        env = "QRLOGIN_SCAN_EXTENSION",
        default_value_t = 60
    )]
    pub scan_extension: u64,

    /// Seconds a final state is kept so late watchers see the outcome.
    #[arg(
        help_heading = "Logins",
        long,
        env = "QRLOGIN_FINAL_KEEP",
        default_value_t = 30
    )]
    pub final_keep: u64,

    /// Seconds a web session lives.
    #[arg(
        help_heading = "Web sessions",
        long,
        env = "QRLOGIN_SESSION_TTL",
        default_value_t = 43_200
    )]
    pub session_ttl: u64,

    /// The web session a redeem issues: `opaque` (a token only qrlogin can
    /// check) or `jwt` (signed, verifiable with /.well-known/jwks.json).
    #[arg(
        help_heading = "Web sessions",
        long,
        env = "QRLOGIN_SESSION_FORMAT",
        value_enum,
        default_value = "opaque"
    )]
    pub session_format: SessionFormat,

    /// PEM file with the EC P-256 private key that signs session JWTs
    /// (ES256). Without it, JWT mode makes a key at start-up that only this
    /// process knows: several instances need one shared key file.
    #[arg(help_heading = "Web sessions", long, env = "QRLOGIN_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,

    /// With a shared (Redis) store and no `--jwt-key-file`, JWT mode refuses
    /// to start: instances behind one load balancer would each sign with
    /// their own key and refuse each other's JWTs. Set this to accept a
    /// per-process key anyway (one instance, or trying it out).
    #[arg(help_heading = "Web sessions", long, env = "QRLOGIN_JWT_EPHEMERAL_KEY", default_value_t = false, action = clap::ArgAction::Set)]
    pub jwt_ephemeral_key: bool,

    /// The JWT `iss` claim. Default: the public URL.
    #[arg(help_heading = "Web sessions", long, env = "QRLOGIN_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The JWT `aud` claim, when the services that verify the JWTs want one
    /// (then required on every presented JWT). Default: no `aud`.
    #[arg(help_heading = "Web sessions", long, env = "QRLOGIN_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Seconds a demo phone-app token lives.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_TOKEN_TTL",
        default_value_t = 86_400
    )]
    pub mobile_token_ttl: u64,

    /// Site name the phone shows ("… wants to log you in").
    #[arg(
        help_heading = "Pages",
        long,
        env = "QRLOGIN_SITE_NAME",
        default_value = "qrlogin demo"
    )]
    pub site_name: String,

    /// Logo shown on the pages: an https:// URL or a path on this origin
    /// (e.g. /static/logo.svg). Default: qrlogin's mark.
    #[arg(help_heading = "Pages", long, env = "QRLOGIN_SITE_LOGO_URL")]
    pub site_logo_url: Option<String>,

    /// Primary colour of the pages' buttons and links, #rrggbb or #rgb.
    #[arg(help_heading = "Pages", long, env = "QRLOGIN_SITE_COLOR")]
    pub site_color: Option<String>,

    /// "Need help?" link on the pages: an https:// or mailto: URL.
    #[arg(help_heading = "Pages", long, env = "QRLOGIN_SUPPORT_URL")]
    pub support_url: Option<String>,

    /// Whether the browser is told who scanned its code before the phone
    /// approves ("Scanned by Alice"). Feedback against login CSRF versus
    /// privacy: whoever sits at the browser learns the scanner's name
    /// (docs/SECURITY.md).
    #[arg(help_heading = "Pages", long, env = "QRLOGIN_SHOW_SCANNER_NAME", default_value_t = true, action = clap::ArgAction::Set)]
    pub show_scanner_name: bool,

    /// Native apps that open the QR's link directly (comma-separated):
    /// `ios:<TEAM ID>.<bundle id>` and `android:<package>@<SHA-256 cert
    /// fingerprint>`; serves /.well-known/apple-app-site-association and
    /// /.well-known/assetlinks.json for PUBLIC_URL/m/*.
    #[arg(
        help_heading = "Pages",
        long,
        env = "QRLOGIN_APP_LINKS",
        value_delimiter = ','
    )]
    pub app_links: Vec<String>,

    /// JSON file of demo-identity users: [{"id","name","username","password_hash"}]
    /// (hashes from `qrlogin hash-password`). Default: the seeded demo users.
    #[arg(help_heading = "Phone identity", long, env = "QRLOGIN_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Who a phone's bearer is: demo, jwt, introspection or userinfo.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_VERIFIER",
        value_enum,
        default_value = "demo"
    )]
    pub mobile_verifier: VerifierKind,

    /// The demo users (alice/wonderland, bob/builder or --users-file).
    /// Default: on with the memory store and an http public URL, off
    /// otherwise; never with a real --mobile-verifier.
    #[arg(help_heading = "Phone identity", long, env = "QRLOGIN_DEMO_USERS", action = clap::ArgAction::Set)]
    pub demo_users: Option<bool>,

    /// jwt: the identity provider's issuer URL; every token's `iss` must
    /// equal it, and its OIDC discovery names the JWKS.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_JWT_ISSUER"
    )]
    pub mobile_jwt_issuer: Option<String>,

    /// jwt: the JWKS URL, instead of reading it from discovery.
    #[arg(help_heading = "Phone identity", long, env = "QRLOGIN_MOBILE_JWKS_URL")]
    pub mobile_jwks_url: Option<String>,

    /// jwt: required in every token's `aud` (your API's identifier).
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_JWT_AUDIENCE"
    )]
    pub mobile_jwt_audience: Option<String>,

    /// jwt: accepted signature algorithms (asymmetric only; never none or HS*).
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_JWT_ALGORITHMS",
        value_delimiter = ',',
        default_value = "RS256,ES256"
    )]
    pub mobile_jwt_algorithms: Vec<String>,

    /// jwt: seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_JWT_LEEWAY",
        default_value_t = 30
    )]
    pub mobile_jwt_leeway: u64,

    /// jwt: when set, the token header's `typ` must be this (e.g. at+jwt).
    #[arg(help_heading = "Phone identity", long, env = "QRLOGIN_MOBILE_JWT_TYP")]
    pub mobile_jwt_typ: Option<String>,

    /// introspection: the RFC 7662 endpoint.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_INTROSPECTION_URL"
    )]
    pub mobile_introspection_url: Option<String>,

    /// introspection: our client id at the provider.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_INTROSPECTION_CLIENT_ID"
    )]
    pub mobile_introspection_client_id: Option<String>,

    /// introspection: file holding our client secret (read once at start).
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_INTROSPECTION_CLIENT_SECRET_FILE"
    )]
    pub mobile_introspection_client_secret_file: Option<PathBuf>,

    /// introspection: seconds an active answer is reused (0 = ask every
    /// time, so revocation counts at once; at most 60, never past `exp`).
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_INTROSPECTION_CACHE_SECONDS",
        default_value_t = 0
    )]
    pub mobile_introspection_cache_seconds: u64,

    /// userinfo: the endpoint called with the phone's bearer.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_USERINFO_URL"
    )]
    pub mobile_userinfo_url: Option<String>,

    /// userinfo: seconds an answer is reused (0 = ask every time; at most 60).
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_USERINFO_CACHE_SECONDS",
        default_value_t = 0
    )]
    pub mobile_userinfo_cache_seconds: u64,

    /// The claim holding the stable user id.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_USER_ID_CLAIM",
        default_value = "sub"
    )]
    pub mobile_user_id_claim: String,

    /// The claim holding the display name (falls back to
    /// preferred_username, username, then the id).
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_USER_NAME_CLAIM",
        default_value = "name"
    )]
    pub mobile_user_name_claim: String,

    /// Milliseconds one call to the identity provider may take before the
    /// phone gets 503 verifier_unavailable.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_VERIFIER_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub mobile_verifier_timeout_ms: u64,

    /// PEM bundle of extra CA certificates for the identity provider's TLS
    /// (a private PKI); the system's roots are trusted as well.
    #[arg(
        help_heading = "Phone identity",
        long,
        env = "QRLOGIN_MOBILE_VERIFIER_CA_FILE"
    )]
    pub mobile_verifier_ca_file: Option<PathBuf>,

    /// JSON file of OpenID Connect clients (SPEC §7); turns on qrlogin as
    /// an OpenID Provider and device authorization server.
    #[arg(help_heading = "OpenID Provider", long, env = "QRLOGIN_OIDC_CLIENTS")]
    pub oidc_clients: Option<PathBuf>,

    /// The client list written inline in the config file as
    /// `[[oidc-clients]]` tables (the same fields as the JSON file), as a
    /// JSON array. Set only by the config-file loader; `--oidc-clients FILE`
    /// (flag or environment) wins over it.
    #[arg(skip)]
    pub oidc_clients_inline: Option<String>,

    /// The provider's issuer (`iss` of ID tokens, discovery's `issuer`).
    /// Default: the public URL.
    #[arg(help_heading = "OpenID Provider", long, env = "QRLOGIN_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// The `acr` claim of ID tokens, when your relying parties want one.
    #[arg(help_heading = "OpenID Provider", long, env = "QRLOGIN_OIDC_ACR")]
    pub oidc_acr: Option<String>,

    /// Seconds an access token (and the ID token) lives.
    #[arg(
        help_heading = "OpenID Provider",
        long,
        env = "QRLOGIN_OIDC_ACCESS_TOKEN_TTL",
        default_value_t = 3600
    )]
    pub oidc_access_token_ttl: u64,

    /// Seconds a device code lives (RFC 8628 `expires_in`).
    #[arg(
        help_heading = "OpenID Provider",
        long,
        env = "QRLOGIN_DEVICE_CODE_TTL",
        default_value_t = 600
    )]
    pub device_code_ttl: u64,

    /// Seconds a device waits between polls (RFC 8628 `interval`).
    #[arg(
        help_heading = "OpenID Provider",
        long,
        env = "QRLOGIN_DEVICE_INTERVAL",
        default_value_t = 5
    )]
    pub device_interval: u64,

    /// Milliseconds one store operation may take before the request fails
    /// with 503 store_unavailable.
    #[arg(
        help_heading = "Store",
        long,
        env = "QRLOGIN_STORE_TIMEOUT_MS",
        default_value_t = 500
    )]
    pub store_timeout_ms: u64,

    /// Redis only: redeem, logout and revoke-all wait (`WAIT`) until this
    /// many replicas have the write, else answer 503 (the token is not
    /// released). Narrows, does not close, the window in which a failover
    /// resurrects a login or a session; pair with the master's
    /// `min-replicas-to-write`. 0 = no wait. Refused with `--store memory`.
    #[arg(
        help_heading = "Store",
        long,
        env = "QRLOGIN_REDIS_MIN_REPLICAS",
        default_value_t = 0
    )]
    pub redis_min_replicas: u32,

    /// File holding the bearer token of the site-backend API
    /// (`POST /v1/admin/users/{user_id}/sessions/revoke-all`). Read once at
    /// start-up and kept only as its SHA-256; without it that API is 404.
    #[arg(help_heading = "Web sessions", long, env = "QRLOGIN_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Seconds between backstop re-reads of a watched login, in case a
    /// wake-up hint was lost.
    #[arg(
        help_heading = "Logins",
        long,
        env = "QRLOGIN_BACKSTOP",
        default_value_t = 10
    )]
    pub backstop: u64,

    /// Longest long-poll wait, in seconds.
    #[arg(
        help_heading = "Logins",
        long,
        env = "QRLOGIN_MAX_WAIT",
        default_value_t = 60
    )]
    pub max_wait: u64,

    /// Peers whose X-Forwarded-For is believed: comma-separated addresses
    /// and CIDR ranges, IPv4 or IPv6 (10.0.0.1,10.0.0.0/8,2001:db8::/32).
    #[arg(
        help_heading = "Limits",
        long,
        env = "QRLOGIN_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ProxyRange>,

    /// Seconds a client has to send a complete request head, counted from
    /// the connection's accept (or, on a kept-alive connection, from the
    /// first byte of the next request); then the connection is closed.
    /// Bounds slowloris clients that send half a head and wait.
    #[arg(
        help_heading = "Connections",
        long,
        env = "QRLOGIN_HEADER_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub header_timeout: u64,

    /// Seconds an idle keep-alive connection (no request in flight, nothing
    /// of the next one received) stays open; 0 closes every connection after
    /// its response. Longer than the idle timeouts of common proxies and
    /// load balancers (nginx and AWS ALB: 60 s), so they never reuse a
    /// connection we are closing.
    #[arg(
        help_heading = "Connections",
        long,
        env = "QRLOGIN_KEEPALIVE_TIMEOUT",
        default_value_t = 75
    )]
    pub keepalive_timeout: u64,

    /// Most open client connections; beyond it the service stops accepting
    /// (new connections wait in the kernel's backlog) until one closes, and
    /// logs a warning. 0: the process's file-descriptor limit minus 256
    /// kept for the store, upstream calls and logs.
    #[arg(
        help_heading = "Connections",
        long,
        env = "QRLOGIN_MAX_CONNECTIONS",
        default_value_t = 0
    )]
    pub max_connections: usize,

    /// Most SSE streams and long-polls one client address (an IPv4 address,
    /// an IPv6 /64) may hold open at once; the next one gets 429. Room for an
    /// office behind one NAT address; 0: no cap.
    #[arg(
        help_heading = "Connections",
        long,
        env = "QRLOGIN_MAX_STREAMS_PER_IP",
        default_value_t = 1000
    )]
    pub max_streams_per_ip: u32,

    /// Largest accepted request body, in bytes.
    #[arg(help_heading = "Limits", long, env = "QRLOGIN_MAX_BODY", default_value_t = 16 * 1024)]
    pub max_body: usize,

    /// Number matching: off, always, or on-risk.
    #[arg(
        help_heading = "Logins",
        long,
        env = "QRLOGIN_MATCH_CODE",
        value_enum,
        default_value = "on-risk"
    )]
    pub match_code: MatchMode,

    /// MaxMind-format GeoIP database (GeoLite2-City, GeoIP2, DB-IP Lite;
    /// downloaded by you): the phone is shown the browser's and its own
    /// place and network, the scan gets a low/high risk verdict (on-risk
    /// matching then follows it) and a high one needs "I am at this
    /// computer now". Reloaded on SIGHUP and when the file changes.
    #[arg(help_heading = "Logins", long, env = "QRLOGIN_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// With --geoip-db: browser and phone farther apart than this (km)
    /// make the verdict high.
    #[arg(
        help_heading = "Logins",
        long,
        env = "QRLOGIN_RISK_DISTANCE_KM",
        default_value_t = qrlogin_core::risk::DEFAULT_MAX_DISTANCE_KM,
        value_parser = clap::value_parser!(u32).range(1..=20_050)
    )]
    pub risk_distance_km: u32,

    /// One bucket's rate and burst, e.g. `create=600/min,burst=100` (rate
    /// per `s`, `min` or `h`; `off` turns the bucket off). Buckets: any,
    /// create, poll, sign-in, scan, phone-user. Repeat the flag or list
    /// several in one value: `create=600/min,burst=100,scan=off`. Unnamed
    /// buckets keep their defaults (README, "Rate limits").
    #[arg(
        help_heading = "Limits",
        long = "rate-limit",
        env = "QRLOGIN_RATE_LIMIT",
        action = clap::ArgAction::Append,
        value_name = "BUCKET=N/PER[,burst=B]"
    )]
    pub rate_limit: Vec<crate::limit::RateLimitSpec>,

    /// Per-IP and per-user rate limits (turn off only for load tests).
    #[arg(help_heading = "Limits", long, env = "QRLOGIN_RATE_LIMITS", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limits: bool,

    #[arg(
        help_heading = "Logging and runtime",
        long,
        env = "QRLOGIN_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Runtime worker threads; 0 means one per CPU core. Fewer than the cores
    /// pays off when Redis (and, in a benchmark, the load generator) share the
    /// machine: threads that would compete with them for the same cores cost
    /// more in cross-thread wake-ups than they add (BENCHMARKS.md §2).
    #[arg(
        help_heading = "Logging and runtime",
        long,
        env = "QRLOGIN_WORKER_THREADS",
        default_value_t = 0
    )]
    pub worker_threads: usize,

    /// Where the site's backend receives signed events (Standard Webhooks):
    /// login.scanned, login.approved, login.denied, login.consumed,
    /// session.revoked. Needs --webhook-secret-file.
    #[arg(help_heading = "Events", long, env = "QRLOGIN_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// File holding the signing secret, `whsec_<base64>` (Standard
    /// Webhooks); read once at start, never logged.
    #[arg(help_heading = "Events", long, env = "QRLOGIN_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Seconds one webhook POST may take before it counts as failed.
    #[arg(
        help_heading = "Events",
        long,
        env = "QRLOGIN_WEBHOOK_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub webhook_timeout: u64,

    /// Seconds an event is retried (exponential backoff with jitter) before
    /// it is dropped with a warning and a metric.
    #[arg(
        help_heading = "Events",
        long,
        env = "QRLOGIN_WEBHOOK_MAX_AGE",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..=604_800)
    )]
    pub webhook_max_age: u64,

    /// Seconds after which an event taken by an instance that stopped
    /// holding it (it crashed) is taken over by another instance.
    #[arg(
        help_heading = "Events",
        long,
        env = "QRLOGIN_WEBHOOK_RECLAIM_AFTER",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub webhook_reclaim_after: u64,

    /// Audit log: one JSON line per login transition and session event,
    /// to `stderr` or appended to a file. Off by default.
    #[arg(help_heading = "Events", long, env = "QRLOGIN_AUDIT_LOG")]
    pub audit_log: Option<String>,
}

impl ServeConfig {
    /// The defaults, as `qrlogin serve` with no flags (environment and
    /// config file ignored); for tests and embedding. Read from the flag
    /// definitions themselves, so there is one list of defaults.
    pub fn defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeConfig,
        }
        let cmd = Only::command().mut_args(|a| a.env(None));
        let matches = cmd
            .try_get_matches_from(["qrlogin"])
            .unwrap_or_else(|e| unreachable!("the built-in defaults parse: {e}"));
        Only::from_arg_matches(&matches)
            .unwrap_or_else(|e| unreachable!("the built-in defaults parse: {e}"))
            .serve
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

/// The parsed command line with the config file layered in, and what the
/// file contributed (for `check-config`).
pub struct Loaded {
    pub cli: Cli,
    /// The file, when one was given.
    pub file: Option<PathBuf>,
    /// Keys the file set.
    pub file_keys: Vec<String>,
    matches: clap::ArgMatches,
}

/// Why the configuration could not be loaded. clap's own errors keep their
/// formatting (and `--help` / `--version` their exit code 0).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error("{0}")]
    File(String),
}

/// Flags that make no sense inside the file.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "version"];

/// Parses `args` (program name first) with the config file named by
/// `--config` or `QRLOGIN_CONFIG` layered under flags and environment.
pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let path = config_flag(&args).or_else(|| std::env::var_os("QRLOGIN_CONFIG").map(PathBuf::from));
    let mut cmd = Cli::command();
    let mut file_keys = Vec::new();
    let mut inline_clients: Option<String> = None;
    if let Some(path) = &path {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError::File(format!("reading config file {shown}: {e}")))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| LoadError::File(format!("config file {shown}: {e}")))?;
        let known: Vec<(String, String)> = cmd
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?.to_string(), a.get_id().to_string())))
            .filter(|(long, _)| !NOT_IN_FILE.contains(&long.as_str()))
            .collect();
        for (key, value) in &table {
            if key == "oidc-clients" {
                if let toml::Value::Array(items) = value {
                    // The client list itself, as `[[oidc-clients]]` tables.
                    if !items.iter().all(toml::Value::is_table) {
                        return Err(LoadError::File(format!(
                            "config file {shown}: key `oidc-clients`: a path to the JSON file, \
                             or `[[oidc-clients]]` tables (one per client)"
                        )));
                    }
                    let json = serde_json::to_string(items).map_err(|e| {
                        LoadError::File(format!("config file {shown}: key `oidc-clients`: {e}"))
                    })?;
                    inline_clients = Some(json);
                    file_keys.push(key.clone());
                    continue;
                }
            }
            let Some((_, id)) = known.iter().find(|(long, _)| long == key) else {
                let hint = if key.contains('_') {
                    format!(
                        " (keys are spelled like the flags: `{}`)",
                        key.replace('_', "-")
                    )
                } else {
                    String::new()
                };
                return Err(LoadError::File(format!(
                    "config file {shown}: unknown key `{key}`{hint}; `qrlogin --help` lists the flags"
                )));
            };
            let value = toml_value(value).map_err(|what| {
                LoadError::File(format!("config file {shown}: key `{key}`: {what}"))
            })?;
            let id = id.clone();
            let set = |a: clap::Arg| a.default_value(value.clone());
            cmd = cmd
                .mut_arg(&id, set)
                .mut_subcommand("serve", |c| c.mut_arg(&id, set))
                .mut_subcommand("check-config", |c| c.mut_arg(&id, set));
            file_keys.push(key.clone());
        }
    }
    let matches = cmd.try_get_matches_from(&args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let Some(json) = inline_clients {
        if let Some(Command::Serve(c) | Command::CheckConfig(c)) = &mut cli.command {
            c.oidc_clients_inline = Some(json.clone());
        }
        cli.serve.oidc_clients_inline = Some(json);
    }
    Ok(Loaded {
        cli,
        file: path,
        file_keys,
        matches,
    })
}

/// `--config F` or `--config=F` on the command line, wherever it stands.
fn config_flag(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// A TOML value as the text clap parses: lists join with commas.
fn toml_value(v: &toml::Value) -> Result<String, &'static str> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    Err("lists of lists or tables are not flags")
                }
                other => toml_value(other),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Table(_) => return Err("a table is not a flag value"),
    })
}

impl Loaded {
    /// The effective settings, one `key = value  # source` line per flag,
    /// secrets redacted: store URLs lose their password; a value of a key
    /// that names a secret or token (other than a file path) is hidden.
    pub fn describe(&self) -> String {
        let (matches, cmd) = match self.matches.subcommand() {
            Some((name, sub)) => (sub, Cli::command().find_subcommand(name).cloned()),
            None => (&self.matches, Some(Cli::command())),
        };
        let Some(cmd) = cmd else { return String::new() };
        let mut out = String::new();
        let mut heading = None;
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if NOT_IN_FILE[1..].contains(&long) {
                continue;
            }
            let id = arg.get_id().as_str();
            let h = arg.get_help_heading().unwrap_or("Other");
            if heading != Some(h) {
                out.push_str(&format!("\n# {h}\n"));
                heading = Some(h);
            }
            let source = match matches.value_source(id) {
                Some(clap::parser::ValueSource::CommandLine) => "flag",
                Some(clap::parser::ValueSource::EnvVariable) => "environment",
                Some(clap::parser::ValueSource::DefaultValue)
                    if self.file_keys.iter().any(|k| k == long) =>
                {
                    "file"
                }
                Some(clap::parser::ValueSource::DefaultValue) => "default",
                _ => "unset",
            };
            let raw: Option<Vec<String>> = matches
                .get_raw(id)
                .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect());
            let inline = self.cli.serve.oidc_clients_inline.as_deref();
            let line = match raw {
                None if long == "oidc-clients" && inline.is_some() => {
                    let n = inline
                        .and_then(|j| serde_json::from_str::<Vec<serde_json::Value>>(j).ok())
                        .map_or(0, |v| v.len());
                    format!("# {long} = [[{long}]] tables in the file ({n} clients)")
                }
                None => format!("# {long} = (unset)"),
                Some(vs) => {
                    let v = redact(long, &vs.join(","));
                    format!("{long} = {v:?}")
                }
            };
            out.push_str(&format!("{line:<60} # {source}\n"));
        }
        out.trim_start().to_string()
    }
}

/// What `check-config` prints for a value.
fn redact(key: &str, value: &str) -> String {
    if key == "store" {
        return crate::redact_url(value);
    }
    if key == "webhook-url" {
        // No credentials, no query (either may hold a token).
        return match value.parse::<reqwest::Url>() {
            Ok(u) => crate::webhooks::delivery::loggable(&u),
            Err(_) => "<not a URL>".into(),
        };
    }
    let secret_like = ["secret", "token", "password"]
        .iter()
        .any(|w| key.contains(w));
    if secret_like && !key.ends_with("-file") && !key.ends_with("-ttl") {
        return "<redacted>".into();
    }
    value.to_string()
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
