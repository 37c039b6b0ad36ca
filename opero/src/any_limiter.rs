//! [`build_rate_limiter`]: the rate limiter chosen by name from `RateLimitConfig.backend`.

use std::sync::Arc;

#[cfg(feature = "redis")]
use opero_cache_redis::RedisRateLimiter;
use opero_core::{ErrorKind, OperoError, RateLimitConfig, RateLimiter, TokenBucket, LOCAL_LIMITER};

/// Builds the limiter named by [`RateLimitConfig::backend`]: `"local"` (a [`TokenBucket`]), or
/// `"redis"` (a [`RedisRateLimiter`](opero_cache_redis::RedisRateLimiter) shared by every
/// process using the same server and `name`) when the facade's `redis` feature is on.
///
/// The builders of [`opero()`](crate::opero()) and [`opmap()`](crate::opmap()) use it for a
/// config's `rate_limit` section; an unknown backend is an error naming `rate_limit.backend`, a
/// bad option one naming `rate_limit.backend_options.<option>`.
///
/// # Examples
///
/// ```
/// use opero::{build_rate_limiter, ErrorKind, OperoConfig};
///
/// let cfg = OperoConfig::from_json(r#"{"rate_limit": {"rate": 5, "backend": "memcached"}}"#).unwrap();
/// let err = build_rate_limiter(&cfg.rate_limit).err().unwrap();
/// assert_eq!(err.kind(), ErrorKind::UnknownBackend);
/// assert_eq!(err.field(), Some("rate_limit.backend"));
///
/// let err = opero::opero().rate_limit_config(cfg.rate_limit).build().unwrap_err();
/// assert_eq!(err.field(), Some("rate_limit.backend"));
/// ```
pub fn build_rate_limiter(config: &RateLimitConfig) -> Result<Arc<dyn RateLimiter>, OperoError> {
    match config.backend.as_str() {
        LOCAL_LIMITER => Ok(Arc::new(TokenBucket::new(config)?)),
        #[cfg(feature = "redis")]
        "redis" => Ok(Arc::new(RedisRateLimiter::from_config(config)?)),
        #[cfg(not(feature = "redis"))]
        "redis" => Err(OperoError::new(
            ErrorKind::FeatureDisabled,
            "the \"redis\" rate-limit backend is not compiled in: enable the `redis` cargo \
             feature of opero (e.g. `opero = { version = \"0.1\", features = [\"redis\"] }`)",
        )),
        other => Err(OperoError::invalid_config(
            "rate_limit.backend",
            other,
            "unknown rate-limit backend; known: \"local\", \"redis\"",
        )
        .with_kind(ErrorKind::UnknownBackend)),
    }
}
