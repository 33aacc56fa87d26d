//! The README's reverse-proxy setup, for real: a private nginx running
//! `examples/nginx/qrlogin.conf` (only ports, certificate and upstream
//! addresses changed) in front of two `qrlogin` processes on one private
//! Redis, public URL `https://127.0.0.1:PORT/auth/qr`.

#![allow(dead_code)]

use crate::common::Proc;
use qrlogin_testkit::{example_site, Nginx, NginxSite, RedisServer};

/// The example nginx configuration, as shipped.
pub const EXAMPLE: &str = include_str!("../../../../examples/nginx/qrlogin.conf");

/// nginx, two instances, one Redis. Fields drop in order: nginx first,
/// the instances, then Redis.
pub struct Stack {
    pub nginx: Nginx,
    pub instances: Vec<Proc>,
    pub redis: RedisServer,
    /// `https://127.0.0.1:PORT/auth/qr`
    pub public: String,
    /// Where each instance itself serves `/metrics`: under `/auth/qr`, or
    /// at the root when the stack runs with `--base-path /`.
    metrics: String,
}

impl Stack {
    /// Both instances run with `--store` on the private Redis, the demo
    /// users on (a shared store turns them off by default), the public URL
    /// behind nginx, 127.0.0.1 (nginx) as the one trusted proxy, and
    /// `extra`.
    pub fn start(extra: &[&str]) -> Stack {
        Self::start_with(extra, |conf| conf)
    }

    /// [`Stack::start`] with the nginx configuration changed by `edit`
    /// (after the test's ports and paths are in), for tests of a proxy
    /// that is set up wrong.
    pub fn start_with(extra: &[&str], edit: impl FnOnce(String) -> String) -> Stack {
        let redis = RedisServer::start();
        let site = NginxSite::new();
        let public = format!("{}/auth/qr", site.https_url());
        let url = redis.url();
        let mut args = vec![
            "--store",
            &url,
            "--public-url",
            &public,
            "--trusted-proxies",
            "127.0.0.1",
            "--demo-users",
            "true",
        ];
        args.extend_from_slice(extra);
        let instances = vec![Proc::start(&args), Proc::start(&args)];
        let conf = edit(example_site(
            EXAMPLE,
            &site,
            [instances[0].addr(), instances[1].addr()],
        ));
        let nginx = Nginx::start(site, &conf);
        let base = extra
            .iter()
            .position(|a| *a == "--base-path")
            .and_then(|i| extra.get(i + 1))
            .map_or("/auth/qr", |b| b.trim_end_matches('/'));
        Stack {
            nginx,
            instances,
            redis,
            public,
            metrics: format!("{base}/metrics"),
        }
    }

    /// `{public}{path}`
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public)
    }

    /// The origin (`https://127.0.0.1:PORT`).
    pub fn origin(&self) -> String {
        self.nginx.https_url()
    }

    /// A client that trusts nginx's certificate, sending from `local`
    /// (another loopback address than nginx's 127.0.0.1, so the client's
    /// address is visibly not the proxy's), with a cookie store.
    pub fn client(&self, local: [u8; 4]) -> reqwest::Client {
        let cert =
            reqwest::Certificate::from_pem(&self.nginx.cert_pem()).expect("the test certificate");
        reqwest::Client::builder()
            .add_root_certificate(cert)
            .local_address(std::net::IpAddr::from(local))
            .cookie_store(true)
            .build()
            .expect("an https client")
    }

    /// Which instance holds `n` waiting SSE browsers, by their own
    /// `/metrics` (asked directly, not through nginx).
    pub async fn instance_streaming(&self) -> Option<usize> {
        for (i, p) in self.instances.iter().enumerate() {
            let Ok(r) = reqwest::get(format!("{}{}", p.base, self.metrics)).await else {
                continue;
            };
            let text = r.text().await.unwrap_or_default();
            let waiting = text
                .lines()
                .find(|l| l.starts_with("qrlogin_waiting_browsers{via=\"sse\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if waiting >= 1.0 {
                return Some(i);
            }
        }
        None
    }
}
