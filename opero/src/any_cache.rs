//! [`AnyCache`]: the backend chosen by name from `CacheConfig.backend`.

use std::time::Duration;

#[cfg(feature = "disk")]
use opero_cache_disk::DiskCache;
use opero_cache_memory::MemoryCache;
#[cfg(feature = "moka")]
use opero_cache_memory::MokaCache;
#[cfg(feature = "redis")]
use opero_cache_redis::RedisCache;
use opero_core::{
    BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, ErrorKind, FlightLease,
    FlightStart, OperoError,
};

/// A cache backend picked at run time by its name in [`CacheConfig::backend`]: `"memory"`, and
/// `"moka"`, `"disk"` or `"redis"` when the facade's cargo feature of that name is on.
///
/// Asking for a backend whose feature is off is an error that names the feature to enable.
///
/// # Examples
///
/// ```
/// use opero::{AnyCache, BuildCache, CacheConfig, ErrorKind};
///
/// let memory = AnyCache::build(&CacheConfig::enabled("memory")).unwrap();
/// assert!(matches!(memory, AnyCache::Memory(_)));
///
/// let err = AnyCache::build(&CacheConfig::enabled("memcached")).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::UnknownBackend);
/// assert_eq!(err.field(), Some("cache.backend"));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyCache {
    /// [`MemoryCache`].
    Memory(MemoryCache),
    /// [`MokaCache`](opero_cache_memory::MokaCache), with the `moka` feature.
    #[cfg(feature = "moka")]
    Moka(MokaCache),
    /// [`DiskCache`](opero_cache_disk::DiskCache), with the `disk` feature.
    #[cfg(feature = "disk")]
    Disk(DiskCache),
    /// [`RedisCache`](opero_cache_redis::RedisCache), with the `redis` feature.
    #[cfg(feature = "redis")]
    Redis(RedisCache),
}

/// The error for a backend that exists but whose cargo feature is off.
#[allow(dead_code)]
fn feature_disabled(name: &str, feature: &str) -> OperoError {
    OperoError::new(
        ErrorKind::FeatureDisabled,
        format!(
            "the {name:?} cache backend is not compiled in: enable the `{feature}` cargo feature of \
             opero (e.g. `opero = {{ version = \"0.1\", features = [\"{feature}\"] }}`)"
        ),
    )
}

impl BuildCache for AnyCache {
    fn build(config: &CacheConfig) -> Result<Self, OperoError> {
        match config.backend.as_str() {
            "memory" => Ok(AnyCache::Memory(MemoryCache::build(config)?)),
            #[cfg(feature = "moka")]
            "moka" => Ok(AnyCache::Moka(MokaCache::build(config)?)),
            #[cfg(not(feature = "moka"))]
            "moka" => Err(feature_disabled("moka", "moka")),
            #[cfg(feature = "disk")]
            "disk" => Ok(AnyCache::Disk(DiskCache::build(config)?)),
            #[cfg(not(feature = "disk"))]
            "disk" => Err(feature_disabled("disk", "disk")),
            #[cfg(feature = "redis")]
            "redis" => Ok(AnyCache::Redis(RedisCache::build(config)?)),
            #[cfg(not(feature = "redis"))]
            "redis" => Err(feature_disabled("redis", "redis")),
            other => Err(OperoError::invalid_config(
                "cache.backend",
                other,
                "unknown cache backend; known: \"memory\", \"moka\", \"disk\", \"redis\"",
            )
            .with_kind(ErrorKind::UnknownBackend)),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyCache::Memory($c) => $e,
            #[cfg(feature = "moka")]
            AnyCache::Moka($c) => $e,
            #[cfg(feature = "disk")]
            AnyCache::Disk($c) => $e,
            #[cfg(feature = "redis")]
            AnyCache::Redis($c) => $e,
        }
    };
}

impl CacheBackend for AnyCache {
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        dispatch!(self, c => c.get(key))
    }

    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        dispatch!(self, c => c.set(key, value, ttl))
    }

    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        dispatch!(self, c => c.delete(key))
    }

    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        dispatch!(self, c => c.clear(namespace))
    }

    async fn get_async<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        dispatch!(self, c => c.get_async(key).await)
    }

    async fn set_async<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        dispatch!(self, c => c.set_async(key, value, ttl).await)
    }

    async fn delete_async(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        dispatch!(self, c => c.delete_async(key).await)
    }

    async fn clear_async(&self, namespace: &str) -> Result<(), OperoError> {
        dispatch!(self, c => c.clear_async(namespace).await)
    }

    fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        dispatch!(self, c => c.flight_begin(key))
    }

    fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError> {
        dispatch!(self, c => c.flight_end(key, lease))
    }

    async fn flight_begin_async(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        dispatch!(self, c => c.flight_begin_async(key).await)
    }

    async fn flight_end_async(
        &self,
        key: &CacheKey<'_>,
        lease: FlightLease,
    ) -> Result<(), OperoError> {
        dispatch!(self, c => c.flight_end_async(key, lease).await)
    }
}
