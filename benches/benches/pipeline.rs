//! The no-fault path: a call that succeeds first time, through opero with 3 retries configured,
//! beside the raw call and beside the retry crates a user would pick instead (backon; for async
//! also tokio-retry2 and tryhard) with the same retries. The wrapped forms (`wrap(f).call`) sit
//! beside the plain `run` they should cost no more than.
//!
//! Async paths are measured twice: one `block_on` per iteration (criterion's `to_async`, which
//! includes the executor's entry), and awaited in a loop inside one runtime (the cost a caller
//! inside a task pays).

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder, Retryable};
use criterion::{criterion_group, criterion_main, Criterion};
use opero::{BreakerConfig, Jitter, NoCache, Opero};
use tokio::runtime::Runtime;

fn work(x: u64) -> Result<u64, String> {
    Ok(black_box(x).wrapping_mul(31) ^ 7)
}

async fn work_async(x: u64) -> Result<u64, String> {
    work(x)
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default().with_max_times(3)
}

fn tokio_retry2_strategy() -> impl Iterator<Item = Duration> {
    tokio_retry2::strategy::ExponentialBackoff::from_millis(10).take(3)
}

async fn tokio_retry2_call() -> Result<u64, String> {
    tokio_retry2::Retry::spawn(tokio_retry2_strategy(), || async {
        work_async(black_box(1))
            .await
            .map_err(tokio_retry2::RetryError::transient)
    })
    .await
}

async fn tryhard_call() -> Result<u64, String> {
    tryhard::retry_fn(|| work_async(black_box(1)))
        .retries(3)
        .exponential_backoff(Duration::from_millis(10))
        .await
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Times `iters` awaits of `f()` inside one `block_on`.
fn in_loop<F, Fut>(rt: &Runtime, iters: u64, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f().await);
        }
        start.elapsed()
    })
}

fn sync_no_fault(c: &mut Criterion) {
    let opero = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let wrapped = opero::opero().retries(3).wrap(|x: &u64| work(*x)).unwrap();
    let mut g = c.benchmark_group("no_fault_sync");
    g.bench_function("raw", |b| b.iter(|| work(black_box(1))));
    g.bench_function("opero", |b| b.iter(|| opero.run(|| work(black_box(1)))));
    g.bench_function("opero_wrap", |b| b.iter(|| wrapped.call(black_box(&1))));
    g.bench_function("backon", |b| {
        b.iter(|| (|| work(black_box(1))).retry(backoff()).call())
    });
    g.finish();
}

fn async_no_fault(c: &mut Criterion) {
    let rt = runtime();
    let opero = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let wrapped = opero::opero()
        .retries(3)
        .wrap_async(|x: u64| work_async(x))
        .unwrap();
    let mut g = c.benchmark_group("no_fault_async");
    g.bench_function("raw", |b| b.to_async(&rt).iter(|| work_async(black_box(1))));
    g.bench_function("opero", |b| {
        b.to_async(&rt)
            .iter(|| opero.run_async(|| work_async(black_box(1))))
    });
    g.bench_function("opero_wrap", |b| {
        b.to_async(&rt).iter(|| wrapped.call(black_box(1)))
    });
    g.bench_function("backon", |b| {
        b.to_async(&rt)
            .iter(|| (|| work_async(black_box(1))).retry(backoff()))
    });
    g.bench_function("tokio_retry2", |b| b.to_async(&rt).iter(tokio_retry2_call));
    g.bench_function("tryhard", |b| b.to_async(&rt).iter(tryhard_call));
    g.finish();
}

fn async_no_fault_in_one_runtime(c: &mut Criterion) {
    let rt = runtime();
    let opero = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let wrapped = opero::opero()
        .retries(3)
        .wrap_async(|x: u64| work_async(x))
        .unwrap();
    let mut g = c.benchmark_group("no_fault_async_loop");
    g.bench_function("raw", |b| {
        b.iter_custom(|n| in_loop(&rt, n, || work_async(black_box(1))))
    });
    g.bench_function("opero", |b| {
        b.iter_custom(|n| in_loop(&rt, n, || opero.run_async(|| work_async(black_box(1)))))
    });
    g.bench_function("opero_wrap", |b| {
        b.iter_custom(|n| in_loop(&rt, n, || wrapped.call(black_box(1))))
    });
    g.bench_function("backon", |b| {
        b.iter_custom(|n| in_loop(&rt, n, || (|| work_async(black_box(1))).retry(backoff())))
    });
    g.bench_function("tokio_retry2", |b| {
        b.iter_custom(|n| in_loop(&rt, n, tokio_retry2_call))
    });
    g.bench_function("tryhard", |b| {
        b.iter_custom(|n| in_loop(&rt, n, tryhard_call))
    });
    g.finish();
}

/// The no-fault path with the time and result settings all configured (deadline, server hint,
/// `retry_if_ok`, decorrelated jitter, and in async the per-attempt timeout) beside the bare
/// pipeline: what the settings cost a call that needs none of them. `every_strategy` adds the
/// guards: a circuit breaker and a bulkhead, and in async hedging.
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
    let breaker = || BreakerConfig {
        failure_threshold: Some(5),
        ..Default::default()
    };
    let sync = limited().build().unwrap();
    let every_sync = limited()
        .circuit_breaker(breaker())
        .bulkhead(64, 64)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("no_fault_limits_sync");
    g.bench_function("bare", |b| b.iter(|| bare.run(|| work(black_box(1)))));
    g.bench_function("deadline_hint_if_ok", |b| {
        b.iter(|| sync.run(|| work(black_box(1))))
    });
    g.bench_function("every_strategy", |b| {
        b.iter(|| every_sync.run(|| work(black_box(1))))
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
    let every_async = limited()
        .attempt_timeout(Duration::from_secs(1))
        .circuit_breaker(breaker())
        .bulkhead(64, 64)
        .hedge(Duration::from_secs(1), 1)
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
    g.bench_function("every_strategy", |b| {
        b.to_async(&rt)
            .iter(|| every_async.run_async(|| work_async(black_box(1))))
    });
    g.finish();
}

criterion_group!(
    benches,
    sync_no_fault,
    async_no_fault,
    async_no_fault_in_one_runtime,
    no_fault_with_limits
);
criterion_main!(benches);
