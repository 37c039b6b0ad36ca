//! Retrying: the [`RetryPolicy`] trait and the built-in exponential [`Backoff`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::RetryConfig;
use crate::error::OperoError;

/// Decides, after a failed attempt, whether to try again and after what delay.
///
/// `attempt` is the 1-based number of the attempt that just failed, counted per fallback value.
/// Return `Some(delay)` to retry after `delay`, `None` to stop retrying this fallback value.
///
/// Any `Fn(u32, &E) -> Option<Duration>` is a policy. A closure policy replaces the built-in
/// [`Backoff`] whole (its jitter, `retry_on` and the retries of crashed attempts); to honour a
/// server's Retry-After hint and keep them, give the hint to the builders' `retry_after` instead
/// (see [`RetryHint`]).
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
///
/// # Examples
///
/// ```
/// use opero_core::{Backoff, Jitter, RetryConfig};
/// use std::time::Duration;
///
/// let config = RetryConfig { retries: 2, min_delay: Duration::from_millis(100), jitter: Jitter::None, ..Default::default() };
/// let exact: Vec<_> = Backoff::new(config.clone()).unwrap().delays().collect();
/// assert_eq!(exact, [Duration::from_millis(100), Duration::from_millis(150)]);
/// let full = Backoff::new(RetryConfig { jitter: Jitter::Full, ..config }).unwrap();
/// assert!(full.delays().all(|d| d >= Duration::from_millis(100) && d <= Duration::from_millis(150)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d(n) = min(max_delay, min_delay * backoff_factor^(n-1))`.
    None,
    /// Uniform in `[min_delay, d(n)]`, as the original `opero` did.
    #[default]
    Full,
    /// Decorrelated jitter, the "V2" form Polly adopted: exponential growth by
    /// `backoff_factor` with a random factor that smooths the curve, so that many clients
    /// retrying together spread out with no spikes and no long gaps.
    ///
    /// Retry `n` draws `t = n - 1 + r` with `r` uniform in `[0, 1)`, and waits
    /// `min_delay * (g(t) - g(t - 1)) / 1.4` with `g(t) = backoff_factor^t * tanh(sqrt(4t))`
    /// (`g` is 0 below `t = 0`), which puts the median first delay near `min_delay`; the result
    /// is clamped to `[min_delay, max_delay]`. Each retry draws on its own: the policy keeps no
    /// state between calls.
    Decorrelated,
}

/// Which of the user's errors are worth retrying: every one or none, as a config value.
///
/// A predicate on the error is a [`RetryPredicate`]: any `Fn(&E) -> bool`, typed by the function's
/// own error type `E`, given to the builders' `retry_on`. A predicate on another type than the
/// function's error does not compile, so it can never read as "do not retry" at run time.
///
/// An error that `retry_on` rejects ends the retries for the current fallback value at once; the
/// pipeline moves on to the next value.
///
/// # Examples
///
/// ```
/// use opero_core::{RetryOn, RetryPredicate};
///
/// #[derive(Debug)]
/// enum ApiError { Timeout, NotFound }
///
/// let retry_on = RetryOn::when(|e: &ApiError| matches!(e, ApiError::Timeout));
/// assert!(retry_on.should_retry(&ApiError::Timeout));
/// assert!(!retry_on.should_retry(&ApiError::NotFound));
/// assert!(RetryOn::Always.should_retry(&"anything"));
/// assert!(!RetryOn::Never.should_retry(&ApiError::Timeout));
/// ```
///
/// A predicate on another error type than the function's is a compile error:
///
/// ```compile_fail
/// use opero_core::{NoCache, Opero, RetryOn};
///
/// let opero = Opero::<NoCache>::builder()
///     .retry_on(RetryOn::when(|e: &String| e.contains("busy")))
///     .build()
///     .unwrap();
/// // The function fails with `&str`, the predicate reads `String`: refused by the compiler.
/// let _ = opero.run(|| Err::<(), &str>("busy"));
/// ```
///
/// The same with matching types compiles and retries:
///
/// ```
/// use opero_core::{NoCache, Opero, RetryOn};
/// use std::time::Duration;
///
/// let opero = Opero::<NoCache>::builder()
///     .min_delay(Duration::ZERO)
///     .retry_on(RetryOn::when(|e: &&str| e.contains("busy")))
///     .build()
///     .unwrap();
/// let mut calls = 0;
/// let _ = opero.run(|| { calls += 1; Err::<(), &str>("busy") });
/// assert_eq!(calls, 4);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// Retry every error.
    #[default]
    Always,
    /// Retry no error: one attempt per fallback value.
    Never,
}

impl RetryOn {
    /// A predicate that retries the errors of type `E` for which it returns true. It is the
    /// closure itself, its argument type spelled out so that the compiler checks it against the
    /// function's error type.
    pub fn when<E: ?Sized, F: Fn(&E) -> bool>(predicate: F) -> F {
        predicate
    }

    /// Whether `error` should be retried.
    pub fn matches<E: ?Sized>(&self, error: &E) -> bool {
        self.should_retry(error)
    }
}

/// Decides whether an error of type `E` is worth retrying: [`RetryOn`] or any `Fn(&E) -> bool`.
///
/// # Examples
///
/// ```
/// use opero_core::RetryPredicate;
///
/// struct Transient;
/// impl RetryPredicate<std::io::Error> for Transient {
///     fn should_retry(&self, e: &std::io::Error) -> bool {
///         e.kind() == std::io::ErrorKind::TimedOut
///     }
/// }
/// assert!(Transient.should_retry(&std::io::ErrorKind::TimedOut.into()));
/// assert!(!Transient.should_retry(&std::io::ErrorKind::NotFound.into()));
/// ```
pub trait RetryPredicate<E: ?Sized> {
    /// Whether to retry after `error`.
    fn should_retry(&self, error: &E) -> bool;
}

impl<E: ?Sized> RetryPredicate<E> for RetryOn {
    fn should_retry(&self, _error: &E) -> bool {
        matches!(self, RetryOn::Always)
    }
}

impl<E: ?Sized, F: Fn(&E) -> bool> RetryPredicate<E> for F {
    fn should_retry(&self, error: &E) -> bool {
        self(error)
    }
}

/// A server's hint of how long to wait before the next attempt, read from the error: an HTTP
/// `Retry-After`, a gRPC `RetryInfo`, a rate-limit reset time.
///
/// Any `Fn(&E) -> Option<Duration>` is a hint, given to the builders' `retry_after`. It composes
/// with [`Backoff`]: the delay before a retry is the backoff's delay (jitter applied) raised to
/// the hint, then capped by `max_delay` (and, in the pipeline, by the deadline). It never decides
/// *whether* to retry: `retry_on` and the retry count still do, and a crashed or timed-out
/// attempt (which has no error to read) keeps the backoff's delay.
///
/// # Examples
///
/// ```
/// use opero_core::{Backoff, Jitter, RetryConfig, RetryHint, RetryPolicy};
/// use std::time::Duration;
///
/// struct Http { status: u16, retry_after: Option<Duration> }
///
/// let hint = |e: &Http| e.retry_after;
/// let busy = Http { status: 429, retry_after: Some(Duration::from_secs(2)) };
/// assert_eq!(hint.retry_after(&busy), Some(Duration::from_secs(2)));
///
/// let backoff = Backoff::new(RetryConfig { jitter: Jitter::None, max_delay: Duration::from_secs(10), ..Default::default() })
///     .unwrap()
///     .with_retry_after(hint);
/// // The hint wins over the 100 ms backoff...
/// assert_eq!(backoff.retry_delay(1, &busy), Some(Duration::from_secs(2)));
/// // ...the backoff wins over a shorter hint or none...
/// assert_eq!(backoff.retry_delay(1, &Http { status: 503, retry_after: None }), Some(Duration::from_millis(100)));
/// // ...and `max_delay` caps both.
/// let later = Http { status: 429, retry_after: Some(Duration::from_secs(3600)) };
/// assert_eq!(backoff.retry_delay(1, &later), Some(Duration::from_secs(10)));
/// ```
pub trait RetryHint<E: ?Sized> {
    /// The least delay the error asks for, if it says.
    fn retry_after(&self, error: &E) -> Option<Duration>;
}

/// No server hint: the backoff alone sets the delay. The default of [`Backoff`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoHint;

impl<E: ?Sized> RetryHint<E> for NoHint {
    #[inline]
    fn retry_after(&self, _error: &E) -> Option<Duration> {
        None
    }
}

impl<E: ?Sized, F: Fn(&E) -> Option<Duration>> RetryHint<E> for F {
    fn retry_after(&self, error: &E) -> Option<Duration> {
        self(error)
    }
}

/// Turns an `Ok` value that is really a failure (a 503 page returned as `Ok`, an empty result
/// that means "not yet") into an error, given to the builders' `retry_if_ok`: [`AcceptOk`]
/// (the default) keeps every value, and any `Fn(T) -> Result<T, E>` decides.
///
/// The check takes the value and either gives it back (accepted) or returns the function's own
/// error type `E`, in which the value can travel: the attempt then counts as failed with
/// [`AttemptError::RejectedOk`](crate::AttemptError::RejectedOk), and `retry_on`, the server hint
/// and the backoff see that error as they see any other. If every attempt ends so,
/// [`AllFailedError::last_error`](crate::AllFailedError::last_error) gives the last one back,
/// value and all: nothing is lost. Both types are checked by the compiler against the
/// function's, so a check can never silently not apply.
///
/// # Examples
///
/// ```
/// use opero_core::{AcceptOk, OkCheck};
///
/// #[derive(Debug, PartialEq)]
/// struct Response { status: u16, body: String }
/// #[derive(Debug, PartialEq)]
/// enum Error { Unavailable(Response) }
///
/// let check = |r: Response| if r.status == 503 { Err(Error::Unavailable(r)) } else { Ok(r) };
/// let busy = Response { status: 503, body: "try later".into() };
/// assert!(matches!(check.check_ok(busy), Err(Error::Unavailable(r)) if r.body == "try later"));
/// assert!(OkCheck::<u8, Error>::check_ok(&AcceptOk, 7).is_ok());
/// ```
///
/// A check on another value type than the function's is a compile error:
///
/// ```compile_fail
/// use opero_core::{NoCache, Opero};
///
/// let opero = Opero::<NoCache>::builder()
///     .retry_if_ok(|v: String| if v.is_empty() { Err("empty".to_string()) } else { Ok(v) })
///     .build()
///     .unwrap();
/// // The function returns `u32`, the check reads `String`: refused by the compiler.
/// let _ = opero.run(|| Ok::<u32, String>(1));
/// ```
pub trait OkCheck<T, E> {
    /// The value back when it is a success, or the error it really is.
    fn check_ok(&self, value: T) -> Result<T, E>;
}

/// Every `Ok` value is a success: the default of [`Backoff`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AcceptOk;

impl<T, E> OkCheck<T, E> for AcceptOk {
    #[inline(always)]
    fn check_ok(&self, value: T) -> Result<T, E> {
        Ok(value)
    }
}

impl<T, E, F: Fn(T) -> Result<T, E>> OkCheck<T, E> for F {
    fn check_ok(&self, value: T) -> Result<T, E> {
        self(value)
    }
}

/// The `Ok` side of a pipeline's retry policy: whether a value the function returned is accepted.
/// [`Backoff`] answers with its `retry_if_ok` check ([`OkCheck`]); a policy of the user's, given
/// to `retry_policy`, is wrapped in [`CustomPolicy`], which accepts every value.
///
/// The typed forms (`run`, `call`, their `_fallback` and `_async` forms, the wrappers) apply it;
/// the general forms (`call_attempts`, `run_attempts` and their async twins) take each
/// attempt's outcome as the executor reports it, and an executor that wants the check calls
/// [`check_ok`](Self::check_ok) itself.
pub trait OkPolicy<T, E> {
    /// The value back when it is a success, or the error it really is.
    fn check_ok(&self, value: T) -> Result<T, E>;
}

/// A retry policy of the user's, as `retry_policy` stores it: it decides every retry and its
/// delay, and accepts every `Ok` value. It derefs to the policy.
///
/// # Examples
///
/// ```
/// use opero_core::{NoCache, Opero, RetryPolicy};
/// use std::time::Duration;
///
/// let never = |_: u32, _: &String| -> Option<Duration> { None };
/// let opero = Opero::<NoCache>::builder().retry_policy(never).build().unwrap();
/// assert_eq!(opero.retry_policy().retry_delay(1, &"x".to_string()), None);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CustomPolicy<P>(pub P);

impl<P> std::ops::Deref for CustomPolicy<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.0
    }
}

impl<E: ?Sized, P: RetryPolicy<E>> RetryPolicy<E> for CustomPolicy<P> {
    #[inline]
    fn retry_delay(&self, attempt: u32, error: &E) -> Option<Duration> {
        self.0.retry_delay(attempt, error)
    }

    #[inline]
    fn retry_delay_after_fault(&self, attempt: u32) -> Option<Duration> {
        self.0.retry_delay_after_fault(attempt)
    }
}

impl<T, E, P> OkPolicy<T, E> for CustomPolicy<P> {
    #[inline(always)]
    fn check_ok(&self, value: T) -> Result<T, E> {
        Ok(value)
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
#[derive(Clone)]
pub struct Backoff<R = RetryOn, H = NoHint, O = AcceptOk> {
    config: RetryConfig,
    retry_on: R,
    hint: H,
    ok: O,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::unchecked(RetryConfig::default())
    }
}

impl<R, H, O> fmt::Debug for Backoff<R, H, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("config", &self.config)
            .field("retry_on", &std::any::type_name::<R>())
            .field("retry_after", &std::any::type_name::<H>())
            .field("retry_if_ok", &std::any::type_name::<O>())
            .finish()
    }
}

impl Backoff {
    /// A policy from validated settings; it retries per `config.retry_on`.
    pub fn new(config: RetryConfig) -> Result<Self, OperoError> {
        config.validate()?;
        Ok(Backoff::unchecked(config))
    }

    /// A policy from settings validated later, when the pipeline is built.
    pub(crate) fn unchecked(config: RetryConfig) -> Self {
        Backoff {
            retry_on: config.retry_on,
            config,
            hint: NoHint,
            ok: AcceptOk,
        }
    }
}

impl<R, H, O> Backoff<R, H, O> {
    /// The same schedule, retrying only the errors `retry_on` accepts.
    ///
    /// ```
    /// use opero_core::{Backoff, RetryConfig, RetryPolicy};
    ///
    /// let backoff = Backoff::new(RetryConfig::default()).unwrap().with_retry_on(|e: &u16| *e >= 500);
    /// assert!(backoff.retry_delay(1, &503).is_some());
    /// assert!(backoff.retry_delay(1, &404).is_none());
    /// ```
    pub fn with_retry_on<R2>(self, retry_on: R2) -> Backoff<R2, H, O> {
        Backoff {
            config: self.config,
            retry_on,
            hint: self.hint,
            ok: self.ok,
        }
    }

    /// The same schedule, each delay raised to the server's hint read from the error (see
    /// [`RetryHint`]) and capped by `max_delay`.
    pub fn with_retry_after<H2>(self, hint: H2) -> Backoff<R, H2, O> {
        Backoff {
            config: self.config,
            retry_on: self.retry_on,
            hint,
            ok: self.ok,
        }
    }

    /// The same policy, with `Ok` values checked by `check` (see [`OkCheck`]).
    pub fn with_retry_if_ok<O2>(self, check: O2) -> Backoff<R, H, O2> {
        Backoff {
            config: self.config,
            retry_on: self.retry_on,
            hint: self.hint,
            ok: check,
        }
    }

    /// The server hint.
    pub fn retry_after(&self) -> &H {
        &self.hint
    }

    /// The predicate that decides which errors are retried.
    pub fn retry_on(&self) -> &R {
        &self.retry_on
    }

    /// Replaces the schedule's settings, keeping the predicate; validated when the pipeline is
    /// built.
    pub(crate) fn set_config(&mut self, config: RetryConfig) {
        self.config = config;
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
        // A growth past any duration, or a zero minimum times an infinite one (not a number):
        // the cap.
        Duration::try_from_secs_f64(secs).map_or(c.max_delay, |d| d.clamp(c.min_delay, c.max_delay))
    }

    /// The delay before retry `n` (1-based), jitter applied; `None` past the last retry.
    pub fn delay(&self, n: u32) -> Option<Duration> {
        if n == 0 || n > self.config.retries {
            return None;
        }
        Some(match self.config.jitter {
            Jitter::None => self.ceiling(n),
            Jitter::Full => {
                let ceiling = self.ceiling(n);
                let floor = self.config.min_delay;
                let span = (ceiling - floor).as_secs_f64();
                floor + Duration::from_secs_f64(span * fastrand::f64())
            }
            Jitter::Decorrelated => self.decorrelated(n, fastrand::f64()),
        })
    }

    /// The [`Jitter::Decorrelated`] delay before retry `n` (1-based) for the random draw `r` in
    /// `[0, 1)`, clamped to `[min_delay, max_delay]`; exposed so that its bounds can be checked
    /// over any draw.
    ///
    /// ```
    /// use opero_core::{Backoff, Jitter, RetryConfig};
    /// use std::time::Duration;
    ///
    /// let b = Backoff::new(RetryConfig { jitter: Jitter::Decorrelated, ..Default::default() }).unwrap();
    /// for r in [0.0, 0.5, 0.999] {
    ///     let d = b.decorrelated(3, r);
    ///     assert!(d >= Duration::from_millis(100) && d <= Duration::from_secs(30));
    /// }
    /// ```
    pub fn decorrelated(&self, n: u32, r: f64) -> Duration {
        // tanh(sqrt(4t)) bends the exponential at its start so that the first delays are not
        // all near zero; dividing by 1.4 brings the median first delay to about `min_delay`.
        const SCALE: f64 = 1.0 / 1.4;
        let c = &self.config;
        let factor = c.backoff_factor;
        let g = |t: f64| {
            if t <= 0.0 {
                0.0
            } else {
                factor.powf(t) * (4.0 * t).sqrt().tanh()
            }
        };
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let t = f64::from(n.saturating_sub(1)) + r;
        let secs = c.min_delay.as_secs_f64() * (g(t) - g(t - 1.0)) * SCALE;
        if secs.is_nan() || secs >= c.max_delay.as_secs_f64() {
            return c.max_delay;
        }
        Duration::try_from_secs_f64(secs.max(0.0))
            .unwrap_or(c.max_delay)
            .clamp(c.min_delay, c.max_delay)
    }

    /// The delays of every retry in order: backoff as data.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (1..=self.config.retries).filter_map(|n| self.delay(n))
    }
}

impl<T, E, R, H, O: OkCheck<T, E>> OkPolicy<T, E> for Backoff<R, H, O> {
    #[inline(always)]
    fn check_ok(&self, value: T) -> Result<T, E> {
        self.ok.check_ok(value)
    }
}

impl<E: ?Sized, R: RetryPredicate<E>, H: RetryHint<E>, O> RetryPolicy<E> for Backoff<R, H, O> {
    fn retry_delay(&self, attempt: u32, error: &E) -> Option<Duration> {
        if !self.retry_on.should_retry(error) {
            return None;
        }
        let delay = self.delay(attempt)?;
        Some(match self.hint.retry_after(error) {
            // At least the hint, never past max_delay: a server asking for an hour does not
            // hold the call longer than the settings allow (the deadline cuts it further). A
            // hint shorter than the backoff's delay leaves the delay as it is.
            Some(hint) => hint.min(self.config.max_delay).max(delay),
            None => delay,
        })
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
