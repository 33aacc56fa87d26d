//! Test support shared by qrlogin's crates.
//!
//! * [`RedisServer`] — a private, throw-away `redis-server` child process
//!   per test, so tests never depend on (or disturb) a shared Redis and can
//!   kill and restart it to test recovery.
//! * [`RedisCluster`] and [`RedisSentinel`] — the same for a private
//!   three-master Redis Cluster and a master + replica + Sentinel setup, to
//!   run the contract suite against the other deployments of SPEC §4.
//! * [`OidcProvider`] — a private, real OpenID provider (panva's
//!   `oidc-provider` under Node.js, `oidc/provider.mjs`) on a free loopback
//!   port, so token verification is tested against the discovery, JWKS,
//!   introspection and userinfo a production provider serves, not a mock;
//!   with harness controls to mint tokens for a subject, sign refusal-test
//!   JWTs, rotate keys and count JWKS fetches.
//! * [`Nginx`] — a private nginx (own config, pid file, temp dirs, free
//!   loopback ports, a self-signed certificate) in front of the services
//!   under test, to run the README's reverse-proxy setup for real.
//! * [`contract`] — the one store contract suite that both the memory store
//!   and the Redis store must pass (SPEC §4), with the
//!   [`store_contract!`] macro that turns it into one test per case.
//! * [`model`] — a reference model of the login state machine, for
//!   property tests that compare a store's (or the API's) every answer.

pub mod bench;
pub mod contract;
pub mod model;
mod nginx;
mod oidc_provider;
mod redis_cluster;
mod redis_sentinel;
mod redis_server;

pub use contract::StoreUnderTest;
pub use nginx::{example_site, Nginx, NginxSite};
pub use oidc_provider::OidcProvider;
pub use redis_cluster::{redis_cli, RedisCluster};
pub use redis_sentinel::{RedisSentinel, MASTER_NAME};
pub use redis_server::RedisServer;
