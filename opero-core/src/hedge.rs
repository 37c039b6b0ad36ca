//! Hedging (async only): [`HedgeConfig`] and the hedged attempt loop.
//!
//! A hedged call starts its first attempt; when `delay` passes with no answer, it starts a hedge
//! alongside: on the next fallback value not yet tried, or (once every value has been started)
//! another attempt of the last one. At most `max_hedges` hedges run per call. The first success
//! wins and every other attempt still running is dropped (cancelled at its `.await`). When an
//! attempt fails while others still run, the call waits for them; when the last running attempt
//! fails, the call goes on as an unhedged one would from that attempt: its retry after the
//! backoff delay, or the next fallback value.
//!
//! The call's deadline bounds the race as a whole: no hedge or retry starts that it would
//! overtake, and when it passes every attempt still running is dropped and recorded as
//! [`AttemptError::DeadlineExceeded`], the call ended by the deadline as an unhedged one is. The
//! attempt timeout starts with each attempt (after its rate-limit wait) and cuts it alone
//! ([`AttemptError::TimedOut`], a failed attempt).
//!
//! A blocking call cannot run two attempts at once on one thread, so the sync forms refuse a
//! hedged pipeline ([`AttemptError::Unsupported`] naming `hedge`), and so do the sync wrappers
//! when they are built.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::Leave;
use crate::bulkhead::BulkheadPermit;
use crate::config::RawDuration;
use crate::error::{AllFailedError, AttemptError, OperoError};
use crate::metrics::{AttemptTimer, Counters};
use crate::pipeline::{Attempts, Budget};
use crate::retry::RetryPolicy;
use crate::sleep::{sleep, Sleep};

/// Hedging settings.
///
/// # Default
///
/// A hedge after 1 s without an answer, at most 1 hedge per call.
///
/// # Examples
///
/// ```
/// use opero_core::HedgeConfig;
/// use std::time::Duration;
///
/// let cfg: HedgeConfig = serde_json::from_str(r#"{"delay": "250ms", "max_hedges": 2}"#).unwrap();
/// assert_eq!(cfg.delay, Duration::from_millis(250));
/// let err = HedgeConfig { max_hedges: 0, ..cfg }.validate().unwrap_err();
/// assert_eq!(err.field(), Some("hedge.max_hedges"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHedgeConfig", into = "RawHedgeConfig")]
pub struct HedgeConfig {
    /// How long an attempt runs without an answer before a hedge starts beside it; positive.
    pub delay: Duration,
    /// Hedges a call may start in all; at least 1.
    pub max_hedges: u32,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            delay: Duration::from_secs(1),
            max_hedges: 1,
        }
    }
}

impl HedgeConfig {
    /// Checks every value; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), OperoError> {
        if self.delay.is_zero() {
            return Err(OperoError::invalid_config(
                "hedge.delay",
                "0s",
                "must be positive (a hedge needs a first attempt to hedge)",
            ));
        }
        if self.max_hedges == 0 {
            return Err(OperoError::invalid_config(
                "hedge.max_hedges",
                0,
                "must be at least 1 (leave hedging unset to turn it off)",
            ));
        }
        Ok(())
    }
}

/// The refusal of a hedged pipeline by a blocking call.
pub(crate) fn sync_refusal<E>() -> AttemptError<E> {
    AttemptError::Unsupported {
        field: "hedge",
        reason:
            "hedging runs attempts side by side, which a blocking call cannot; use an async form",
    }
}

/// One attempt under way: its rate-limit wait, then its future, cut by the attempt timeout.
struct Running<'b, Fut, O> {
    index: usize,
    attempt: u32,
    wait: Option<Sleep>,
    /// The attempt timeout, armed when the attempt begins (after its permit wait).
    cut: Option<Sleep>,
    timer: Option<AttemptTimer>,
    fut: Racer<Fut, O>,
    leave: Option<Leave<'b>>,
}

impl<Fut, O> Running<'_, Fut, O> {
    /// The permit wait is over: the attempt's own time starts, as an unhedged attempt's starts
    /// after its permit.
    fn begin(&mut self, timeout: Option<Duration>, metrics: Option<Counters<'_>>) {
        self.cut = timeout.map(sleep);
        self.timer = metrics.map(|m| m.attempt());
    }
}

/// A racing attempt's future: the race's own, or the call's first attempt, which the caller's
/// future holds and polls (it started before the race was needed) and hands over its outcome.
enum Racer<Fut, O> {
    Own(Pin<Box<Fut>>),
    Handed(Handoff<O>),
}

impl<Fut: Future<Output = O>, O> Racer<Fut, O> {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<O> {
        match self {
            Racer::Own(fut) => fut.as_mut().poll(cx),
            // The holder polled the attempt just before, with this context: its waker is set.
            Racer::Handed(handoff) => match handoff.take() {
                Some(out) => Poll::Ready(out),
                None => Poll::Pending,
            },
        }
    }
}

/// Where a first attempt polled by the caller's future meets the race: the attempt's outcome
/// once it has one, and whether the race dropped it (so that its holder drops the attempt).
pub(crate) struct Handoff<O>(Arc<Mutex<Handed<O>>>);

struct Handed<O> {
    outcome: Option<O>,
    dropped: bool,
}

impl<O> Handoff<O> {
    /// A handoff and its other end, with the attempt's outcome if it has one already.
    pub(crate) fn new(outcome: Option<O>) -> (Self, Self) {
        let shared = Arc::new(Mutex::new(Handed {
            outcome,
            dropped: false,
        }));
        (Handoff(Arc::clone(&shared)), Handoff(shared))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Handed<O>> {
        // Each holder leaves the state whole; a panic elsewhere does not make it wrong.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The holder's side: the attempt ended with `outcome`.
    pub(crate) fn put(&self, outcome: O) {
        self.lock().outcome = Some(outcome);
    }

    /// The holder's side: whether the race dropped the attempt.
    pub(crate) fn dropped(&self) -> bool {
        self.lock().dropped
    }

    fn take(&self) -> Option<O> {
        self.lock().outcome.take()
    }
}

/// Either end dropped: the race's end when the race drops the attempt (won by another, or cut
/// by the deadline), which the holder then drops too.
impl<O> Drop for Handoff<O> {
    fn drop(&mut self) {
        self.lock().dropped = true;
    }
}

/// A hedged call's first attempt, started (and perhaps ended) by the caller's future before the
/// race: the race's end of its handoff, its breaker leave, the call's bulkhead slot and the
/// attempt's latency timer.
pub(crate) struct FirstAttempt<'a, O> {
    pub(crate) handoff: Handoff<O>,
    pub(crate) leave: Option<Leave<'a>>,
    pub(crate) slot: Option<BulkheadPermit<'a>>,
    pub(crate) timer: Option<AttemptTimer>,
}

enum Event<T, E> {
    Done(usize, Result<T, AttemptError<E>>),
    Hedge,
    Deadline,
}

/// What starting an attempt came to.
enum Started {
    Yes,
    /// Nothing left to start (every breaker open, no rate-limit permit, no attempt number).
    No,
    /// The deadline leaves no time for the attempt, or passes during its permit wait.
    OutOfTime,
}

impl<'a, P: ?Sized> Attempts<'a, P> {
    /// The hedged form of the async attempt loop (see the module docs for the rules).
    ///
    /// `first`: the call's first attempt on value 0, when the caller's future started it (and
    /// holds it) before the race.
    pub(crate) async fn run_hedged<V, T, E, F, Fut>(
        &self,
        hedge: &HedgeConfig,
        values: &[V],
        mut f: F,
        first: Option<FirstAttempt<'a, Result<T, AttemptError<E>>>>,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        // Without a rate limiter the first attempt starts at once with the whole budget, so the
        // clock is read and the deadline, attempt-timeout and hedge timers made only once the
        // race first waits or fails: a first attempt that answers at once reads no clock (each
        // read of tokio's is tens of nanoseconds). The deadline then counts from that first
        // wait, as an unhedged async call's does.
        let mut armed = self.limiter.is_some();
        let mut budget = if armed {
            Budget::tokio(&self.limits)
        } else {
            None
        };
        let timeout = self.limits.attempt_timeout;
        let mut failures = AllFailedError::new();
        let mut running: Vec<Running<'a, Fut, Result<T, AttemptError<E>>>> = Vec::new();
        // Attempts started on each value, and how many values have been started.
        let mut started = vec![0u32; values.len()];
        let mut values_started = 0usize;
        // The call's slot, held to the race's end.
        let mut _slot = None;
        let mut next = Some(0usize);
        if let Some(first) = first {
            // Begun without a limiter, as an unarmed race begins its first attempt.
            running.push(Running {
                index: 0,
                attempt: 1,
                wait: None,
                cut: None,
                timer: first.timer,
                fut: Racer::Handed(first.handoff),
                leave: first.leave,
            });
            _slot = first.slot;
            started[0] = 1;
            values_started = 1;
            next = None;
        }
        let mut hedges = 0u32;
        let mut timer: Option<Sleep> = None;
        // The next hedge's timer, while hedges remain. One due past the deadline never fires:
        // the deadline, polled first, ends the race.
        let hedge_timer = |hedges: u32| (hedges < hedge.max_hedges).then(|| sleep(hedge.delay));
        // The deadline bounds every attempt of the race at once, and the waits between them.
        let mut deadline: Option<Sleep> = budget.map(|b| sleep(b.left()));

        // Starts the next attempt of `index` or, when its breaker is open, of the next value not
        // yet started.
        let mut start = |index: usize,
                         running: &mut Vec<Running<'a, Fut, Result<T, AttemptError<E>>>>,
                         failures: &mut AllFailedError<E>,
                         started: &mut [u32],
                         values_started: &mut usize,
                         budget: Option<Budget>,
                         armed: bool|
         -> Started {
            let mut index = index;
            loop {
                if budget.is_some_and(|b| b.left().is_zero()) {
                    return Started::OutOfTime;
                }
                if index >= *values_started {
                    if index > 0 {
                        self.on_switch(index);
                    }
                    *values_started = index + 1;
                }
                let Some(attempt) = started[index].checked_add(1) else {
                    return Started::No;
                };
                started[index] = attempt;
                match self.breaker_leave(index) {
                    Ok(leave) => {
                        let wait = match self.permit() {
                            Ok(wait) => wait,
                            Err(why) => {
                                // No attempt without a permit; the breaker's leave is given back.
                                drop(leave);
                                failures.push(index, attempt, AttemptError::NoPermit(why));
                                return Started::No;
                            }
                        };
                        if budget.is_some_and(|b| wait >= b.left()) {
                            // As unhedged: no permit wait runs into the deadline.
                            return Started::OutOfTime;
                        }
                        let mut attempt = Running {
                            index,
                            attempt,
                            wait: (!wait.is_zero()).then(|| sleep(wait)),
                            cut: None,
                            timer: None,
                            fut: Racer::Own(Box::pin(f(&values[index]))),
                            leave,
                        };
                        if attempt.wait.is_none() {
                            // Before arming, the attempt's cut is made with the other timers.
                            attempt.begin(timeout.filter(|_| armed), self.metrics);
                        }
                        running.push(attempt);
                        return Started::Yes;
                    }
                    Err(()) => {
                        failures.push(index, attempt, AttemptError::BreakerOpen);
                        if *values_started >= values.len() {
                            return Started::No;
                        }
                        index = *values_started;
                    }
                }
            }
        };

        let mut hedging = false;
        loop {
            if let Some(index) = next.take() {
                match start(
                    index,
                    &mut running,
                    &mut failures,
                    &mut started,
                    &mut values_started,
                    budget,
                    armed,
                ) {
                    Started::Yes => {
                        if std::mem::take(&mut hedging) {
                            if let Some(m) = self.metrics {
                                m.hedge();
                            }
                            let index = running.last().map_or(index, |r| r.index);
                            tracing::info!(target: "opero", fallback_index = index, hedge = hedges, "hedge started");
                        }
                        // Before arming, the hedge timer is made with the others.
                        if armed {
                            timer = hedge_timer(hedges);
                        }
                    }
                    // The attempts still running may yet answer before the deadline; its
                    // timer ends the call otherwise.
                    Started::No | Started::OutOfTime if !running.is_empty() => {}
                    Started::No => break,
                    Started::OutOfTime => {
                        if let Some(b) = budget {
                            self.on_deadline(&mut failures, b.deadline);
                        }
                        break;
                    }
                }
                hedging = false;
            }
            let metrics = self.metrics;
            let hedges_now = hedges;
            let arm =
                |budget: &mut Option<Budget>,
                 deadline: &mut Option<Sleep>,
                 timer: &mut Option<Sleep>,
                 running: &mut Vec<Running<'a, Fut, Result<T, AttemptError<E>>>>| {
                    *budget = Budget::tokio(&self.limits);
                    *deadline = budget.map(|b| sleep(b.left()));
                    *timer = hedge_timer(hedges_now);
                    // Unarmed means no rate limiter: every attempt begun at once, none cut yet.
                    for r in running.iter_mut() {
                        r.cut = timeout.map(sleep);
                    }
                };
            let event = std::future::poll_fn(|cx| {
                for (k, r) in running.iter_mut().enumerate() {
                    if let Some(wait) = &mut r.wait {
                        if Pin::new(wait).poll(cx).is_pending() {
                            continue;
                        }
                        r.wait = None;
                        r.begin(timeout, metrics);
                    }
                    if let Poll::Ready(out) = r.fut.poll(cx) {
                        if let Some(t) = r.timer.take() {
                            t.finish(metrics);
                        }
                        return Poll::Ready(Event::Done(k, out));
                    }
                }
                if !armed {
                    // The first wait: the timers are made now and polled below.
                    arm(&mut budget, &mut deadline, &mut timer, &mut running);
                    armed = true;
                }
                // After the attempts, as `timeout` polls: an answer ready at the deadline wins,
                // and a deadline that passes with an attempt's timeout ends the call.
                if let Some(d) = &mut deadline {
                    if Pin::new(d).poll(cx).is_ready() {
                        return Poll::Ready(Event::Deadline);
                    }
                }
                for (k, r) in running.iter_mut().enumerate() {
                    if let Some(cut) = &mut r.cut {
                        if Pin::new(cut).poll(cx).is_ready() {
                            let limit = timeout.unwrap_or_default();
                            return Poll::Ready(Event::Done(k, Err(AttemptError::TimedOut(limit))));
                        }
                    }
                }
                if let Some(t) = &mut timer {
                    if Pin::new(t).poll(cx).is_ready() {
                        timer = None;
                        return Poll::Ready(Event::Hedge);
                    }
                }
                Poll::Pending
            })
            .await;
            if !armed && !matches!(event, Event::Done(_, Ok(_))) {
                // A first attempt that failed at once: what follows needs the clock.
                arm(&mut budget, &mut deadline, &mut timer, &mut running);
                armed = true;
            }
            match event {
                Event::Done(k, Ok(v)) => {
                    let done = running.swap_remove(k);
                    self.breaker_ok(done.index, done.leave);
                    // The other attempts are dropped here, unanswered.
                    return Ok(v);
                }
                Event::Done(k, Err(e)) => {
                    // The attempt's future (and its timers) dropped here, not after the backoff
                    // below: a handed first attempt's holder stops polling it at once.
                    let Running {
                        index,
                        attempt,
                        leave,
                        ..
                    } = running.remove(k);
                    let open = self.breaker_failed(index, leave);
                    // While other attempts run, the call waits for them: no retry is scheduled.
                    let others = !running.is_empty();
                    let delay =
                        self.on_failure(&mut failures, index, attempt, e, open || others, budget);
                    if others {
                        continue;
                    }
                    match delay {
                        Some(delay) => {
                            // Shorter than the time left: on_failure schedules no retry that
                            // would cross the deadline.
                            if !delay.is_zero() {
                                sleep(delay).await;
                            }
                            next = Some(index);
                        }
                        None if failures.ended_by_deadline().is_some() => break,
                        None if values_started < values.len() => next = Some(values_started),
                        None => break,
                    }
                }
                Event::Hedge => {
                    hedges += 1;
                    hedging = true;
                    next = Some(if values_started < values.len() {
                        values_started
                    } else {
                        values_started - 1
                    });
                }
                Event::Deadline => {
                    let Some(b) = budget else { break };
                    // Every attempt still racing is cut, as an unhedged attempt is: a failed
                    // attempt, reported to its breaker.
                    for r in running.drain(..) {
                        self.breaker_failed(r.index, r.leave);
                        if let Some(m) = self.metrics {
                            m.failed_attempt();
                        }
                        failures.push(
                            r.index,
                            r.attempt,
                            AttemptError::DeadlineExceeded(b.deadline),
                        );
                    }
                    self.on_deadline(&mut failures, b.deadline);
                    break;
                }
            }
        }
        self.on_all_failed(&failures);
        Err(failures)
    }
}

// ===== serde =====

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RawHedgeConfig {
    delay: RawDuration,
    max_hedges: u32,
}

impl Default for RawHedgeConfig {
    fn default() -> Self {
        HedgeConfig::default().into()
    }
}

impl From<HedgeConfig> for RawHedgeConfig {
    fn from(c: HedgeConfig) -> Self {
        RawHedgeConfig {
            delay: RawDuration::from_duration(c.delay),
            max_hedges: c.max_hedges,
        }
    }
}

impl TryFrom<RawHedgeConfig> for HedgeConfig {
    type Error = OperoError;
    fn try_from(raw: RawHedgeConfig) -> Result<Self, OperoError> {
        let cfg = HedgeConfig {
            delay: raw.delay.into_duration("hedge.delay")?,
            max_hedges: raw.max_hedges,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::{Jitter, NoCache, Opero};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn hedged(deadline: Duration) -> Opero<NoCache> {
        Opero::<NoCache>::builder()
            .retries(2)
            .min_delay(ms(200))
            .backoff_factor(1.5)
            .jitter(Jitter::None)
            .deadline(deadline)
            .hedge(Duration::from_secs(1), 1)
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_attempt_that_fails_at_once_still_has_its_deadline() {
        // The race reads its clock only once it waits or fails: a failure at once must still
        // find the deadline in force for the retry it would schedule.
        let start = Instant::now();
        let err = hedged(ms(100))
            .run_async(|| async { Err::<(), _>("down") })
            .await
            .unwrap_err();
        assert_eq!(
            err.len(),
            1,
            "a 200 ms retry would cross the 100 ms deadline"
        );
        assert_eq!(err.ended_by_deadline(), Some(ms(100)));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    /// When each attempt of a call whose attempts hang until `answer_at` started.
    async fn starts(opero: &Opero<NoCache>, answer_at: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let times = std::sync::Mutex::new(Vec::new());
        let _ = opero
            .run_async(|| async {
                times.lock().unwrap().push(start.elapsed());
                tokio::time::sleep_until(start + answer_at).await;
                Ok::<_, String>(())
            })
            .await;
        times.into_inner().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn hedges_start_after_the_delay_up_to_their_bound_and_not_past_the_deadline() {
        let opero = |deadline: u64, max_hedges: u32| {
            Opero::<NoCache>::builder()
                .deadline(ms(deadline))
                .hedge(ms(1_000), max_hedges)
                .build()
                .unwrap()
        };
        assert_eq!(
            starts(&opero(10_000, 1), ms(5_000)).await,
            [ms(0), ms(1_000)]
        );
        assert_eq!(
            starts(&opero(10_000, 2), ms(5_000)).await,
            [ms(0), ms(1_000), ms(2_000)]
        );
        // No hedge starts once the deadline has passed.
        assert_eq!(
            starts(&opero(1_500, 3), ms(5_000)).await,
            [ms(0), ms(1_000)]
        );
        assert_eq!(starts(&opero(900, 3), ms(5_000)).await, [ms(0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_failure_does_not_restart_the_deadline() {
        // Armed at the first wait (0 ms); the failure at 60 ms leaves 40 ms, less than the
        // 50 ms delay: no retry.
        let opero = Opero::<NoCache>::builder()
            .retries(3)
            .min_delay(ms(50))
            .jitter(Jitter::None)
            .deadline(ms(100))
            .hedge(Duration::from_secs(1), 1)
            .build()
            .unwrap();
        let start = Instant::now();
        let err = opero
            .run_async(|| async {
                tokio::time::sleep(ms(60)).await;
                Err::<(), _>("slow and failing")
            })
            .await
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err.ended_by_deadline(), Some(ms(100)));
        assert_eq!(start.elapsed(), ms(60));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_at_once_retry_on_the_backoff_schedule_within_the_deadline() {
        let start = Instant::now();
        let times = std::sync::Mutex::new(Vec::new());
        let err = hedged(Duration::from_secs(1))
            .run_async(|| async {
                times.lock().unwrap().push(start.elapsed());
                Err::<(), _>("down")
            })
            .await
            .unwrap_err();
        assert_eq!(*times.lock().unwrap(), [ms(0), ms(200), ms(500)]);
        assert_eq!(err.len(), 3);
        assert_eq!(err.ended_by_deadline(), None);
    }
}
