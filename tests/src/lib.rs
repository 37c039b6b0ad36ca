//! Shared helpers of opero's integration tests.

/// Retry settings without waiting, for tests that count attempts rather than time them.
pub fn no_delay() -> opero::RetryConfig {
    opero::RetryConfig {
        min_delay: std::time::Duration::ZERO,
        max_delay: std::time::Duration::ZERO,
        jitter: opero::Jitter::None,
        ..Default::default()
    }
}
