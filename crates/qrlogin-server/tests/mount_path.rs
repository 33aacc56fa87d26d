//! One mount path, branding, app links and what the browser is told
//! (issue 10): everything qrlogin serves lives under `--base-path`; links,
//! the QR payload and cookie paths follow the public URL's path (also when
//! a proxy strips the prefix); origin-root files stay at the root; the
//! pages carry the site's branding; `--show-scanner-name false` keeps the
//! scanner's name from the browser until approval.

#[macro_use]
mod common;

use common::*;
use qrlogin_server::ServeConfig;
use reqwest::StatusCode;

fn cfg_with(public: Option<&str>, base: Option<&str>) -> ServeConfig {
    let mut cfg = config();
    cfg.public_url = public.map(str::to_owned);
    cfg.base_path = base.map(str::to_owned);
    cfg
}

/// An app whose public URL is its own address plus `path` (the port is
/// only known once bound, so the service is built twice: first to learn
/// a free port).
async fn app_at(path: &str, base: Option<&str>, tweak: impl FnOnce(&mut ServeConfig)) -> App {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut cfg = cfg_with(Some(&format!("http://127.0.0.1:{port}{path}")), base);
    tweak(&mut cfg);
    let store: std::sync::Arc<dyn qrlogin_core::Store> =
        std::sync::Arc::new(qrlogin_core::MemoryStore::new(cfg.ttls()));
    let running = qrlogin_server::QrLogin::builder(cfg)
        .store(store.clone())
        .build()
        .await
        .expect("building")
        .spawn_on(
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("binding the port"),
        )
        .expect("serving");
    App {
        base: format!("http://127.0.0.1:{port}"),
        running,
        store,
        kind: StoreKind::Memory,
        redis: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_lives_under_the_base_path_and_links_follow_it() {
    let app = app_at("/auth/qr", None, |_| {}).await;
    let http = raw_client();
    // Under the base path: API, pages, SDK, operations.
    for path in [
        "/auth/qr/",
        "/auth/qr",
        "/auth/qr/phone",
        "/auth/qr/m/abcdefghijklmnopqrstuv",
        "/auth/qr/healthz",
        "/auth/qr/readyz",
        "/auth/qr/metrics",
        "/auth/qr/openapi.json",
        "/auth/qr/_qrlogin/sdk/qrlogin.js",
        "/auth/qr/_qrlogin/sdk/qrlogin.css",
        "/auth/qr/_qrlogin/sdk/qrlogin.d.ts",
    ] {
        let r = send(http.get(app.url(path))).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    }
    // Not at the root any more (a proxy routes one location).
    for path in [
        "/healthz",
        "/phone",
        "/v1/session",
        "/m/abcdefghijklmnopqrstuv",
        "/_qrlogin/sdk/qrlogin.js",
    ] {
        let r = send(http.get(app.url(path))).await;
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let browser = Browser::new(&app.url("/auth/qr"));
    let login = browser.create().await;
    let c = &login.created;
    assert_eq!(
        c["qr_payload"],
        app.url(&format!("/auth/qr/m/{}", login.id))
    );
    assert_eq!(
        c["qr_svg"],
        format!("/auth/qr/v1/logins/{}/qr.svg", login.id)
    );
    assert_eq!(
        c["events"],
        format!("/auth/qr/v1/logins/{}/events", login.id)
    );
    let cookie = login.set_cookie.clone().expect("cookie");
    assert!(
        cookie.contains(&format!("Path=/auth/qr/v1/logins/{};", login.id)),
        "{cookie}"
    );
    // The cookie jar sends it back under that path: the whole login works.
    let phone = Phone::sign_in(&app.url("/auth/qr"), ALICE).await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;
    let r = browser.redeem(&login).await;
    r.ok_json(StatusCode::OK);
    let session = r.set_cookie("qrl_session").expect("session cookie");
    assert!(session.contains("Path=/auth/qr;"), "{session}");
    // The page links assets and the SDK under the base path, versioned.
    let page = send(http.get(app.url("/auth/qr/"))).await.text();
    assert!(page.contains("/auth/qr/_qrlogin/assets/"), "{page}");
    assert!(!page.contains("\"/assets/"), "{page}");
    // The OpenAPI document names the public URL as its server.
    let doc = send(http.get(app.url("/auth/qr/openapi.json")))
        .await
        .json();
    assert_eq!(doc["servers"][0]["url"], app.url("/auth/qr"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_strips_the_prefix_gets_routes_at_the_root_and_links_with_the_prefix() {
    let app = app_at("/auth/qr", Some("/"), |_| {}).await;
    // qrlogin serves at the root ...
    let r = send(raw_client().get(app.url("/healthz"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let browser = app.browser();
    let login = browser.create().await;
    // ... but tells the browser the public paths.
    assert_eq!(
        login.created["events"],
        format!("/auth/qr/v1/logins/{}/events", login.id)
    );
    assert_eq!(
        login.created["qr_payload"],
        app.url(&format!("/auth/qr/m/{}", login.id))
    );
    let cookie = login.set_cookie.expect("cookie");
    assert!(
        cookie.contains(&format!("Path=/auth/qr/v1/logins/{};", login.id)),
        "{cookie}"
    );
    let page = send(raw_client().get(app.url("/"))).await.text();
    assert!(page.contains("href=\"/auth/qr/_qrlogin/assets/"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_versioned_and_cached_for_good_only_under_their_version() {
    let app = app(StoreKind::Memory).await;
    let http = raw_client();
    let page = send(http.get(app.url("/"))).await.text();
    let css = page
        .split('"')
        .find(|s| s.starts_with("/_qrlogin/assets/") && s.ends_with("/app.css"))
        .unwrap_or_else(|| panic!("no app.css link in {page}"))
        .to_string();
    let r = send(http.get(app.url(&css))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    // Another version (a page from an older instance) still gets the file,
    // but not to keep.
    let r = send(http.get(app.url("/_qrlogin/assets/0000000000000000/app.css"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["cache-control"], "no-cache");
    // Templates and unknown files are not assets.
    for path in [
        "/_qrlogin/assets/x/login.html",
        "/_qrlogin/assets/x/nope.js",
        "/_qrlogin/assets/x/../Cargo.toml",
        "/assets/app.css",
    ] {
        send(http.get(app.url(path)))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let sdk = send(http.get(app.url("/_qrlogin/sdk/qrlogin.js"))).await;
    assert!(sdk.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(sdk.headers["cache-control"], "public, max-age=300");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branding_reaches_the_pages_and_demo_hints_only_with_the_demo_on() {
    let app = app_at("", None, |cfg| {
        cfg.site_name = "Example <Shop>".into();
        cfg.site_color = Some("#aa3300".into());
        cfg.support_url = Some("https://help.example.com/qr".into());
        cfg.site_logo_url = Some("https://cdn.example.com/logo.svg".into());
    })
    .await;
    let http = raw_client();
    // The login page, the confirm page a phone's camera opens, and the
    // phone app page all carry the site's name (escaped), logo, support
    // link and colours.
    for path in ["/", "/m/abcdefghijklmnopqrstuv", "/phone"] {
        let r = send(http.get(app.url(path))).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let page = r.text();
        assert!(
            page.contains("Example &lt;Shop&gt;"),
            "{path}: escaped site name: {page}"
        );
        assert!(!page.contains("Example <Shop>"), "{path}: {page}");
        assert!(
            page.contains("src=\"https://cdn.example.com/logo.svg\""),
            "{path}: logo: {page}"
        );
        assert!(
            page.contains("href=\"https://help.example.com/qr\""),
            "{path}: support link: {page}"
        );
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("img-src 'self' data: blob: https://cdn.example.com;"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        let brand = page
            .split('"')
            .find(|s| s.ends_with("/brand.css"))
            .unwrap_or_else(|| panic!("{path}: no brand.css link: {page}"))
            .to_string();
        let css = send(http.get(app.url(&brand))).await.text();
        assert!(css.contains("--accent: #aa3300"), "{path}: {css}");
    }
    let page = send(http.get(app.url("/"))).await.text();
    assert!(
        page.contains("alice / wonderland"),
        "demo on: the hint is shown"
    );
    let confirm = send(http.get(app.url("/m/abcdefghijklmnopqrstuv")))
        .await
        .text();
    assert!(confirm.contains("&quot;demo&quot;:true"), "{confirm}");

    // The demo off (a real verifier): no demo hints anywhere, and the
    // pages know it (the confirm page then says to use the site's app).
    let off = app_at("", None, |cfg| {
        cfg.demo_users = None;
        cfg.mobile_verifier = qrlogin_server::config::VerifierKind::Userinfo;
        cfg.mobile_userinfo_url = Some("http://127.0.0.1:9/userinfo".into());
    })
    .await;
    assert!(!off.state().demo_on());
    for path in ["/", "/phone", "/m/abcdefghijklmnopqrstuv"] {
        let page = send(http.get(off.url(path))).await.text();
        assert!(!page.contains("wonderland"), "{path}: {page}");
        if path != "/" {
            assert!(page.contains("&quot;demo&quot;:false"), "{path}: {page}");
        }
    }
    let confirm = send(http.get(off.url("/m/x"))).await.text();
    let script = confirm
        .split('"')
        .find(|s| s.ends_with("/confirm-core.js"))
        .expect("the confirm script's link");
    let js = send(http.get(off.url(script))).await.text();
    assert!(
        js.contains("Open this code with the "),
        "the confirm script has the demo-off message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_links_are_served_at_the_origin_root_for_the_confirm_path() {
    let fp = "14:6D:E9:83:C5:73:06:50:D8:EE:B9:95:2F:34:FC:64:16:A0:83:42:E6:1D:BE:A8:8A:04:96:B2:3F:CF:44:E5";
    let app = app_at("/auth/qr", None, |cfg| {
        cfg.app_links = vec![
            "ios:ABCDE12345.com.example.shop".into(),
            format!("android:com.example.shop@{}", fp.to_lowercase()),
        ];
    })
    .await;
    let http = raw_client();
    let r = send(http.get(app.url("/.well-known/apple-app-site-association"))).await;
    assert_eq!(r.headers["content-type"], "application/json");
    let v = r.ok_json(StatusCode::OK);
    let d = &v["applinks"]["details"][0];
    assert_eq!(d["appIDs"][0], "ABCDE12345.com.example.shop");
    assert_eq!(d["components"][0]["/"], "/auth/qr/m/*");
    assert_eq!(d["paths"][0], "/auth/qr/m/*");
    let v = send(http.get(app.url("/.well-known/assetlinks.json")))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(
        v[0]["relation"][0],
        "delegate_permission/common.handle_all_urls"
    );
    assert_eq!(v[0]["target"]["package_name"], "com.example.shop");
    assert_eq!(v[0]["target"]["sha256_cert_fingerprints"][0], fp);
    // The JWKS: at the root and under the base path (404 in opaque mode).
    for path in ["/.well-known/jwks.json", "/auth/qr/.well-known/jwks.json"] {
        send(http.get(app.url(path)))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    // Without --app-links: nothing there.
    let plain = common::app(StoreKind::Memory).await;
    for path in [
        "/.well-known/apple-app-site-association",
        "/.well-known/assetlinks.json",
    ] {
        send(http.get(plain.url(path)))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

/// JWT mode under a base path: the JWKS is served at the origin root (where
/// verifiers look first) and under the base path (for a proxy that routes
/// only the one location), the same key at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_is_served_at_the_root_and_under_the_base_path() {
    let app = app_at("/auth/qr", None, |cfg| {
        cfg.session_format = qrlogin_server::config::SessionFormat::Jwt;
        cfg.jwt_ephemeral_key = true;
    })
    .await;
    let http = raw_client();
    let mut kids = Vec::new();
    for path in ["/.well-known/jwks.json", "/auth/qr/.well-known/jwks.json"] {
        let v = send(http.get(app.url(path))).await.ok_json(StatusCode::OK);
        let keys = v["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {v}"));
        assert_eq!(keys.len(), 1, "{path}: {v}");
        assert_eq!(keys[0]["kty"], "EC", "{path}: {v}");
        let kid = keys[0]["kid"].as_str().unwrap_or_default().to_string();
        assert!(!kid.is_empty(), "{path}: {v}");
        kids.push(kid);
    }
    assert_eq!(kids[0], kids[1], "one key at both paths");
    // Not at the base path's parent nor anywhere else.
    let r = send(http.get(app.url("/auth/.well-known/jwks.json"))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_branding_and_app_links_refuse_to_start() {
    type Tweak = Box<dyn Fn(&mut ServeConfig)>;
    let bad: Vec<(&str, Tweak)> = vec![
        (
            "--base-path",
            Box::new(|c| c.base_path = Some("auth".into())),
        ),
        (
            "--base-path",
            Box::new(|c| c.base_path = Some("/a//b".into())),
        ),
        (
            "--public-url",
            Box::new(|c| c.public_url = Some("http://h/a?b".into())),
        ),
        (
            "--site-color",
            Box::new(|c| c.site_color = Some("red".into())),
        ),
        (
            "--site-logo-url",
            Box::new(|c| c.site_logo_url = Some("javascript:alert(1)".into())),
        ),
        (
            "--support-url",
            Box::new(|c| c.support_url = Some("ftp://x".into())),
        ),
        (
            "--app-links",
            Box::new(|c| c.app_links = vec!["ios:short.x".into()]),
        ),
        (
            "--app-links",
            Box::new(|c| c.app_links = vec!["android:com.x@12".into()]),
        ),
    ];
    for (flag, tweak) in bad {
        let mut cfg = config();
        tweak(&mut cfg);
        let err = match qrlogin_server::builder::check(&cfg) {
            Ok(()) => panic!("{flag}: accepted {cfg:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(flag), "{flag}: {err}");
        assert!(
            qrlogin_server::QrLogin::builder(cfg).build().await.is_err(),
            "{flag}"
        );
    }
}

per_store!(the_scanner_name_reaches_the_browser_only_when_configured);

async fn the_scanner_name_reaches_the_browser_only_when_configured(kind: StoreKind) {
    for show in [true, false] {
        let mut cfg = config();
        cfg.show_scanner_name = show;
        let app = app_with(kind, cfg, None).await;
        let browser = app.browser();
        let phone = app.phone(ALICE).await;
        let login = browser.create().await;
        let mut sse = browser.events(&login, None).await;
        sse.expect_named("pending").await;
        phone.scan_ok(&login.id).await;
        let ev = sse.expect_named("scanned").await;
        let status = browser.status(&login, "").await.ok_json(StatusCode::OK);
        if show {
            assert_eq!(ev.json()["user"]["id"], ALICE_ID);
            assert_eq!(status["user"]["name"], "Alice");
        } else {
            assert!(ev.json().get("user").is_none(), "{:?}", ev);
            assert!(status.get("user").is_none(), "{status}");
        }
        // After approval the browser learns who it is logged in as anyway.
        phone.approve_ok(&login.id).await;
        let ev = sse.expect_named("approved").await;
        assert_eq!(ev.json()["user"]["id"], ALICE_ID);
    }
}
