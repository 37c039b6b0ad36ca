//! The attempt loop shared by every form: fallback, then retry, then rate limit, then the call.
//!
//! Sync and async loops are written side by side so that they stay the same loop.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::error::{AllFailedError, AttemptError};
use crate::metrics::Counters;
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;

/// The parts the attempt loop needs, borrowed from a pipeline or given by a standalone layer.
pub(crate) struct Attempts<'a, P: ?Sized> {
    pub(crate) policy: &'a P,
    pub(crate) limiter: Option<&'a dyn RateLimiter>,
    pub(crate) metrics: Option<Counters<'a>>,
}

impl<P: ?Sized> Attempts<'_, P> {
    fn decide<E>(&self, attempt: u32, error: &AttemptError<E>) -> Option<Duration>
    where
        P: RetryPolicy<E>,
    {
        match error {
            AttemptError::Failed(e) => self.policy.retry_delay(attempt, e),
            // A panic is a bug in the user's code; running it again would only repeat it.
            AttemptError::Panicked(_) => None,
            // A value that failed to (de)serialize fails the same way on every attempt.
            AttemptError::Codec(_) => None,
            AttemptError::Crashed(_) | AttemptError::TimedOut(_) => {
                self.policy.retry_delay_after_fault(attempt)
            }
        }
    }

    /// Books a failure and says whether (and after how long) to retry.
    #[cold]
    fn on_failure<E: Display>(
        &self,
        failures: &mut AllFailedError<E>,
        index: usize,
        attempt: u32,
        error: AttemptError<E>,
    ) -> Option<Duration>
    where
        P: RetryPolicy<E>,
    {
        let delay = self.decide(attempt, &error);
        if let Some(m) = self.metrics {
            m.failed_attempt();
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
        delay
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
        let mut failures = AllFailedError::new();
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.on_switch(index);
            }
            let mut attempt = 1u32;
            loop {
                let wait = self.permit();
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                let timer = self.metrics.map(|m| m.attempt());
                let result = f(value);
                if let Some(timer) = timer {
                    timer.finish(self.metrics);
                }
                match result {
                    Ok(v) => return Ok(v),
                    Err(e) => match self.on_failure(&mut failures, index, attempt, e) {
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
        let mut failures = AllFailedError::new();
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.on_switch(index);
            }
            let mut attempt = 1u32;
            loop {
                let wait = self.permit();
                if !wait.is_zero() {
                    crate::sleep::sleep(wait).await;
                }
                let timer = self.metrics.map(|m| m.attempt());
                let result = f(value).await;
                if let Some(timer) = timer {
                    timer.finish(self.metrics);
                }
                match result {
                    Ok(v) => return Ok(v),
                    Err(e) => match self.on_failure(&mut failures, index, attempt, e) {
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
        }
        self.on_all_failed(&failures);
        Err(failures)
    }
}
