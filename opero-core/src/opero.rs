//! [`Opero`]: one configured pipeline (cache → fallback → retry → rate limit → call), its builder,
//! and the callables it wraps functions into.

use std::fmt::{self, Display};
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cache::{BuildCache, CacheBackend, CacheFor, CacheSwitch};
use crate::config::{CacheConfig, OperoConfig, RateLimitConfig};
use crate::error::{AllFailedError, AttemptError, OperoError};
use crate::flight::{Flights, Join};
use crate::key::{CacheKey, FunctionId, KeyFn, StableKey};
use crate::metrics::{Counters, Metrics, MetricsSnapshot};
use crate::pipeline::Attempts;
use crate::rate_limit::{RateLimiter, TokenBucket};
use crate::retry::{Backoff, Jitter, RetryPolicy};

/// A non-empty list of alternative values for one argument (backup API keys, mirror URLs), tried in
/// order, each with the full retry budget.
///
/// # Examples
///
/// ```
/// use opero_core::Fallbacks;
///
/// let keys = Fallbacks::new(vec!["key-a".to_string(), "key-b".to_string()]).unwrap();
/// assert_eq!(keys.len(), 2);
/// let err = Fallbacks::<String>::new(vec![]).unwrap_err();
/// assert_eq!(err.field(), Some("fallbacks"));
/// ```
#[derive(Clone)]
pub struct Fallbacks<V> {
    values: Arc<[V]>,
}

impl<V> Fallbacks<V> {
    /// The values, in the order they are tried; an empty list is an error naming `fallbacks`.
    pub fn new(values: impl Into<Vec<V>>) -> Result<Self, OperoError> {
        let values: Vec<V> = values.into();
        if values.is_empty() {
            return Err(OperoError::invalid_config(
                "fallbacks",
                "[]",
                "needs at least one value",
            ));
        }
        Ok(Fallbacks {
            values: values.into(),
        })
    }

    /// The values.
    pub fn as_slice(&self) -> &[V] {
        &self.values
    }

    /// How many values there are (at least one).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.values.len()
    }
}

impl Fallbacks<()> {
    /// The single unit value of a call without fallbacks.
    fn none() -> Self {
        Fallbacks {
            values: Arc::from(NO_FALLBACK),
        }
    }
}

/// A `&Fallbacks<V>` is a `&[V]`: what a `#[opero(arg_fallback = ..)]` parameter takes.
impl<V> std::ops::Deref for Fallbacks<V> {
    type Target = [V];

    fn deref(&self) -> &[V] {
        &self.values
    }
}

impl<V> fmt::Debug for Fallbacks<V> {
    // Fallback values may be secrets, so only their number is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fallbacks({} values)", self.values.len())
    }
}

/// The single value used when a call has no fallback list.
const NO_FALLBACK: &[()] = &[()];

struct Shared<C, K, P> {
    cache: Option<C>,
    cache_config: CacheConfig,
    key_fn: K,
    policy: P,
    limiter: Option<Arc<dyn RateLimiter>>,
    metrics: Arc<Metrics>,
    flights: Flights,
    /// Names given to wrappers of this pipeline and what they were given to, to refuse one name
    /// for two functions.
    wrapper_names: std::sync::Mutex<std::collections::HashMap<Arc<str>, WrapperOrigin>>,
}

/// What a name was given to: the callable's type name and, for a callable its type does not
/// name alone, where it was wrapped.
#[derive(Clone, Copy, PartialEq, Eq)]
struct WrapperOrigin {
    type_name: &'static str,
    location: Option<&'static Location<'static>>,
}

/// A configured resilience pipeline: cache lookup, then fallback across alternative values, each
/// with retries and exponential backoff, each attempt rate-limited, then the call.
///
/// Cloning is cheap; clones share the cache, the rate limiter and the counters.
///
/// The forms, each sync and async:
///
/// | form | the cache key | the closure gets |
/// |---|---|---|
/// | [`run`](Opero::run) / [`run_async`](Opero::run_async) | no cache | nothing |
/// | [`call`](Opero::call) / [`call_async`](Opero::call_async) | the arguments | the arguments |
/// | [`run_fallback`](Opero::run_fallback) / [`run_fallback_async`](Opero::run_fallback_async) | no cache | each fallback value in turn |
/// | [`call_fallback`](Opero::call_fallback) / [`call_fallback_async`](Opero::call_fallback_async) | the arguments (not the fallback value) | the arguments and each fallback value |
///
/// # Examples
///
/// ```
/// use opero_core::{Opero, OperoConfig, RetryConfig, Jitter, NoCache, Fallbacks};
/// use std::time::Duration;
///
/// let opero = Opero::<NoCache>::builder()
///     .retries(2)
///     .min_delay(Duration::from_millis(1))
///     .jitter(Jitter::None)
///     .build()
///     .unwrap();
///
/// let keys = Fallbacks::new(vec!["revoked", "good"]).unwrap();
/// let mut attempts = 0;
/// let answer = opero.run_fallback(&keys, |key: &&str| {
///     attempts += 1;
///     if *key == "revoked" { Err("401") } else { Ok(format!("served by {key}")) }
/// });
/// assert_eq!(answer.unwrap(), "served by good");
/// assert_eq!(attempts, 4); // 3 attempts with the revoked key, 1 with the good one
/// ```
pub struct Opero<C, K = StableKey, P = Backoff> {
    shared: Arc<Shared<C, K, P>>,
    // Outside the shared part, so that `named` can give a clone its own name.
    name: Option<Arc<str>>,
}

impl<C, K, P> Clone for Opero<C, K, P> {
    fn clone(&self) -> Self {
        Opero {
            shared: Arc::clone(&self.shared),
            name: self.name.clone(),
        }
    }
}

impl<C, K, P> fmt::Debug for Opero<C, K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opero")
            .field("cache", &self.shared.cache.is_some())
            .field("namespace", &self.shared.cache_config.namespace)
            .field("rate_limited", &self.shared.limiter.is_some())
            .field("name", &self.name)
            .finish()
    }
}

// ===== impl Opero: construction =====

impl<C: BuildCache> Opero<C> {
    /// A pipeline from a validated config; the backend `C` is built from `config.cache` when the
    /// cache is enabled (and not at all otherwise).
    pub fn new(config: OperoConfig) -> Result<Self, OperoError> {
        OperoBuilder::from_config(config).build()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> OperoBuilder<C> {
        OperoBuilder::from_config(OperoConfig::default())
    }
}

impl<C: CacheBackend> Opero<C> {
    /// A pipeline over a backend the caller built; passing a backend turns the cache on, whatever
    /// `config.cache.enabled` says (the instance is the intent). The rest of `config.cache`
    /// (namespace, TTL) applies.
    pub fn with_cache(config: OperoConfig, cache: C) -> Result<Self, OperoError> {
        OperoBuilder::<C>::from_config(config)
            .cache_backend(cache)
            .build_with_given_cache()
    }
}

impl<C, K, P> Opero<C, K, P> {
    /// The counters of this pipeline and its clones.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The live counters, for executors and backends that report into them.
    pub fn metrics_handle(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The cache backend, when caching is on.
    pub fn cache(&self) -> Option<&C> {
        self.shared.cache.as_ref()
    }

    /// The cache settings.
    pub fn cache_config(&self) -> &CacheConfig {
        &self.shared.cache_config
    }

    /// The shared rate limiter, when rate limiting is on.
    pub fn rate_limiter(&self) -> Option<&Arc<dyn RateLimiter>> {
        self.shared.limiter.as_ref()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &P {
        &self.shared.policy
    }

    /// The function name given with [`OperoBuilder::name`] or [`Opero::named`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// This pipeline under a function name: a clone that shares the cache, the rate limiter, the
    /// counters and single-flight, and whose calls and wrappers are cached under `name`.
    ///
    /// A name is the only way to cache a callable that does not identify itself (a `fn`
    /// pointer, a `dyn Fn`, a closure that captures state; see [`FunctionId`]), and the way to
    /// keep disk and Redis entries valid across edits of the code around a call. One name is one
    /// function: calls under one name share entries.
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    ///
    /// // With a real backend (`Opero::<MemoryCache>`) and the cache on, the name is the key's.
    /// let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
    /// let base = 10;
    /// // The closure captures `base`: named, it can be cached.
    /// let got = opero.named("add_base").call(&5u32, |x: &u32| Ok::<_, String>(x + base));
    /// assert_eq!(got.unwrap(), 15);
    /// assert_eq!(opero.named("add_base").name(), Some("add_base"));
    /// ```
    pub fn named(&self, name: impl Into<Arc<str>>) -> Self {
        Opero {
            shared: Arc::clone(&self.shared),
            name: Some(name.into()),
        }
    }

    /// The pipeline's counters under this clone's name.
    #[inline(always)]
    fn counters(&self) -> Counters<'_> {
        Counters {
            counters: &self.shared.metrics,
            pipeline: self.name.as_ref(),
        }
    }

    fn attempts(&self) -> Attempts<'_, P> {
        Attempts {
            policy: &self.shared.policy,
            limiter: self.shared.limiter.as_deref(),
            metrics: Some(self.counters()),
        }
    }
}

// ===== impl Opero: the forms =====

impl<C, K, P> Opero<C, K, P>
where
    K: KeyFn,
{
    /// Runs `f` with retries and rate limiting. With the cache on, `f` is a function of no
    /// arguments cached under its identity, as the original's `@opero(cache=True)` caches one:
    /// a `fn` item or a closure that captures nothing is identified by itself; any other callable
    /// needs [`named`](Self::named), or it runs uncached (counted and warned, see [`FunctionId`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let opero = Opero::<NoCache>::builder().min_delay(Duration::ZERO).build().unwrap();
    /// let mut calls = 0;
    /// let answer = opero.run(|| { calls += 1; if calls < 3 { Err("busy") } else { Ok(42) } });
    /// assert_eq!(answer.unwrap(), 42);
    /// ```
    #[inline]
    #[track_caller]
    pub fn run<T, E, F>(&self, mut f: F) -> Result<T, AllFailedError<E>>
    where
        C: CacheFor<(), T>,
        F: FnMut() -> Result<T, E>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, &(), NO_FALLBACK, |_, _| {
            f().map_err(AttemptError::Failed)
        })
    }

    /// The async form of [`run`](Opero::run). The closure may borrow from the caller.
    #[track_caller]
    pub fn run_async<'a, T, E, F, Fut>(
        &'a self,
        mut f: F,
    ) -> impl Future<Output = Result<T, AllFailedError<E>>> + 'a
    where
        C: CacheFor<(), T>,
        F: FnMut() -> Fut + 'a,
        Fut: Future<Output = Result<T, E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        async move {
            self.call_attempts_async(function, &(), NO_FALLBACK, |_, _| {
                let fut = f();
                async move { fut.await.map_err(AttemptError::Failed) }
            })
            .await
        }
    }

    /// Runs `f` once per fallback value in order, each with its full retry budget. With the
    /// cache on, cached under the function's identity as [`run`](Self::run) is (the fallback
    /// value is never part of a key).
    #[track_caller]
    pub fn run_fallback<V, T, E, F>(
        &self,
        fallbacks: &Fallbacks<V>,
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        C: CacheFor<(), T>,
        F: FnMut(&V) -> Result<T, E>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, &(), fallbacks.as_slice(), |_, v| {
            f(v).map_err(AttemptError::Failed)
        })
    }

    /// The async form of [`run_fallback`](Opero::run_fallback); each attempt gets a clone of the
    /// value. The closure may borrow from the caller.
    #[track_caller]
    pub fn run_fallback_async<'a, V, T, E, F, Fut>(
        &'a self,
        fallbacks: &'a Fallbacks<V>,
        mut f: F,
    ) -> impl Future<Output = Result<T, AllFailedError<E>>> + 'a
    where
        C: CacheFor<(), T>,
        V: Clone,
        F: FnMut(V) -> Fut + 'a,
        Fut: Future<Output = Result<T, E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        async move {
            self.call_attempts_async(function, &(), fallbacks.as_slice(), |_, v: &V| {
                let fut = f(v.clone());
                async move { fut.await.map_err(AttemptError::Failed) }
            })
            .await
        }
    }

    /// Looks `args` up in the cache; on a miss runs `f(args)` with retries and rate limiting and
    /// caches a success.
    #[track_caller]
    pub fn call<A, T, E, F>(&self, args: &A, mut f: F) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: FnMut(&A) -> Result<T, E>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, args, NO_FALLBACK, |a, _| {
            f(a).map_err(AttemptError::Failed)
        })
    }

    /// The async form of [`call`](Opero::call); each attempt gets a clone of `args`. The closure
    /// may borrow from the caller, as in `opero.call_async(id, |id| client.get(id))`.
    #[track_caller]
    pub fn call_async<'a, A, T, E, F, Fut>(
        &'a self,
        args: A,
        mut f: F,
    ) -> impl Future<Output = Result<T, AllFailedError<E>>> + 'a
    where
        A: Clone + 'a,
        C: CacheFor<A, T>,
        F: FnMut(A) -> Fut + 'a,
        Fut: Future<Output = Result<T, E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        async move {
            self.call_attempts_async(function, &args, NO_FALLBACK, |a: &A, _| {
                let fut = f(a.clone());
                async move { fut.await.map_err(AttemptError::Failed) }
            })
            .await
        }
    }

    /// Looks `args` up in the cache (the fallback value is not part of the key); on a miss tries
    /// `f(args, value)` for each fallback value in order, each with its full retry budget.
    #[track_caller]
    pub fn call_fallback<A, V, T, E, F>(
        &self,
        args: &A,
        fallbacks: &Fallbacks<V>,
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: FnMut(&A, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, args, fallbacks.as_slice(), |a, v| {
            f(a, v).map_err(AttemptError::Failed)
        })
    }

    /// The async form of [`call_fallback`](Opero::call_fallback).
    #[track_caller]
    pub fn call_fallback_async<'a, A, V, T, E, F, Fut>(
        &'a self,
        args: A,
        fallbacks: &'a Fallbacks<V>,
        mut f: F,
    ) -> impl Future<Output = Result<T, AllFailedError<E>>> + 'a
    where
        A: Clone + 'a,
        C: CacheFor<A, T>,
        V: Clone,
        F: FnMut(A, V) -> Fut + 'a,
        Fut: Future<Output = Result<T, E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        async move {
            self.call_attempts_async(function, &args, fallbacks.as_slice(), |a: &A, v: &V| {
                let fut = f(a.clone(), v.clone());
                async move { fut.await.map_err(AttemptError::Failed) }
            })
            .await
        }
    }

    /// The general sync form on which the others stand: cache lookup by `(function, args)`, then
    /// `f(args, value)` over `values` with retries, where `f` reports each failure as an
    /// [`AttemptError`] (so an executor can report a panic or a crashed worker).
    #[inline]
    pub fn call_attempts<A, V, T, E, F>(
        &self,
        function: FunctionId<'_>,
        args: &A,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: FnMut(&A, &V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.counters().call();
        // Inlined up to here, so that an uncached call costs the bare attempt loop.
        match &self.shared.cache {
            None => self.attempts().run_sync(values, |v| f(args, v)),
            Some(cache) => self.call_cached(cache, function, args, values, f),
        }
    }

    /// [`call_attempts`](Self::call_attempts) with a cache.
    fn call_cached<A, V, T, E, F>(
        &self,
        cache: &C,
        function: FunctionId<'_>,
        args: &A,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: FnMut(&A, &V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = function.or_named(self.name());
        let Some(key) = self.make_key(&function, |ns| {
            C::key_hash(&self.shared.key_fn, ns, &function, args)
        }) else {
            return self.attempts().run_sync(values, |v| f(args, v));
        };
        let backend_up = match cache.lookup(&key) {
            Ok(Some(hit)) => {
                self.on_hit(&key);
                return Ok(hit);
            }
            Ok(None) => {
                self.on_miss(&key);
                true
            }
            Err(e) => {
                self.on_backend_error("get", &key, &e);
                false
            }
        };
        let mut run = || {
            let result = self.attempts().run_sync(values, |v| f(args, v));
            if let Ok(value) = &result {
                if let Err(e) = cache.store(&key, value, self.shared.cache_config.ttl) {
                    self.on_backend_error("set", &key, &e);
                }
            }
            result
        };
        match self.shared.flights.join(key.hash) {
            Join::Follower(flight) => {
                if let Some(value) = flight.wait().and_then(|v| C::unshare(&*v)) {
                    self.counters().coalesced();
                    return Ok(value);
                }
                // The leader produced no value: errors are not shared, so this caller runs its own.
                run()
            }
            Join::Leader(guard) => {
                // A caller that finished between our lookup and our joining has stored its value
                // by now (it stores before it ends its flight), so one more lookup closes the gap.
                if backend_up {
                    if let Ok(Some(hit)) = cache.lookup(&key) {
                        self.counters().coalesced();
                        guard.finish_with(|| Some(C::share(&hit)));
                        return Ok(hit);
                    }
                }
                let result = run();
                guard.finish_with(|| result.as_ref().ok().map(C::share));
                result
            }
        }
    }

    /// The general sync form without a cache: `f(value)` over `values` with retries.
    pub fn run_attempts<V, T, E, F>(&self, values: &[V], f: F) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.counters().call();
        self.attempts().run_sync(values, f)
    }

    /// The async twin of [`call_attempts`](Opero::call_attempts).
    pub async fn call_attempts_async<A, V, T, E, F, Fut>(
        &self,
        function: FunctionId<'_>,
        args: &A,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: FnMut(&A, &V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.counters().call();
        let Some(cache) = &self.shared.cache else {
            return self.attempts().run_async(values, |v| f(args, v)).await;
        };
        let function = function.or_named(self.name());
        let Some(key) = self.make_key(&function, |ns| {
            C::key_hash(&self.shared.key_fn, ns, &function, args)
        }) else {
            return self.attempts().run_async(values, |v| f(args, v)).await;
        };
        let backend_up = match cache.lookup_async(&key).await {
            Ok(Some(hit)) => {
                self.on_hit(&key);
                return Ok(hit);
            }
            Ok(None) => {
                self.on_miss(&key);
                true
            }
            Err(e) => {
                self.on_backend_error("get", &key, &e);
                false
            }
        };
        // The same steps as the sync form; see the comments there.
        let leader = match self.shared.flights.join(key.hash) {
            Join::Follower(flight) => {
                let shared = flight.wait_async().await;
                if let Some(value) = shared.and_then(|v| C::unshare(&*v)) {
                    self.counters().coalesced();
                    return Ok(value);
                }
                None
            }
            Join::Leader(guard) => {
                if backend_up {
                    if let Ok(Some(hit)) = cache.lookup_async(&key).await {
                        self.counters().coalesced();
                        guard.finish_with(|| Some(C::share(&hit)));
                        return Ok(hit);
                    }
                }
                Some(guard)
            }
        };
        let result = self.attempts().run_async(values, |v| f(args, v)).await;
        if let Ok(value) = &result {
            if let Err(e) = cache
                .store_async(&key, value, self.shared.cache_config.ttl)
                .await
            {
                self.on_backend_error("set", &key, &e);
            }
        }
        if let Some(guard) = leader {
            guard.finish_with(|| result.as_ref().ok().map(C::share));
        }
        result
    }

    /// The async twin of [`run_attempts`](Opero::run_attempts).
    pub async fn run_attempts_async<V, T, E, F, Fut>(
        &self,
        values: &[V],
        f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        F: FnMut(&V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.counters().call();
        self.attempts().run_async(values, f).await
    }

    /// The cache key of a call, or `None` (counted and logged) when the function does not
    /// identify itself (see [`FunctionId`]) or the arguments cannot be hashed.
    pub fn key<'k, A: Serialize + ?Sized>(
        &'k self,
        function: &FunctionId<'k>,
        args: &A,
    ) -> Option<CacheKey<'k>> {
        self.make_key(function, |ns| self.shared.key_fn.hash(ns, function, args))
    }

    /// The identity of a call's function, computed only when a cache will key on it: the
    /// no-fault path of an uncached pipeline stays as short as the bare attempt loop.
    #[inline]
    fn identity_of<F>(&self, at: &'static Location<'static>) -> FunctionId<'static> {
        if self.shared.cache.is_some() {
            FunctionId::of::<F>(at)
        } else {
            FunctionId::unused()
        }
    }

    fn make_key<'k>(
        &'k self,
        function: &FunctionId<'k>,
        hash: impl FnOnce(&str) -> Result<u128, OperoError>,
    ) -> Option<CacheKey<'k>> {
        if !function.identifies() {
            self.on_unidentified(function);
            return None;
        }
        let namespace = self.shared.cache_config.namespace.as_str();
        match hash(namespace) {
            Ok(hash) => Some(CacheKey {
                namespace,
                function: function.label(),
                hash,
            }),
            Err(e) => {
                self.counters().cache_error();
                tracing::warn!(target: "opero", error = %e, "cache key failed; running uncached");
                None
            }
        }
    }

    #[cold]
    fn on_unidentified(&self, function: &FunctionId<'_>) {
        self.counters().unidentified();
        warn_once_unidentified(function);
    }

    fn on_hit(&self, key: &CacheKey<'_>) {
        self.counters().cache_hit();
        tracing::debug!(target: "opero", namespace = key.namespace, function = %key.function, "cache hit");
    }

    fn on_miss(&self, key: &CacheKey<'_>) {
        self.counters().cache_miss();
        tracing::debug!(target: "opero", namespace = key.namespace, function = %key.function, "cache miss");
    }

    #[cold]
    fn on_backend_error(&self, op: &'static str, key: &CacheKey<'_>, error: &OperoError) {
        self.counters().cache_error();
        tracing::warn!(
            target: "opero",
            op,
            namespace = key.namespace,
            function = %key.function,
            error = %error,
            "cache backend error; the call runs uncached"
        );
    }
}

// ===== impl Opero: wrapping functions into callables =====

impl<C, K, P> Opero<C, K, P> {
    /// Wraps `f` into a callable whose arguments make the cache key: the counterpart of the
    /// `@opero` decorator. Several arguments travel as a tuple.
    ///
    /// With the cache on, `f` must identify itself or the pipeline must be [`named`](Self::named)
    /// (see [`FunctionId`]): a `fn` pointer, a `dyn Fn` or a closure that captures state without a
    /// name is an [`OperoError`] naming `name`, never a cache entry shared with another function.
    /// One name on one pipeline wraps one function: a second function under a name already
    /// taken is refused too.
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_core::{Opero, NoCache};
    ///
    /// let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
    /// let area = opero.wrap(|(w, h): &(u32, u32)| Ok::<_, String>(w * h)).unwrap();
    /// assert_eq!(area.call(&(3, 4)).unwrap(), 12);
    /// ```
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn wrap<A, T, E, F>(
        &self,
        f: F,
    ) -> Result<Wrapped<C, K, P, impl Fn(&A, &()) -> Result<T, E>, ()>, OperoError>
    where
        A: ?Sized,
        F: Fn(&A) -> Result<T, E>,
    {
        let function = self.wrapper_identity(FunctionId::of::<F>(Location::caller()))?;
        Ok(Wrapped {
            opero: self.clone(),
            function,
            fallbacks: Fallbacks::none(),
            f: move |a: &A, _: &()| f(a),
        })
    }

    /// Wraps `f`, which takes the arguments and one fallback value, into a callable that tries the
    /// values in order. Identity rules as for [`wrap`](Self::wrap).
    #[track_caller]
    pub fn wrap_fallback<A, V, T, E, F>(
        &self,
        fallbacks: Fallbacks<V>,
        f: F,
    ) -> Result<Wrapped<C, K, P, F, V>, OperoError>
    where
        A: ?Sized,
        F: Fn(&A, &V) -> Result<T, E>,
    {
        let function = self.wrapper_identity(FunctionId::of::<F>(Location::caller()))?;
        Ok(Wrapped {
            opero: self.clone(),
            function,
            fallbacks,
            f,
        })
    }

    /// Wraps an async function of owned arguments into a callable. Identity rules as for
    /// [`wrap`](Self::wrap).
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn wrap_async<A, T, E, F, Fut>(
        &self,
        f: F,
    ) -> Result<WrappedAsync<C, K, P, impl Fn(A, ()) -> Fut, ()>, OperoError>
    where
        F: Fn(A) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let function = self.wrapper_identity(FunctionId::of::<F>(Location::caller()))?;
        Ok(WrappedAsync {
            opero: self.clone(),
            function,
            fallbacks: Fallbacks::none(),
            f: move |a: A, _: ()| f(a),
        })
    }

    /// Wraps an async function of owned arguments and one fallback value into a callable.
    /// Identity rules as for [`wrap`](Self::wrap).
    #[track_caller]
    pub fn wrap_fallback_async<A, V, T, E, F, Fut>(
        &self,
        fallbacks: Fallbacks<V>,
        f: F,
    ) -> Result<WrappedAsync<C, K, P, F, V>, OperoError>
    where
        F: Fn(A, V) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let function = self.wrapper_identity(FunctionId::of::<F>(Location::caller()))?;
        Ok(WrappedAsync {
            opero: self.clone(),
            function,
            fallbacks,
            f,
        })
    }

    /// Checks that a wrapper's function can be cached under a key of its own, when the cache is
    /// on: it identifies itself or carries a name, and the name wraps no other function here.
    pub fn wrapper_identity(
        &self,
        function: FunctionId<'static>,
    ) -> Result<FunctionId<'static>, OperoError> {
        if self.shared.cache.is_none() {
            return Ok(function);
        }
        let Some(name) = &self.name else {
            if function.identifies() {
                return Ok(function);
            }
            return Err(unidentified_error(&function));
        };
        let origin = WrapperOrigin {
            type_name: function.type_name(),
            location: function.location(),
        };
        // A poisoned lock only means a panic elsewhere mid-insert; the map is whole.
        let mut names = self
            .shared
            .wrapper_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match names.get(name) {
            Some(taken) if *taken != origin => Err(OperoError::invalid_config(
                "name",
                name,
                format!(
                    "already names another function on this pipeline ({}{}); one name caches one \
                     function, so give this one a name of its own",
                    taken.type_name,
                    taken
                        .location
                        .map(|l| format!(", wrapped at {l}"))
                        .unwrap_or_default()
                ),
            )),
            Some(_) => Ok(function),
            None => {
                names.insert(Arc::clone(name), origin);
                Ok(function)
            }
        }
    }
}

/// The error for a cached wrapper of a function that does not identify itself.
fn unidentified_error(function: &FunctionId<'_>) -> OperoError {
    OperoError::invalid_config(
        "name",
        "none",
        format!(
            "the cache is on and `{}`{} does not identify itself (a fn pointer, a dyn Fn, a \
             reference or a closure that captures state): give it a name, with the builder's \
             `.name(\"...\")` or `opero.named(\"...\")`, so that it never shares entries with \
             another function",
            function.type_name(),
            function
                .location()
                .map(|l| format!(" (at {l})"))
                .unwrap_or_default()
        ),
    )
}

/// Warns once per call site that a function without identity runs uncached.
fn warn_once_unidentified(function: &FunctionId<'_>) {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<(usize, usize)>>> =
        std::sync::OnceLock::new();
    let site = (
        function.type_name().as_ptr() as usize,
        function
            .location()
            .map_or(0, |l| l as *const Location<'_> as usize),
    );
    let first = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(site);
    if first {
        tracing::warn!(
            target: "opero",
            function = function.type_name(),
            at = %function.location().map(|l| l.to_string()).unwrap_or_default(),
            "the cache is on but this function does not identify itself (a fn pointer, a dyn Fn, \
             a reference or a closure that captures state): it runs uncached; name it with \
             `opero.named(\"...\")` to cache it"
        );
    }
}

/// A sync function wrapped by [`Opero::wrap`] or [`Opero::wrap_fallback`].
///
/// # Examples
///
/// ```
/// use opero_core::{NoCache, Opero};
///
/// let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
/// let parse = opero.wrap(|s: &str| s.parse::<u8>()).unwrap();
/// assert_eq!(parse.call("42").unwrap(), 42);
/// assert!(parse.call("x").is_err());
/// ```
pub struct Wrapped<C, K, P, F, V> {
    opero: Opero<C, K, P>,
    function: FunctionId<'static>,
    fallbacks: Fallbacks<V>,
    f: F,
}

impl<C, K, P, F, V> Wrapped<C, K, P, F, V>
where
    K: KeyFn,
{
    /// Calls the function through the pipeline.
    pub fn call<A, T, E>(&self, args: &A) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: Fn(&A, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.opero
            .call_attempts(self.function, args, self.fallbacks.as_slice(), |a, v| {
                (self.f)(a, v).map_err(AttemptError::Failed)
            })
    }

    /// The pipeline the function runs in.
    pub fn opero(&self) -> &Opero<C, K, P> {
        &self.opero
    }
}

/// An async function wrapped by [`Opero::wrap_async`] or [`Opero::wrap_fallback_async`].
///
/// # Examples
///
/// ```
/// use opero_core::{NoCache, Opero};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
/// let double = opero.wrap_async(|x: u64| async move { Ok::<_, String>(x * 2) }).unwrap();
/// assert_eq!(double.call(21).await.unwrap(), 42);
/// # }
/// ```
pub struct WrappedAsync<C, K, P, F, V> {
    opero: Opero<C, K, P>,
    function: FunctionId<'static>,
    fallbacks: Fallbacks<V>,
    f: F,
}

impl<C, K, P, F, V> WrappedAsync<C, K, P, F, V>
where
    K: KeyFn,
{
    /// Calls the function through the pipeline; each attempt gets clones of the arguments.
    pub async fn call<A, T, E, Fut>(&self, args: A) -> Result<T, AllFailedError<E>>
    where
        A: Clone,
        C: CacheFor<A, T>,
        F: Fn(A, V) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        V: Clone,
        P: RetryPolicy<E>,
        E: Display,
    {
        self.opero
            .call_attempts_async(
                self.function,
                &args,
                self.fallbacks.as_slice(),
                |a: &A, v: &V| {
                    let fut = (self.f)(a.clone(), v.clone());
                    async move { fut.await.map_err(AttemptError::Failed) }
                },
            )
            .await
    }

    /// The pipeline the function runs in.
    pub fn opero(&self) -> &Opero<C, K, P> {
        &self.opero
    }
}

// ===== impl OperoBuilder =====

/// Builds an [`Opero`]: every setter reads like the original's parameter of the same name.
///
/// # Default
///
/// [`OperoConfig::default`]: 3 retries, factor 1.5, 100 ms to 30 s with full jitter, no cache, no
/// rate limit.
///
/// # Examples
///
/// ```
/// use opero_core::{Opero, NoCache};
/// use std::time::Duration;
///
/// let opero = Opero::<NoCache>::builder()
///     .retries(5)
///     .backoff_factor(2.0)
///     .min_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(5))
///     .rate_limit(20.0)
///     .build()
///     .unwrap();
/// assert!(opero.rate_limiter().is_some());
///
/// let err = Opero::<NoCache>::builder().backoff_factor(f64::NAN).build().unwrap_err();
/// assert_eq!(err.field(), Some("retry.backoff_factor"));
/// ```
#[must_use]
pub struct OperoBuilder<C, K = StableKey, P = Backoff> {
    config: OperoConfig,
    cache: Option<C>,
    key_fn: K,
    policy: P,
    limiter: Option<Arc<dyn RateLimiter>>,
    name: Option<String>,
}

impl<C> OperoBuilder<C> {
    /// A builder from a config.
    pub fn from_config(config: OperoConfig) -> Self {
        OperoBuilder {
            policy: Backoff::unchecked(config.retry.clone()),
            config,
            cache: None,
            key_fn: StableKey,
            limiter: None,
            name: None,
        }
    }
}

impl<C, K, R> OperoBuilder<C, K, Backoff<R>> {
    fn retry_changed(mut self, change: impl FnOnce(&mut crate::config::RetryConfig)) -> Self {
        change(&mut self.config.retry);
        self.policy.set_config(self.config.retry.clone());
        self
    }

    /// Retries after the first attempt, per fallback value (0: one attempt). Default 3.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let opero = Opero::<NoCache>::builder().retries(2).min_delay(Duration::ZERO).build().unwrap();
    /// let mut calls = 0;
    /// let err = opero.run(|| { calls += 1; Err::<(), _>("down") }).unwrap_err();
    /// assert_eq!((calls, err.len()), (3, 3));
    /// ```
    pub fn retries(self, retries: u32) -> Self {
        self.retry_changed(|r| r.retries = retries)
    }

    /// Growth of the delay between retries, at least 1. Default 1.5.
    pub fn backoff_factor(self, factor: f64) -> Self {
        self.retry_changed(|r| r.backoff_factor = factor)
    }

    /// Delay before the first retry and floor of every delay. Default 100 ms.
    ///
    /// ```
    /// use opero_core::{Jitter, NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let opero = Opero::<NoCache>::builder()
    ///     .min_delay(Duration::from_millis(100))
    ///     .max_delay(Duration::from_millis(150))
    ///     .jitter(Jitter::None)
    ///     .build()
    ///     .unwrap();
    /// let delays: Vec<_> = opero.retry_policy().delays().collect();
    /// assert_eq!(delays, [100, 150, 150].map(Duration::from_millis));
    /// ```
    pub fn min_delay(self, delay: Duration) -> Self {
        self.retry_changed(|r| r.min_delay = delay)
    }

    /// Ceiling of every delay. Default 30 s.
    pub fn max_delay(self, delay: Duration) -> Self {
        self.retry_changed(|r| r.max_delay = delay)
    }

    /// Delay randomisation. Default [`Jitter::Full`].
    pub fn jitter(self, jitter: Jitter) -> Self {
        self.retry_changed(|r| r.jitter = jitter)
    }

    /// Which errors to retry: [`RetryOn::Always`](crate::RetryOn::Always) (the default),
    /// [`RetryOn::Never`](crate::RetryOn::Never), or a predicate on the function's error type,
    /// `|e: &MyError| ..` (see [`RetryPredicate`](crate::RetryPredicate)). A
    /// predicate on another type than the function's error does not compile.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let opero = Opero::<NoCache>::builder()
    ///     .min_delay(Duration::ZERO)
    ///     .retry_on(|e: &u16| *e >= 500)
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let _ = opero.run(|| { calls += 1; Err::<(), u16>(404) });
    /// assert_eq!(calls, 1, "a 404 is not retried");
    /// ```
    pub fn retry_on<R2>(self, retry_on: R2) -> OperoBuilder<C, K, Backoff<R2>> {
        OperoBuilder {
            policy: self.policy.with_retry_on(retry_on),
            config: self.config,
            cache: self.cache,
            key_fn: self.key_fn,
            limiter: self.limiter,
            name: self.name,
        }
    }
}

impl<C, K, P> OperoBuilder<C, K, P> {
    /// Replaces the built-in backoff with a policy of the user's (the retry settings then only
    /// serve validation).
    pub fn retry_policy<P2>(self, policy: P2) -> OperoBuilder<C, K, P2> {
        OperoBuilder {
            config: self.config,
            cache: self.cache,
            key_fn: self.key_fn,
            policy,
            limiter: self.limiter,
            name: self.name,
        }
    }

    /// Replaces the default key function.
    pub fn key_fn<K2: KeyFn>(self, key_fn: K2) -> OperoBuilder<C, K2, P> {
        OperoBuilder {
            config: self.config,
            cache: self.cache,
            key_fn,
            policy: self.policy,
            limiter: self.limiter,
            name: self.name,
        }
    }

    /// Turns the cache on or off. Default off.
    ///
    /// On a builder that starts without a cache type (`NoCache<D>`, as the facade's `opero()`
    /// does), this switches the builder to the backend `D`; from then on values and arguments
    /// need what caching needs (serde, `Clone`). On `Opero::<NoCache>::builder()` it does not
    /// compile: that pipeline type has nowhere to cache.
    pub fn cache(mut self, enabled: bool) -> OperoBuilder<C::On, K, P>
    where
        C: CacheSwitch,
    {
        self.config.cache.enabled = enabled;
        OperoBuilder {
            cache: self.cache.and_then(CacheSwitch::switch),
            config: self.config,
            key_fn: self.key_fn,
            policy: self.policy,
            limiter: self.limiter,
            name: self.name,
        }
    }

    /// Turns the cache on with this backend instance (a later `.cache(false)` turns it off
    /// again).
    pub fn cache_backend(self, cache: C::On) -> OperoBuilder<C::On, K, P>
    where
        C: CacheSwitch,
    {
        let mut on = self.cache(true);
        on.cache = Some(cache);
        on
    }

    /// How long entries live. Default: until evicted. A TTL past the clock's end never expires.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let builder = Opero::<NoCache>::builder().cache_ttl(Duration::from_secs(300));
    /// assert_eq!(builder.config().cache.ttl, Some(Duration::from_secs(300)));
    /// ```
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.cache.ttl = Some(ttl);
        self
    }

    /// The cache namespace. Default `"opero"`.
    pub fn cache_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.cache.namespace = namespace.into();
        self
    }

    /// The cache backend by name (`"memory"`, `"disk"`, `"redis"`), for backends that choose by name.
    pub fn cache_backend_name(mut self, backend: impl Into<String>) -> Self {
        self.config.cache.backend = backend.into();
        self
    }

    /// A backend-specific option.
    pub fn cache_option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .cache
            .backend_options
            .insert(name.into(), value.into());
        self
    }

    /// The whole cache section. Like [`cache`](Self::cache), it gives a builder without a
    /// cache type its backend type `D`.
    pub fn cache_config(self, cache: CacheConfig) -> OperoBuilder<C::On, K, P>
    where
        C: CacheSwitch,
    {
        let enabled = cache.enabled;
        let mut switched = self.cache(enabled);
        switched.config.cache = cache;
        switched
    }

    /// Limits attempts to `rate` per second (burst 1 unless set). Default: no limit. A cache hit
    /// takes no permit.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero, RateLimiter};
    ///
    /// let opero = Opero::<NoCache>::builder().rate_limit(10.0).burst(2).build().unwrap();
    /// let limiter = opero.rate_limiter().unwrap();
    /// assert!(limiter.try_acquire() && limiter.try_acquire());
    /// assert!(!limiter.try_acquire(), "the burst of two is spent");
    /// let err = Opero::<NoCache>::builder().rate_limit(0.0).build().unwrap_err();
    /// assert_eq!(err.field(), Some("rate_limit.rate"));
    /// ```
    pub fn rate_limit(mut self, rate: f64) -> Self {
        self.config.rate_limit.rate = Some(rate);
        self
    }

    /// Permits available at once after an idle spell. Default 1.
    pub fn burst(mut self, burst: u32) -> Self {
        self.config.rate_limit.burst = burst;
        self
    }

    /// The whole rate-limit section.
    pub fn rate_limit_config(mut self, rate_limit: RateLimitConfig) -> Self {
        self.config.rate_limit = rate_limit;
        self
    }

    /// Uses this limiter, shared with whoever else holds it, instead of building one.
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Names the function for its cache keys (recommended for disk and Redis: the entries then
    /// survive edits of the surrounding code, and needed for a callable that does not identify
    /// itself, see [`FunctionId`]).
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    ///
    /// let opero = Opero::<NoCache>::builder().name("geocode").build().unwrap();
    /// assert_eq!(opero.name(), Some("geocode"));
    /// let err = Opero::<NoCache>::builder().name("").build().unwrap_err();
    /// assert_eq!(err.field(), Some("name"));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The config as set so far.
    pub fn config(&self) -> &OperoConfig {
        &self.config
    }

    /// Validates and builds, building the backend from the cache config when none was given.
    pub fn build(self) -> Result<Opero<C, K, P>, OperoError>
    where
        C: BuildCache,
    {
        self.build_with(C::build)
    }

    /// Builds the pipeline and wraps `f` into a callable whose arguments make the cache key: the
    /// Rust counterpart of the `@opero` decorator.
    ///
    /// ```
    /// use opero_core::{Opero, NoCache};
    /// use std::time::Duration;
    ///
    /// let double = Opero::<NoCache>::builder()
    ///     .retries(1)
    ///     .min_delay(Duration::ZERO)
    ///     .wrap(|x: &i64| Ok::<_, String>(x * 2))
    ///     .unwrap();
    /// assert_eq!(double.call(&21).unwrap(), 42);
    /// ```
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn wrap<A, T, E, F>(
        self,
        f: F,
    ) -> Result<Wrapped<C, K, P, impl Fn(&A, &()) -> Result<T, E>, ()>, OperoError>
    where
        C: BuildCache,
        A: ?Sized,
        F: Fn(&A) -> Result<T, E>,
    {
        self.build()?.wrap(f)
    }

    /// Builds the pipeline and wraps `f`, which takes the arguments and one fallback value.
    #[track_caller]
    pub fn wrap_fallback<A, V, T, E, F>(
        self,
        fallbacks: Fallbacks<V>,
        f: F,
    ) -> Result<Wrapped<C, K, P, F, V>, OperoError>
    where
        C: BuildCache,
        A: ?Sized,
        F: Fn(&A, &V) -> Result<T, E>,
    {
        self.build()?.wrap_fallback(fallbacks, f)
    }

    /// Builds the pipeline and wraps an async function of owned arguments.
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn wrap_async<A, T, E, F, Fut>(
        self,
        f: F,
    ) -> Result<WrappedAsync<C, K, P, impl Fn(A, ()) -> Fut, ()>, OperoError>
    where
        C: BuildCache,
        F: Fn(A) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.build()?.wrap_async(f)
    }

    /// Builds the pipeline and wraps an async function of owned arguments and one fallback value.
    #[track_caller]
    pub fn wrap_fallback_async<A, V, T, E, F, Fut>(
        self,
        fallbacks: Fallbacks<V>,
        f: F,
    ) -> Result<WrappedAsync<C, K, P, F, V>, OperoError>
    where
        C: BuildCache,
        F: Fn(A, V) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.build()?.wrap_fallback_async(fallbacks, f)
    }

    /// Validates and builds with a backend given by [`cache_backend`](Self::cache_backend) (no
    /// backend: no cache).
    pub fn build_with_given_cache(self) -> Result<Opero<C, K, P>, OperoError> {
        self.build_with(|_| {
            Err(OperoError::invalid_config(
                "cache.backend",
                "none given",
                "caching is enabled but no backend instance was passed",
            ))
        })
    }

    fn build_with(
        self,
        make: impl FnOnce(&CacheConfig) -> Result<C, OperoError>,
    ) -> Result<Opero<C, K, P>, OperoError> {
        self.config.validate()?;
        if let Some(name) = &self.name {
            if name.is_empty() {
                return Err(OperoError::invalid_config("name", "", "must not be empty"));
            }
        }
        let cache = match (self.config.cache.enabled, self.cache) {
            (false, _) => None,
            (true, Some(cache)) => Some(cache),
            (true, None) => Some(make(&self.config.cache)?),
        };
        let limiter = match (self.limiter, self.config.rate_limit.rate) {
            (Some(shared), _) => Some(shared),
            (None, Some(_)) => {
                Some(Arc::new(TokenBucket::new(&self.config.rate_limit)?) as Arc<dyn RateLimiter>)
            }
            (None, None) => None,
        };
        Ok(Opero {
            shared: Arc::new(Shared {
                cache,
                cache_config: self.config.cache,
                key_fn: self.key_fn,
                policy: self.policy,
                limiter,
                metrics: Arc::new(Metrics::default()),
                flights: Flights::default(),
                wrapper_names: Default::default(),
            }),
            name: self.name.map(Arc::from),
        })
    }
}
