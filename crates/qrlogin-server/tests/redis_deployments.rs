//! The service started with `--store redis+cluster://…` and
//! `--store redis+sentinel://…` (through `open_store`, as `qrlogin serve`
//! does) completes a login over HTTP: browser on the service, phone
//! scanning and approving, the browser woken by the pub/sub hint and
//! redeeming.

mod common;

use common::*;
use qrlogin_testkit::{RedisCluster, RedisSentinel};
use reqwest::StatusCode;

/// One whole login through `app`, the browser following it over SSE.
async fn one_login(app: &App) {
    let browser = app.browser();
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    phone.approve_ok(&login.id).await;
    sse.expect_named("approved").await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
    sse.expect_named("consumed").await;
    let me = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(me["user"]["id"], ALICE_ID, "{me}");
}

/// The service on the store `url`, opened as `--store url` would be.
async fn serve(url: String) -> App {
    let mut cfg = config();
    cfg.store = url;
    let store = within(
        "opening the store",
        qrlogin_server::builder::open_store(&cfg),
    )
    .await
    .unwrap_or_else(|e| panic!("--store {}: {e:#}", cfg.store));
    spawn_on(cfg, store, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_over_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("starting the cluster");
    let app = serve(cluster.url()).await;
    one_login(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_through_sentinel() {
    let setup = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .expect("starting the sentinel setup");
    let app = serve(setup.url()).await;
    one_login(&app).await;
}
