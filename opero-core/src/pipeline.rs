//! The attempt loop shared by every form: fallback, then retry, then rate limit, then the call.
//!
//! Sync and async loops are written side by side so that they stay the same loop.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::breaker::{BreakerPermit, BreakerState, Breakers};
use crate::bulkhead::{Bulkhead, BulkheadPermit};
use crate::error::{AllFailedError, AttemptError};
use crate::hedge::HedgeConfig;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;

/// Logs and words a limiter's refusal to hand out a permit.
#[cold]
fn no_permit(e: &crate::error::OperoError) -> String {
    tracing::warn!(target: "opero", error = %e, "no rate-limit permit; the attempt fails");
    e.to_string()
}

/// The parts the attempt loop needs, borrowed from a pipeline or given by a standalone layer.
pub(crate) struct Attempts<'a, P: ?Sized> {
    pub(crate) policy: &'a P,
    pub(crate) limiter: Option<&'a dyn RateLimiter>,
    pub(crate) metrics: Option<&'a Metrics>,
    pub(crate) guards: Option<&'a Guards>,
}

/// The circuit breakers, the bulkhead and the hedging settings of a pipeline; `None` in
/// [`Attempts`] when it has none of them, so that the plain loop checks one pointer.
#[derive(Debug, Default)]
pub(crate) struct Guards {
    pub(crate) breakers: Option<Breakers>,
    pub(crate) bulkhead: Option<Bulkhead>,
    pub(crate) hedge: Option<HedgeConfig>,
}

impl Guards {
    /// Whether any guard is set.
    pub(crate) fn any(&self) -> bool {
        self.breakers.is_some() || self.bulkhead.is_some() || self.hedge.is_some()
    }
}

impl<'a, P: ?Sized> Attempts<'a, P> {
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
            // Refused before the function ran: waiting would not change the answer.
            _ => None,
        }
    }

    /// The breaker permit for an attempt on fallback value `index` (`None` without breakers),
    /// or `Err` when its breaker is open.
    #[inline]
    pub(crate) fn breaker_permit(&self, index: usize) -> Result<Option<BreakerPermit<'a>>, ()> {
        match self.guards.and_then(|g| g.breakers.as_ref()) {
            None => Ok(None),
            Some(breakers) => breakers
                .get(index)
                .acquire(self.metrics)
                .map(Some)
                .ok_or(()),
        }
    }

    /// Reports a failed attempt to its breaker; true when the breaker is open now, so that the
    /// value's retries end without a delay.
    pub(crate) fn breaker_failed(&self, index: usize, permit: Option<BreakerPermit<'_>>) -> bool {
        let Some(permit) = permit else { return false };
        permit.failure();
        self.guards
            .and_then(|g| g.breakers.as_ref())
            .is_some_and(|b| b.get(index).state() == BreakerState::Open)
    }

    /// A slot in the bulkhead, if there is one (waiting in its queue, blocking the thread).
    fn bulkhead_blocking<E>(&self) -> Result<Option<BulkheadPermit<'a>>, AllFailedError<E>> {
        match self.guards.and_then(|g| g.bulkhead.as_ref()) {
            None => Ok(None),
            Some(b) => b
                .enter_blocking_counted(self.metrics)
                .map(Some)
                .map_err(|full| self.refused(full.into())),
        }
    }

    /// A slot in the bulkhead, if there is one (waiting in its queue without blocking).
    async fn bulkhead<E>(&self) -> Result<Option<BulkheadPermit<'a>>, AllFailedError<E>> {
        match self.guards.and_then(|g| g.bulkhead.as_ref()) {
            None => Ok(None),
            Some(b) => b
                .enter_counted(self.metrics)
                .await
                .map(Some)
                .map_err(|full| self.refused(full.into())),
        }
    }

    /// A call refused before any attempt ran.
    #[cold]
    fn refused<E>(&self, error: AttemptError<E>) -> AllFailedError<E> {
        let failures = AllFailedError::single(0, 1, error);
        self.on_all_failed(&failures);
        failures
    }

    /// Books a failure and says whether (and after how long) to retry.
    /// `breaker_open`: the value's breaker opened, so its retries end here.
    #[cold]
    pub(crate) fn on_failure<E: Display>(
        &self,
        failures: &mut AllFailedError<E>,
        index: usize,
        attempt: u32,
        error: AttemptError<E>,
        breaker_open: bool,
    ) -> Option<Duration>
    where
        P: RetryPolicy<E>,
    {
        let delay = if breaker_open {
            None
        } else {
            self.decide(attempt, &error)
        };
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
    pub(crate) fn on_switch(&self, index: usize) {
        if let Some(m) = self.metrics {
            m.fallback_switch();
        }
        // The value may be a secret (an API key): only its index is logged.
        tracing::info!(target: "opero", fallback_index = index, "fallback switched");
    }

    #[cold]
    pub(crate) fn on_all_failed<E>(&self, failures: &AllFailedError<E>) {
        if let Some(m) = self.metrics {
            m.failed_call();
        }
        tracing::warn!(target: "opero", attempts = failures.len(), "all attempts failed");
    }

    /// The permit wait for the next attempt, zero when none is needed; `Err` when the limiter
    /// cannot hand one out (a shared limiter whose server is down, under a failing policy).
    #[inline]
    pub(crate) fn permit(&self) -> Result<Duration, String> {
        match self.limiter {
            None => Ok(Duration::ZERO),
            Some(limiter) => self.booked(limiter.try_reserve()),
        }
    }

    /// The async twin of [`permit`](Self::permit): a networked limiter answers without blocking.
    #[inline]
    pub(crate) async fn permit_async(&self) -> Result<Duration, String> {
        match self.limiter {
            None => Ok(Duration::ZERO),
            Some(limiter) => self.booked(limiter.reserve_async().await),
        }
    }

    #[inline]
    fn booked(
        &self,
        reserved: Result<Duration, crate::error::OperoError>,
    ) -> Result<Duration, String> {
        match reserved {
            Ok(wait) => {
                if !wait.is_zero() {
                    if let Some(m) = self.metrics {
                        m.rate_limit_wait();
                    }
                    tracing::trace!(target: "opero", wait_ms = wait.as_secs_f64() * 1e3, "rate-limit wait");
                }
                Ok(wait)
            }
            Err(e) => Err(no_permit(&e)),
        }
    }

    /// Runs `f` over the fallback values in order, each with its full retry budget.
    pub(crate) fn run_sync<V, T, E, F>(&self, values: &[V], f: F) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        match self.guards {
            None => self.loop_sync(NoGate, values, f),
            Some(guards) => self.run_sync_guarded(guards, values, f),
        }
    }

    /// [`run_sync`](Self::run_sync) for parts known to have no guards: the pipeline's no-fault
    /// path. A branch on the guards, even to a cold function, kept the closure out of registers
    /// and doubled that path's cost, so the pipeline branches before it builds the closure.
    #[inline]
    pub(crate) fn run_sync_unguarded<V, T, E, F>(
        &self,
        values: &[V],
        f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        debug_assert!(self.guards.is_none());
        self.loop_sync(NoGate, values, f)
    }

    #[cold]
    #[inline(never)]
    fn run_sync_guarded<V, T, E, F>(
        &self,
        guards: &'a Guards,
        values: &[V],
        f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        if guards.hedge.is_some() {
            return Err(self.refused(crate::hedge::sync_refusal()));
        }
        let _slot = self.bulkhead_blocking()?;
        match &guards.breakers {
            None => self.loop_sync(NoGate, values, f),
            Some(breakers) => self.loop_sync(
                BreakerGate {
                    breakers,
                    metrics: self.metrics,
                },
                values,
                f,
            ),
        }
    }

    #[inline]
    fn loop_sync<G, V, T, E, F>(
        &self,
        gate: G,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
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
                let Some(pass) = gate.enter(index) else {
                    // An open breaker is skipped at once: no call, no delay.
                    failures.push(index, attempt, AttemptError::BreakerOpen);
                    break;
                };
                let outcome = match self.permit() {
                    Ok(wait) => {
                        if !wait.is_zero() {
                            std::thread::sleep(wait);
                        }
                        f(value)
                    }
                    Err(why) => Err(AttemptError::NoPermit(why)),
                };
                match outcome {
                    Ok(v) => {
                        gate.success(pass);
                        return Ok(v);
                    }
                    Err(e) => {
                        let open = gate.failure(index, pass);
                        match self.on_failure(&mut failures, index, attempt, e, open) {
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
                        }
                    }
                }
            }
        }
        self.on_all_failed(&failures);
        Err(failures)
    }

    /// The async twin of [`run_sync`](Self::run_sync): never blocks; sleeps on tokio's timer in a
    /// tokio runtime and on a timer thread under any other executor.
    ///
    /// The no-fault path (no guards, no limiter, a first attempt that succeeds) holds only the
    /// user's future: the retry state, timers, guards and failure record live in a boxed
    /// continuation made once the first attempt fails, or at once when a guard or a limiter is
    /// set. Every caller moves this future at least once, so its size is paid on every call. It
    /// takes the parts by value (a few references) so that a caller can return its future without
    /// wrapping it in another that holds them.
    #[inline]
    pub(crate) async fn run_async<V, T, E, F, Fut>(
        self,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        if let Some(guards) = self.guards {
            return Box::pin(self.run_async_guarded(guards, values, f)).await;
        }
        // A limiter's reservation may itself be a round trip (Redis): the continuation takes it.
        let start = match (values.first(), self.limiter) {
            (Some(first), None) => match f(first).await {
                Ok(v) => return Ok(v),
                Err(e) => Start::Failed(e),
            },
            _ => Start::Fresh,
        };
        Box::pin(self.loop_async(NoGate, values, f, start)).await
    }

    /// [`run_async`](Self::run_async) with circuit breakers, a bulkhead or hedging.
    async fn run_async_guarded<V, T, E, F, Fut>(
        &self,
        guards: &'a Guards,
        values: &[V],
        f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let _slot = self.bulkhead().await?;
        if let Some(hedge) = &guards.hedge {
            return self.run_hedged(hedge, values, f).await;
        }
        match &guards.breakers {
            None => self.loop_async(NoGate, values, f, Start::Fresh).await,
            Some(breakers) => {
                let gate = BreakerGate {
                    breakers,
                    metrics: self.metrics,
                };
                self.loop_async(gate, values, f, Start::Fresh).await
            }
        }
    }

    async fn loop_async<G, V, T, E, F, Fut>(
        &self,
        gate: G,
        values: &[V],
        mut f: F,
        mut start: Start<E>,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
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
                let Some(pass) = gate.enter(index) else {
                    // An open breaker is skipped at once: no call, no delay.
                    failures.push(index, attempt, AttemptError::BreakerOpen);
                    break;
                };
                let outcome = match std::mem::replace(&mut start, Start::Fresh) {
                    Start::Failed(e) => Err(e),
                    Start::Fresh => match self.permit_async().await {
                        Ok(wait) => {
                            if !wait.is_zero() {
                                crate::sleep::sleep(wait).await;
                            }
                            f(value).await
                        }
                        Err(why) => Err(AttemptError::NoPermit(why)),
                    },
                };
                match outcome {
                    Ok(v) => {
                        gate.success(pass);
                        return Ok(v);
                    }
                    Err(e) => {
                        let open = gate.failure(index, pass);
                        match self.on_failure(&mut failures, index, attempt, e, open) {
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
                        }
                    }
                }
            }
        }
        self.on_all_failed(&failures);
        Err(failures)
    }
}

/// Where [`Attempts::loop_async`] starts: its first attempt already failed (the no-fault path
/// ran it inline), or has not run.
pub(crate) enum Start<E> {
    Failed(AttemptError<E>),
    Fresh,
}

/// What lets an attempt on a fallback value through: nothing ([`NoGate`]) or the value's
/// circuit breaker ([`BreakerGate`]). A type parameter, so that the plain loop carries no
/// permit, no drop and no branch of the breakers.
trait Gate: Copy {
    type Pass;
    /// The pass for an attempt on `index`, or `None` when its breaker is open.
    fn enter(self, index: usize) -> Option<Self::Pass>;
    fn success(self, pass: Self::Pass);
    /// Books a failure; true when the breaker is open now.
    fn failure(self, index: usize, pass: Self::Pass) -> bool;
}

#[derive(Clone, Copy)]
struct NoGate;

impl Gate for NoGate {
    type Pass = ();
    #[inline(always)]
    fn enter(self, _: usize) -> Option<()> {
        Some(())
    }
    #[inline(always)]
    fn success(self, _: ()) {}
    #[inline(always)]
    fn failure(self, _: usize, _: ()) -> bool {
        false
    }
}

#[derive(Clone, Copy)]
struct BreakerGate<'a> {
    breakers: &'a Breakers,
    metrics: Option<&'a Metrics>,
}

impl<'b> Gate for BreakerGate<'b> {
    type Pass = BreakerPermit<'b>;
    #[inline]
    fn enter(self, index: usize) -> Option<BreakerPermit<'b>> {
        self.breakers.get(index).acquire(self.metrics)
    }
    #[inline]
    fn success(self, pass: BreakerPermit<'b>) {
        pass.success();
    }
    fn failure(self, index: usize, pass: BreakerPermit<'b>) -> bool {
        pass.failure();
        self.breakers.get(index).state() == BreakerState::Open
    }
}
