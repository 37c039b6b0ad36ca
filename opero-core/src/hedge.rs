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
//! A blocking call cannot run two attempts at once on one thread, so the sync forms refuse a
//! hedged pipeline ([`AttemptError::Unsupported`] naming `hedge`), and so do the sync wrappers
//! when they are built.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::BreakerPermit;
use crate::config::RawDuration;
use crate::error::{AllFailedError, AttemptError, OperoError};
use crate::pipeline::Attempts;
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

/// One attempt under way: its rate-limit wait, then its future.
struct Running<'b, Fut> {
    index: usize,
    attempt: u32,
    wait: Option<Sleep>,
    fut: Pin<Box<Fut>>,
    permit: Option<BreakerPermit<'b>>,
}

enum Event<T, E> {
    Done(usize, Result<T, AttemptError<E>>),
    Hedge,
}

impl<'a, P: ?Sized> Attempts<'a, P> {
    /// The hedged form of the async attempt loop (see the module docs for the rules).
    pub(crate) async fn run_hedged<V, T, E, F, Fut>(
        &self,
        hedge: &HedgeConfig,
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
        let mut running: Vec<Running<'a, Fut>> = Vec::new();
        // Attempts started on each value, and how many values have been started.
        let mut started = vec![0u32; values.len()];
        let mut values_started = 0usize;
        let mut hedges = 0u32;
        let mut timer: Option<Sleep> = None;

        // Starts the next attempt of `index` or, when its breaker is open, of the next value not
        // yet started; false when there is none left to start.
        let mut start = |index: usize,
                         running: &mut Vec<Running<'a, Fut>>,
                         failures: &mut AllFailedError<E>,
                         started: &mut [u32],
                         values_started: &mut usize|
         -> bool {
            let mut index = index;
            loop {
                if index >= *values_started {
                    if index > 0 {
                        self.on_switch(index);
                    }
                    *values_started = index + 1;
                }
                let Some(attempt) = started[index].checked_add(1) else {
                    return false;
                };
                started[index] = attempt;
                match self.breaker_permit(index) {
                    Ok(permit) => {
                        let wait = match self.permit() {
                            Ok(wait) => wait,
                            Err(why) => {
                                // No attempt without a permit; the permit is given back.
                                drop(permit);
                                failures.push(index, attempt, AttemptError::NoPermit(why));
                                return false;
                            }
                        };
                        running.push(Running {
                            index,
                            attempt,
                            wait: (!wait.is_zero()).then(|| sleep(wait)),
                            fut: Box::pin(f(&values[index])),
                            permit,
                        });
                        return true;
                    }
                    Err(()) => {
                        failures.push(index, attempt, AttemptError::BreakerOpen);
                        if *values_started >= values.len() {
                            return false;
                        }
                        index = *values_started;
                    }
                }
            }
        };

        let mut next = Some(0usize);
        loop {
            if let Some(index) = next.take() {
                if start(
                    index,
                    &mut running,
                    &mut failures,
                    &mut started,
                    &mut values_started,
                ) {
                    timer = (hedges < hedge.max_hedges).then(|| sleep(hedge.delay));
                } else if running.is_empty() {
                    break;
                }
            }
            let event = std::future::poll_fn(|cx| {
                for (k, r) in running.iter_mut().enumerate() {
                    if let Some(wait) = &mut r.wait {
                        if Pin::new(wait).poll(cx).is_pending() {
                            continue;
                        }
                        r.wait = None;
                    }
                    if let Poll::Ready(out) = r.fut.as_mut().poll(cx) {
                        return Poll::Ready(Event::Done(k, out));
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
            match event {
                Event::Done(k, Ok(v)) => {
                    let done = running.swap_remove(k);
                    if let Some(p) = done.permit {
                        p.success();
                    }
                    // The other attempts are dropped here, unanswered.
                    return Ok(v);
                }
                Event::Done(k, Err(e)) => {
                    let done = running.remove(k);
                    let open = self.breaker_failed(done.index, done.permit);
                    let delay =
                        self.on_failure(&mut failures, done.index, done.attempt, e, open, None);
                    if !running.is_empty() {
                        continue;
                    }
                    match delay {
                        Some(delay) => {
                            if !delay.is_zero() {
                                sleep(delay).await;
                            }
                            next = Some(done.index);
                        }
                        None if values_started < values.len() => next = Some(values_started),
                        None => break,
                    }
                }
                Event::Hedge => {
                    hedges += 1;
                    let index = if values_started < values.len() {
                        values_started
                    } else {
                        values_started - 1
                    };
                    if let Some(m) = self.metrics {
                        m.counters.hedge();
                    }
                    tracing::info!(target: "opero", fallback_index = index, hedge = hedges, "hedge started");
                    next = Some(index);
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
