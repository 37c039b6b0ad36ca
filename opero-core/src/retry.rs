//! Retrying: the [`RetryPolicy`] trait and the built-in exponential [`Backoff`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::RetryConfig;
use crate::error::OperoError;

/// Decides, after a failed attempt, whether to try again and after what delay.
///
/// `attempt` is the 1-based number of the attempt that just failed, counted per fallback value.
/// Return `Some(delay)` to retry after `delay`, `None` to stop retrying this fallback value.
///
/// Any `Fn(u32, &E) -> Option<Duration>` is a policy, so a policy that honours a server's
/// Retry-After hint is a closure.
///
/// # Examples
///
/// ```
/// use opero_core::{Opero, OperoConfig, NoCache, RetryPolicy};
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct HttpError { status: u16, retry_after: Option<Duration> }
/// impl std::fmt::Display for HttpError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "HTTP {}", self.status) }
/// }
///
/// // Retry 429s after the server's hint, at most twice; never retry other statuses.
/// let policy = |attempt: u32, e: &HttpError| match (e.status, e.retry_after) {
///     (429, Some(after)) if attempt <= 2 => Some(after.min(Duration::from_millis(1))),
///     _ => None,
/// };
/// assert_eq!(policy.retry_delay(1, &HttpError { status: 500, retry_after: None }), None);
///
/// let opero = Opero::<NoCache>::builder().retry_policy(policy).build().unwrap();
/// let mut calls = 0;
/// let result = opero.run(|| {
///     calls += 1;
///     if calls < 3 { Err(HttpError { status: 429, retry_after: Some(Duration::from_secs(1)) }) } else { Ok(calls) }
/// });
/// assert_eq!(result.unwrap(), 3);
/// ```
pub trait RetryPolicy<E: ?Sized> {
    /// The delay before the next attempt, or `None` to stop.
    fn retry_delay(&self, attempt: u32, error: &E) -> Option<Duration>;

    /// The same decision after a failure of the machinery rather than of the user's code (a worker
    /// process that crashed, an attempt that timed out). By default such failures are not retried.
    fn retry_delay_after_fault(&self, attempt: u32) -> Option<Duration> {
        let _ = attempt;
        None
    }
}

impl<E: ?Sized, F> RetryPolicy<E> for F
where
    F: Fn(u32, &E) -> Option<Duration>,
{
    fn retry_delay(&self, attempt: u32, error: &E) -> Option<Duration> {
        self(attempt, error)
    }
}

/// How a backoff delay is randomised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d(n) = min(max_delay, min_delay * backoff_factor^(n-1))`.
    None,
    /// Uniform in `[min_delay, d(n)]`, as the original `opero` did.
    #[default]
    Full,
}

type Predicate = dyn Fn(&dyn Any) -> Option<bool> + Send + Sync;

/// Which of the user's errors are worth retrying.
///
/// An error that `retry_on` rejects ends the retries for the current fallback value at once; the
/// pipeline moves on to the next value.
///
/// # Examples
///
/// ```
/// use opero_core::RetryOn;
///
/// #[derive(Debug)]
/// enum ApiError { Timeout, NotFound }
///
/// let retry_on = RetryOn::when(|e: &ApiError| matches!(e, ApiError::Timeout));
/// assert!(retry_on.matches(&ApiError::Timeout));
/// assert!(!retry_on.matches(&ApiError::NotFound));
/// // An error of another type than the predicate's is not retried, as with Python's `retry_on`.
/// assert!(!retry_on.matches(&"some other error"));
/// assert!(RetryOn::Always.matches(&"anything"));
/// ```
#[derive(Clone, Default)]
pub enum RetryOn {
    /// Retry every error.
    #[default]
    Always,
    /// Retry no error: one attempt per fallback value.
    Never,
    /// Retry errors the predicate accepts. Built with [`RetryOn::when`].
    Predicate(Arc<Predicate>),
}

impl RetryOn {
    /// Retries errors of type `E` for which `predicate` returns true; errors of any other type are
    /// not retried.
    pub fn when<E: 'static>(predicate: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        RetryOn::Predicate(Arc::new(move |e: &dyn Any| {
            e.downcast_ref::<E>().map(&predicate)
        }))
    }

    /// Whether `error` should be retried.
    pub fn matches<E: 'static>(&self, error: &E) -> bool {
        match self {
            RetryOn::Always => true,
            RetryOn::Never => false,
            RetryOn::Predicate(p) => p(error as &dyn Any).unwrap_or(false),
        }
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryOn::Always => "Always",
            RetryOn::Never => "Never",
            RetryOn::Predicate(_) => "Predicate(..)",
        })
    }
}

/// The built-in retry policy: exponential backoff with optional jitter.
///
/// The delay before retry `n` (n = 1, 2, ...) is `d(n) = min(max_delay, min_delay * backoff_factor^(n-1))`,
/// drawn uniformly from `[min_delay, d(n)]` under [`Jitter::Full`] (the default).
///
/// # Default
///
/// The values of [`RetryConfig::default`]: 3 retries, factor 1.5, 100 ms to 30 s, full jitter.
///
/// # Examples
///
/// ```
/// use opero_core::{Backoff, Jitter, RetryConfig};
/// use std::time::Duration;
///
/// let backoff = Backoff::new(RetryConfig {
///     retries: 4,
///     backoff_factor: 2.0,
///     min_delay: Duration::from_millis(100),
///     max_delay: Duration::from_millis(500),
///     jitter: Jitter::None,
///     ..Default::default()
/// }).unwrap();
/// let delays: Vec<_> = backoff.delays().collect();
/// assert_eq!(delays, [100, 200, 400, 500].map(Duration::from_millis));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    config: RetryConfig,
}

impl Backoff {
    /// A policy from validated settings.
    pub fn new(config: RetryConfig) -> Result<Self, OperoError> {
        config.validate()?;
        Ok(Backoff { config })
    }

    /// A policy from settings validated later, when the pipeline is built.
    pub(crate) fn unchecked(config: RetryConfig) -> Self {
        Backoff { config }
    }

    /// The settings.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// `d(n)` without jitter: the upper bound of the delay before retry `n` (1-based).
    pub fn ceiling(&self, n: u32) -> Duration {
        let c = &self.config;
        let exp = n.saturating_sub(1).min(i32::MAX as u32) as i32;
        let secs = c.min_delay.as_secs_f64() * c.backoff_factor.powi(exp);
        if !secs.is_finite() || secs >= c.max_delay.as_secs_f64() {
            c.max_delay
        } else {
            Duration::from_secs_f64(secs).clamp(c.min_delay, c.max_delay)
        }
    }

    /// The delay before retry `n` (1-based), jitter applied; `None` past the last retry.
    pub fn delay(&self, n: u32) -> Option<Duration> {
        if n == 0 || n > self.config.retries {
            return None;
        }
        let ceiling = self.ceiling(n);
        Some(match self.config.jitter {
            Jitter::None => ceiling,
            Jitter::Full => {
                let floor = self.config.min_delay;
                let span = (ceiling - floor).as_secs_f64();
                floor + Duration::from_secs_f64(span * fastrand::f64())
            }
        })
    }

    /// The delays of every retry in order: backoff as data.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (1..=self.config.retries).filter_map(|n| self.delay(n))
    }
}

impl<E: 'static> RetryPolicy<E> for Backoff {
    fn retry_delay(&self, attempt: u32, error: &E) -> Option<Duration> {
        if !self.config.retry_on.matches(error) {
            return None;
        }
        self.delay(attempt)
    }

    fn retry_delay_after_fault(&self, attempt: u32) -> Option<Duration> {
        self.delay(attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff::new(RetryConfig {
            retries: 12,
            backoff_factor: 1.7,
            min_delay: Duration::from_millis(30),
            max_delay: Duration::from_secs(2),
            jitter,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn schedule_without_jitter_is_exact() {
        let b = backoff(Jitter::None);
        for n in 1..=12 {
            let expected = (0.03 * 1.7f64.powi(n as i32 - 1)).min(2.0);
            let got = b.delay(n).unwrap().as_secs_f64();
            assert!((got - expected).abs() < 1e-9, "n={n}: {got} vs {expected}");
        }
        assert_eq!(b.delay(13), None);
        assert_eq!(b.delay(0), None);
    }

    #[test]
    fn full_jitter_stays_within_bounds_over_ten_thousand_draws() {
        let b = backoff(Jitter::Full);
        for i in 0..10_000u32 {
            let n = i % 12 + 1;
            let d = b.delay(n).unwrap();
            assert!(d >= Duration::from_millis(30), "{d:?}");
            assert!(d <= b.ceiling(n), "{d:?} > {:?}", b.ceiling(n));
        }
    }

    #[test]
    fn huge_exponents_saturate_at_max_delay() {
        let b = Backoff::new(RetryConfig {
            retries: u32::MAX,
            backoff_factor: 10.0,
            jitter: Jitter::None,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(b.delay(u32::MAX), Some(Duration::from_secs(30)));
    }
}
