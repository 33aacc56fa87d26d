//! Memory-store transitions: create, scan, approve, redeem (and the
//! watcher's read), one at a time, each timed alone on a store prepared with
//! logins in the state the transition needs. Run with
//! `cargo bench -p qrlogin-core --bench store`; figures in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion};
use qrlogin_core::{LoginId, MemoryStore, SecretHash, SessionToken, Store, Ttls};
use qrlogin_testkit::bench::{login as new_login, staged_login, user, Stage};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NOW: u64 = 1_700_000_000_000;

/// `n` logins brought to `stage`, untimed.
async fn prepare<S: Store>(store: &S, n: u64, stage: Stage) -> Vec<(LoginId, SecretHash)> {
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(staged_login(store, stage, NOW).await);
    }
    out
}

fn transitions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("memory_store");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));

    g.bench_function("create", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let store = MemoryStore::new(Ttls::default());
                let logins: Vec<_> = (0..iters).map(|_| new_login().0).collect();
                let t = Instant::now();
                for l in logins {
                    black_box(store.create(l, NOW).await.expect("create"));
                }
                t.elapsed()
            })
        })
    });

    g.bench_function("get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let store = MemoryStore::new(Ttls::default());
                let ids = prepare(&store, iters, Stage::Pending).await;
                let t = Instant::now();
                for (id, _) in &ids {
                    black_box(store.get(id, NOW).await.expect("get"));
                }
                t.elapsed()
            })
        })
    });

    g.bench_function("scan", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let store = MemoryStore::new(Ttls::default());
                let ids = prepare(&store, iters, Stage::Pending).await;
                let u = user();
                let t = Instant::now();
                for (id, _) in &ids {
                    black_box(store.scan(id, &u, NOW).await.expect("scan"));
                }
                t.elapsed()
            })
        })
    });

    g.bench_function("approve", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let store = MemoryStore::new(Ttls::default());
                let ids = prepare(&store, iters, Stage::Scanned).await;
                let t = Instant::now();
                for (id, _) in &ids {
                    black_box(store.approve(id, "alice", NOW).await.expect("approve"));
                }
                t.elapsed()
            })
        })
    });

    g.bench_function("redeem", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let store = MemoryStore::new(Ttls::default());
                let ids = prepare(&store, iters, Stage::Approved).await;
                let tokens: Vec<_> = ids
                    .iter()
                    .map(|(id, _)| SessionToken::new_for(*id))
                    .collect();
                let t = Instant::now();
                for ((id, hash), token) in ids.iter().zip(&tokens) {
                    black_box(store.redeem(id, hash, token, NOW).await.expect("redeem"));
                }
                t.elapsed()
            })
        })
    });

    g.bench_function("full_login", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let store = MemoryStore::new(Ttls::default());
                let logins: Vec<_> = (0..iters).map(|_| new_login()).collect();
                let u = user();
                let t = Instant::now();
                for (l, hash) in logins {
                    let id = l.id;
                    store.create(l, NOW).await.expect("create");
                    store.get(&id, NOW).await.expect("get");
                    store.scan(&id, &u, NOW).await.expect("scan");
                    store.approve(&id, &u.id, NOW).await.expect("approve");
                    let token = SessionToken::new_for(id);
                    black_box(store.redeem(&id, &hash, &token, NOW).await.expect("redeem"));
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, transitions);
criterion_main!(benches);
