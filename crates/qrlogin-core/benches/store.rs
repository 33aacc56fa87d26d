//! Memory-store transitions: create, scan, approve, redeem (and the
//! watcher's read), one at a time, each timed alone on a store prepared with
//! logins in the state the transition needs. Run with
//! `cargo bench -p qrlogin-core --bench store`; figures in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion};
use qrlogin_core::{
    BrowserContext, BrowserSecret, LoginId, MemoryStore, NewLogin, SecretHash, SessionToken, Store,
    Ttls, User,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NOW: u64 = 1_700_000_000_000;

fn user() -> User {
    User {
        id: "alice".into(),
        name: "Alice".into(),
    }
}

fn new_login() -> (NewLogin, SecretHash) {
    let hash = BrowserSecret::random().hash();
    (
        NewLogin {
            id: LoginId::random(),
            secret_hash: hash,
            browser: BrowserContext {
                ip: "127.0.0.1".into(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into(),
            },
            match_code: None,
        },
        hash,
    )
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Pending,
    Scanned,
    Approved,
}

/// `n` logins brought to `stage`, untimed.
async fn prepare<S: Store>(store: &S, n: u64, stage: Stage) -> Vec<(LoginId, SecretHash)> {
    let u = user();
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (login, hash) = new_login();
        let id = login.id;
        store.create(login, NOW).await.expect("create");
        if stage >= Stage::Scanned {
            store.scan(&id, &u, NOW).await.expect("scan");
        }
        if stage >= Stage::Approved {
            store.approve(&id, &u.id, NOW).await.expect("approve");
        }
        out.push((id, hash));
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
