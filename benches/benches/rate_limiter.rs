//! Taking one permit when tokens are available: opero's token bucket beside governor's `check`
//! and leaky-bucket's `try_acquire`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use opero::{RateLimitConfig, RateLimiter, TokenBucket};

fn permit(c: &mut Criterion) {
    let ours = TokenBucket::new(&RateLimitConfig::per_second(1e9).with_burst(u32::MAX)).unwrap();
    let governor = governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(u32::MAX).unwrap(),
    ));
    let leaky = leaky_bucket::RateLimiter::builder()
        .max(usize::MAX / 2)
        .initial(usize::MAX / 2)
        .refill(usize::MAX / 4)
        .interval(Duration::from_millis(1))
        .build();

    let mut g = c.benchmark_group("permit");
    g.bench_function("opero", |b| b.iter(|| black_box(ours.try_acquire())));
    g.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check().is_ok()))
    });
    g.bench_function("leaky_bucket", |b| {
        b.iter(|| black_box(leaky.try_acquire(1)))
    });
    g.finish();
}

criterion_group!(benches, permit);
criterion_main!(benches);
