//! The store contract, run against RedisStore on a private redis-server
//! (one per case, over a unix socket).

use qrlogin_core::Ttls;
use qrlogin_redis::RedisStore;
use qrlogin_testkit::{RedisServer, StoreUnderTest};
use std::sync::Arc;
use std::time::Duration;

async fn make(ttls: Ttls) -> StoreUnderTest {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), ttls, Duration::from_secs(2))
        .await
        .expect("connect to the private redis");
    StoreUnderTest::new(Arc::new(store)).keep(server)
}

qrlogin_testkit::store_contract!(make);

/// The same store over TCP (`redis://`), for a few representative cases.
mod over_tcp {
    use super::*;
    use qrlogin_testkit::contract;

    async fn make_tcp(ttls: Ttls) -> StoreUnderTest {
        let server = RedisServer::start_tcp();
        let store = RedisStore::connect(&server.url(), ttls, Duration::from_secs(2))
            .await
            .expect("connect over tcp");
        StoreUnderTest::new(Arc::new(store)).keep(server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn happy_path() {
        contract::happy_path(make_tcp).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hints_follow_transitions() {
        contract::hints_follow_transitions(make_tcp).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_redeems_one_wins() {
        contract::concurrent_redeems_one_wins(make_tcp).await;
    }
}
