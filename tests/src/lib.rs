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
