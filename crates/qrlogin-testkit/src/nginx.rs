//! A private nginx per test: its own configuration, pid file, logs and
//! temporary directories in a fresh temp dir, on free loopback ports, in
//! the foreground as a child of the test (never the system service), with a
//! self-signed certificate for 127.0.0.1 made by `openssl`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOT_FOUND: &str =
    "nginx not found: install it with `apt-get install -y nginx` (scripts/test does this)";

/// What a site configuration is written for: free loopback ports to listen
/// on and a fresh self-signed certificate, in nginx's own temp dir. Made
/// first, so the services behind nginx can be told its URL.
pub struct NginxSite {
    dir: tempfile::TempDir,
    pub http_port: u16,
    pub https_port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running nginx; killed (and its directory removed) on drop.
pub struct Nginx {
    site: NginxSite,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn find_nginx() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("{NOT_FOUND}")
}

impl NginxSite {
    /// Two free ports and a certificate for 127.0.0.1 (made by `openssl`).
    pub fn new() -> NginxSite {
        let dir = tempfile::Builder::new()
            .prefix("qrlogin-nginx-")
            .tempdir()
            .expect("a temp dir for nginx");
        let d = dir.path();
        let cert = d.join("cert.pem");
        let key = d.join("key.pem");
        // A throw-away CA and a server certificate it signs (TLS clients
        // refuse a self-signed CA certificate as the server's own).
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl not found: apt-get install -y openssl");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-days",
                    "2",
                    "-subj",
                    "/CN=qrlogin test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "server.csr",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("writing server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ]);
        NginxSite {
            dir,
            http_port: free_port(),
            https_port: free_port(),
            cert,
            key,
        }
    }

    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_port)
    }
}

impl Default for NginxSite {
    fn default() -> Self {
        Self::new()
    }
}

impl Nginx {
    /// Starts nginx on `site` with `conf`, an `http`-context configuration
    /// (e.g. [`example_site`]). Panics, with nginx's own messages, if the
    /// configuration is refused or nginx does not listen within 10 s.
    pub fn start(site: NginxSite, conf: &str) -> Nginx {
        let nginx = find_nginx();
        let d = site.dir.path().to_path_buf();
        std::fs::write(d.join("site.conf"), conf).expect("writing site.conf");
        for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(d.join("temp").join(t)).expect("temp dirs");
        }
        let p = |name: &str| d.join(name).display().to_string();
        // One process, in the foreground, as the test's own user: nothing
        // of the system's nginx (its pid file, logs, temp paths) is touched.
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\nerror_log {err} info;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log {access};\n  client_body_temp_path {t}/client_body;\n  proxy_temp_path {t}/proxy;\n  \
             fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
             include {site};\n}}\n",
            pid = p("nginx.pid"),
            err = p("error.log"),
            access = p("access.log"),
            t = p("temp"),
            site = p("site.conf"),
        );
        std::fs::write(d.join("nginx.conf"), main).expect("writing nginx.conf");
        let run = |extra: &[&str]| {
            let mut c = Command::new(&nginx);
            c.args(extra)
                .arg("-p")
                .arg(&d)
                .arg("-e")
                .arg(d.join("error.log"))
                .arg("-c")
                .arg(d.join("nginx.conf"));
            c
        };
        let test = run(&["-t"]).output().expect("running nginx -t");
        assert!(
            test.status.success(),
            "nginx refused the configuration:\n{}\n--- site.conf:\n{conf}",
            String::from_utf8_lossy(&test.stderr),
        );
        let child = run(&[])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nginx");
        let nginx = Nginx {
            site,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", nginx.site.https_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {} within 10 s; error.log:\n{}",
                nginx.site.https_port,
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub fn https_url(&self) -> String {
        self.site.https_url()
    }

    pub fn site(&self) -> &NginxSite {
        &self.site
    }

    /// The test CA's certificate (PEM), which clients must trust.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.site.dir.path().join("ca.pem")).expect("reading the CA certificate")
    }

    /// The test CA's certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.site.dir.path().join("ca.pem")
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.site.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.site.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The project's `examples/nginx/qrlogin.conf` with only what a test must
/// change: listen ports, certificate paths, the two upstream addresses.
/// Panics when one of them is not found exactly once, so the example and
/// the tests cannot drift apart silently.
pub fn example_site(example: &str, site: &NginxSite, upstreams: [&str; 2]) -> String {
    let swaps = [
        (
            "listen 80;",
            format!("listen 127.0.0.1:{};", site.http_port),
        ),
        (
            "listen 443 ssl http2;",
            format!("listen 127.0.0.1:{} ssl http2;", site.https_port),
        ),
        (
            "server 127.0.0.1:8080 ",
            format!("server {} ", upstreams[0]),
        ),
        (
            "server 127.0.0.1:8081 ",
            format!("server {} ", upstreams[1]),
        ),
        (
            "/etc/ssl/certs/login.example.com.pem",
            site.cert.display().to_string(),
        ),
        (
            "/etc/ssl/private/login.example.com.key",
            site.key.display().to_string(),
        ),
    ];
    let mut text = example.to_string();
    for (from, to) in swaps {
        assert_eq!(
            text.matches(from).count(),
            1,
            "examples/nginx/qrlogin.conf should hold {from:?} exactly once"
        );
        text = text.replace(from, &to);
    }
    text
}
