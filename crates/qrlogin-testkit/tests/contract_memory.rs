//! The store contract, run against the in-memory reference store.

use qrlogin_core::{MemoryStore, Ttls};
use qrlogin_testkit::StoreUnderTest;
use std::sync::Arc;

async fn make(ttls: Ttls) -> StoreUnderTest {
    Arc::new(MemoryStore::new(ttls)).into()
}

qrlogin_testkit::store_contract!(make);

/// `run_all` is the sequential form of the same suite; keep it working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_sequentially() {
    qrlogin_testkit::contract::run_all(make).await;
}
