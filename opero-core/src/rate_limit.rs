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

    /// Waits, without blocking the thread, until a permit is available (tokio's timer inside a
    /// tokio runtime, a timer thread under any other executor). A permit
    /// is reserved when this is called: dropping the future does not give it back.
    fn acquire(&self) -> Acquire {
        Acquire::after(self.reserve())
    }

    /// Like [`reserve`](RateLimiter::reserve), but may fail: a limiter whose state lives
    /// elsewhere (a Redis server) reports that it could not hand out a permit, and the pipeline
    /// fails that attempt with [`AttemptError::NoPermit`](crate::AttemptError::NoPermit).
    /// The default never fails.
    fn try_reserve(&self) -> Result<Duration, OperoError> {
        Ok(self.reserve())
    }

    /// The async form of [`try_reserve`](RateLimiter::try_reserve), used by the async pipeline:
    /// a limiter that needs the network overrides it so that no runtime thread blocks. The
    /// default is ready at once with `try_reserve`'s answer and allocates nothing.
    ///
    /// ```
    /// use opero_core::{RateLimiter, TokenBucket};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let bucket = TokenBucket::per_second(10.0).unwrap();
    /// assert_eq!(bucket.reserve_async().await.unwrap(), Duration::ZERO);
    /// assert_eq!(bucket.reserve_async().await.unwrap(), Duration::from_millis(100));
    /// # }
    /// ```
    fn reserve_async(&self) -> Reservation<'_> {
        Reservation::ready(self.try_reserve())
    }
}

/// The future of [`RateLimiter::reserve_async`]: the wait before the permit is valid, or why
/// there is none. Either ready at once (no allocation) or a boxed future of the limiter's.
#[must_use = "a reservation does nothing until awaited"]
pub struct Reservation<'a> {
    state: ReservationState<'a>,
}

type BoxedReservation<'a> = Pin<Box<dyn Future<Output = Result<Duration, OperoError>> + Send + 'a>>;

enum ReservationState<'a> {
    Ready(Option<Result<Duration, OperoError>>),
    Pending(BoxedReservation<'a>),
}

impl<'a> Reservation<'a> {
    /// A reservation already decided.
    pub fn ready(result: Result<Duration, OperoError>) -> Self {
        Reservation {
            state: ReservationState::Ready(Some(result)),
        }
    }

    /// A reservation decided by `future`.
    pub fn pending(future: impl Future<Output = Result<Duration, OperoError>> + Send + 'a) -> Self {
        Reservation {
            state: ReservationState::Pending(Box::pin(future)),
        }
    }
}

impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.state {
            ReservationState::Ready(_) => "Reservation(ready)",
            ReservationState::Pending(_) => "Reservation(pending)",
        })
    }
}

impl Future for Reservation<'_> {
    type Output = Result<Duration, OperoError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            ReservationState::Ready(result) => Poll::Ready(
                result
                    .take()
                    .expect("a Reservation polled after it completed"),
            ),
            ReservationState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

// A limiter behind a reference or a pointer forwards every method, the defaulted ones too, so that
// an override (a networked limiter's async reservation) is never lost behind the indirection.
macro_rules! forward_rate_limiter {
    ($($ty:ty),*) => {$(
        impl<R: RateLimiter + ?Sized> RateLimiter for $ty {
            fn reserve(&self) -> Duration {
                (**self).reserve()
            }
            fn try_acquire(&self) -> bool {
                (**self).try_acquire()
            }
            fn acquire_blocking(&self) {
                (**self).acquire_blocking()
            }
            fn acquire(&self) -> Acquire {
                (**self).acquire()
            }
            fn try_reserve(&self) -> Result<Duration, OperoError> {
                (**self).try_reserve()
            }
            fn reserve_async(&self) -> Reservation<'_> {
                (**self).reserve_async()
            }
        }
    )*};
}

forward_rate_limiter!(&R, Box<R>, Arc<R>);

/// The future of [`RateLimiter::acquire`]. Ready at once when no wait is needed.
///
/// # Examples
///
/// ```
/// use opero_core::{RateLimiter, TokenBucket};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let bucket = TokenBucket::per_second(2.0).unwrap();
/// let start = tokio::time::Instant::now();
/// bucket.acquire().await; // free
/// bucket.acquire().await; // half a second later
/// assert_eq!(start.elapsed(), Duration::from_millis(500));
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a permit is only honoured by waiting for it"]
pub struct Acquire {
    sleep: crate::sleep::Sleep,
}

impl Acquire {
    /// A future that completes after `wait`, under tokio or any other executor.
    pub fn after(wait: Duration) -> Self {
        Acquire {
            sleep: crate::sleep::sleep(wait),
        }
    }
}

impl Future for Acquire {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.sleep).poll(cx)
    }
}

/// A token bucket: `rate` permits per second, up to `burst` at once, shared lock-free by every
/// thread and task holding it (clone the `Arc`).
///
/// It is a GCRA: one atomic "theoretical arrival time". Each permit moves it one interval on, so
/// waiting callers are served at exactly the configured rate, oversleeping does not accumulate,
/// and the same bucket serves sync and async callers.
///
/// The clock is chosen when the bucket is made ([`BucketClock`]): inside a tokio runtime it is
/// tokio's, so tests on a paused clock see exact schedules; elsewhere it is the CPU's timestamp
/// counter (quanta), several times cheaper to read than the OS clock.
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
    clock: Clock,
    interval_ns: u64,
    tolerance_ns: u64,
    tat_ns: AtomicU64,
}

impl TokenBucket {
    /// A bucket from validated settings. A config with `rate: None` is refused (field `rate_limit.rate`).
    pub fn new(config: &RateLimitConfig) -> Result<Self, OperoError> {
        let clock = if tokio::runtime::Handle::try_current().is_ok() {
            BucketClock::Tokio
        } else {
            BucketClock::Tsc
        };
        Self::with_clock(config, clock)
    }

    /// A bucket on the given clock.
    pub fn with_clock(config: &RateLimitConfig, clock: BucketClock) -> Result<Self, OperoError> {
        config.validate()?;
        let rate = config.rate.ok_or_else(|| {
            OperoError::invalid_config("rate_limit.rate", "none", "a token bucket needs a rate")
        })?;
        let interval_ns = ((1e9 / rate).round() as u64).max(1);
        Ok(TokenBucket {
            clock: Clock::new(clock),
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

    /// The clock this bucket reads.
    pub fn clock(&self) -> BucketClock {
        match self.clock {
            Clock::Tokio(_) => BucketClock::Tokio,
            Clock::Tsc(..) => BucketClock::Tsc,
        }
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        match &self.clock {
            Clock::Tsc(clock, epoch) => {
                clock.now().saturating_duration_since(*epoch).as_nanos() as u64
            }
            Clock::Tokio(epoch) => {
                Instant::now().saturating_duration_since(*epoch).as_nanos() as u64
            }
        }
    }
}

/// The clock a [`TokenBucket`] reads.
///
/// # Examples
///
/// ```
/// use opero_core::{BucketClock, RateLimitConfig, RateLimiter, TokenBucket};
///
/// // Outside any runtime, a bucket on the CPU's timestamp counter.
/// let bucket = TokenBucket::with_clock(&RateLimitConfig::per_second(100.0), BucketClock::Tsc).unwrap();
/// assert!(bucket.try_acquire());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BucketClock {
    /// tokio's clock: follows `tokio::time::pause` in tests; the OS monotonic clock otherwise.
    Tokio,
    /// The CPU's timestamp counter through quanta (the OS clock where the counter is unreliable).
    Tsc,
}

#[derive(Debug)]
enum Clock {
    Tokio(Instant),
    Tsc(quanta::Clock, quanta::Instant),
}

impl Clock {
    fn new(kind: BucketClock) -> Self {
        match kind {
            BucketClock::Tokio => Clock::Tokio(Instant::now()),
            BucketClock::Tsc => {
                let clock = quanta::Clock::new();
                let epoch = clock.now();
                Clock::Tsc(clock, epoch)
            }
        }
    }
}

impl RateLimiter for TokenBucket {
    fn reserve(&self) -> Duration {
        let now = self.now_ns();
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            // Saturating: a very slow rate or a huge burst pushes the times toward u64::MAX
            // nanoseconds (584 years), which reads as "not in this process's life".
            let next = tat.max(now).saturating_add(self.interval_ns);
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Duration::from_nanos(
                        next.saturating_sub(now.saturating_add(self.tolerance_ns)),
                    );
                }
                Err(actual) => tat = actual,
            }
        }
    }

    fn try_acquire(&self) -> bool {
        let now = self.now_ns();
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval_ns);
            if next > now.saturating_add(self.tolerance_ns) {
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
    fn outside_a_runtime_the_bucket_reads_the_tsc_and_keeps_its_rate() {
        let bucket = TokenBucket::per_second(500.0).unwrap();
        assert_eq!(bucket.clock(), BucketClock::Tsc);
        let start = std::time::Instant::now();
        for _ in 0..51 {
            bucket.acquire_blocking();
        }
        assert!(
            start.elapsed() >= Duration::from_millis(99),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn inside_a_runtime_the_bucket_reads_tokio_s_clock() {
        assert_eq!(
            TokenBucket::per_second(1.0).unwrap().clock(),
            BucketClock::Tokio
        );
    }

    #[test]
    fn zero_rate_and_zero_burst_are_refused() {
        assert!(TokenBucket::per_second(0.0).is_err());
        let e = TokenBucket::new(&RateLimitConfig::per_second(1.0).with_burst(0)).unwrap_err();
        assert_eq!(e.field(), Some("rate_limit.burst"));
    }
}
