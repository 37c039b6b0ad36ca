//! Counters a user can read: [`Metrics`] and its [`MetricsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

macro_rules! metrics {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of one pipeline, shared by its clones. Successful first attempts touch none
        /// of them, so the no-fault path stays free of atomic writes.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($name: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Metrics {
            /// The counters now.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

metrics! {
    /// Attempts that failed (user errors, panics, crashes, timeouts).
    failed_attempts,
    /// Retries scheduled.
    retries,
    /// Moves to the next fallback value.
    fallback_switches,
    /// Calls that ended in `AllFailedError`.
    failed_calls,
    /// Cache lookups that found a value.
    cache_hits,
    /// Cache lookups that found nothing.
    cache_misses,
    /// Cache backend failures (lookups, stores, key computations); each call ran uncached.
    cache_errors,
    /// Calls that waited for a concurrent identical call instead of running (single-flight).
    cache_coalesced,
    /// Attempts that had to wait for a rate-limit permit.
    rate_limit_waits,
    /// Calls that ran uncached because their function does not identify itself and has no name
    /// (a `fn` pointer, a `dyn Fn`, a closure that captures state).
    cache_unidentified,
    /// Calls that the deadline ended (a retry not started, an attempt cut, a fallback value not
    /// tried).
    deadlines_exceeded,
    /// Attempts cut by the per-attempt timeout.
    attempt_timeouts,
    /// Circuit breakers that opened (from closed, or again from half-open).
    breaker_opened,
    /// Circuit breakers that went half-open to let probes through.
    breaker_half_opened,
    /// Circuit breakers that closed after a successful probe.
    breaker_closed,
    /// Attempts refused by an open circuit breaker.
    breaker_rejections,
    /// Calls refused by a full bulkhead.
    bulkhead_rejections,
    /// Hedged attempts started alongside a slow one.
    hedges,
}

impl Metrics {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed_attempt(&self) {
        Self::add(&self.failed_attempts)
    }
    pub(crate) fn retry(&self) {
        Self::add(&self.retries)
    }
    pub(crate) fn fallback_switch(&self) {
        Self::add(&self.fallback_switches)
    }
    pub(crate) fn failed_call(&self) {
        Self::add(&self.failed_calls)
    }
    pub(crate) fn cache_hit(&self) {
        Self::add(&self.cache_hits)
    }
    pub(crate) fn cache_miss(&self) {
        Self::add(&self.cache_misses)
    }
    /// Counts one cache backend failure. Public so that backends and executors built outside
    /// opero-core can report theirs.
    pub fn cache_error(&self) {
        Self::add(&self.cache_errors)
    }
    /// Counts one call served by a concurrent identical call.
    pub fn coalesced(&self) {
        Self::add(&self.cache_coalesced)
    }
    pub(crate) fn unidentified(&self) {
        Self::add(&self.cache_unidentified)
    }
    pub(crate) fn breaker_opened(&self) {
        Self::add(&self.breaker_opened)
    }
    pub(crate) fn breaker_half_opened(&self) {
        Self::add(&self.breaker_half_opened)
    }
    pub(crate) fn breaker_closed(&self) {
        Self::add(&self.breaker_closed)
    }
    pub(crate) fn breaker_rejection(&self) {
        Self::add(&self.breaker_rejections)
    }
    pub(crate) fn bulkhead_rejection(&self) {
        Self::add(&self.bulkhead_rejections)
    }
    pub(crate) fn hedge(&self) {
        Self::add(&self.hedges)
    }
    pub(crate) fn rate_limit_wait(&self) {
        Self::add(&self.rate_limit_waits)
    }
    pub(crate) fn deadline_exceeded(&self) {
        Self::add(&self.deadlines_exceeded)
    }
    pub(crate) fn attempt_timeout(&self) {
        Self::add(&self.attempt_timeouts)
    }
}

/// The counters of one pipeline under its name: each event bumps the pipeline's own counter (when
/// it has one) and goes to the `metrics` facade when that feature is on. Without the feature the
/// facade half compiles to nothing, so an event costs what it cost before.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counters<'a> {
    pub(crate) counters: &'a Metrics,
    pub(crate) pipeline: Option<&'a Arc<str>>,
}

impl Counters<'_> {
    /// A call entered the pipeline (cached or not). Only the facade counts calls: the pipeline's
    /// own counters stay untouched on the no-fault path.
    #[inline(always)]
    pub(crate) fn call(&self) {
        emit(self.pipeline, Event::Call);
    }
    pub(crate) fn failed_attempt(&self) {
        self.counters.failed_attempt();
        emit(self.pipeline, Event::AttemptFailed);
    }
    pub(crate) fn retry(&self) {
        self.counters.retry();
        emit(self.pipeline, Event::Retry);
    }
    pub(crate) fn fallback_switch(&self) {
        self.counters.fallback_switch();
        emit(self.pipeline, Event::FallbackSwitch);
    }
    pub(crate) fn failed_call(&self) {
        self.counters.failed_call();
        emit(self.pipeline, Event::FailedCall);
    }
    pub(crate) fn cache_hit(&self) {
        self.counters.cache_hit();
        emit(self.pipeline, Event::CacheHit);
    }
    pub(crate) fn cache_miss(&self) {
        self.counters.cache_miss();
        emit(self.pipeline, Event::CacheMiss);
    }
    pub(crate) fn cache_error(&self) {
        self.counters.cache_error();
        emit(self.pipeline, Event::CacheError);
    }
    pub(crate) fn coalesced(&self) {
        self.counters.coalesced();
        emit(self.pipeline, Event::Coalesced);
    }
    pub(crate) fn unidentified(&self) {
        self.counters.unidentified();
        emit(self.pipeline, Event::Unidentified);
    }
    pub(crate) fn rate_limit_wait(&self) {
        self.counters.rate_limit_wait();
        emit(self.pipeline, Event::RateLimitWait);
    }
    pub(crate) fn attempt_timeout(&self) {
        self.counters.attempt_timeout();
    }
    pub(crate) fn deadline_exceeded(&self) {
        self.counters.deadline_exceeded();
    }
    /// Starts timing one attempt; [`AttemptTimer::finish`] counts it and records its latency.
    #[inline(always)]
    pub(crate) fn attempt(&self) -> AttemptTimer {
        AttemptTimer::start()
    }
    /// The circuit breaker of fallback position `index` opened (from closed, or again from
    /// half-open).
    pub(crate) fn breaker_opened(&self, index: usize) {
        self.counters.breaker_opened();
        self.transition(index, "open");
    }
    /// The circuit breaker of fallback position `index` went half-open: its first probe was
    /// asked for.
    pub(crate) fn breaker_half_opened(&self, index: usize) {
        self.counters.breaker_half_opened();
        self.transition(index, "half_open");
    }
    /// The circuit breaker of fallback position `index` closed after a successful probe.
    pub(crate) fn breaker_closed(&self, index: usize) {
        self.counters.breaker_closed();
        self.transition(index, "closed");
    }
    /// An open circuit breaker refused an attempt. Only the pipeline's counter: the facade sees
    /// the transitions, and a refused attempt is also a failed call or a fallback switch there.
    pub(crate) fn breaker_rejection(&self) {
        self.counters.breaker_rejection();
    }
    pub(crate) fn bulkhead_rejection(&self) {
        self.counters.bulkhead_rejection();
        emit(self.pipeline, Event::BulkheadRejection);
    }
    pub(crate) fn hedge(&self) {
        self.counters.hedge();
        emit(self.pipeline, Event::Hedge);
    }
    fn transition(&self, fallback_index: usize, to: &'static str) {
        emit(
            self.pipeline,
            Event::BreakerTransition { fallback_index, to },
        );
    }
}

/// One thing a pipeline did, as the `metrics` facade sees it; see [`crate::metric_names`].
#[derive(Clone, Copy, Debug)]
// Without the facade only the variant is used, never what it carries.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum Event {
    Call,
    AttemptFailed,
    Retry,
    FallbackSwitch,
    FailedCall,
    CacheHit,
    CacheMiss,
    CacheError,
    Coalesced,
    Unidentified,
    RateLimitWait,
    /// A fallback value's circuit breaker changed state; `to` is `"open"`, `"half_open"` or
    /// `"closed"`.
    BreakerTransition {
        fallback_index: usize,
        to: &'static str,
    },
    /// The bulkhead refused a call.
    BulkheadRejection,
    /// A hedged attempt started beside a slow one.
    Hedge,
}

/// The start of one attempt: an instant with the `metrics` feature, nothing without it.
/// The instant is quanta's (the CPU's timestamp counter where reliable): on virtual machines the
/// OS clock can cost a system call per read, two per attempt.
#[must_use]
pub(crate) struct AttemptTimer {
    #[cfg(feature = "metrics")]
    started: quanta::Instant,
}

impl AttemptTimer {
    #[inline(always)]
    fn start() -> Self {
        AttemptTimer {
            #[cfg(feature = "metrics")]
            started: quanta::Instant::now(),
        }
    }

    /// Counts the attempt and records how long it took.
    #[inline(always)]
    pub(crate) fn finish(self, counters: Option<Counters<'_>>) {
        #[cfg(feature = "metrics")]
        if let Some(c) = counters {
            facade::attempt(c.pipeline, self.started.elapsed());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = counters;
    }
}

#[inline(always)]
fn emit(pipeline: Option<&Arc<str>>, event: Event) {
    #[cfg(feature = "metrics")]
    facade::emit(pipeline, event);
    #[cfg(not(feature = "metrics"))]
    let _ = (pipeline, event);
}

#[cfg(feature = "metrics")]
mod facade {
    //! The `metrics` facade half: every event becomes a counter increment (or a histogram
    //! record) on whatever recorder is installed when it happens, so a recorder installed after
    //! the pipeline was built still sees everything.

    use std::sync::Arc;
    use std::time::Duration;

    use metrics::{Key, Label, SharedString};

    use super::Event;
    use crate::metric_names as n;

    static META: metrics::Metadata<'static> =
        metrics::Metadata::new("opero", metrics::Level::INFO, Some(module_path!()));

    /// The key of `name` for `pipeline`. An unnamed pipeline's key is static (no allocation, so
    /// the no-fault path of an unnamed pipeline stays allocation-free with the feature on); a
    /// named one's shares the name's `Arc` and allocates only its one-label list.
    fn key(
        name: &'static str,
        pipeline: Option<&Arc<str>>,
        extra: &[(&'static str, SharedString)],
    ) -> Key {
        match pipeline {
            None if extra.is_empty() => Key::from_static_name(name),
            _ => {
                let mut labels = Vec::with_capacity(1 + extra.len());
                if let Some(p) = pipeline {
                    labels.push(Label::new(
                        n::PIPELINE_LABEL,
                        SharedString::from_shared(Arc::clone(p)),
                    ));
                }
                for (k, v) in extra {
                    labels.push(Label::new(*k, v.clone()));
                }
                Key::from_parts(name, labels)
            }
        }
    }

    fn count(
        name: &'static str,
        pipeline: Option<&Arc<str>>,
        extra: &[(&'static str, SharedString)],
    ) {
        let key = key(name, pipeline, extra);
        metrics::with_recorder(|r| r.register_counter(&key, &META).increment(1));
    }

    pub(super) fn emit(pipeline: Option<&Arc<str>>, event: Event) {
        let name = match event {
            Event::Call => n::CALLS,
            Event::AttemptFailed => n::ATTEMPT_FAILURES,
            Event::Retry => n::RETRIES,
            Event::FallbackSwitch => n::FALLBACK_SWITCHES,
            Event::FailedCall => n::FAILED_CALLS,
            Event::CacheHit => n::CACHE_HITS,
            Event::CacheMiss => n::CACHE_MISSES,
            Event::CacheError => n::CACHE_ERRORS,
            Event::Coalesced => n::CACHE_COALESCED,
            Event::Unidentified => n::CACHE_UNIDENTIFIED,
            Event::RateLimitWait => n::RATE_LIMIT_WAITS,
            Event::BreakerTransition { fallback_index, to } => {
                let extra = [
                    (
                        n::FALLBACK_INDEX_LABEL,
                        SharedString::from_owned(fallback_index.to_string()),
                    ),
                    (n::STATE_LABEL, SharedString::const_str(to)),
                ];
                return count(n::BREAKER_TRANSITIONS, pipeline, &extra);
            }
            Event::BulkheadRejection => n::BULKHEAD_REJECTIONS,
            Event::Hedge => n::HEDGES,
        };
        count(name, pipeline, &[]);
    }

    pub(super) fn attempt(pipeline: Option<&Arc<str>>, took: Duration) {
        count(n::ATTEMPTS, pipeline, &[]);
        let key = key(n::ATTEMPT_DURATION, pipeline, &[]);
        metrics::with_recorder(|r| r.register_histogram(&key, &META).record(took.as_secs_f64()));
    }
}

/// The names opero emits through the [`metrics`](https://docs.rs/metrics) facade with the
/// `metrics` feature on, for dashboards and alerts.
///
/// Every metric carries the label `pipeline` with the pipeline's name
/// ([`OperoBuilder::name`](crate::OperoBuilder::name) or [`Opero::named`](crate::Opero::named));
/// an unnamed pipeline's metrics carry no label. Events go to whichever recorder is installed when
/// they happen (global or thread-local), so installing one after building the pipeline is fine.
///
/// | name | kind | counts |
/// |---|---|---|
/// | `opero_calls_total` | counter | calls entering a pipeline, cache hits included |
/// | `opero_attempts_total` | counter | attempts run (one per call of the user's function) |
/// | `opero_attempt_duration_seconds` | histogram | how long each attempt took |
/// | `opero_attempt_failures_total` | counter | attempts that failed (errors, panics, crashes, timeouts) |
/// | `opero_retries_total` | counter | retries scheduled |
/// | `opero_fallback_switches_total` | counter | moves to the next fallback value |
/// | `opero_failed_calls_total` | counter | calls that ended in `AllFailedError` |
/// | `opero_cache_hits_total` | counter | cache lookups that found a value |
/// | `opero_cache_misses_total` | counter | cache lookups that found nothing |
/// | `opero_cache_errors_total` | counter | cache backend failures (the call ran uncached) |
/// | `opero_cache_coalesced_total` | counter | calls served by a concurrent identical call |
/// | `opero_cache_unidentified_total` | counter | calls run uncached because the function has no identity |
/// | `opero_rate_limit_waits_total` | counter | attempts that waited for a rate-limit permit |
/// | `opero_breaker_transitions_total` | counter | circuit-breaker state changes; labels `fallback_index`, `state` (`open`, `half_open`, `closed`) |
/// | `opero_bulkhead_rejections_total` | counter | calls the bulkhead refused |
/// | `opero_hedges_total` | counter | hedged attempts started beside a slow one |
///
/// The counters also read from [`Opero::metrics`](crate::Opero::metrics) (without the feature)
/// count the same events, except calls and attempts, which only the facade counts so that a
/// successful first attempt touches no shared counter.
pub mod metric_names {
    /// The label carrying the pipeline's name.
    pub const PIPELINE_LABEL: &str = "pipeline";
    /// The label carrying a fallback value's index (never the value).
    pub const FALLBACK_INDEX_LABEL: &str = "fallback_index";
    /// The label carrying a circuit breaker's new state.
    pub const STATE_LABEL: &str = "state";
    /// Calls entering a pipeline, cache hits included.
    pub const CALLS: &str = "opero_calls_total";
    /// Attempts run.
    pub const ATTEMPTS: &str = "opero_attempts_total";
    /// Attempt latency in seconds (histogram).
    pub const ATTEMPT_DURATION: &str = "opero_attempt_duration_seconds";
    /// Attempts that failed.
    pub const ATTEMPT_FAILURES: &str = "opero_attempt_failures_total";
    /// Retries scheduled.
    pub const RETRIES: &str = "opero_retries_total";
    /// Moves to the next fallback value.
    pub const FALLBACK_SWITCHES: &str = "opero_fallback_switches_total";
    /// Calls that ended in `AllFailedError`.
    pub const FAILED_CALLS: &str = "opero_failed_calls_total";
    /// Cache hits.
    pub const CACHE_HITS: &str = "opero_cache_hits_total";
    /// Cache misses.
    pub const CACHE_MISSES: &str = "opero_cache_misses_total";
    /// Cache backend failures.
    pub const CACHE_ERRORS: &str = "opero_cache_errors_total";
    /// Calls served by a concurrent identical call.
    pub const CACHE_COALESCED: &str = "opero_cache_coalesced_total";
    /// Calls run uncached for want of a function identity.
    pub const CACHE_UNIDENTIFIED: &str = "opero_cache_unidentified_total";
    /// Attempts that waited for a rate-limit permit.
    pub const RATE_LIMIT_WAITS: &str = "opero_rate_limit_waits_total";
    /// Circuit-breaker state changes, labelled with [`FALLBACK_INDEX_LABEL`] and
    /// [`STATE_LABEL`] (`open`, `half_open`, `closed`). A breaker goes half-open when the first
    /// call after its open duration asks for a probe, not when the duration ends.
    pub const BREAKER_TRANSITIONS: &str = "opero_breaker_transitions_total";
    /// Calls refused by the bulkhead.
    pub const BULKHEAD_REJECTIONS: &str = "opero_bulkhead_rejections_total";
    /// Hedged attempts started beside a slow one.
    pub const HEDGES: &str = "opero_hedges_total";
}
