//! `qrlogin-bench`: a load generator for qrlogin.
//!
//! * [`run`] drives complete logins (create, wait on SSE / long-poll / 1 s
//!   polling, scan, approve, wake, redeem) and reports logins/s, errors by
//!   kind, HdrHistogram percentiles of every step and of the wake latency,
//!   Redis commands per login and the server's RSS.
//! * [`instances`] spreads a run over several instances of the service
//!   (the phone on another one than the browser) and reports each one's
//!   requests, CPU and hint messages received, read from its `/metrics`
//!   ([`scrape`]).
//! * [`soak`] runs logins at a fixed rate for minutes while the store is
//!   restarted under it, retrying 503s, checking that no login is approved
//!   or redeemed twice, and counting everything per second ([`timeline`])
//!   against the Redis outages a probe saw ([`outage`]).
//! * [`idle`] holds N waiting browsers open and reports the server's RSS per
//!   waiter.
//! * [`baseline`] measures the CPU of one trivial request (`/healthz`), the
//!   unit [`run`] can count a login's CPU in.
//! * [`idp`] is a tiny OpenID provider (discovery, JWKS, minted access
//!   tokens), so [`run`] can measure a server with `--mobile-verifier jwt`
//!   (`--phone-auth jwt`).
//!
//! It only ever targets loopback addresses, and every run is bounded in time
//! (and optionally in count) and stops by itself.

pub mod baseline;
pub mod http;
pub mod idle;
pub mod idp;
pub mod instances;
pub mod outage;
pub mod redis_stats;
pub mod run;
pub mod scrape;
pub mod soak;
pub mod stats;
pub mod sys;
pub mod timeline;

pub use idle::{idle, IdleConfig, IdleReport};
pub use run::{run, Binding, PhoneAuth, PhoneTokens, RunConfig, RunReport, WaitMode};
