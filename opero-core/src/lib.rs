//! The core of [opero](https://docs.rs/opero): traits, configuration, errors, backoff, rate limiter
//! and the resilience pipeline. It pulls in no cache store, no thread pool and no network client,
//! so a library can depend on it alone.
//!
//! One call goes through, outermost first:
//!
//! 1. **cache lookup** ([`CacheBackend`], keyed by [`KeyFn`]): a hit returns at once, taking no
//!    rate-limit permit and running no retry;
//! 2. **fallback**: each alternative value of one argument ([`Fallbacks`]) in order ...
//! 3. **retry** ([`RetryPolicy`], built in: [`Backoff`]): ... with `retries + 1` attempts each ...
//! 4. **rate limit** ([`RateLimiter`], built in: [`TokenBucket`]): ... each attempt takes a permit ...
//! 5. **call** the user's function, sync or async.
//!
//! A deadline ([`RetryConfig::deadline`]) bounds steps 2 to 5 together; a per-attempt timeout
//! ([`RetryConfig::attempt_timeout`], async forms) bounds step 5 alone; step 3 reads a server's
//! hint ([`RetryHint`]) and can retry an `Ok` that is really a failure ([`OkCheck`]).
//!
//! Three optional guards join that order: a **bulkhead** ([`Bulkhead`]) right after the cache
//! lookup bounds the calls in flight; one **circuit breaker** ([`CircuitBreaker`]) per fallback
//! value skips a value that keeps failing, at once and without a delay; **hedging**
//! ([`HedgeConfig`], async only) starts a second attempt beside a slow one, between the retry
//! and the rate limit (a hedged attempt takes its own permit). The deadline bounds a hedged race
//! as a whole, the attempt timeout each hedged attempt.
//!
//! When every attempt fails the call returns [`AllFailedError`], which keeps every attempt's error.
//! A failing cache backend never fails the call: it runs uncached and the failure is counted in
//! [`Metrics`] and logged through `tracing`.
//!
//! # Examples
//!
//! ```
//! use opero_core::{Opero, NoCache, Jitter};
//! use std::time::Duration;
//!
//! let opero = Opero::<NoCache>::builder()
//!     .retries(3)
//!     .min_delay(Duration::from_millis(1))
//!     .jitter(Jitter::None)
//!     .build()
//!     .unwrap();
//! let mut failures_left = 2;
//! let value = opero.run(|| {
//!     if failures_left > 0 { failures_left -= 1; Err("flaky") } else { Ok(42) }
//! });
//! assert_eq!(value.unwrap(), 42);
//! assert_eq!(opero.metrics().retries, 2);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod bulkhead;
mod cache;
mod codec;
mod config;
mod depth;
mod error;
mod executor;
mod fence;
mod flight;
mod hedge;
mod key;
pub mod layers;
mod local_key;
mod metrics;
mod opero;
mod pipeline;
mod rate_limit;
mod retry;
mod sleep;
#[cfg(test)]
mod tests;
mod ticker;

pub use breaker::{BreakerConfig, BreakerPermit, BreakerState, CircuitBreaker};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadFull, BulkheadPermit};
pub use cache::{
    BuildCache, CacheBackend, CacheFor, CacheSwitch, CacheValue, FlightLease, FlightStart,
    KeyScope, NoCache,
};
pub use codec::{
    Codec, Decoded, Header, SigningKey, HEADER_LEN, MAX_DECODE_DEPTH, SIGNED_HEADER_LEN,
};
pub use config::{
    optional_duration, parse_duration, CacheConfig, OperoConfig, RateLimitConfig, RetryConfig,
    LOCAL_LIMITER, MAX_RATE,
};
#[doc(hidden)]
pub use config::{parse_document, unknown_key};
pub use error::{AllFailedError, Attempt, AttemptError, ErrorKind, OperoError};
pub use executor::{AsyncExecutor, Executor, UnitHandle, UnitLost};
pub use hedge::HedgeConfig;
pub use key::{namespace_fingerprint, CacheKey, FunctionId, FunctionLabel, KeyFn, StableKey};
pub use metrics::{metric_names, Metrics, MetricsSnapshot};
pub use opero::{BuildLimiter, Fallbacks, Opero, OperoBuilder, Wrapped, WrappedAsync};
pub use rate_limit::{Acquire, BucketClock, RateLimiter, Reservation, TokenBucket};
pub use retry::{
    AcceptOk, Backoff, CustomPolicy, Jitter, NoHint, OkCheck, OkPolicy, RetryHint, RetryOn,
    RetryPolicy, RetryPredicate,
};
pub use sleep::{timeout, Elapsed};
