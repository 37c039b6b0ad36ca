//! A closed circuit breaker's overhead on a call that succeeds, opero beside `failsafe`, with
//! the same triggers: 5 consecutive failures, and a failure rate over a 30 s window with a
//! minimum of 10 calls. Also the whole pipeline with a breaker beside the same pipeline without.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use failsafe::{backoff, failure_policy, CircuitBreaker as _};
use opero::{layers, BreakerConfig, CircuitBreaker, NoCache, Opero};

fn work(x: u64) -> Result<u64, String> {
    Ok(black_box(x).wrapping_mul(31) ^ 7)
}

const OPEN: Duration = Duration::from_secs(30);

fn consecutive() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: Some(5),
        open_duration: OPEN,
        ..Default::default()
    }
}

fn ratio() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: None,
        failure_ratio: Some(0.5),
        window: Duration::from_secs(30),
        min_throughput: 10,
        open_duration: OPEN,
        half_open_probes: 1,
    }
}

fn closed_consecutive(c: &mut Criterion) {
    let opero_breaker = CircuitBreaker::new(&consecutive()).unwrap();
    let failsafe_breaker = failsafe::Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            5,
            backoff::constant(OPEN),
        ))
        .build();
    let mut g = c.benchmark_group("closed_breaker_consecutive");
    g.bench_function("raw", |b| b.iter(|| work(black_box(1))));
    g.bench_function("opero", |b| {
        b.iter(|| layers::circuit_breaker(&opero_breaker, || work(black_box(1))))
    });
    g.bench_function("failsafe", |b| {
        b.iter(|| failsafe_breaker.call(|| work(black_box(1))))
    });
    g.finish();
}

fn closed_ratio(c: &mut Criterion) {
    let opero_breaker = CircuitBreaker::new(&ratio()).unwrap();
    let failsafe_breaker = failsafe::Config::new()
        .failure_policy(failure_policy::success_rate_over_time_window(
            0.5,
            10,
            Duration::from_secs(30),
            backoff::constant(OPEN),
        ))
        .build();
    let mut g = c.benchmark_group("closed_breaker_ratio");
    g.bench_function("opero", |b| {
        b.iter(|| layers::circuit_breaker(&opero_breaker, || work(black_box(1))))
    });
    g.bench_function("failsafe", |b| {
        b.iter(|| failsafe_breaker.call(|| work(black_box(1))))
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let bare = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let guarded = Opero::<NoCache>::builder()
        .retries(3)
        .circuit_breaker(consecutive())
        .build()
        .unwrap();
    let mut g = c.benchmark_group("pipeline_with_closed_breaker");
    g.bench_function("opero_without_breaker", |b| {
        b.iter(|| bare.run(|| work(black_box(1))))
    });
    g.bench_function("opero_with_breaker", |b| {
        b.iter(|| guarded.run(|| work(black_box(1))))
    });
    g.finish();
}

criterion_group!(benches, closed_consecutive, closed_ratio, pipeline);
criterion_main!(benches);
