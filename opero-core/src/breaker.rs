//! The circuit breaker: [`BreakerConfig`], [`CircuitBreaker`] and its [`BreakerPermit`].
//!
//! A breaker watches the outcomes of calls to one dependency. While it is **closed** every call
//! goes through. It **opens** when `failure_threshold` calls in a row failed, or when at least
//! `min_throughput` calls ran in the last `window` and `failure_ratio` of them failed. While open,
//! calls are refused at once ([`AttemptError::BreakerOpen`](crate::AttemptError::BreakerOpen)),
//! without calling the dependency and without a backoff delay. After `open_duration` it goes
//! **half-open**: up to `half_open_probes` calls go through as probes; the first probe that
//! succeeds closes the breaker, a probe that fails opens it again for another `open_duration`.
//!
//! In a pipeline there is one breaker per fallback position, shared by every clone of the
//! pipeline and every opmap worker: a dead endpoint is skipped at once and the next value tried.
//!
//! The closed path is lock-free: a call that succeeds with the consecutive-failure trigger alone
//! costs two atomic loads (and a store only after a failure).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::RawDuration;
use crate::error::OperoError;
use crate::metrics::Counters;

/// Circuit breaker settings.
///
/// # Default
///
/// Opens after 5 consecutive failures (no ratio trigger; when one is set: a window of 30 s and a
/// minimum throughput of 10 calls), stays open 30 s, then lets 1 probe through.
///
/// # Examples
///
/// ```
/// use opero_core::BreakerConfig;
/// use std::time::Duration;
///
/// let cfg: BreakerConfig = serde_json::from_str(
///     r#"{"failure_ratio": 0.5, "window": "10s", "min_throughput": 20, "open_duration": "1m"}"#,
/// ).unwrap();
/// assert_eq!(cfg.failure_ratio, Some(0.5));
/// assert_eq!(cfg.open_duration, Duration::from_secs(60));
///
/// let bad = BreakerConfig { failure_ratio: Some(1.5), ..Default::default() };
/// assert_eq!(bad.validate().unwrap_err().field(), Some("breaker.failure_ratio"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBreakerConfig", into = "RawBreakerConfig")]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; `None` turns this trigger off. At least 1.
    pub failure_threshold: Option<u32>,
    /// Share of failed calls in the last `window` that opens the breaker, in `(0, 1]`; `None`
    /// turns this trigger off.
    pub failure_ratio: Option<f64>,
    /// How far back the ratio trigger looks; positive.
    pub window: Duration,
    /// Calls in the last `window` below which the ratio trigger does not judge; at least 1.
    pub min_throughput: u32,
    /// How long the breaker stays open before letting probes through; positive.
    pub open_duration: Duration,
    /// Probes let through while half-open; at least 1.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: Some(5),
            failure_ratio: None,
            window: Duration::from_secs(30),
            min_throughput: 10,
            open_duration: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks every value; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), OperoError> {
        if self.failure_threshold == Some(0) {
            return Err(OperoError::invalid_config(
                "breaker.failure_threshold",
                0,
                "must be at least 1 (leave it unset to turn the consecutive-failure trigger off)",
            ));
        }
        if let Some(ratio) = self.failure_ratio {
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(OperoError::invalid_config(
                    "breaker.failure_ratio",
                    ratio,
                    "must be in (0, 1]",
                ));
            }
        }
        if self.failure_threshold.is_none() && self.failure_ratio.is_none() {
            return Err(OperoError::invalid_config(
                "breaker.failure_threshold",
                "none",
                "a breaker needs a trigger: set failure_threshold, failure_ratio or both",
            ));
        }
        if self.window.is_zero() {
            return Err(OperoError::invalid_config(
                "breaker.window",
                "0s",
                "must be positive",
            ));
        }
        if self.min_throughput == 0 {
            return Err(OperoError::invalid_config(
                "breaker.min_throughput",
                0,
                "must be at least 1",
            ));
        }
        if self.open_duration.is_zero() {
            return Err(OperoError::invalid_config(
                "breaker.open_duration",
                "0s",
                "must be positive",
            ));
        }
        if self.half_open_probes == 0 {
            return Err(OperoError::invalid_config(
                "breaker.half_open_probes",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are refused until the open duration has passed.
    Open,
    /// A limited number of probe calls go through; the first success closes, a failure re-opens.
    HalfOpen,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Buckets of the ratio trigger's sliding window.
const BUCKETS: usize = 10;

/// Outcomes in the ratio trigger's window: `BUCKETS` slices of `window / BUCKETS` each.
#[derive(Debug)]
struct Window {
    bucket_ns: u64,
    /// Number (time / bucket_ns) of the newest bucket.
    newest: u64,
    calls: [u32; BUCKETS],
    failures: [u32; BUCKETS],
}

impl Window {
    fn new(window: Duration) -> Self {
        Window {
            bucket_ns: ((window.as_nanos() / BUCKETS as u128) as u64).max(1),
            newest: 0,
            calls: [0; BUCKETS],
            failures: [0; BUCKETS],
        }
    }

    /// Counts one outcome at `now_ns`; returns (calls, failures) in the window.
    fn record(&mut self, now_ns: u64, failed: bool) -> (u64, u64) {
        let n = now_ns / self.bucket_ns;
        if n > self.newest {
            // Buckets that fell out of the window start again from zero.
            let stale = (n - self.newest).min(BUCKETS as u64);
            for k in 0..stale {
                let i = ((n - k) % BUCKETS as u64) as usize;
                self.calls[i] = 0;
                self.failures[i] = 0;
            }
            self.newest = n;
        }
        let i = (self.newest % BUCKETS as u64) as usize;
        self.calls[i] = self.calls[i].saturating_add(1);
        if failed {
            self.failures[i] = self.failures[i].saturating_add(1);
        }
        let calls = self.calls.iter().map(|&c| u64::from(c)).sum();
        let failures = self.failures.iter().map(|&c| u64::from(c)).sum();
        (calls, failures)
    }

    fn clear(&mut self) {
        self.calls = [0; BUCKETS];
        self.failures = [0; BUCKETS];
    }
}

/// One circuit breaker: its state is shared by whoever holds a reference (wrap it in an `Arc` to
/// share it across threads and tasks; a pipeline does this for you).
///
/// # Examples
///
/// ```
/// use opero_core::{BreakerConfig, BreakerState, CircuitBreaker};
/// use std::time::Duration;
///
/// let breaker = CircuitBreaker::new(&BreakerConfig {
///     failure_threshold: Some(2),
///     open_duration: Duration::from_secs(10),
///     ..Default::default()
/// }).unwrap();
/// for _ in 0..2 {
///     breaker.try_acquire().unwrap().failure();
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.try_acquire().is_none(), "an open breaker refuses at once");
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    state: AtomicU8,
    consecutive: AtomicU32,
    /// Nanoseconds since `epoch` when the breaker last opened.
    opened_at: AtomicU64,
    /// Probes handed out since the breaker last opened.
    probes: AtomicU32,
    /// How many times the breaker opened: a probe from an earlier half-open spell that ends
    /// late must not give back a place it no longer holds.
    generation: AtomicU32,
    window: Option<Mutex<Window>>,
    failure_threshold: u32,
    failure_ratio: f64,
    min_throughput: u64,
    open_ns: u64,
    half_open_probes: u32,
    epoch: Instant,
    /// The fallback position this breaker guards, for logs (never the value).
    index: usize,
}

impl CircuitBreaker {
    /// A closed breaker; the config is validated.
    pub fn new(config: &BreakerConfig) -> Result<Self, OperoError> {
        config.validate()?;
        Ok(Self::unchecked(config, 0))
    }

    fn unchecked(config: &BreakerConfig, index: usize) -> Self {
        CircuitBreaker {
            state: AtomicU8::new(CLOSED),
            consecutive: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probes: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            window: config
                .failure_ratio
                .map(|_| Mutex::new(Window::new(config.window))),
            failure_threshold: config.failure_threshold.unwrap_or(u32::MAX),
            failure_ratio: config.failure_ratio.unwrap_or(f64::INFINITY),
            min_throughput: u64::from(config.min_throughput),
            open_ns: u64::try_from(config.open_duration.as_nanos()).unwrap_or(u64::MAX),
            half_open_probes: config.half_open_probes,
            epoch: Instant::now(),
            index,
        }
    }

    fn now_ns(&self) -> u64 {
        // Past ~584 years of uptime the clock stops; the breaker then stays as it is.
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.epoch)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    /// The state now (an open breaker whose open duration has passed reads as half-open).
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN if self.open_elapsed() => BreakerState::HalfOpen,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    fn open_elapsed(&self) -> bool {
        self.now_ns()
            .saturating_sub(self.opened_at.load(Ordering::Acquire))
            >= self.open_ns
    }

    /// A permit to make one call, or `None` when the breaker is open (or half-open with every
    /// probe taken). Report the call's outcome on the permit; a permit dropped without an
    /// outcome (a cancelled call) counts as neither, and gives its probe back.
    #[inline]
    pub fn try_acquire(&self) -> Option<BreakerPermit<'_>> {
        self.acquire(None)
    }

    /// Whether the breaker is closed now: a look without a leave, which a pipeline's inline
    /// first attempt takes as [`Leave::Closed`] (what [`leave`](Self::leave) gives then).
    #[inline(always)]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// A pipeline's leave for one attempt: [`Leave::Closed`] while the breaker is closed (a
    /// word in a register, where a permit is five through memory), else the permit.
    #[inline(always)]
    pub(crate) fn leave<'a>(&'a self, metrics: Option<Counters<'a>>) -> Option<Leave<'a>> {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Some(Leave::Closed);
        }
        self.acquire_slow(metrics).map(Leave::Permit)
    }

    /// The attempt `leave` let through succeeded.
    #[inline(always)]
    pub(crate) fn left_ok(&self, leave: Leave<'_>, metrics: Option<Counters<'_>>) {
        match leave {
            Leave::Closed => self.on_success(false, metrics),
            Leave::Permit(permit) => permit.success(),
        }
    }

    /// The attempt `leave` let through failed.
    pub(crate) fn left_failed(&self, leave: Leave<'_>, metrics: Option<Counters<'_>>) {
        match leave {
            Leave::Closed => self.on_failure(false, metrics),
            Leave::Permit(permit) => permit.failure(),
        }
    }

    #[inline]
    pub(crate) fn acquire<'a>(
        &'a self,
        metrics: Option<Counters<'a>>,
    ) -> Option<BreakerPermit<'a>> {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Some(BreakerPermit {
                breaker: self,
                metrics,
                probe: false,
                generation: 0,
            });
        }
        self.acquire_slow(metrics)
    }

    #[cold]
    fn acquire_slow<'a>(&'a self, metrics: Option<Counters<'a>>) -> Option<BreakerPermit<'a>> {
        let mut state = self.state.load(Ordering::Acquire);
        if state == OPEN {
            if !self.open_elapsed() {
                return self.refuse(metrics);
            }
            if self
                .state
                .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if let Some(m) = metrics {
                    m.breaker_half_opened(self.index);
                }
                tracing::info!(target: "opero", fallback_index = self.index, "circuit breaker half-open");
            }
            state = self.state.load(Ordering::Acquire);
        }
        match state {
            CLOSED => Some(BreakerPermit {
                breaker: self,
                metrics,
                probe: false,
                generation: 0,
            }),
            HALF_OPEN => {
                let taken = self.probes.fetch_add(1, Ordering::AcqRel);
                if taken < self.half_open_probes {
                    Some(BreakerPermit {
                        breaker: self,
                        metrics,
                        probe: true,
                        generation: self.generation.load(Ordering::Acquire),
                    })
                } else {
                    let _ = self
                        .probes
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                    self.refuse(metrics)
                }
            }
            _ => self.refuse(metrics),
        }
    }

    #[cold]
    fn refuse<'a>(&self, metrics: Option<Counters<'_>>) -> Option<BreakerPermit<'a>> {
        if let Some(m) = metrics {
            m.breaker_rejection();
        }
        tracing::debug!(target: "opero", fallback_index = self.index, "circuit breaker open; call refused");
        None
    }

    #[inline]
    fn on_success(&self, probe: bool, metrics: Option<Counters<'_>>) {
        // A load first: a success after a success writes nothing, so clones on many cores do
        // not fight over the cache line.
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
        if probe {
            self.close(metrics);
        } else if let Some(window) = &self.window {
            self.record_ratio(window, false, metrics);
        }
    }

    #[cold]
    fn on_failure(&self, probe: bool, metrics: Option<Counters<'_>>) {
        if probe {
            self.trip(HALF_OPEN, metrics);
            return;
        }
        if self.state.load(Ordering::Acquire) != CLOSED {
            // Outcomes of calls let through before the breaker opened change nothing.
            return;
        }
        let failures = self
            .consecutive
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.failure_threshold {
            self.trip(CLOSED, metrics);
            return;
        }
        if let Some(window) = &self.window {
            self.record_ratio(window, true, metrics);
        }
    }

    fn record_ratio(&self, window: &Mutex<Window>, failed: bool, metrics: Option<Counters<'_>>) {
        let now = self.now_ns();
        // A poisoned lock only means a panic mid-count; the counts are still counts.
        let (calls, failures) = window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(now, failed);
        if failed
            && calls >= self.min_throughput
            && failures as f64 >= self.failure_ratio * calls as f64
        {
            self.trip(CLOSED, metrics);
        }
    }

    /// Opens the breaker if it is in state `from`.
    fn trip(&self, from: u8, metrics: Option<Counters<'_>>) {
        if self.state.load(Ordering::Acquire) != from {
            return;
        }
        self.opened_at.store(self.now_ns(), Ordering::Release);
        // No probe is handed out while open, so the count restarts here for the next
        // half-open spell.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.probes.store(0, Ordering::Release);
        if self
            .state
            .compare_exchange(from, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        self.consecutive.store(0, Ordering::Relaxed);
        if let Some(window) = &self.window {
            window.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        if let Some(m) = metrics {
            m.breaker_opened(self.index);
        }
        tracing::warn!(
            target: "opero",
            fallback_index = self.index,
            open_ms = self.open_ns as f64 / 1e6,
            reopened = from == HALF_OPEN,
            "circuit breaker opened"
        );
    }

    fn close(&self, metrics: Option<Counters<'_>>) {
        if self
            .state
            .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if let Some(m) = metrics {
                m.breaker_closed(self.index);
            }
            tracing::info!(target: "opero", fallback_index = self.index, "circuit breaker closed");
        }
    }
}

/// A pipeline's leave through a breaker ([`CircuitBreaker::leave`]): a call let through a
/// closed breaker reports as a permit's would, and has nothing to give back if it never reports.
pub(crate) enum Leave<'a> {
    Closed,
    Permit(BreakerPermit<'a>),
}

/// Leave to make one call through a [`CircuitBreaker`]; report the outcome with
/// [`success`](Self::success) or [`failure`](Self::failure).
#[derive(Debug)]
#[must_use = "report the call's outcome on the permit"]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    metrics: Option<Counters<'a>>,
    probe: bool,
    generation: u32,
}

impl BreakerPermit<'_> {
    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.breaker.on_success(this.probe, this.metrics);
    }

    /// The call failed.
    pub fn failure(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.breaker.on_failure(this.probe, this.metrics);
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        // A probe that never reported (its call was cancelled) gives its place back, or a
        // half-open breaker could wait forever for an answer that never comes.
        if self.probe && self.breaker.generation.load(Ordering::Acquire) == self.generation {
            let _ = self
                .breaker
                .probes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

/// Segments of breakers: segment `k` holds `2^k`, so a pipeline's breakers cover the fallback
/// positions without a lock, and only the segments used are allocated.
const SEGMENTS: usize = 20;

/// The last position with a breaker of its own (about a million); later positions share it, so
/// that a list of a billion zero-sized values cannot allocate a billion breakers.
pub(crate) const LAST_POSITION: usize = (1 << SEGMENTS) - 2;

/// One breaker per fallback position, made on first use.
pub(crate) struct Breakers {
    config: BreakerConfig,
    /// Position 0, which every call tries first: inline, one load from the pipeline.
    first: CircuitBreaker,
    /// Segment 0 stays empty: its one position is `first`.
    segments: [OnceLock<Box<[CircuitBreaker]>>; SEGMENTS],
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breakers {
            first: CircuitBreaker::unchecked(&config, 0),
            config,
            segments: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The breaker of fallback position `index`.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &CircuitBreaker {
        if index == 0 {
            return &self.first;
        }
        // Position i lives in segment floor(log2(i + 1)) at offset i + 1 - 2^segment.
        let n = index.min(LAST_POSITION) + 1;
        let segment = (usize::BITS - 1 - n.leading_zeros()) as usize;
        let start = 1usize << segment;
        let breakers = self.segments[segment].get_or_init(|| {
            (0..start)
                .map(|offset| CircuitBreaker::unchecked(&self.config, start - 1 + offset))
                .collect()
        });
        &breakers[n - start]
    }
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("config", &self.config)
            .finish()
    }
}

// ===== serde =====

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RawBreakerConfig {
    failure_threshold: Option<u32>,
    failure_ratio: Option<f64>,
    window: RawDuration,
    min_throughput: u32,
    open_duration: RawDuration,
    half_open_probes: u32,
}

impl Default for RawBreakerConfig {
    fn default() -> Self {
        BreakerConfig::default().into()
    }
}

impl From<BreakerConfig> for RawBreakerConfig {
    fn from(c: BreakerConfig) -> Self {
        RawBreakerConfig {
            failure_threshold: c.failure_threshold,
            failure_ratio: c.failure_ratio,
            window: RawDuration::from_duration(c.window),
            min_throughput: c.min_throughput,
            open_duration: RawDuration::from_duration(c.open_duration),
            half_open_probes: c.half_open_probes,
        }
    }
}

impl TryFrom<RawBreakerConfig> for BreakerConfig {
    type Error = OperoError;
    fn try_from(raw: RawBreakerConfig) -> Result<Self, OperoError> {
        let cfg = BreakerConfig {
            failure_threshold: raw.failure_threshold,
            failure_ratio: raw.failure_ratio,
            window: raw.window.into_duration("breaker.window")?,
            min_throughput: raw.min_throughput,
            open_duration: raw.open_duration.into_duration("breaker.open_duration")?,
            half_open_probes: raw.half_open_probes,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consecutive(n: u32, open: Duration, probes: u32) -> CircuitBreaker {
        CircuitBreaker::new(&BreakerConfig {
            failure_threshold: Some(n),
            open_duration: open,
            half_open_probes: probes,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let b = consecutive(3, Duration::from_secs(1), 1);
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn half_opens_after_the_open_duration_and_a_probe_success_closes() {
        let b = consecutive(1, Duration::from_secs(10), 2);
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(b.try_acquire().is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(p1.is_probe() && p2.is_probe());
        assert!(b.try_acquire().is_none(), "two probes at most");
        drop(p2);
        let p3 = b
            .try_acquire()
            .expect("a cancelled probe gives its place back");
        p1.success();
        assert_eq!(b.state(), BreakerState::Closed);
        // The other probe's late outcome changes nothing.
        p3.failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_a_full_open_duration() {
        let b = consecutive(1, Duration::from_secs(10), 1);
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(b.try_acquire().is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.try_acquire().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn the_ratio_trigger_waits_for_the_minimum_throughput_and_forgets_old_calls() {
        let b = CircuitBreaker::new(&BreakerConfig {
            failure_threshold: None,
            failure_ratio: Some(0.5),
            window: Duration::from_secs(10),
            min_throughput: 4,
            ..Default::default()
        })
        .unwrap();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed, "3 calls < min_throughput");
        // The three failures leave the window; two successes and two failures are 50 %.
        tokio::time::advance(Duration::from_secs(11)).await;
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn every_position_has_its_own_breaker() {
        let set = Breakers::new(BreakerConfig {
            failure_threshold: Some(1),
            ..Default::default()
        });
        for i in [0usize, 1, 2, 3, 6, 7, 100, 1000] {
            assert_eq!(set.get(i).index, i);
        }
        set.get(3).try_acquire().unwrap().failure();
        assert_eq!(set.get(3).state(), BreakerState::Open);
        assert_eq!(set.get(2).state(), BreakerState::Closed);
        assert_eq!(set.get(LAST_POSITION).index, LAST_POSITION);
        assert_eq!(set.get(usize::MAX).index, LAST_POSITION);
    }

    #[test]
    fn every_invalid_setting_is_refused_by_name() {
        let bad = |cfg: BreakerConfig| cfg.validate().unwrap_err().field().unwrap();
        let d = BreakerConfig::default;
        assert_eq!(
            bad(BreakerConfig {
                failure_threshold: Some(0),
                ..d()
            }),
            "breaker.failure_threshold"
        );
        for r in [0.0, -0.1, 1.01, f64::NAN] {
            assert_eq!(
                bad(BreakerConfig {
                    failure_ratio: Some(r),
                    ..d()
                }),
                "breaker.failure_ratio"
            );
        }
        assert_eq!(
            bad(BreakerConfig {
                failure_threshold: None,
                ..d()
            }),
            "breaker.failure_threshold"
        );
        assert_eq!(
            bad(BreakerConfig {
                window: Duration::ZERO,
                ..d()
            }),
            "breaker.window"
        );
        assert_eq!(
            bad(BreakerConfig {
                min_throughput: 0,
                ..d()
            }),
            "breaker.min_throughput"
        );
        assert_eq!(
            bad(BreakerConfig {
                open_duration: Duration::ZERO,
                ..d()
            }),
            "breaker.open_duration"
        );
        assert_eq!(
            bad(BreakerConfig {
                half_open_probes: 0,
                ..d()
            }),
            "breaker.half_open_probes"
        );
    }
}
