#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The explicit `+ Send` futures keep `AnyCache`'s async methods as the trait declares them.
#[allow(clippy::manual_async_fn)]
mod any_cache;
mod any_limiter;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "macros")]
mod attributes;
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use attributes::*;

pub use any_cache::AnyCache;
pub use any_limiter::build_rate_limiter;
#[cfg(feature = "disk")]
#[cfg_attr(docsrs, doc(cfg(feature = "disk")))]
pub use opero_cache_disk::DiskCache;
pub use opero_cache_memory::MemoryCache;
#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use opero_cache_memory::MokaCache;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use opero_cache_redis::{
    Permit, PermitSource, RedisCache, RedisDown, RedisLimiterOptions, RedisLimiterStats,
    RedisOptions, RedisRateLimiter,
};
pub use opero_core::{
    layers, namespace_fingerprint, AllFailedError, Attempt, AttemptError, Backoff, BuildCache,
    BuildLimiter, CacheBackend, CacheConfig, CacheFor, CacheKey, CacheSwitch, CacheValue, Codec,
    Decoded, ErrorKind, Fallbacks, FlightLease, FlightStart, FunctionId, FunctionLabel, Header,
    Jitter, KeyFn, KeyScope, Metrics, MetricsSnapshot, NoCache, OperoBuilder, OperoConfig,
    OperoError, RateLimitConfig, RateLimiter, Reservation, RetryConfig, RetryOn, RetryPolicy,
    RetryPredicate, SigningKey, StableKey, TokenBucket, Wrapped, WrappedAsync, HEADER_LEN,
    MAX_DECODE_DEPTH, SIGNED_HEADER_LEN,
};
pub use opero_core::{metric_names, timeout, Elapsed, MAX_RATE};
pub use opero_core::{AcceptOk, CustomPolicy, NoHint, OkCheck, OkPolicy, RetryHint};
pub use opero_core::{
    BreakerConfig, BreakerPermit, BreakerState, Bulkhead, BulkheadConfig, BulkheadFull,
    BulkheadPermit, CircuitBreaker, HedgeConfig,
};

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use crate::tower::{OperoLayer, OperoService};

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use crate::reqwest::OperoMiddleware;

/// The cache backends, each behind its cargo feature (the memory one is always there).
pub mod cache {
    pub use crate::any_cache::AnyCache;
    pub use opero_cache_memory::MemoryCache;
    #[cfg(feature = "moka")]
    #[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
    pub use opero_cache_memory::MokaCache;
    pub use opero_core::{Codec, NoCache};

    #[cfg(feature = "disk")]
    #[cfg_attr(docsrs, doc(cfg(feature = "disk")))]
    pub use opero_cache_disk::DiskCache;
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub use opero_cache_redis::{RedisCache, RedisOptions};
}

/// A configured pipeline; see [`opero_core::Opero`]. Without a type argument it picks its cache
/// backend by name from the config ([`AnyCache`]); `Opero::<MemoryCache>` names one.
///
/// # Examples
///
/// ```
/// use opero::{Opero, MemoryCache, OperoConfig, CacheConfig};
///
/// let cfg = OperoConfig { cache: CacheConfig::enabled("memory"), ..Default::default() };
/// let opero = Opero::<MemoryCache>::new(cfg).unwrap();
/// let len = opero.call("hello", |s: &str| Ok::<_, String>(s.len())).unwrap();
/// assert_eq!(len, 5);
/// ```
pub type Opero<C = AnyCache, K = StableKey, P = Backoff> = opero_core::Opero<C, K, P>;

/// Starts a pipeline builder whose cache backend is chosen by name (`cache_backend_name`), the
/// Rust counterpart of the `@opero` decorator: end the chain with `.wrap(f)` for a callable, or
/// `.build()` for an [`Opero`]. Until `.cache(true)`, the builder has no cache type, so values
/// and arguments need no serde bounds and no `Clone`.
///
/// # Examples
///
/// ```
/// use opero::opero;
/// use std::time::Duration;
///
/// let fetch = opero()
///     .retries(2)
///     .min_delay(Duration::from_millis(1))
///     .cache(true)
///     .cache_ttl(Duration::from_secs(60))
///     .rate_limit(100.0)
///     .wrap(|city: &str| Ok::<_, String>(format!("weather in {city}: sunny")))
///     .unwrap();
/// assert_eq!(fetch.call("Oslo").unwrap(), "weather in Oslo: sunny");
/// assert_eq!(fetch.call("Oslo").unwrap(), "weather in Oslo: sunny");
/// assert_eq!(fetch.opero().metrics().cache_hits, 1);
/// ```
pub fn opero() -> OperoBuilder<NoCache<AnyCache>> {
    // No cache type until `.cache(..)`: values and arguments need no serde bounds until then.
    opero_core::Opero::<NoCache<AnyCache>>::builder().rate_limiter_backend(build_rate_limiter)
}

/// `opmap`: one pipeline applied to every item of an iterable, `workers` at a time, with one
/// result per item (cargo feature `parallel`, on by default). See [`opero_parallel`].
#[cfg(feature = "parallel")]
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub mod parallel {
    // An explicit list: a glob would also carry the hidden items the worker-process macro needs.
    #[cfg(feature = "process")]
    #[cfg_attr(docsrs, doc(cfg(feature = "process")))]
    pub use opero_parallel::{init_workers, OpmapProcess, OpmapProcessAsync};
    pub use opero_parallel::{
        opmap, AnyAsyncExecutor, AnyExecutor, ItemResult, Mode, Opmap, OpmapAsync, OpmapBuilder,
        OpmapConfig, OpmapIter, RateLimitScope, RayonExecutor, ThreadExecutor, TokioExecutor,
        DEFAULT_IN_FLIGHT_PER_WORKER, DEFAULT_NAMESPACE, DEFAULT_WORKERS,
    };
}

#[cfg(feature = "process")]
#[cfg_attr(docsrs, doc(cfg(feature = "process")))]
pub use opero_parallel::{
    enable_process_test_support, init_workers, OpmapProcess, OpmapProcessAsync,
};
#[cfg(feature = "parallel")]
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub use opero_parallel::{
    Mode, Opmap, OpmapAsync, OpmapBuilder, OpmapConfig, OpmapIter, RateLimitScope,
};

/// Starts an opmap builder whose cache backend is chosen by name (`cache_backend_name`), the Rust
/// counterpart of the `@opmap` decorator: end the chain with `.wrap(f)` for a blocking function
/// or `.wrap_async(f)` for an async one (cargo feature `parallel`, on by default).
///
/// # Examples
///
/// ```
/// use opero::{opmap, Mode};
///
/// let square = opmap()
///     .mode(Mode::Rayon)
///     .workers(2)
///     .cache(true)
///     .progress(false)
///     .wrap(|x: &u64| Ok::<_, String>(x * x))
///     .unwrap();
/// assert_eq!(square.call([1, 2, 3]), [Ok(1), Ok(4), Ok(9)]);
/// assert_eq!(square.call([3]), [Ok(9)]);
/// assert_eq!(square.opero().metrics().cache_hits, 1);
/// ```
#[cfg(feature = "parallel")]
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn opmap() -> OpmapBuilder<NoCache<AnyCache>> {
    OpmapBuilder::new().rate_limiter_backend(build_rate_limiter)
}
