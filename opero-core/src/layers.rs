//! Each layer of the pipeline on its own, for code that wants one without configuring the rest:
//! the counterparts of the original's `get_retry_decorator`, `get_rate_limit_decorator`,
//! `get_fallback_decorator` and `get_cache_decorator`, and the circuit breaker, bulkhead and
//! hedging on their own.
//!
//! # Examples
//!
//! Retry a closure, no cache, no limiter:
//!
//! ```
//! use opero_core::{layers, Backoff, Jitter, RetryConfig};
//! use std::time::Duration;
//!
//! let policy = Backoff::new(RetryConfig { retries: 2, min_delay: Duration::ZERO, jitter: Jitter::None, ..Default::default() }).unwrap();
//! let mut calls = 0;
//! let out = layers::retry(&policy, || { calls += 1; if calls < 3 { Err("again") } else { Ok(calls) } });
//! assert_eq!(out.unwrap(), 3);
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::breaker::CircuitBreaker;
use crate::bulkhead::{Bulkhead, BulkheadFull};
use crate::cache::{CacheBackend, CacheValue};
use crate::error::{AllFailedError, AttemptError};
use crate::hedge::HedgeConfig;
use crate::key::CacheKey;
use crate::opero::Fallbacks;
use crate::pipeline::Attempts;
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;

/// A policy that never retries: one attempt per fallback value.
struct Once;

impl<E> RetryPolicy<E> for Once {
    fn retry_delay(&self, _attempt: u32, _error: &E) -> Option<Duration> {
        None
    }
}

/// Runs `f` until it succeeds or `policy` stops retrying.
pub fn retry<T, E, P>(
    policy: &P,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, AllFailedError<E>>
where
    P: RetryPolicy<E> + ?Sized,
    E: Display,
{
    Attempts {
        policy,
        limiter: None,
        metrics: None,
        limits: Default::default(),
        guards: None,
    }
    .run_sync(&[()], |_| f().map_err(AttemptError::Failed))
}

/// The async form of [`retry`].
pub async fn retry_async<T, E, P, Fut>(
    policy: &P,
    mut f: impl FnMut() -> Fut,
) -> Result<T, AllFailedError<E>>
where
    P: RetryPolicy<E> + ?Sized,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    Attempts {
        policy,
        limiter: None,
        metrics: None,
        limits: Default::default(),
        guards: None,
    }
    .run_async(&[()], |_| crate::opero::Failed::new(f()))
    .await
}

/// Takes a permit from `limiter` (blocking the thread while waiting), then runs `f`.
///
/// ```
/// use opero_core::{layers, TokenBucket};
/// let bucket = TokenBucket::per_second(100.0).unwrap();
/// assert_eq!(layers::rate_limited(&bucket, || 7), 7);
/// ```
pub fn rate_limited<T, R: RateLimiter + ?Sized>(limiter: &R, f: impl FnOnce() -> T) -> T {
    limiter.acquire_blocking();
    f()
}

/// Waits for a permit from `limiter` without blocking, then runs `f`.
pub async fn rate_limited_async<R, Fut>(limiter: &R, f: impl FnOnce() -> Fut) -> Fut::Output
where
    R: RateLimiter + ?Sized,
    Fut: Future,
{
    limiter.acquire().await;
    f().await
}

/// Tries `f` with each value in order, once each, until one succeeds.
///
/// ```
/// use opero_core::{layers, Fallbacks};
/// let mirrors = Fallbacks::new(vec!["down.example", "up.example"]).unwrap();
/// let got = layers::fallback(&mirrors, |m: &&str| if m.starts_with("up") { Ok(*m) } else { Err("unreachable") });
/// assert_eq!(got.unwrap(), "up.example");
/// ```
pub fn fallback<V, T, E>(
    values: &Fallbacks<V>,
    mut f: impl FnMut(&V) -> Result<T, E>,
) -> Result<T, AllFailedError<E>>
where
    E: Display,
{
    Attempts {
        policy: &Once,
        limiter: None,
        metrics: None,
        limits: Default::default(),
        guards: None,
    }
    .run_sync(values.as_slice(), |v| f(v).map_err(AttemptError::Failed))
}

/// The async form of [`fallback`]; each attempt gets a clone of its value.
pub async fn fallback_async<V, T, E, Fut>(
    values: &Fallbacks<V>,
    mut f: impl FnMut(V) -> Fut,
) -> Result<T, AllFailedError<E>>
where
    V: Clone,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    Attempts {
        policy: &Once,
        limiter: None,
        metrics: None,
        limits: Default::default(),
        guards: None,
    }
    .run_async(values.as_slice(), |v| {
        crate::opero::Failed::new(f(v.clone()))
    })
    .await
}

/// Returns the cached value under `key`, or runs `f` and caches its success for `ttl`. A backend
/// failure is logged and the call runs uncached.
pub fn cached<C, T, E>(
    cache: &C,
    key: &CacheKey<'_>,
    ttl: Option<Duration>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E>
where
    C: CacheBackend + ?Sized,
    T: CacheValue,
{
    match cache.get::<T>(key) {
        Ok(Some(hit)) => return Ok(hit),
        Ok(None) => {}
        Err(e) => tracing::warn!(target: "opero", error = %e, "cache get failed; running uncached"),
    }
    let out = f();
    if let Ok(value) = &out {
        if let Err(e) = cache.set(key, value, ttl) {
            tracing::warn!(target: "opero", error = %e, "cache set failed");
        }
    }
    out
}

/// The async form of [`cached`].
pub async fn cached_async<C, T, E, Fut>(
    cache: &C,
    key: &CacheKey<'_>,
    ttl: Option<Duration>,
    f: impl FnOnce() -> Fut,
) -> Result<T, E>
where
    C: CacheBackend + ?Sized,
    T: CacheValue,
    Fut: Future<Output = Result<T, E>>,
{
    match cache.get_async::<T>(key).await {
        Ok(Some(hit)) => return Ok(hit),
        Ok(None) => {}
        Err(e) => tracing::warn!(target: "opero", error = %e, "cache get failed; running uncached"),
    }
    let out = f().await;
    if let Ok(value) = &out {
        if let Err(e) = cache.set_async(key, value, ttl).await {
            tracing::warn!(target: "opero", error = %e, "cache set failed");
        }
    }
    out
}

/// Runs `f` through `breaker`: refused at once with [`AttemptError::BreakerOpen`] while the
/// breaker is open, else run, its outcome counted. An `Err` from `f` is a failure.
///
/// ```
/// use opero_core::{layers, AttemptError, BreakerConfig, CircuitBreaker};
///
/// let breaker = CircuitBreaker::new(&BreakerConfig { failure_threshold: Some(1), ..Default::default() }).unwrap();
/// assert_eq!(layers::circuit_breaker(&breaker, || Err::<(), _>("down")), Err(AttemptError::Failed("down")));
/// assert_eq!(layers::circuit_breaker(&breaker, || Ok::<_, &str>(1)), Err(AttemptError::BreakerOpen));
/// ```
pub fn circuit_breaker<T, E>(
    breaker: &CircuitBreaker,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, AttemptError<E>> {
    let permit = breaker.try_acquire().ok_or(AttemptError::BreakerOpen)?;
    match f() {
        Ok(v) => {
            permit.success();
            Ok(v)
        }
        Err(e) => {
            permit.failure();
            Err(AttemptError::Failed(e))
        }
    }
}

/// The async form of [`circuit_breaker`]. A call dropped before it ends counts as neither
/// success nor failure.
pub async fn circuit_breaker_async<T, E, Fut>(
    breaker: &CircuitBreaker,
    f: impl FnOnce() -> Fut,
) -> Result<T, AttemptError<E>>
where
    Fut: Future<Output = Result<T, E>>,
{
    let permit = breaker.try_acquire().ok_or(AttemptError::BreakerOpen)?;
    match f().await {
        Ok(v) => {
            permit.success();
            Ok(v)
        }
        Err(e) => {
            permit.failure();
            Err(AttemptError::Failed(e))
        }
    }
}

/// Runs `f` in a slot of `bulkhead`, blocking the thread in its queue while every slot is
/// taken; [`BulkheadFull`] when the queue is full too.
///
/// ```
/// use opero_core::{layers, Bulkhead, BulkheadConfig};
///
/// let bulkhead = Bulkhead::new(&BulkheadConfig { max_concurrent: 1, max_queue: 0 }).unwrap();
/// assert_eq!(layers::bulkhead(&bulkhead, || 7), Ok(7));
/// let _held = bulkhead.enter_blocking().unwrap();
/// assert_eq!(layers::bulkhead(&bulkhead, || 7).unwrap_err().max_concurrent, 1);
/// ```
pub fn bulkhead<T>(bulkhead: &Bulkhead, f: impl FnOnce() -> T) -> Result<T, BulkheadFull> {
    let _slot = bulkhead.enter_blocking()?;
    Ok(f())
}

/// The async form of [`bulkhead`]: waits for a slot without blocking.
pub async fn bulkhead_async<Fut: Future>(
    bulkhead: &Bulkhead,
    f: impl FnOnce() -> Fut,
) -> Result<Fut::Output, BulkheadFull> {
    let _slot = bulkhead.enter().await?;
    Ok(f().await)
}

/// Runs `f`, and when it has not answered after `hedge.delay`, runs it again alongside, up to
/// `hedge.max_hedges` more times; the first success wins and the other runs are dropped. When
/// every run fails, the error holds each one's.
///
/// ```
/// use opero_core::{layers, HedgeConfig};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let hedge = HedgeConfig { delay: Duration::from_millis(100), max_hedges: 1 };
/// let start = tokio::time::Instant::now();
/// let mut runs = 0;
/// let winner = layers::hedged(&hedge, || {
///     runs += 1;
///     // The first run hangs for 10 s; the hedge, started at 100 ms, answers in 50 ms.
///     let wait = if runs == 1 { 10_000 } else { 50 };
///     let run = runs;
///     async move {
///         tokio::time::sleep(Duration::from_millis(wait)).await;
///         Ok::<_, String>(run)
///     }
/// }).await;
/// assert_eq!(winner.unwrap(), 2);
/// assert_eq!(start.elapsed(), Duration::from_millis(150));
/// # }
/// ```
pub async fn hedged<T, E, Fut>(
    hedge: &HedgeConfig,
    mut f: impl FnMut() -> Fut,
) -> Result<T, AllFailedError<E>>
where
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    Attempts {
        policy: &Once,
        limiter: None,
        metrics: None,
        guards: None,
        limits: Default::default(),
    }
    .run_hedged(
        hedge,
        &[()],
        |_| {
            let fut = f();
            async move { fut.await.map_err(AttemptError::Failed) }
        },
        None,
    )
    .await
}
