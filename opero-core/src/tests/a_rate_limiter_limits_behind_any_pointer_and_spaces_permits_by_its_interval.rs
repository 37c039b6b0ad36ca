//! Rate limiters on their own: `TokenBucket`'s interval is the spacing between permits, and a
//! limiter behind a reference, a `Box` or an `Arc` limits exactly as the limiter itself.

use std::sync::Arc;
use std::time::Duration;

use crate::{RateLimitConfig, RateLimiter, TokenBucket};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every method of `limiter` (a fresh 4-per-second bucket, burst 1, behind some pointer) on a
/// paused clock: each form takes a permit and reports the same waits as the bucket itself.
async fn limits(limiter: &dyn RateLimiter) {
    let start = Instant::now();
    assert!(limiter.try_acquire());
    assert!(!limiter.try_acquire(), "the burst of one is spent");
    // The next permits are a quarter of a second apart.
    assert_eq!(limiter.reserve(), ms(250));
    assert_eq!(limiter.try_reserve().unwrap(), ms(500));
    assert_eq!(limiter.reserve_async().await.unwrap(), ms(750));
    limiter.acquire().await;
    assert_eq!(start.elapsed(), ms(1000));
    // The clock is paused, so the blocking form does not sleep here, but it takes a permit.
    tokio::time::advance(ms(250)).await;
    limiter.acquire_blocking();
    assert!(!limiter.try_acquire(), "acquire_blocking took the permit");
    tokio::time::advance(ms(250)).await;
    assert!(limiter.try_acquire());
}

fn bucket() -> TokenBucket {
    TokenBucket::per_second(4.0).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_limits_by_itself() {
    limits(&bucket()).await;
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_behind_a_reference_limits() {
    let b = bucket();
    limits(&&b).await;
    // The reference shares the bucket: its permits are gone for the bucket too.
    assert!(!b.try_acquire());
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_behind_a_box_limits() {
    limits(&Box::new(bucket())).await;
    let boxed: Box<dyn RateLimiter> = Box::new(bucket());
    limits(&boxed).await;
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_behind_an_arc_limits_for_every_clone() {
    let shared = Arc::new(bucket());
    limits(&shared).await;
    let dynamic: Arc<dyn RateLimiter> = Arc::new(bucket());
    let clone = Arc::clone(&dynamic);
    limits(&clone).await;
    assert!(
        !dynamic.try_acquire(),
        "the clone spent the shared bucket's permit"
    );
}

#[tokio::test(start_paused = true)]
async fn the_interval_is_the_spacing_between_permits() {
    for (rate, burst, interval) in [(4.0, 1, ms(250)), (10.0, 3, ms(100)), (0.5, 1, ms(2000))] {
        let bucket =
            TokenBucket::new(&RateLimitConfig::per_second(rate).with_burst(burst)).unwrap();
        assert_eq!(bucket.interval(), interval);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..burst + 3 {
            bucket.acquire().await;
            at.push(start.elapsed());
        }
        // `burst` permits at once, then one per interval.
        let after_burst: Vec<_> = (1..=3).map(|k| interval * k).collect();
        assert_eq!(
            at[..burst as usize],
            vec![Duration::ZERO; burst as usize][..]
        );
        assert_eq!(at[burst as usize..], after_burst[..]);
    }
    // The interval is rounded to the nanosecond.
    assert_eq!(
        TokenBucket::per_second(6e8).unwrap().interval(),
        Duration::from_nanos(2)
    );
    assert_eq!(
        TokenBucket::per_second(1e9).unwrap().interval(),
        Duration::from_nanos(1)
    );
}

/// A limiter of the user's that implements only the required methods: every permit waits 7 ms.
struct Fixed;

impl RateLimiter for Fixed {
    fn reserve(&self) -> Duration {
        ms(7)
    }
    fn try_acquire(&self) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_s_limiter_reports_its_own_wait_through_the_defaulted_methods() {
    assert_eq!(Fixed.try_reserve().unwrap(), ms(7));
    assert_eq!(Fixed.reserve_async().await.unwrap(), ms(7));
    let start = Instant::now();
    Fixed.acquire().await;
    assert_eq!(start.elapsed(), ms(7));
    let boxed: Box<dyn RateLimiter> = Box::new(Fixed);
    assert_eq!(boxed.try_reserve().unwrap(), ms(7));
    assert!(!boxed.try_acquire());
}

#[test]
fn acquire_blocking_waits_for_the_permit_outside_any_runtime() {
    let bucket = TokenBucket::per_second(50.0).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..3 {
        bucket.acquire_blocking();
    }
    // Two intervals of 20 ms at least (a lower bound: the OS may oversleep).
    assert!(start.elapsed() >= ms(40), "{:?}", start.elapsed());
}
