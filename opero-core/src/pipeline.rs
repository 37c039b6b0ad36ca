//! The attempt loop shared by every form: fallback, then retry, then rate limit, then the call.
//!
//! Sync and async loops are written side by side so that they stay the same loop.
//!
//! The deadline wraps the whole loop (every fallback value, every retry, every permit wait); the
//! per-attempt timeout wraps the call alone, after its permit.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::error::{AllFailedError, AttemptError};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;

/// The time bounds of a call: `retry.deadline` and `retry.attempt_timeout`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
}

/// When a call started, on the clock its waits run on: the CPU's timestamp counter (quanta,
/// several times cheaper to read than the OS clock, which matters on the no-fault path) for the
/// sync loop, tokio's (paused in tests) for the async one.
#[derive(Clone, Copy)]
enum Start {
    Tsc(quanta::Instant),
    Tokio(tokio::time::Instant),
}

/// A running call's deadline.
#[derive(Clone, Copy)]
struct Budget {
    deadline: Duration,
    start: Start,
}

impl Budget {
    fn sync(limits: &Limits) -> Option<Self> {
        limits.deadline.map(|deadline| Budget {
            deadline,
            start: Start::Tsc(quanta::Instant::now()),
        })
    }

    fn tokio(limits: &Limits) -> Option<Self> {
        // Outside a tokio runtime tokio's clock reads the system's, as the timers there do.
        limits.deadline.map(|deadline| Budget {
            deadline,
            start: Start::Tokio(tokio::time::Instant::now()),
        })
    }

    /// Time left before the deadline, zero once past it.
    fn left(&self) -> Duration {
        let elapsed = match self.start {
            Start::Tsc(at) => quanta::Instant::now().saturating_duration_since(at),
            Start::Tokio(at) => at.elapsed(),
        };
        self.deadline.saturating_sub(elapsed)
    }
}

/// What ends an attempt early in the async forms, and how long it has.
enum Cut {
    Timeout(Duration),
    Deadline(Duration),
}

/// The parts the attempt loop needs, borrowed from a pipeline or given by a standalone layer.
pub(crate) struct Attempts<'a, P: ?Sized> {
    pub(crate) policy: &'a P,
    pub(crate) limiter: Option<&'a dyn RateLimiter>,
    pub(crate) metrics: Option<&'a Metrics>,
    pub(crate) limits: Limits,
}

impl<P: ?Sized> Attempts<'_, P> {
    fn decide<E>(&self, attempt: u32, error: &AttemptError<E>) -> Option<Duration>
    where
        P: RetryPolicy<E>,
    {
        match error {
            AttemptError::Failed(e) | AttemptError::RejectedOk(e) => {
                self.policy.retry_delay(attempt, e)
            }
            // A panic is a bug in the user's code; running it again would only repeat it.
            AttemptError::Panicked(_) => None,
            // A value that failed to (de)serialize fails the same way on every attempt.
            AttemptError::Codec(_) => None,
            AttemptError::Crashed(_) | AttemptError::TimedOut(_) => {
                self.policy.retry_delay_after_fault(attempt)
            }
            // The call is over, or this form cannot run it at all.
            AttemptError::DeadlineExceeded(_) | AttemptError::Refused { .. } => None,
        }
    }

    /// Books a failure and says whether (and after how long) to retry; a retry whose delay
    /// would cross the deadline is not scheduled, and the call is marked as ended by it.
    #[cold]
    fn on_failure<E: Display>(
        &self,
        failures: &mut AllFailedError<E>,
        index: usize,
        attempt: u32,
        error: AttemptError<E>,
        budget: Option<Budget>,
    ) -> Option<Duration>
    where
        P: RetryPolicy<E>,
    {
        let mut delay = self.decide(attempt, &error);
        let timed_out = matches!(error, AttemptError::TimedOut(_));
        let mut deadline = match error {
            AttemptError::DeadlineExceeded(d) => Some(d),
            _ => None,
        };
        if let (Some(wait), Some(budget)) = (delay, budget) {
            // Starting at the deadline or past it, the retry would have no time to run.
            if wait >= budget.left() {
                delay = None;
                deadline = Some(budget.deadline);
            }
        }
        if let Some(m) = self.metrics {
            m.failed_attempt();
            if timed_out {
                m.attempt_timeout();
            }
            if delay.is_some() {
                m.retry();
            }
        }
        match delay {
            Some(delay) => tracing::debug!(
                target: "opero",
                fallback_index = index,
                attempt,
                delay_ms = delay.as_secs_f64() * 1e3,
                error = %error,
                "retry scheduled"
            ),
            None => tracing::debug!(
                target: "opero",
                fallback_index = index,
                attempt,
                error = %error,
                "attempts for this fallback value ended"
            ),
        }
        failures.push(index, attempt, error);
        if let Some(d) = deadline {
            self.on_deadline(failures, d);
        }
        delay
    }

    #[cold]
    fn on_deadline<E>(&self, failures: &mut AllFailedError<E>, deadline: Duration) {
        if let Some(m) = self.metrics {
            m.deadline_exceeded();
        }
        tracing::warn!(
            target: "opero",
            deadline_ms = deadline.as_secs_f64() * 1e3,
            attempts = failures.len(),
            "the deadline ended the call"
        );
        failures.end_by_deadline(deadline);
    }

    /// Whether the deadline leaves no time to start another attempt (marking the call ended if
    /// so), after waiting `wait` for a permit.
    #[inline]
    fn out_of_time<E>(
        &self,
        failures: &mut AllFailedError<E>,
        budget: Option<Budget>,
        wait: Duration,
    ) -> bool {
        match budget {
            Some(budget) if wait >= budget.left() => {
                self.on_deadline(failures, budget.deadline);
                true
            }
            _ => false,
        }
    }

    /// The bound on the next async attempt: the sooner of the attempt timeout and the deadline.
    /// The call's first attempt has the whole deadline, without a second read of the clock.
    fn cut(&self, budget: Option<Budget>, first: bool) -> Option<Cut> {
        let left = budget.map(|b| if first { b.deadline } else { b.left() });
        match (self.limits.attempt_timeout, left) {
            (None, None) => None,
            (Some(timeout), None) => Some(Cut::Timeout(timeout)),
            (None, Some(left)) => Some(Cut::Deadline(left)),
            (Some(timeout), Some(left)) if timeout < left => Some(Cut::Timeout(timeout)),
            (Some(_), Some(left)) => Some(Cut::Deadline(left)),
        }
    }

    /// The failure of a sync call on a pipeline with an attempt timeout, which it cannot honour.
    #[cold]
    fn refuse_timeout<T, E: Display>(&self) -> Result<T, AllFailedError<E>> {
        let mut failures = AllFailedError::new();
        failures.push(
            0,
            1,
            AttemptError::Refused {
                field: "retry.attempt_timeout",
                reason: "a sync call cannot be preempted; use the async forms, or opmap's \
                         process mode, to bound an attempt",
            },
        );
        tracing::warn!(
            target: "opero",
            field = "retry.attempt_timeout",
            "a sync call on a pipeline with an attempt timeout was refused"
        );
        self.on_all_failed(&failures);
        Err(failures)
    }

    #[cold]
    fn on_switch(&self, index: usize) {
        if let Some(m) = self.metrics {
            m.fallback_switch();
        }
        // The value may be a secret (an API key): only its index is logged.
        tracing::info!(target: "opero", fallback_index = index, "fallback switched");
    }

    #[cold]
    fn on_all_failed<E>(&self, failures: &AllFailedError<E>) {
        if let Some(m) = self.metrics {
            m.failed_call();
        }
        tracing::warn!(target: "opero", attempts = failures.len(), "all attempts failed");
    }

    /// The permit wait for the next attempt, zero when none is needed.
    #[inline]
    fn permit(&self) -> Duration {
        match self.limiter {
            None => Duration::ZERO,
            Some(limiter) => {
                let wait = limiter.reserve();
                if !wait.is_zero() {
                    if let Some(m) = self.metrics {
                        m.rate_limit_wait();
                    }
                    tracing::trace!(target: "opero", wait_ms = wait.as_secs_f64() * 1e3, "rate-limit wait");
                }
                wait
            }
        }
    }

    /// Runs `f` over the fallback values in order, each with its full retry budget.
    #[inline]
    pub(crate) fn run_sync<V, T, E, F>(
        &self,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        if self.limits.attempt_timeout.is_some() {
            return self.refuse_timeout();
        }
        let budget = Budget::sync(&self.limits);
        let mut failures = AllFailedError::new();
        'values: for (index, value) in values.iter().enumerate() {
            if index > 0 {
                if self.out_of_time(&mut failures, budget, Duration::ZERO) {
                    break;
                }
                self.on_switch(index);
            }
            let mut attempt = 1u32;
            loop {
                let wait = self.permit();
                if !wait.is_zero() {
                    if self.out_of_time(&mut failures, budget, wait) {
                        break 'values;
                    }
                    std::thread::sleep(wait);
                }
                match f(value) {
                    Ok(v) => return Ok(v),
                    Err(e) => match self.on_failure(&mut failures, index, attempt, e, budget) {
                        Some(delay) => {
                            if !delay.is_zero() {
                                std::thread::sleep(delay);
                            }
                            // Past u32::MAX attempts there is no number for the next one.
                            match attempt.checked_add(1) {
                                Some(next) => attempt = next,
                                None => break,
                            }
                        }
                        None => break,
                    },
                }
            }
            if failures.ended_by_deadline().is_some() {
                break;
            }
        }
        self.on_all_failed(&failures);
        Err(failures)
    }

    /// The async twin of [`run_sync`](Self::run_sync): never blocks; sleeps on tokio's timer in a
    /// tokio runtime and on a timer thread under any other executor.
    pub(crate) async fn run_async<V, T, E, F, Fut>(
        &self,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let budget = Budget::tokio(&self.limits);
        let mut failures = AllFailedError::new();
        'values: for (index, value) in values.iter().enumerate() {
            if index > 0 {
                if self.out_of_time(&mut failures, budget, Duration::ZERO) {
                    break;
                }
                self.on_switch(index);
            }
            let mut attempt = 1u32;
            loop {
                let wait = self.permit();
                if !wait.is_zero() {
                    if self.out_of_time(&mut failures, budget, wait) {
                        break 'values;
                    }
                    crate::sleep::sleep(wait).await;
                }
                let first = index == 0 && attempt == 1 && wait.is_zero();
                let outcome = match self.cut(budget, first) {
                    None => f(value).await,
                    Some(Cut::Timeout(limit)) => crate::sleep::timeout(limit, f(value))
                        .await
                        .unwrap_or_else(|_| Err(AttemptError::TimedOut(limit))),
                    Some(Cut::Deadline(left)) => crate::sleep::timeout(left, f(value))
                        .await
                        .unwrap_or_else(|_| {
                            Err(AttemptError::DeadlineExceeded(
                                budget.map_or(left, |b| b.deadline),
                            ))
                        }),
                };
                match outcome {
                    Ok(v) => return Ok(v),
                    Err(e) => match self.on_failure(&mut failures, index, attempt, e, budget) {
                        Some(delay) => {
                            if !delay.is_zero() {
                                crate::sleep::sleep(delay).await;
                            }
                            // Past u32::MAX attempts there is no number for the next one.
                            match attempt.checked_add(1) {
                                Some(next) => attempt = next,
                                None => break,
                            }
                        }
                        None => break,
                    },
                }
            }
            if failures.ended_by_deadline().is_some() {
                break;
            }
        }
        self.on_all_failed(&failures);
        Err(failures)
    }
}
