//! Redis cache backend for [opero](https://docs.rs/opero), on the [redis](https://docs.rs/redis)
//! crate.
//!
//! Keys read `namespace:function:hash` (see `opero_core::CacheKey`), so entries can be found and
//! inspected with `redis-cli`. Values go through an [`opero_core::Codec`]: postcard by default,
//! JSON (`codec = "json"`) for a cache that other languages read after the 38-byte header
//! (70 bytes when signed).
//!
//! A dead or slow server delays a call by at most the connect plus response timeouts, after which
//! the call runs uncached; the failure is counted in the pipeline's `cache_errors`. While the
//! server stays down, calls skip it at once for a growing wait, and caching resumes when it is back.
//!
//! [`RedisRateLimiter`] keeps one rate limit in the same kind of server, shared by every process
//! that names it: a GCRA bucket updated by one Lua script per permit on the server's clock, with
//! an optional lease and a [`RedisDown`] policy for an unreachable server (see
//! [`RedisLimiterOptions`] for its `rate_limit.backend_options`).
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `tls` | `rediss://` URLs, on rustls with the system's root certificates |
//!
//! # Backend options
//!
//! `url`, `cluster`, `codec`, `connect_timeout`, `response_timeout`, `pool_size`,
//! `down_min_wait`, `down_max_wait`, `single_flight`, `flight_lock_ttl`, `flight_wait`,
//! `signing_key`: see [`RedisOptions`].
//!
//! Beyond one process: single-flight across processes (on by default), signed entries, and
//! Redis Cluster are described on [`RedisCache`].
//!
//! # Examples
//!
//! ```no_run
//! use opero_cache_redis::RedisCache;
//! use opero_core::{CacheConfig, Opero, OperoConfig};
//!
//! let mut cache = CacheConfig::enabled("redis");
//! cache.backend_options.insert("url".into(), "redis://:secret@127.0.0.1:6379/0".into());
//! cache.backend_options.insert("response_timeout".into(), "200ms".into());
//! let opero = Opero::<RedisCache>::new(OperoConfig { cache, ..Default::default() }).unwrap();
//! let len = opero.call("Oslo", |city: &str| Ok::<_, String>(city.len())).unwrap();
//! assert_eq!(len, 4);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod limiter;

pub use backend::{RedisCache, RedisOptions, DEFAULT_URL};
pub use limiter::{
    Permit, PermitSource, RedisDown, RedisLimiterOptions, RedisLimiterStats, RedisRateLimiter,
    GCRA_SCRIPT, MAX_REDIS_RATE,
};
