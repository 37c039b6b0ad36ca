//! Caching: the [`CacheBackend`] trait, [`BuildCache`] for building one from a [`CacheConfig`], and
//! [`NoCache`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::CacheConfig;
use crate::error::OperoError;
use crate::key::CacheKey;

/// What a cache can hold: a value that can be cloned out of memory, or encoded for disk and Redis.
pub trait CacheValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> CacheValue for T {}

/// A cache store: get, set with a TTL, delete, clear a namespace; blocking and async forms.
///
/// A backend that fails returns an [`OperoError`]; the pipeline then runs the call uncached and
/// logs a warning, so a backend never fails the user's call. An entry that cannot be read as `V`
/// (written for another type, or by an older layout) must come back as `Ok(None)`, never as a
/// wrong value.
///
/// The async methods default to the blocking ones, which suits a store that never blocks (memory).
/// A backend that does I/O overrides them so that no executor thread is blocked.
///
/// # Examples
///
/// A user's own backend, on a mutex-guarded map of encoded values:
///
/// ```
/// use opero_core::{CacheBackend, CacheKey, CacheValue, Opero, OperoConfig, CacheConfig, OperoError};
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct MapCache(Mutex<HashMap<(String, u128), String>>);
///
/// impl CacheBackend for MapCache {
///     fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
///         let map = self.0.lock().unwrap();
///         Ok(map.get(&(key.namespace.to_owned(), key.hash)).and_then(|s| serde_json::from_str(s).ok()))
///     }
///     fn set<V: CacheValue>(&self, key: &CacheKey<'_>, value: &V, _ttl: Option<Duration>) -> Result<(), OperoError> {
///         let text = serde_json::to_string(value).expect("serializable");
///         self.0.lock().unwrap().insert((key.namespace.to_owned(), key.hash), text);
///         Ok(())
///     }
///     fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
///         self.0.lock().unwrap().remove(&(key.namespace.to_owned(), key.hash));
///         Ok(())
///     }
///     fn clear(&self, namespace: &str) -> Result<(), OperoError> {
///         self.0.lock().unwrap().retain(|(ns, _), _| ns != namespace);
///         Ok(())
///     }
/// }
///
/// let cfg = OperoConfig { cache: CacheConfig::enabled("map"), ..Default::default() };
/// let opero = Opero::with_cache(cfg, MapCache::default()).unwrap();
/// let mut runs = 0;
/// for _ in 0..3 {
///     let v = opero.named("double").call(&21, |x: &i32| { runs += 1; Ok::<_, String>(x * 2) }).unwrap();
///     assert_eq!(v, 42);
/// }
/// assert_eq!(runs, 1);
/// ```
pub trait CacheBackend: Send + Sync {
    /// The value under `key`, or `None` on a miss, an expired entry, or an entry of another type.
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError>;

    /// Stores `value` under `key`, to expire after `ttl` (never, when `None`).
    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError>;

    /// Removes the entry under `key`, if any.
    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError>;

    /// Removes every entry of `namespace`, and only those.
    fn clear(&self, namespace: &str) -> Result<(), OperoError>;

    /// The async form of [`get`](CacheBackend::get).
    fn get_async<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<Option<V>, OperoError>> + Send {
        std::future::ready(self.get(key))
    }

    /// The async form of [`set`](CacheBackend::set).
    fn set_async<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(), OperoError>> + Send {
        std::future::ready(self.set(key, value, ttl))
    }

    /// The async form of [`delete`](CacheBackend::delete).
    fn delete_async(
        &self,
        key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<(), OperoError>> + Send {
        std::future::ready(self.delete(key))
    }

    /// The async form of [`clear`](CacheBackend::clear).
    fn clear_async(&self, namespace: &str) -> impl Future<Output = Result<(), OperoError>> + Send {
        std::future::ready(self.clear(namespace))
    }
}

macro_rules! forward_cache_backend {
    ($($ty:ty),*) => {$(
        impl<C: CacheBackend + ?Sized> CacheBackend for $ty {
            fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
                (**self).get(key)
            }
            fn set<V: CacheValue>(&self, key: &CacheKey<'_>, value: &V, ttl: Option<Duration>) -> Result<(), OperoError> {
                (**self).set(key, value, ttl)
            }
            fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
                (**self).delete(key)
            }
            fn clear(&self, namespace: &str) -> Result<(), OperoError> {
                (**self).clear(namespace)
            }
            fn get_async<V: CacheValue>(&self, key: &CacheKey<'_>) -> impl Future<Output = Result<Option<V>, OperoError>> + Send {
                (**self).get_async(key)
            }
            fn set_async<V: CacheValue>(&self, key: &CacheKey<'_>, value: &V, ttl: Option<Duration>) -> impl Future<Output = Result<(), OperoError>> + Send {
                (**self).set_async(key, value, ttl)
            }
            fn delete_async(&self, key: &CacheKey<'_>) -> impl Future<Output = Result<(), OperoError>> + Send {
                (**self).delete_async(key)
            }
            fn clear_async(&self, namespace: &str) -> impl Future<Output = Result<(), OperoError>> + Send {
                (**self).clear_async(namespace)
            }
        }
    )*};
}

forward_cache_backend!(&C, Box<C>, Arc<C>);

/// A backend that can be built from a [`CacheConfig`] (its `backend_options` in particular), as
/// `Opero::<C>::new(config)` does.
pub trait BuildCache: CacheBackend + Sized {
    /// Builds the backend; a bad option is an [`OperoError`] naming it.
    fn build(config: &CacheConfig) -> Result<Self, OperoError>;
}

/// A backend that stores nothing: every lookup is a miss. For pipelines that never cache.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

impl CacheBackend for NoCache {
    fn get<V: CacheValue>(&self, _key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        Ok(None)
    }
    fn set<V: CacheValue>(
        &self,
        _key: &CacheKey<'_>,
        _value: &V,
        _ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        Ok(())
    }
    fn delete(&self, _key: &CacheKey<'_>) -> Result<(), OperoError> {
        Ok(())
    }
    fn clear(&self, _namespace: &str) -> Result<(), OperoError> {
        Ok(())
    }
}

impl BuildCache for NoCache {
    fn build(_config: &CacheConfig) -> Result<Self, OperoError> {
        Ok(NoCache)
    }
}
