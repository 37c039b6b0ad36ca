//! The attempt loop shared by every form: fallback, then retry, then rate limit, then the call.
//!
//! Sync and async loops are written side by side so that they stay the same loop.
//!
//! The deadline wraps the whole loop (every fallback value, every retry, every permit wait); the
//! per-attempt timeout wraps the call alone, after its permit.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::breaker::{BreakerState, Breakers, Leave};
use crate::bulkhead::{Bulkhead, BulkheadPermit};
use crate::error::{AllFailedError, AttemptError};
use crate::hedge::HedgeConfig;
use crate::metrics::Counters;
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;
use crate::ticker::{Tick, Ticker};

/// The time bounds of a call: `retry.deadline` and `retry.attempt_timeout`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
}

/// When a call started, on the clock its waits run on: the process clock's last tick (see
/// `ticker.rs`; no clock read on the no-fault path) for the sync loop, tokio's (paused in tests)
/// for the async one.
#[derive(Clone, Copy)]
enum Clock {
    Ticked(Tick),
    Tokio(tokio::time::Instant),
}

/// A running call's deadline.
#[derive(Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) deadline: Duration,
    start: Clock,
}

impl Budget {
    #[inline]
    fn sync(limits: &Limits) -> Option<Self> {
        // The clock's last tick: never after the call, so the deadline is never late.
        limits.deadline.map(|deadline| Budget {
            deadline,
            start: Clock::Ticked(Ticker::global().start()),
        })
    }

    pub(crate) fn tokio(limits: &Limits) -> Option<Self> {
        // Outside a tokio runtime tokio's clock reads the system's, as the timers there do.
        limits.deadline.map(|deadline| Budget {
            deadline,
            start: Clock::Tokio(tokio::time::Instant::now()),
        })
    }

    /// Time left before the deadline, zero once past it.
    pub(crate) fn left(&self) -> Duration {
        let elapsed = match self.start {
            Clock::Ticked(at) => Ticker::global().elapsed(at),
            Clock::Tokio(at) => at.elapsed(),
        };
        self.deadline.saturating_sub(elapsed)
    }
}

/// What ends an attempt early in the async forms, and how long it has.
#[derive(Clone, Copy)]
pub(crate) enum Cut {
    Timeout(Duration),
    Deadline(Duration),
}

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
    pub(crate) metrics: Option<Counters<'a>>,
    pub(crate) guards: Option<&'a Guards>,
    pub(crate) limits: Limits,
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
            // Refused before the function ran: waiting would not change the answer.
            _ => None,
        }
    }

    /// The breaker's leave for an attempt on fallback value `index` (`None` without breakers),
    /// or `Err` when its breaker is open.
    #[inline]
    pub(crate) fn breaker_leave(&self, index: usize) -> Result<Option<Leave<'a>>, ()> {
        match self.guards.and_then(|g| g.breakers.as_ref()) {
            None => Ok(None),
            Some(breakers) => breakers.get(index).leave(self.metrics).map(Some).ok_or(()),
        }
    }

    /// Reports a successful attempt to its breaker.
    pub(crate) fn breaker_ok(&self, index: usize, leave: Option<Leave<'_>>) {
        if let (Some(leave), Some(breakers)) =
            (leave, self.guards.and_then(|g| g.breakers.as_ref()))
        {
            breakers.get(index).left_ok(leave, self.metrics);
        }
    }

    /// Reports a failed attempt to its breaker; true when the breaker is open now, so that the
    /// value's retries end without a delay.
    pub(crate) fn breaker_failed(&self, index: usize, leave: Option<Leave<'_>>) -> bool {
        let (Some(leave), Some(breakers)) = (leave, self.guards.and_then(|g| g.breakers.as_ref()))
        else {
            return false;
        };
        let breaker = breakers.get(index);
        breaker.left_failed(leave, self.metrics);
        breaker.state() == BreakerState::Open
    }

    /// A slot in the bulkhead, if there is one (waiting in its queue, blocking the thread).
    /// A free slot is taken inline: the permit comes back in a register, where the whole
    /// result would come back through memory.
    #[inline]
    fn bulkhead_blocking<E>(&self) -> Result<Option<BulkheadPermit<'a>>, AllFailedError<E>> {
        match self.guards.and_then(|g| g.bulkhead.as_ref()) {
            None => Ok(None),
            Some(b) => match b.try_slot() {
                Some(permit) => Ok(Some(permit)),
                None => self.bulkhead_wait(b),
            },
        }
    }

    #[cold]
    #[inline(never)]
    fn bulkhead_wait<E>(
        &self,
        bulkhead: &'a Bulkhead,
    ) -> Result<Option<BulkheadPermit<'a>>, AllFailedError<E>> {
        bulkhead
            .enter_blocking_counted(self.metrics)
            .map(Some)
            .map_err(|full| self.refused(full.into()))
    }

    /// A slot in the bulkhead, if there is one (waiting in its queue without blocking).
    async fn bulkhead<E>(&self) -> Result<Option<BulkheadPermit<'a>>, AllFailedError<E>> {
        match self.guards.and_then(|g| g.bulkhead.as_ref()) {
            None => Ok(None),
            Some(b) => match b.try_slot() {
                Some(permit) => Ok(Some(permit)),
                None => b
                    .enter_counted(self.metrics)
                    .await
                    .map(Some)
                    .map_err(|full| self.refused(full.into())),
            },
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
    /// `breaker_open`: the value's breaker opened, so its retries end here. A retry whose delay
    /// would cross the deadline is not scheduled, and the call is marked as ended by it.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_failure<E: Display>(
        &self,
        failures: &mut AllFailedError<E>,
        index: usize,
        attempt: u32,
        error: AttemptError<E>,
        breaker_open: bool,
        budget: Option<Budget>,
    ) -> Option<Duration>
    where
        P: RetryPolicy<E>,
    {
        let mut delay = if breaker_open {
            None
        } else {
            self.decide(attempt, &error)
        };
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
    pub(crate) fn on_deadline<E>(&self, failures: &mut AllFailedError<E>, deadline: Duration) {
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
    pub(crate) fn cut(&self, budget: Option<Budget>, first: bool) -> Option<Cut> {
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
            AttemptError::Unsupported {
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

    /// [`run_sync`](Self::run_sync) with guards, inlined into its caller; the loop runs out of line,
    /// behind a failed first attempt.
    #[inline(always)]
    pub(crate) fn run_sync_guarded<V, T, E, F>(
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
        let slot = self.bulkhead_blocking()?;
        let result = match &guards.breakers {
            None => self.first_sync(NoGate, values, f),
            Some(breakers) => self.first_sync(
                BreakerGate {
                    breakers,
                    metrics: self.metrics,
                },
                values,
                f,
            ),
        };
        // Dropped on an unwind; given back here otherwise.
        if let Some(slot) = slot {
            slot.release();
        }
        result
    }

    /// A guarded call's first attempt, run ahead of the attempt loop's set-up (the failure
    /// record, the fallback walk) that a call which succeeds at once never needs; the loop takes
    /// over from its failure. A rate-limited call goes to the loop at once, as does one whose
    /// first breaker is open (the loop skips it).
    #[inline(always)]
    fn first_sync<G, V, T, E, F>(
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
        let (Some(value), None, None) = (values.first(), self.limiter, self.limits.attempt_timeout)
        else {
            return self.loop_sync_cold(gate, values, f);
        };
        let budget = Budget::sync(&self.limits);
        let Some(pass) = gate.enter(0) else {
            // Skipped as the loop skips an open breaker; refused (and counted) once.
            let mut failures = AllFailedError::new();
            failures.push(0, 1, AttemptError::BreakerOpen);
            return self.loop_sync_after(gate, values, f, failures, (1, 1), budget);
        };
        let timer = self.metrics.map(|m| m.attempt());
        let result = f(value);
        if let Some(timer) = timer {
            timer.finish(self.metrics);
        }
        match result {
            Ok(v) => {
                gate.success(0, pass);
                Ok(v)
            }
            Err(e) => {
                let open = gate.failure(0, pass);
                self.first_failed_sync(gate, values, f, e, open, budget)
            }
        }
    }

    /// The failure of [`first_sync`](Self::first_sync)'s attempt, booked as the loop books one;
    /// the loop goes on from the next attempt.
    #[cold]
    #[inline(never)]
    fn first_failed_sync<G, V, T, E, F>(
        &self,
        gate: G,
        values: &[V],
        f: F,
        error: AttemptError<E>,
        open: bool,
        budget: Option<Budget>,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let mut failures = AllFailedError::new();
        let next = match self.on_failure(&mut failures, 0, 1, error, open, budget) {
            Some(delay) => {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                (0, 2)
            }
            None => (1, 1),
        };
        if failures.ended_by_deadline().is_some() {
            self.on_all_failed(&failures);
            return Err(failures);
        }
        self.loop_sync_from(gate, values, f, failures, next, budget)
    }

    /// [`loop_sync_from`](Self::loop_sync_from), out of line.
    #[inline(never)]
    fn loop_sync_after<G, V, T, E, F>(
        &self,
        gate: G,
        values: &[V],
        f: F,
        failures: AllFailedError<E>,
        from: (usize, u32),
        budget: Option<Budget>,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.loop_sync_from(gate, values, f, failures, from, budget)
    }

    /// [`loop_sync`](Self::loop_sync) out of line, for a guarded call that cannot take the
    /// short way.
    #[inline(never)]
    fn loop_sync_cold<G, V, T, E, F>(
        &self,
        gate: G,
        values: &[V],
        f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.loop_sync(gate, values, f)
    }

    #[inline]
    fn loop_sync<G, V, T, E, F>(&self, gate: G, values: &[V], f: F) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        if self.limits.attempt_timeout.is_some() {
            return self.refuse_timeout();
        }
        let budget = Budget::sync(&self.limits);
        self.loop_sync_from(gate, values, f, AllFailedError::new(), (0, 1), budget)
    }

    /// The attempt loop from attempt `from.1` of fallback value `from.0`, `failures` holding
    /// the failures before it.
    #[inline]
    fn loop_sync_from<G, V, T, E, F>(
        &self,
        gate: G,
        values: &[V],
        mut f: F,
        mut failures: AllFailedError<E>,
        from: (usize, u32),
        budget: Option<Budget>,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let mut first_attempt = from.1;
        'values: for (index, value) in values.iter().enumerate().skip(from.0) {
            if index > 0 {
                if self.out_of_time(&mut failures, budget, Duration::ZERO) {
                    break;
                }
                self.on_switch(index);
            }
            let mut attempt = std::mem::replace(&mut first_attempt, 1);
            loop {
                let Some(pass) = gate.enter(index) else {
                    // An open breaker is skipped at once: no call, no delay.
                    failures.push(index, attempt, AttemptError::BreakerOpen);
                    break;
                };
                let outcome = match self.permit() {
                    Ok(wait) => {
                        if !wait.is_zero() {
                            if self.out_of_time(&mut failures, budget, wait) {
                                break 'values;
                            }
                            std::thread::sleep(wait);
                        }
                        let timer = self.metrics.map(|m| m.attempt());
                        let result = f(value);
                        if let Some(timer) = timer {
                            timer.finish(self.metrics);
                        }
                        result
                    }
                    Err(why) => Err(AttemptError::NoPermit(why)),
                };
                match outcome {
                    Ok(v) => {
                        gate.success(index, pass);
                        return Ok(v);
                    }
                    Err(e) => {
                        let open = gate.failure(index, pass);
                        match self.on_failure(&mut failures, index, attempt, e, open, budget) {
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
            if failures.ended_by_deadline().is_some() {
                break;
            }
        }
        self.on_all_failed(&failures);
        Err(failures)
    }

    /// An attempt's future, timed for the `metrics` feature (free without it).
    #[inline(always)]
    async fn timed<F: Future>(&self, attempt: F) -> F::Output {
        let timer = self.metrics.map(|m| m.attempt());
        let result = attempt.await;
        if let Some(timer) = timer {
            timer.finish(self.metrics);
        }
        result
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
        let plain = self.limiter.is_none()
            && self.limits.deadline.is_none()
            && self.limits.attempt_timeout.is_none();
        if let (Some(first), true) = (values.first(), plain) {
            let error = match self.timed(f(first)).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            return Box::pin(self.after_first_async(NoGate, values, f, error, None, false)).await;
        }
        let budget = Budget::tokio(&self.limits);
        Box::pin(self.loop_async(NoGate, values, f, AllFailedError::new(), (0, 1), budget)).await
    }

    /// The attempt loop as an owned future, for a caller that ran the first attempt itself
    /// (`start` says how it ended, or hands it over still running) or hands over every attempt
    /// (`Start::Fresh`).
    pub(crate) async fn run_async_boxed<V, T, E, F, Fut>(
        self,
        values: &[V],
        f: F,
        start: Start<'a, T, E>,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        // Each arm boxed on its own: inline, this future would be as large as the larger arm
        // (over a kilobyte, past the allocator's fast bins) for a guarded call too.
        match start {
            Start::Fresh => match self.guards {
                Some(guards) => Box::pin(self.run_async_guarded(guards, values, f)).await,
                None => {
                    let budget = Budget::tokio(&self.limits);
                    let failures = AllFailedError::new();
                    Box::pin(self.loop_async(NoGate, values, f, failures, (0, 1), budget)).await
                }
            },
            Start::Failed {
                error,
                budget,
                open,
                slot,
            } => {
                // The call's slot, held to the end of its attempts.
                let _slot = slot;
                match self.guards.and_then(|g| g.breakers.as_ref()) {
                    None => {
                        let rest = self.after_first_async(NoGate, values, f, error, budget, open);
                        Box::pin(rest).await
                    }
                    Some(breakers) => {
                        let gate = BreakerGate {
                            breakers,
                            metrics: self.metrics,
                        };
                        let rest = self.after_first_async(gate, values, f, error, budget, open);
                        Box::pin(rest).await
                    }
                }
            }
            Start::Racing(first) => match self.guards.and_then(|g| g.hedge.as_ref()) {
                Some(hedge) => Box::pin(self.run_hedged(hedge, values, f, Some(first))).await,
                // Only a hedged pipeline hands its first attempt over running.
                None => Err(self.refused(crate::hedge::sync_refusal())),
            },
        }
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
            return self.run_hedged(hedge, values, f, None).await;
        }
        let budget = Budget::tokio(&self.limits);
        let failures = AllFailedError::new();
        match &guards.breakers {
            None => {
                self.loop_async(NoGate, values, f, failures, (0, 1), budget)
                    .await
            }
            Some(breakers) => {
                let gate = BreakerGate {
                    breakers,
                    metrics: self.metrics,
                };
                self.loop_async(gate, values, f, failures, (0, 1), budget)
                    .await
            }
        }
    }

    /// The loop after a first attempt the caller ran: its failure booked as the loop books one
    /// (`open`: its breaker, already told, is open now), then the next attempt. `budget`: the
    /// deadline's, if the first attempt waited and started its clock.
    async fn after_first_async<G, V, T, E, F, Fut>(
        &self,
        gate: G,
        values: &[V],
        f: F,
        error: AttemptError<E>,
        budget: Option<Budget>,
        open: bool,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        // A first attempt that failed without waiting read no clock: the deadline starts here.
        let budget = budget.or_else(|| Budget::tokio(&self.limits));
        let mut failures = AllFailedError::new();
        let next = match self.on_failure(&mut failures, 0, 1, error, open, budget) {
            Some(delay) => {
                if !delay.is_zero() {
                    crate::sleep::sleep(delay).await;
                }
                (0, 2)
            }
            None => (1, 1),
        };
        if failures.ended_by_deadline().is_some() {
            self.on_all_failed(&failures);
            return Err(failures);
        }
        self.loop_async(gate, values, f, failures, next, budget)
            .await
    }

    /// The attempt loop from attempt `from.1` of fallback value `from.0`, `failures` holding
    /// the failures before it.
    async fn loop_async<G, V, T, E, F, Fut>(
        &self,
        gate: G,
        values: &[V],
        mut f: F,
        mut failures: AllFailedError<E>,
        from: (usize, u32),
        budget: Option<Budget>,
    ) -> Result<T, AllFailedError<E>>
    where
        G: Gate,
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let mut first_attempt = from.1;
        'values: for (index, value) in values.iter().enumerate().skip(from.0) {
            if index > 0 {
                if self.out_of_time(&mut failures, budget, Duration::ZERO) {
                    break;
                }
                self.on_switch(index);
            }
            let mut attempt = std::mem::replace(&mut first_attempt, 1);
            loop {
                let Some(pass) = gate.enter(index) else {
                    // An open breaker is skipped at once: no call, no delay.
                    failures.push(index, attempt, AttemptError::BreakerOpen);
                    break;
                };
                let outcome = match self.permit_async().await {
                    Ok(wait) => {
                        if !wait.is_zero() {
                            if self.out_of_time(&mut failures, budget, wait) {
                                break 'values;
                            }
                            crate::sleep::sleep(wait).await;
                        }
                        let first = index == 0 && attempt == 1 && wait.is_zero();
                        match self.cut(budget, first) {
                            None => self.timed(f(value)).await,
                            Some(cut) => crate::sleep::timeout(cut.limit(), self.timed(f(value)))
                                .await
                                .unwrap_or_else(|_| Err(cut.error(budget))),
                        }
                    }
                    Err(why) => Err(AttemptError::NoPermit(why)),
                };
                match outcome {
                    Ok(v) => {
                        gate.success(index, pass);
                        return Ok(v);
                    }
                    Err(e) => {
                        let open = gate.failure(index, pass);
                        match self.on_failure(&mut failures, index, attempt, e, open, budget) {
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
            if failures.ended_by_deadline().is_some() {
                break;
            }
        }
        self.on_all_failed(&failures);
        Err(failures)
    }
}

/// Where [`Attempts::run_async_boxed`] starts: every attempt its own, or after a first attempt
/// the caller's future ran (the no-fault path runs it inline, on the deadline's budget if there
/// is one).
pub(crate) enum Start<'a, T, E> {
    /// No attempt has run.
    Fresh,
    /// The first attempt failed: its error; the deadline's budget if the attempt waited (and
    /// so started the clock); whether its breaker, already told, is open now; the call's
    /// bulkhead slot.
    Failed {
        error: AttemptError<E>,
        budget: Option<Budget>,
        open: bool,
        slot: Option<BulkheadPermit<'a>>,
    },
    /// A hedged call's first attempt, started by the caller's future, which goes on polling it:
    /// the race takes it from there.
    Racing(crate::hedge::FirstAttempt<'a, Result<T, AttemptError<E>>>),
}

impl Cut {
    /// How long the attempt may run.
    #[inline]
    pub(crate) fn limit(self) -> Duration {
        match self {
            Cut::Timeout(d) | Cut::Deadline(d) => d,
        }
    }

    /// The failure of an attempt this cut ended.
    #[cold]
    pub(crate) fn error<E>(self, budget: Option<Budget>) -> AttemptError<E> {
        match self {
            Cut::Timeout(limit) => AttemptError::TimedOut(limit),
            Cut::Deadline(left) => {
                AttemptError::DeadlineExceeded(budget.map_or(left, |b| b.deadline))
            }
        }
    }
}

/// What lets an attempt on a fallback value through: nothing ([`NoGate`]) or the value's
/// circuit breaker ([`BreakerGate`]). A type parameter, so that the plain loop carries no
/// permit, no drop and no branch of the breakers.
trait Gate: Copy {
    type Pass;
    /// The pass for an attempt on `index`, or `None` when its breaker is open.
    fn enter(self, index: usize) -> Option<Self::Pass>;
    fn success(self, index: usize, pass: Self::Pass);
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
    fn success(self, _: usize, _: ()) {}
    #[inline(always)]
    fn failure(self, _: usize, _: ()) -> bool {
        false
    }
}

#[derive(Clone, Copy)]
struct BreakerGate<'a> {
    breakers: &'a Breakers,
    metrics: Option<Counters<'a>>,
}

impl<'b> Gate for BreakerGate<'b> {
    type Pass = Leave<'b>;
    #[inline]
    fn enter(self, index: usize) -> Option<Leave<'b>> {
        self.breakers.get(index).leave(self.metrics)
    }
    #[inline]
    fn success(self, index: usize, pass: Leave<'b>) {
        self.breakers.get(index).left_ok(pass, self.metrics);
    }
    fn failure(self, index: usize, pass: Leave<'b>) -> bool {
        let breaker = self.breakers.get(index);
        breaker.left_failed(pass, self.metrics);
        breaker.state() == BreakerState::Open
    }
}
