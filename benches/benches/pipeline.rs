//! The no-fault path: a call that succeeds first time, through opero with retries configured,
//! beside the raw call and beside backon with the same retries.

use std::hint::black_box;

use backon::{BlockingRetryable, ExponentialBuilder, Retryable};
use criterion::{criterion_group, criterion_main, Criterion};
use opero::{NoCache, Opero};

fn work(x: u64) -> Result<u64, String> {
    Ok(black_box(x).wrapping_mul(31) ^ 7)
}

async fn work_async(x: u64) -> Result<u64, String> {
    work(x)
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default().with_max_times(3)
}

fn sync_no_fault(c: &mut Criterion) {
    let opero = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let mut g = c.benchmark_group("no_fault_sync");
    g.bench_function("raw", |b| b.iter(|| work(black_box(1))));
    g.bench_function("opero", |b| b.iter(|| opero.run(|| work(black_box(1)))));
    g.bench_function("backon", |b| {
        b.iter(|| (|| work(black_box(1))).retry(backoff()).call())
    });
    g.finish();
}

fn async_no_fault(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let opero = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let mut g = c.benchmark_group("no_fault_async");
    g.bench_function("raw", |b| b.to_async(&rt).iter(|| work_async(black_box(1))));
    g.bench_function("opero", |b| {
        b.to_async(&rt)
            .iter(|| opero.run_async(|| work_async(black_box(1))))
    });
    g.bench_function("backon", |b| {
        b.to_async(&rt)
            .iter(|| (|| work_async(black_box(1))).retry(backoff()))
    });
    g.finish();
}

criterion_group!(benches, sync_no_fault, async_no_fault);
criterion_main!(benches);
