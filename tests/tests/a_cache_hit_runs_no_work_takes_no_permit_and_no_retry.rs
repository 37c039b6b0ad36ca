//! A cache hit returns at once: it runs no work, takes no rate-limit permit and runs no retry.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opero::{MemoryCache, Opero, RateLimiter, TokenBucket};

#[test]
fn hits_neither_call_nor_take_permits() {
    // One permit per hour: a second permit would block the test for an hour.
    let bucket = Arc::new(TokenBucket::per_second(1.0 / 3600.0).unwrap());
    let opero = Opero::<MemoryCache>::builder()
        .cache(true)
        .name("length")
        .rate_limiter(bucket.clone())
        .retries(3)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    for _ in 0..1_000 {
        let v = opero
            .call(&"question", |q: &&str| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(q.len())
            })
            .unwrap();
        assert_eq!(v, 8);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let m = opero.metrics();
    assert_eq!((m.cache_hits, m.cache_misses), (999, 1));
    assert_eq!(m.retries, 0);
    assert_eq!(m.rate_limit_waits, 0);
    // The bucket's only token went to the single miss; none is available now.
    assert!(!bucket.try_acquire());
}

#[tokio::test(start_paused = true)]
async fn async_hits_take_no_time_and_no_permit() {
    let opero = Opero::<MemoryCache>::builder()
        .cache(true)
        .name("square")
        .rate_limit(1.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    for _ in 0..50 {
        let calls = calls.clone();
        let v = opero
            .call_async(9u64, move |x: u64| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(x * x)
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 81);
    }
    // Had each call taken a permit at 1/s, this would be 49 s of virtual time.
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_hit_after_a_flaky_miss_does_not_retry() {
    let opero = Opero::<MemoryCache>::builder()
        .cache(true)
        .name("flaky")
        .retries(2)
        .min_delay(Duration::ZERO)
        .build()
        .unwrap();
    let mut calls = 0;
    let mut flaky = |x: &u8| {
        calls += 1;
        if calls == 1 {
            Err("flaky")
        } else {
            Ok(*x)
        }
    };
    for _ in 0..2 {
        assert_eq!(opero.call(&1u8, &mut flaky).unwrap(), 1);
        assert_eq!(opero.metrics().retries, 1);
    }
    assert_eq!(calls, 2);
}
