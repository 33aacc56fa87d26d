//! `rediss://`: the store works over TLS, commands and the hint
//! subscription alike, against a private redis-server with a throw-away
//! self-signed certificate.

use qrlogin_core::{State, Store};
use qrlogin_redis::RedisStore;
use qrlogin_testkit::contract::{alice, expect_hint, new_login, scanned_by, T0, TTLS};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TLS-only redis-server child, killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command, what: &str, install: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} could not run ({e}): install it with `{install}`"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn self_signed(dir: &Path) {
    run(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-keyout", "key.pem", "-out", "cert.pem", "-days", "1"])
            .args(["-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"]),
        "openssl",
        "apt-get install -y openssl",
    );
}

fn start_tls_redis() -> TlsRedis {
    let dir = tempfile::tempdir().expect("temp dir");
    self_signed(dir.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("redis-server")
        .current_dir(dir.path())
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem"])
        .args(["--tls-ca-cert-file", "cert.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "redis-server not found ({e}): install it with `apt-get install -y redis-server`"
            )
        });
    TlsRedis {
        child,
        port,
        _dir: dir,
    }
}

#[tokio::test]
async fn the_store_works_over_tls() {
    let server = start_tls_redis();
    // `#insecure`: the certificate is self-signed for this test only.
    let url = format!("rediss://127.0.0.1:{}/#insecure", server.port);
    let deadline = Instant::now() + Duration::from_secs(5);
    let store = loop {
        match RedisStore::connect(&url, TTLS, Duration::from_millis(500)).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no TLS connection to the private redis-server: {e}"),
        }
    };
    store.ping().await.expect("ping over TLS");
    let (new, _) = new_login(None);
    let id = new.id;
    store.create(new, T0).await.expect("create over TLS");
    let mut reg = store.notifier().register(id);
    store.scan(&id, &alice(), T0 + 1).await.expect("scan");
    // The hint came back through the TLS pub/sub subscription.
    expect_hint(&mut reg, scanned_by(alice())).await;
    let rec = store.get(&id, T0 + 2).await.expect("get").expect("exists");
    assert_eq!(rec.state, State::Scanned);

    // Plain-text redis:// to the TLS port must not work.
    let plain = format!("redis://127.0.0.1:{}", server.port);
    assert!(
        RedisStore::connect(&plain, TTLS, Duration::from_millis(500))
            .await
            .is_err(),
        "a plain connection to a TLS-only port was accepted"
    );
}
