//! QR rendering of a login's `qr_payload`: the module matrix alone
//! (`qrcode`'s low-level API with one fixed mask, no mask scoring), then the
//! SVG and PNG the server sends. SPEC §6 asks for
//! ≥ 20,000 SVG renders per second per core. Run with
//! `cargo bench -p qrlogin-server --bench qr`; figures in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qrlogin_server::qr;
use std::hint::black_box;
use std::time::Duration;

fn rendering(c: &mut Criterion) {
    // A real payload: PUBLIC_URL/m/{22-char login id}.
    let payload = "http://127.0.0.1:8080/m/q3Zb7Wk1xYp0T9sLmN2vAg";
    let mut g = c.benchmark_group("qr");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(qr::encode(black_box(payload)).expect("encode")))
    });
    g.bench_function("svg", |b| {
        b.iter(|| black_box(qr::svg(black_box(payload)).expect("svg")))
    });
    g.bench_function("png", |b| {
        b.iter(|| black_box(qr::png(black_box(payload)).expect("png")))
    });
    g.finish();
}

criterion_group!(benches, rendering);
criterion_main!(benches);
