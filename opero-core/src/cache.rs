//! Caching: the [`CacheBackend`] trait, [`BuildCache`] for building one from a [`CacheConfig`], and
//! [`NoCache`].

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::CacheConfig;
use crate::error::OperoError;
use crate::key::{CacheKey, FunctionId, KeyFn};

/// What a cache can hold: a value that can be cloned out of memory, or encoded for disk and Redis.
///
/// # Examples
///
/// ```
/// use opero_core::CacheValue;
///
/// fn cacheable<V: CacheValue>(_: &V) {}
/// cacheable(&vec!["a".to_string()]);
/// cacheable(&(1u32, Some(2.5f64)));
/// ```
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
    /// Whether this backend's entries live and die with the process (a memory cache), so that
    /// their keys need not be stable across builds: the pipeline then keys on
    /// [`KeyFn::hash_local`], which for [`StableKey`](crate::StableKey) is several times cheaper
    /// than the stable hash. A backend whose entries outlive the process or are shared with other
    /// processes (disk, Redis) must keep the default, `false`.
    const LOCAL_KEYS: bool = false;

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

    /// Single-flight across processes: called by the pipeline when this process misses `key`
    /// and no other caller in this process is computing it. The default,
    /// [`FlightStart::Off`], runs the work at once (memory and disk caches, whose in-process
    /// single-flight is all there is); a shared backend may instead let one process lead and
    /// make the others wait for its value (see [`FlightStart`]). An error runs the work at once
    /// too, counted as a backend error.
    fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        let _ = key;
        Ok(FlightStart::Off)
    }

    /// Ends the flight this process led under `lease`, after the value (if any) was stored:
    /// waiting processes then look the key up, and run their own call on a miss.
    fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError> {
        let _ = (key, lease);
        Ok(())
    }

    /// The async form of [`flight_begin`](CacheBackend::flight_begin).
    fn flight_begin_async(
        &self,
        key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<FlightStart, OperoError>> + Send {
        std::future::ready(self.flight_begin(key))
    }

    /// The async form of [`flight_end`](CacheBackend::flight_end).
    fn flight_end_async(
        &self,
        key: &CacheKey<'_>,
        lease: FlightLease,
    ) -> impl Future<Output = Result<(), OperoError>> + Send {
        std::future::ready(self.flight_end(key, lease))
    }
}

/// How a miss proceeds under a backend's single-flight across processes
/// ([`CacheBackend::flight_begin`]).
///
/// # Examples
///
/// ```
/// use opero_core::{FlightLease, FlightStart};
///
/// let start = FlightStart::Lead(FlightLease::new("token-1"));
/// match start {
///     FlightStart::Lead(lease) => assert_eq!(lease.token(), "token-1"),
///     _ => unreachable!(),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlightStart {
    /// No flight across processes: run the work.
    Off,
    /// This process leads: it runs the work, stores the value, then calls
    /// [`CacheBackend::flight_end`] with the lease.
    Lead(FlightLease),
    /// Another process led and ended its flight, or the wait bound passed: look the key up
    /// again, and run the work on a miss (a leader's errors are never shared).
    Waited,
}

/// Proof of leading a flight across processes: the token a backend's lock holds, so that only
/// its holder releases it.
///
/// # Examples
///
/// ```
/// let lease = opero_core::FlightLease::new("pid-42-7");
/// assert_eq!(lease.token(), "pid-42-7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightLease {
    token: String,
    entry_absent: bool,
}

impl FlightLease {
    /// A lease holding `token`.
    pub fn new(token: impl Into<String>) -> Self {
        FlightLease {
            token: token.into(),
            entry_absent: false,
        }
    }

    /// This lease, telling the pipeline that the backend found no entry for the key when it
    /// took the lock, so the pipeline skips the lookup it would make in case a flight ended
    /// just before this one began.
    pub fn with_entry_absent(mut self) -> Self {
        self.entry_absent = true;
        self
    }

    /// Whether the backend found no entry when it took the lock.
    pub fn entry_absent(&self) -> bool {
        self.entry_absent
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.token
    }
}

macro_rules! forward_cache_backend {
    ($($ty:ty),*) => {$(
        impl<C: CacheBackend + ?Sized> CacheBackend for $ty {
            const LOCAL_KEYS: bool = C::LOCAL_KEYS;
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
            fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
                (**self).flight_begin(key)
            }
            fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError> {
                (**self).flight_end(key, lease)
            }
            fn flight_begin_async(&self, key: &CacheKey<'_>) -> impl Future<Output = Result<FlightStart, OperoError>> + Send {
                (**self).flight_begin_async(key)
            }
            fn flight_end_async(&self, key: &CacheKey<'_>, lease: FlightLease) -> impl Future<Output = Result<(), OperoError>> + Send {
                (**self).flight_end_async(key, lease)
            }
        }
    )*};
}

forward_cache_backend!(&C, Box<C>, Arc<C>);

/// A backend that can be built from a [`CacheConfig`] (its `backend_options` in particular), as
/// `Opero::<C>::new(config)` does.
///
/// # Examples
///
/// ```
/// use opero_core::{BuildCache, CacheConfig, ErrorKind, NoCache};
///
/// // A pipeline type without a cache refuses a config that turns caching on.
/// let err = NoCache::<()>::build(&CacheConfig::enabled("memory")).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
/// assert_eq!(err.field(), Some("cache.enabled"));
/// ```
pub trait BuildCache: Sized {
    /// Builds the backend; a bad option is an [`OperoError`] naming it. Called only when the
    /// cache is enabled.
    fn build(config: &CacheConfig) -> Result<Self, OperoError>;
}

/// The cache type of a pipeline that does not cache: its values and arguments need no serde
/// bounds and no `Clone`.
///
/// `D` is the backend that [`OperoBuilder::cache`](crate::OperoBuilder::cache) switches to (the
/// facade's builders start as `NoCache<AnyCache>`); with the default `()`, turning the cache on
/// does not compile, and a config that enables it is refused when the pipeline is built.
///
/// # Examples
///
/// ```
/// use opero_core::{NoCache, Opero};
///
/// // No cache: a value that is neither serde nor Clone is fine.
/// struct Connection { id: u32 }
/// let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
/// let conn = opero.run(|| Ok::<_, String>(Connection { id: 7 })).unwrap();
/// assert_eq!(conn.id, 7);
/// ```
pub struct NoCache<D = ()>(PhantomData<fn() -> D>);

impl<D> NoCache<D> {
    /// The one value.
    pub const fn new() -> Self {
        NoCache(PhantomData)
    }
}

impl<D> Clone for NoCache<D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for NoCache<D> {}

impl<D> Default for NoCache<D> {
    fn default() -> Self {
        NoCache::new()
    }
}

impl<D> std::fmt::Debug for NoCache<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoCache")
    }
}

impl<D> BuildCache for NoCache<D> {
    fn build(_config: &CacheConfig) -> Result<Self, OperoError> {
        // Caching that was asked for and would silently not happen is refused.
        Err(OperoError::invalid_config(
            "cache.enabled",
            true,
            "this pipeline's cache type is NoCache, which stores nothing: name a backend type \
             (Opero::<MemoryCache>, Opero::<AnyCache> for a backend chosen by name) to cache",
        ))
    }
}

/// The cache type a builder switches to when the cache is turned on: a backend itself, or the
/// backend `D` of a [`NoCache<D>`].
///
/// # Examples
///
/// ```
/// use opero_core::{CacheBackend, CacheKey, CacheValue, NoCache, Opero, OperoBuilder, OperoError};
/// use std::time::Duration;
///
/// // A backend of one's own (this one never stores anything).
/// #[derive(Default)]
/// struct Mine;
/// impl CacheBackend for Mine {
///     fn get<V: CacheValue>(&self, _: &CacheKey<'_>) -> Result<Option<V>, OperoError> { Ok(None) }
///     fn set<V: CacheValue>(&self, _: &CacheKey<'_>, _: &V, _: Option<Duration>) -> Result<(), OperoError> { Ok(()) }
///     fn delete(&self, _: &CacheKey<'_>) -> Result<(), OperoError> { Ok(()) }
///     fn clear(&self, _: &str) -> Result<(), OperoError> { Ok(()) }
/// }
///
/// // Without a cache type the builder asks nothing of values; `.cache(true)` switches to `Mine`.
/// let builder: OperoBuilder<NoCache<Mine>> = Opero::builder();
/// let switched: OperoBuilder<Mine> = builder.cache_backend(Mine);
/// assert!(switched.config().cache.enabled);
/// ```
pub trait CacheSwitch {
    /// The cache type once caching is on.
    type On;
    /// A backend instance carried over to the new type, if it is one.
    fn switch(self) -> Option<Self::On>;
}

impl<C: CacheBackend> CacheSwitch for C {
    type On = C;
    fn switch(self) -> Option<C> {
        Some(self)
    }
}

impl<D: CacheBackend> CacheSwitch for NoCache<D> {
    type On = D;
    fn switch(self) -> Option<D> {
        None
    }
}

/// Which key a pipeline's cache type takes: the stable one of [`KeyFn::hash`], or the
/// process-local one of [`KeyFn::hash_local`] for a backend whose
/// [`LOCAL_KEYS`](CacheBackend::LOCAL_KEYS) is set. Implemented for every [`CacheBackend`] and
/// for [`NoCache`] (stable keys).
///
/// # Examples
///
/// ```
/// use opero_core::{KeyScope, NoCache};
///
/// assert!(!<NoCache as KeyScope>::LOCAL);
/// ```
pub trait KeyScope {
    /// Whether keys are process-local.
    const LOCAL: bool;
}

impl<C: CacheBackend> KeyScope for C {
    const LOCAL: bool = C::LOCAL_KEYS;
}

impl<D> KeyScope for NoCache<D> {
    const LOCAL: bool = false;
}

/// What a pipeline's cache type needs of a call's arguments `A` and value `T`: with a backend,
/// serializable arguments and a [`CacheValue`]; with [`NoCache`], nothing. The pipeline's forms
/// are bounded by it, so a pipeline that cannot cache asks nothing of values and arguments.
///
/// Implemented for every [`CacheBackend`] and for [`NoCache`]; a backend of your own implements
/// `CacheBackend` and gets this.
///
/// # Examples
///
/// A helper generic over the pipeline's cache type asks for exactly what that type needs:
///
/// ```
/// use opero_core::{CacheFor, NoCache, Opero};
///
/// fn cached_len<C: CacheFor<str, usize>>(opero: &Opero<C>, text: &str) -> usize {
///     opero.call(text, |s: &str| Ok::<_, String>(s.len())).unwrap()
/// }
///
/// let opero = Opero::<NoCache>::builder().build().unwrap();
/// assert_eq!(cached_len(&opero, "abc"), 3);
/// ```
pub trait CacheFor<A: ?Sized, T>: Send + Sync {
    /// The 128-bit key hash of a call, given the namespace and its
    /// [`namespace_fingerprint`](crate::namespace_fingerprint).
    fn key_hash<K: KeyFn>(
        key_fn: &K,
        namespace: &str,
        namespace_fingerprint: u128,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError>;
    /// Looks a value up.
    fn lookup(&self, key: &CacheKey<'_>) -> Result<Option<T>, OperoError>;
    /// Stores a value.
    fn store(&self, key: &CacheKey<'_>, value: &T, ttl: Option<Duration>)
        -> Result<(), OperoError>;
    /// Looks a value up without blocking.
    fn lookup_async(
        &self,
        key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<Option<T>, OperoError>> + Send;
    /// Stores a value without blocking.
    fn store_async(
        &self,
        key: &CacheKey<'_>,
        value: &T,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(), OperoError>> + Send;
    /// [`CacheBackend::flight_begin`].
    fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError>;
    /// [`CacheBackend::flight_end`].
    fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError>;
    /// [`CacheBackend::flight_begin_async`].
    fn flight_begin_async(
        &self,
        key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<FlightStart, OperoError>> + Send;
    /// [`CacheBackend::flight_end_async`].
    fn flight_end_async(
        &self,
        key: &CacheKey<'_>,
        lease: FlightLease,
    ) -> impl Future<Output = Result<(), OperoError>> + Send;
    /// A copy of the value for callers that waited for it (single-flight).
    fn share(value: &T) -> Arc<dyn Any + Send + Sync>;
    /// The value back from [`share`](Self::share).
    fn unshare(shared: &(dyn Any + Send + Sync)) -> Option<T>;
}

impl<C: CacheBackend, A: Serialize + ?Sized, T: CacheValue> CacheFor<A, T> for C {
    #[inline]
    fn key_hash<K: KeyFn>(
        key_fn: &K,
        namespace: &str,
        namespace_fingerprint: u128,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        if C::LOCAL_KEYS {
            key_fn.hash_local(namespace, namespace_fingerprint, function, args)
        } else {
            key_fn.hash_prepared(namespace, namespace_fingerprint, function, args)
        }
    }
    fn lookup(&self, key: &CacheKey<'_>) -> Result<Option<T>, OperoError> {
        self.get::<T>(key)
    }
    fn store(
        &self,
        key: &CacheKey<'_>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        self.set(key, value, ttl)
    }
    fn lookup_async(
        &self,
        key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<Option<T>, OperoError>> + Send {
        self.get_async::<T>(key)
    }
    fn store_async(
        &self,
        key: &CacheKey<'_>,
        value: &T,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(), OperoError>> + Send {
        self.set_async(key, value, ttl)
    }
    fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        CacheBackend::flight_begin(self, key)
    }
    fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError> {
        CacheBackend::flight_end(self, key, lease)
    }
    fn flight_begin_async(
        &self,
        key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<FlightStart, OperoError>> + Send {
        CacheBackend::flight_begin_async(self, key)
    }
    fn flight_end_async(
        &self,
        key: &CacheKey<'_>,
        lease: FlightLease,
    ) -> impl Future<Output = Result<(), OperoError>> + Send {
        CacheBackend::flight_end_async(self, key, lease)
    }
    fn share(value: &T) -> Arc<dyn Any + Send + Sync> {
        Arc::new(value.clone())
    }
    fn unshare(shared: &(dyn Any + Send + Sync)) -> Option<T> {
        shared.downcast_ref::<T>().cloned()
    }
}

impl<D, A: ?Sized, T> CacheFor<A, T> for NoCache<D> {
    fn key_hash<K: KeyFn>(
        _key_fn: &K,
        _namespace: &str,
        _namespace_fingerprint: u128,
        _function: &FunctionId<'_>,
        _args: &A,
    ) -> Result<u128, OperoError> {
        Err(OperoError::new(
            crate::error::ErrorKind::InvalidConfig,
            "NoCache keys nothing",
        ))
    }
    fn lookup(&self, _key: &CacheKey<'_>) -> Result<Option<T>, OperoError> {
        Ok(None)
    }
    fn store(
        &self,
        _key: &CacheKey<'_>,
        _value: &T,
        _ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        Ok(())
    }
    fn lookup_async(
        &self,
        _key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<Option<T>, OperoError>> + Send {
        Miss(PhantomData)
    }
    fn store_async(
        &self,
        _key: &CacheKey<'_>,
        _value: &T,
        _ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(), OperoError>> + Send {
        std::future::ready(Ok(()))
    }
    fn flight_begin(&self, _key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        Ok(FlightStart::Off)
    }
    fn flight_end(&self, _key: &CacheKey<'_>, _lease: FlightLease) -> Result<(), OperoError> {
        Ok(())
    }
    fn flight_begin_async(
        &self,
        _key: &CacheKey<'_>,
    ) -> impl Future<Output = Result<FlightStart, OperoError>> + Send {
        std::future::ready(Ok(FlightStart::Off))
    }
    fn flight_end_async(
        &self,
        _key: &CacheKey<'_>,
        _lease: FlightLease,
    ) -> impl Future<Output = Result<(), OperoError>> + Send {
        std::future::ready(Ok(()))
    }
    fn share(_value: &T) -> Arc<dyn Any + Send + Sync> {
        Arc::new(())
    }
    fn unshare(_shared: &(dyn Any + Send + Sync)) -> Option<T> {
        None
    }
}

/// A lookup that finds nothing, `Send` whatever `T` is (it holds no `T`).
struct Miss<T>(PhantomData<fn() -> T>);

impl<T> Future for Miss<T> {
    type Output = Result<Option<T>, OperoError>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(None))
    }
}
