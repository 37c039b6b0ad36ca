//! Counters a user can read: [`Metrics`] and its [`MetricsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

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
