//! Rate limiting: the [`RateLimiter`] trait and the built-in lock-free [`TokenBucket`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RateLimitConfig;
use crate::error::OperoError;

/// Hands out permits: blocking for sync code, awaitable for async code, or try-only.
///
/// The one required method, [`reserve`](RateLimiter::reserve), takes the next permit and says how
/// long its holder must wait before using it; the waiting forms are built on it. The trait is
/// object safe, so one `Arc<dyn RateLimiter>` can be shared by every clone, thread and task.
///
/// # Examples
///
/// ```
/// use opero_core::{RateLimiter, RateLimitConfig, TokenBucket};
///
/// let bucket = TokenBucket::new(&RateLimitConfig::per_second(1000.0).with_burst(2)).unwrap();
/// assert!(bucket.try_acquire());
/// assert!(bucket.try_acquire());
/// assert!(!bucket.try_acquire()); // burst spent; the next token comes in 1 ms
/// bucket.acquire_blocking();      // sleeps about 1 ms, no runtime needed
/// ```
pub trait RateLimiter: Send + Sync {
    /// Takes the next permit unconditionally and returns how long to wait before it is valid.
    /// A caller that does not wait breaks the rate.
    fn reserve(&self) -> Duration;

    /// Takes a permit only if one is available now.
    fn try_acquire(&self) -> bool;

    /// Blocks the current thread until a permit is available. Needs no async runtime.
    fn acquire_blocking(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Waits, without blocking the thread, until a permit is available (tokio's timer). A permit
    /// is reserved when this is called: dropping the future does not give it back.
    fn acquire(&self) -> Acquire {
        Acquire::after(self.reserve())
    }
}

impl<R: RateLimiter + ?Sized> RateLimiter for &R {
    fn reserve(&self) -> Duration {
        (**self).reserve()
    }
    fn try_acquire(&self) -> bool {
        (**self).try_acquire()
    }
}

impl<R: RateLimiter + ?Sized> RateLimiter for Box<R> {
    fn reserve(&self) -> Duration {
        (**self).reserve()
    }
    fn try_acquire(&self) -> bool {
        (**self).try_acquire()
    }
}

impl<R: RateLimiter + ?Sized> RateLimiter for Arc<R> {
    fn reserve(&self) -> Duration {
        (**self).reserve()
    }
    fn try_acquire(&self) -> bool {
        (**self).try_acquire()
    }
}

/// The future of [`RateLimiter::acquire`]. Ready at once when no wait is needed.
#[derive(Debug)]
#[must_use = "a permit is only honoured by waiting for it"]
pub struct Acquire {
    wait: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Acquire {
    /// A future that completes after `wait`.
    pub fn after(wait: Duration) -> Self {
        Acquire { wait, sleep: None }
    }
}

impl Future for Acquire {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wait.is_zero() {
            return Poll::Ready(());
        }
        // The sleep is made on first poll, inside the runtime, so that building the future
        // outside one does not panic.
        let wait = self.wait;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
        sleep.as_mut().poll(cx)
    }
}

/// A token bucket: `rate` permits per second, up to `burst` at once, shared lock-free by every
/// thread and task holding it (clone the `Arc`).
///
/// It is a GCRA: one atomic "theoretical arrival time". Each permit moves it one interval on, so
/// waiting callers are served at exactly the configured rate, oversleeping does not accumulate,
/// and the same bucket serves sync and async callers. Time comes from tokio's clock, so tests on a
/// paused clock see exact schedules; outside a runtime it is the system's monotonic clock.
///
/// # Default
///
/// `burst` 1: permits are spaced evenly.
///
/// # Examples
///
/// ```
/// use opero_core::{RateLimiter, RateLimitConfig, TokenBucket};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let bucket = TokenBucket::new(&RateLimitConfig::per_second(10.0)).unwrap();
/// let start = tokio::time::Instant::now();
/// for _ in 0..3 {
///     bucket.acquire().await;
/// }
/// assert_eq!(start.elapsed(), std::time::Duration::from_millis(200));
/// # }
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    epoch: Instant,
    interval_ns: u64,
    tolerance_ns: u64,
    tat_ns: AtomicU64,
}

impl TokenBucket {
    /// A bucket from validated settings. A config with `rate: None` is refused (field `rate_limit.rate`).
    pub fn new(config: &RateLimitConfig) -> Result<Self, OperoError> {
        config.validate()?;
        let rate = config.rate.ok_or_else(|| {
            OperoError::invalid_config("rate_limit.rate", "none", "a token bucket needs a rate")
        })?;
        let interval_ns = ((1e9 / rate).round() as u64).max(1);
        Ok(TokenBucket {
            epoch: Instant::now(),
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(config.burst as u64),
            tat_ns: AtomicU64::new(0),
        })
    }

    /// `rate` permits per second, burst 1.
    pub fn per_second(rate: f64) -> Result<Self, OperoError> {
        Self::new(&RateLimitConfig::per_second(rate))
    }

    /// The spacing between permits.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    fn now_ns(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64
    }
}

impl RateLimiter for TokenBucket {
    fn reserve(&self) -> Duration {
        let now = self.now_ns();
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now) + self.interval_ns;
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Duration::from_nanos(next.saturating_sub(now + self.tolerance_ns));
                }
                Err(actual) => tat = actual,
            }
        }
    }

    fn try_acquire(&self) -> bool {
        let now = self.now_ns();
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now) + self.interval_ns;
            if next > now + self.tolerance_ns {
                return false;
            }
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_even_spacing_on_paused_clock() {
        let bucket = TokenBucket::new(&RateLimitConfig::per_second(4.0).with_burst(3)).unwrap();
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..6 {
            bucket.acquire().await;
            at.push(start.elapsed().as_millis());
        }
        assert_eq!(at, [0, 0, 0, 250, 500, 750]);
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_refuses_until_a_token_is_back() {
        let bucket = TokenBucket::per_second(2.0).unwrap();
        assert!(bucket.try_acquire());
        assert!(!bucket.try_acquire());
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!bucket.try_acquire());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(bucket.try_acquire());
    }

    #[test]
    fn zero_rate_and_zero_burst_are_refused() {
        assert!(TokenBucket::per_second(0.0).is_err());
        let e = TokenBucket::new(&RateLimitConfig::per_second(1.0).with_burst(0)).unwrap_err();
        assert_eq!(e.field(), Some("rate_limit.burst"));
    }
}
