//! Redis-store transitions against a private, throw-away `redis-server`
//! (started here on a unix socket, killed at the end; panics with the
//! apt-get command when redis-server is missing):
//!
//! * one at a time (latency of one script round trip): create, get, scan,
//!   approve, redeem;
//! * `full_login/inflight_64`: whole logins (create, watcher's read, scan,
//!   approve, redeem) with 64 in flight on the store's one multiplexed
//!   connection: the store-level ceiling in logins/s, without HTTP.
//!
//! Run with `cargo bench -p qrlogin-redis --bench store`; figures in
//! BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::stream::{self, StreamExt};
use qrlogin_core::{LoginId, SecretHash, SessionToken, Store, Ttls};
use qrlogin_redis::RedisStore;
use qrlogin_testkit::bench::{login as new_login, staged_login, user, Stage};
use qrlogin_testkit::RedisServer;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `n` logins brought to `stage`, untimed (32 in flight to keep set-up short).
async fn prepare(store: &RedisStore, n: u64, stage: Stage) -> Vec<(LoginId, SecretHash)> {
    let now = now_ms();
    stream::iter(0..n)
        .map(|_| staged_login(store, stage, now))
        .buffer_unordered(32)
        .collect()
        .await
}

/// Empties the private server between measurements so memory stays flat.
async fn flush(url: &str) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("FLUSHALL");
}

async fn one_login(store: &RedisStore) {
    let now = now_ms();
    let u = user();
    let (l, hash) = new_login();
    let id = l.id;
    store.create(l, now).await.expect("create");
    store.get(&id, now).await.expect("get");
    store.scan(&id, &u, now).await.expect("scan");
    store.approve(&id, &u.id, now).await.expect("approve");
    let token = SessionToken::new_for(id);
    black_box(store.redeem(&id, &hash, &token, now).await.expect("redeem"));
}

fn transitions(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(RedisStore::connect(
            &url,
            Ttls::default(),
            Duration::from_secs(5),
        ))
        .expect("connect to the private redis-server");

    let mut g = c.benchmark_group("redis_store");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);

    g.bench_function("create", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let logins: Vec<_> = (0..iters).map(|_| new_login().0).collect();
                let now = now_ms();
                let t = Instant::now();
                for l in logins {
                    black_box(store.create(l, now).await.expect("create"));
                }
                let e = t.elapsed();
                flush(&url).await;
                e
            })
        })
    });

    g.bench_function("get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let ids = prepare(&store, iters, Stage::Pending).await;
                let t = Instant::now();
                for (id, _) in &ids {
                    black_box(store.get(id, now_ms()).await.expect("get"));
                }
                let e = t.elapsed();
                flush(&url).await;
                e
            })
        })
    });

    g.bench_function("scan", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let ids = prepare(&store, iters, Stage::Pending).await;
                let u = user();
                let now = now_ms();
                let t = Instant::now();
                for (id, _) in &ids {
                    black_box(store.scan(id, &u, now).await.expect("scan"));
                }
                let e = t.elapsed();
                flush(&url).await;
                e
            })
        })
    });

    g.bench_function("approve", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let ids = prepare(&store, iters, Stage::Scanned).await;
                let now = now_ms();
                let t = Instant::now();
                for (id, _) in &ids {
                    black_box(store.approve(id, "alice", now).await.expect("approve"));
                }
                let e = t.elapsed();
                flush(&url).await;
                e
            })
        })
    });

    g.bench_function("redeem", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let ids = prepare(&store, iters, Stage::Approved).await;
                let tokens: Vec<_> = ids
                    .iter()
                    .map(|(id, _)| SessionToken::new_for(*id))
                    .collect();
                let now = now_ms();
                let t = Instant::now();
                for ((id, hash), token) in ids.iter().zip(&tokens) {
                    black_box(store.redeem(id, hash, token, now).await.expect("redeem"));
                }
                let e = t.elapsed();
                flush(&url).await;
                e
            })
        })
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("full_login/inflight_64", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                stream::iter(0..iters)
                    .map(|_| one_login(&store))
                    .buffer_unordered(64)
                    .collect::<Vec<()>>()
                    .await;
                let e = t.elapsed();
                flush(&url).await;
                e
            })
        })
    });
    g.finish();
    drop(store);
    drop(server);
}

criterion_group!(benches, transitions);
criterion_main!(benches);
