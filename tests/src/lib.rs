//! Shared helpers of opero's integration tests: the backend [`conformance`] suite and a real
//! [`RedisServer`].

pub mod conformance;
mod redis_server;

pub use redis_server::RedisServer;

/// Retry settings without waiting, for tests that count attempts rather than time them.
pub fn no_delay() -> opero::RetryConfig {
    opero::RetryConfig {
        min_delay: std::time::Duration::ZERO,
        max_delay: std::time::Duration::ZERO,
        jitter: opero::Jitter::None,
        ..Default::default()
    }
}

/// A pipeline with default retries that caches in `cache` under `namespace`.
pub fn cached_in<C: opero::CacheBackend>(cache: C, namespace: &str) -> opero::Opero<C> {
    let config = opero::OperoConfig {
        cache: opero::CacheConfig {
            enabled: true,
            namespace: namespace.to_owned(),
            ..opero::CacheConfig::default()
        },
        ..opero::OperoConfig::default()
    };
    opero::Opero::with_cache(config, cache).expect("a valid config")
}

/// [`cached_in`] a namespace of its own, so tests sharing a store never meet.
pub fn cached<C: opero::CacheBackend>(cache: C) -> opero::Opero<C> {
    cached_in(cache, &conformance::fresh_namespace())
}
