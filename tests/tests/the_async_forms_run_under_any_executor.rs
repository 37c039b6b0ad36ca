//! The async forms and the async rate-limit acquire work under any executor, not only tokio:
//! driven by `futures::executor::block_on` they wait on a timer thread instead of panicking for
//! want of a reactor. Under tokio they keep following tokio's (paused) clock.

use std::time::{Duration, Instant};

use futures::executor::block_on;
use opero::{Jitter, MemoryCache, NoCache, Opero, RateLimiter, TokenBucket};

#[test]
fn run_async_with_a_rate_limit_and_retries_under_block_on() {
    let opero = Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(Duration::from_millis(20))
        .jitter(Jitter::None)
        .rate_limit(50.0)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut calls = 0;
    let got = block_on(opero.run_async(|| {
        calls += 1;
        let n = calls;
        async move {
            if n < 3 {
                Err("busy")
            } else {
                Ok(n)
            }
        }
    }));
    assert_eq!(got.unwrap(), 3);
    // Two backoff sleeps of 20 and 30 ms, and permits 20 ms apart: at least 50 ms in all.
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(opero.metrics().retries, 2);
}

#[test]
fn cached_call_async_under_block_on() {
    let opero = Opero::<MemoryCache>::builder()
        .cache(true)
        .rate_limit(10.0)
        .build()
        .unwrap();
    for _ in 0..3 {
        let got = block_on(opero.call_async(6u32, |x| async move { Ok::<_, String>(x * 7) }));
        assert_eq!(got.unwrap(), 42);
    }
    assert_eq!(opero.metrics().cache_hits, 2);
}

#[test]
fn the_async_acquire_waits_under_block_on() {
    let bucket = TokenBucket::per_second(20.0).unwrap();
    let start = Instant::now();
    block_on(async {
        for _ in 0..3 {
            bucket.acquire().await;
        }
    });
    // The first permit is free, the next two 50 ms apart.
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn under_tokio_the_schedule_is_exact_on_the_paused_clock() {
    let opero = Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(Duration::from_secs(1))
        .backoff_factor(2.0)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let got = opero.run_async(|| async { Err::<(), _>("down") }).await;
    assert_eq!(got.unwrap_err().len(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}
