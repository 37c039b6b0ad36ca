//! The no-fault path: a call that succeeds first time, through opero with retries configured,
//! beside the raw call and beside backon with the same retries.

use std::hint::black_box;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder, Retryable};
use criterion::{criterion_group, criterion_main, Criterion};
use opero::{Jitter, NoCache, Opero};

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

/// The no-fault path with the time and result settings all configured (deadline, server hint,
/// `retry_if_ok`, decorrelated jitter, and in async the per-attempt timeout) beside the bare
/// pipeline: what the settings cost a call that needs none of them.
fn no_fault_with_limits(c: &mut Criterion) {
    let bare = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let limited = || {
        Opero::<NoCache>::builder()
            .retries(3)
            .jitter(Jitter::Decorrelated)
            .deadline(Duration::from_secs(10))
            .retry_after(|e: &String| (e == "busy").then_some(Duration::from_secs(1)))
            .retry_if_ok(|v: u64| {
                if v == u64::MAX {
                    Err("max".to_string())
                } else {
                    Ok(v)
                }
            })
    };
    let sync = limited().build().unwrap();
    let mut g = c.benchmark_group("no_fault_limits_sync");
    g.bench_function("bare", |b| b.iter(|| bare.run(|| work(black_box(1)))));
    g.bench_function("deadline_hint_if_ok", |b| {
        b.iter(|| sync.run(|| work(black_box(1))))
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let asynk = limited()
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut g = c.benchmark_group("no_fault_limits_async");
    g.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| bare.run_async(|| work_async(black_box(1))))
    });
    g.bench_function("deadline_timeout_hint_if_ok", |b| {
        b.to_async(&rt)
            .iter(|| asynk.run_async(|| work_async(black_box(1))))
    });
    g.finish();
}

criterion_group!(benches, sync_no_fault, async_no_fault, no_fault_with_limits);
criterion_main!(benches);
