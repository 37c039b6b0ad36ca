//! `layers`: each part of the pipeline on its own, sync and async, gives the function's value
//! and applies its one policy.

use std::time::Duration;

use tokio::time::Instant;

use super::a_pipeline_caches_falls_back_retries_and_limits_on_an_exact_schedule::MapCache;
use crate::{
    layers, AttemptError, Backoff, BreakerConfig, Bulkhead, BulkheadConfig, BulkheadFull, CacheKey,
    CircuitBreaker, Fallbacks, FunctionLabel, HedgeConfig, Jitter, RateLimiter, RetryConfig,
    TokenBucket,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy() -> Backoff {
    Backoff::new(RetryConfig {
        retries: 2,
        min_delay: ms(10),
        backoff_factor: 2.0,
        jitter: Jitter::None,
        ..Default::default()
    })
    .unwrap()
}

const KEY: CacheKey<'static> = CacheKey {
    namespace: "layers",
    function: FunctionLabel::Named("f"),
    hash: 1,
};

#[test]
fn retry_runs_until_success_or_the_policy_stops() {
    let mut calls = 0;
    let out = layers::retry(&policy(), || {
        calls += 1;
        if calls < 3 {
            Err("again")
        } else {
            Ok(calls * 10)
        }
    });
    assert_eq!(out.unwrap(), 30);
    let err = layers::retry(&policy(), || Err::<(), _>("down")).unwrap_err();
    assert_eq!(err.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_async_waits_the_policy_s_delays() {
    let start = Instant::now();
    let mut calls = 0;
    let out = layers::retry_async(&policy(), || {
        calls += 1;
        let n = calls;
        async move {
            if n < 3 {
                Err("again")
            } else {
                Ok(n * 10)
            }
        }
    })
    .await;
    assert_eq!(out.unwrap(), 30);
    assert_eq!(start.elapsed(), ms(30));
}

#[test]
fn rate_limited_takes_a_permit_and_gives_the_value() {
    let bucket = TokenBucket::per_second(1.0).unwrap();
    assert_eq!(layers::rate_limited(&bucket, || 7), 7);
    assert!(!bucket.try_acquire(), "the call took the only permit");
}

#[tokio::test(start_paused = true)]
async fn rate_limited_async_waits_for_its_permit() {
    let bucket = TokenBucket::per_second(10.0).unwrap();
    let start = Instant::now();
    assert_eq!(layers::rate_limited_async(&bucket, || async { 1 }).await, 1);
    assert_eq!(layers::rate_limited_async(&bucket, || async { 2 }).await, 2);
    assert_eq!(start.elapsed(), ms(100));
}

#[test]
fn fallback_tries_each_value_once_in_order() {
    let values = Fallbacks::new(vec![1, 2, 3]).unwrap();
    let mut log = Vec::new();
    let out = layers::fallback(&values, |v: &i32| {
        log.push(*v);
        if *v == 2 {
            Ok(v * 10)
        } else {
            Err("no")
        }
    });
    assert_eq!(out.unwrap(), 20);
    assert_eq!(log, [1, 2]);
    let err = layers::fallback(&values, |_: &i32| Err::<(), _>("no")).unwrap_err();
    assert_eq!((err.len(), err.fallbacks_tried()), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn fallback_async_tries_each_value_once_in_order() {
    let values = Fallbacks::new(vec![1, 2, 3]).unwrap();
    let out = layers::fallback_async(&values, |v: i32| async move {
        if v == 3 {
            Ok(v)
        } else {
            Err("no")
        }
    })
    .await;
    assert_eq!(out.unwrap(), 3);
    let err = layers::fallback_async(&values, |_: i32| async { Err::<(), _>("no") })
        .await
        .unwrap_err();
    assert_eq!(err.len(), 3);
}

#[test]
fn cached_serves_a_stored_value_and_never_stores_an_error() {
    let cache = MapCache::default();
    let mut runs = 0;
    let mut call = |fail: bool| {
        layers::cached(&cache, &KEY, None, || {
            runs += 1;
            if fail {
                Err("down")
            } else {
                Ok(5u32)
            }
        })
    };
    assert_eq!(call(true), Err("down"));
    assert_eq!(call(false), Ok(5));
    assert_eq!(call(true), Ok(5), "a hit: the function does not run");
    assert_eq!(runs, 2);
}

#[tokio::test]
async fn cached_async_serves_a_stored_value_and_never_stores_an_error() {
    let cache = MapCache::default();
    let failed: Result<u32, _> =
        layers::cached_async(&cache, &KEY, None, || async { Err("down") }).await;
    assert_eq!(failed, Err("down"));
    assert_eq!(cache.len(), 0);
    let first: Result<u32, &str> =
        layers::cached_async(&cache, &KEY, None, || async { Ok(6) }).await;
    assert_eq!(first, Ok(6));
    let hit: Result<u32, &str> =
        layers::cached_async(&cache, &KEY, None, || async { Err("not run") }).await;
    assert_eq!(hit, Ok(6));
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(&BreakerConfig {
        failure_threshold: Some(2),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn circuit_breaker_reports_outcomes_and_refuses_once_open() {
    let b = breaker();
    assert_eq!(layers::circuit_breaker(&b, || Ok::<_, &str>(1)), Ok(1));
    assert_eq!(
        layers::circuit_breaker(&b, || Err::<u8, _>("down")),
        Err(AttemptError::Failed("down"))
    );
    assert_eq!(layers::circuit_breaker(&b, || Ok::<_, &str>(2)), Ok(2));
    for _ in 0..2 {
        let _ = layers::circuit_breaker(&b, || Err::<u8, _>("down"));
    }
    assert_eq!(
        layers::circuit_breaker(&b, || Ok::<_, &str>(3)),
        Err(AttemptError::BreakerOpen)
    );
}

#[tokio::test]
async fn circuit_breaker_async_reports_outcomes_and_refuses_once_open() {
    let b = breaker();
    assert_eq!(
        layers::circuit_breaker_async(&b, || async { Ok::<_, &str>(1) }).await,
        Ok(1)
    );
    assert_eq!(
        layers::circuit_breaker_async(&b, || async { Err::<u8, _>("down") }).await,
        Err(AttemptError::Failed("down"))
    );
    let _ = layers::circuit_breaker_async(&b, || async { Err::<u8, _>("down") }).await;
    assert_eq!(
        layers::circuit_breaker_async(&b, || async { Ok::<_, &str>(3) }).await,
        Err(AttemptError::BreakerOpen)
    );
}

#[tokio::test]
async fn bulkhead_runs_within_its_slots_and_refuses_past_them() {
    let bulkhead = Bulkhead::new(&BulkheadConfig {
        max_concurrent: 1,
        max_queue: 0,
    })
    .unwrap();
    assert_eq!(layers::bulkhead(&bulkhead, || 4), Ok(4));
    assert_eq!(
        layers::bulkhead_async(&bulkhead, || async { 5 }).await,
        Ok(5)
    );
    let full = BulkheadFull {
        max_concurrent: 1,
        max_queue: 0,
    };
    let inner = layers::bulkhead(&bulkhead, || layers::bulkhead(&bulkhead, || 6));
    assert_eq!(inner, Ok(Err(full)));
    let inner = layers::bulkhead_async(&bulkhead, || {
        layers::bulkhead_async(&bulkhead, || async { 7 })
    })
    .await;
    assert_eq!(inner, Ok(Err(full)));
}

#[tokio::test(start_paused = true)]
async fn hedged_starts_a_second_attempt_after_the_delay_and_the_first_success_wins() {
    let hedge = HedgeConfig {
        delay: ms(100),
        max_hedges: 1,
    };
    let start = Instant::now();
    let mut started = 0;
    let out = layers::hedged(&hedge, || {
        started += 1;
        let n = started;
        async move {
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Ok::<_, String>((n, start.elapsed()))
        }
    })
    .await;
    assert_eq!(out.unwrap(), (2, ms(100)));
}
