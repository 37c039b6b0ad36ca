//! [`Opero`]: one configured pipeline (cache → fallback → retry → rate limit → call), its builder,
//! and the callables it wraps functions into.

use std::fmt::{self, Display};
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::breaker::{BreakerConfig, Breakers, CircuitBreaker};
use crate::bulkhead::{Bulkhead, BulkheadConfig};
use crate::cache::{
    BuildCache, CacheBackend, CacheFor, CacheSwitch, FlightLease, FlightStart, KeyScope,
};
use crate::config::{CacheConfig, OperoConfig, RateLimitConfig};
use crate::error::{AllFailedError, AttemptError, OperoError};
use crate::flight::{Flights, Join};
use crate::hedge::HedgeConfig;
use crate::key::{CacheKey, FunctionId, KeyFn, StableKey};
use crate::metrics::{Counters, Metrics, MetricsSnapshot};
use crate::pipeline::{Attempts, Guards, Limits};
use crate::rate_limit::{RateLimiter, TokenBucket};
use crate::retry::{Backoff, CustomPolicy, Jitter, OkPolicy, RetryPolicy};

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

/// The outcome of one attempt of a typed form: the user's error as [`AttemptError::Failed`], an
/// `Ok` that `retry_if_ok` turns into an error as [`AttemptError::RejectedOk`].
#[inline(always)]
fn checked<P: OkPolicy<T, E>, T, E>(
    policy: &P,
    result: Result<T, E>,
) -> Result<T, AttemptError<E>> {
    match result {
        Ok(value) => policy.check_ok(value).map_err(AttemptError::RejectedOk),
        Err(e) => Err(AttemptError::Failed(e)),
    }
}

/// The single value used when a call has no fallback list.
const NO_FALLBACK: &[()] = &[()];

struct Shared<C, K, P> {
    cache: Option<C>,
    cache_config: CacheConfig,
    /// The namespace's key fingerprint, computed once: every key starts with it.
    namespace_fingerprint: u128,
    key_fn: K,
    policy: P,
    limiter: Option<Arc<dyn RateLimiter>>,
    limits: Limits,
    /// Circuit breakers, bulkhead and hedging; boxed and absent when none is set, so the plain
    /// pipeline stays as small and as fast as before.
    guards: Option<Box<Guards>>,
    /// No cache and no guards: one flag for the no-fault path to test.
    plain: bool,
    /// No cache and no limiter: the async first attempt can run inline, holding nothing but the
    /// user's future (and the timer of a time bound, made only if it waits), and what the
    /// guards gave it (a slot, a closed breaker's leave).
    inline_async: InlineAsync,
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
    name: Option<Name>,
}

/// A function name and its key fingerprint, computed once per name rather than per call.
#[derive(Clone, Debug)]
struct Name {
    text: Arc<str>,
    fingerprint: u128,
}

impl Name {
    fn new(text: Arc<str>) -> Self {
        Name {
            fingerprint: crate::key::name_fingerprint(&text),
            text,
        }
    }
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
            .field("name", &self.name())
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

    /// The circuit breaker of fallback position `index` (0 for a call without fallbacks), when
    /// breakers are on: shared by every clone, so its [`state`](CircuitBreaker::state) is the
    /// one every call sees.
    pub fn circuit_breaker(&self, index: usize) -> Option<&CircuitBreaker> {
        self.shared
            .guards
            .as_ref()
            .and_then(|g| g.breakers.as_ref())
            .map(|b| b.get(index))
    }

    /// The bulkhead, when one is set.
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        self.shared
            .guards
            .as_ref()
            .and_then(|g| g.bulkhead.as_ref())
    }

    /// Whether a circuit breaker, a bulkhead or hedging is set: every attempt must then go
    /// through the pipeline (an executor may run a first attempt outside it otherwise).
    pub fn guarded(&self) -> bool {
        self.shared.guards.is_some()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &P {
        &self.shared.policy
    }

    /// The whole call's time budget ([`OperoBuilder::deadline`]), if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.shared.limits.deadline
    }

    /// The async forms' per-attempt timeout ([`OperoBuilder::attempt_timeout`]), if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.shared.limits.attempt_timeout
    }

    /// The function name given with [`OperoBuilder::name`] or [`Opero::named`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(|n| &*n.text)
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
            name: Some(Name::new(name.into())),
        }
    }

    /// The function a call is cached under: this pipeline's name when it has one, else the
    /// callable's own identity.
    #[inline]
    fn function_or_name<'f>(&'f self, function: FunctionId<'f>) -> FunctionId<'f> {
        match &self.name {
            Some(name) => self.name_id(name),
            None => function,
        }
    }

    /// The identity of this pipeline's name.
    #[inline]
    fn name_id<'f>(&'f self, name: &'f Name) -> FunctionId<'f> {
        FunctionId::named_with_fingerprint(&name.text, name.fingerprint)
    }

    /// The pipeline's counters under this clone's name.
    #[inline(always)]
    fn counters(&self) -> Counters<'_> {
        Counters {
            counters: &self.shared.metrics,
            pipeline: self.name.as_ref().map(|n| &n.text),
        }
    }

    fn attempts(&self) -> Attempts<'_, P> {
        Attempts {
            policy: &self.shared.policy,
            limiter: self.shared.limiter.as_deref(),
            metrics: Some(self.counters()),
            limits: self.shared.limits,
            guards: self.shared.guards.as_deref(),
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
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, &(), NO_FALLBACK, |_, _| {
            checked(&self.shared.policy, f())
        })
    }

    /// The async form of [`run`](Opero::run). The closure may borrow from the caller.
    #[inline]
    #[track_caller]
    pub fn run_async<'a, T, E, F, Fut>(
        &'a self,
        mut f: F,
    ) -> impl Future<Output = Result<T, AllFailedError<E>>> + 'a
    where
        C: CacheFor<(), T>,
        F: FnMut() -> Fut + 'a,
        Fut: Future<Output = Result<T, E>> + 'a,
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display + 'a,
        T: 'a,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts_async(function, &(), NO_FALLBACK, move |_, _| {
            Checked::new(&self.shared.policy, f())
        })
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
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, &(), fallbacks.as_slice(), |_, v| {
            checked(&self.shared.policy, f(v))
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
        Fut: Future<Output = Result<T, E>> + 'a,
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display + 'a,
        T: 'a,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts_async(function, &(), fallbacks.as_slice(), move |_, v: &V| {
            Checked::new(&self.shared.policy, f(v.clone()))
        })
    }

    /// Looks `args` up in the cache; on a miss runs `f(args)` with retries and rate limiting and
    /// caches a success.
    #[track_caller]
    pub fn call<A, T, E, F>(&self, args: &A, mut f: F) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: FnMut(&A) -> Result<T, E>,
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, args, NO_FALLBACK, |a, _| {
            checked(&self.shared.policy, f(a))
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
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        async move {
            self.call_attempts_async(function, &args, NO_FALLBACK, |a: &A, _| {
                Checked::new(&self.shared.policy, f(a.clone()))
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
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        self.call_attempts(function, args, fallbacks.as_slice(), |a, v| {
            checked(&self.shared.policy, f(a, v))
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
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display,
    {
        let function = self.identity_of::<F>(Location::caller());
        async move {
            self.call_attempts_async(function, &args, fallbacks.as_slice(), |a: &A, v: &V| {
                Checked::new(&self.shared.policy, f(a.clone(), v.clone()))
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
        // Inlined up to here, so that an uncached, unguarded call costs the bare attempt loop.
        if self.shared.plain {
            return self.attempts().run_sync_unguarded(values, |v| f(args, v));
        }
        if self.shared.cache.is_none() {
            // Without the identity, which only a cache reads, and inline: behind the plain
            // path's branch, the guarded one costs the bare path nothing, and a frame of its own
            // cost the guarded call a third of its time.
            return self.call_guarded(args, values, f);
        }
        // By reference: the identity was just written field by field, and reading it back whole
        // to copy it stalls on those stores.
        self.call_guarded_or_cached(&function, args, values, f)
    }

    /// [`call_attempts`](Self::call_attempts) with guards and no cache: the guards and the first
    /// attempt inline, the attempt loop out of line behind its failure.
    #[inline]
    fn call_guarded<A, V, T, E, F>(
        &self,
        args: &A,
        values: &[V],
        mut f: F,
    ) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        F: FnMut(&A, &V) -> Result<T, AttemptError<E>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let attempts = self.attempts();
        match attempts.guards {
            Some(guards) => attempts.run_sync_guarded(guards, values, |v| f(args, v)),
            None => attempts.run_sync(values, |v| f(args, v)),
        }
    }

    /// [`call_attempts`](Self::call_attempts) with a cache, guards or both.
    #[inline(never)]
    fn call_guarded_or_cached<A, V, T, E, F>(
        &self,
        function: &FunctionId<'_>,
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
        match &self.shared.cache {
            None => self.attempts().run_sync(values, |v| f(args, v)),
            Some(cache) => self.call_cached(cache, function, args, values, f),
        }
    }

    /// [`call_attempts`](Self::call_attempts) with a cache: the hit, kept short (the miss and its
    /// single-flight bookkeeping live in [`call_missed`](Self::call_missed)).
    #[inline(always)]
    fn call_cached<A, V, T, E, F>(
        &self,
        cache: &C,
        function: &FunctionId<'_>,
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
        let named;
        let function = match &self.name {
            Some(name) => {
                named = self.name_id(name);
                &named
            }
            None => function,
        };
        let Some(key) = self.make_key(function, |ns| {
            C::key_hash(
                &self.shared.key_fn,
                ns,
                self.shared.namespace_fingerprint,
                function,
                args,
            )
        }) else {
            return self.attempts().run_sync(values, |v| f(args, v));
        };
        match cache.lookup(&key) {
            Ok(Some(hit)) => {
                self.on_hit(&key);
                Ok(hit)
            }
            looked_up => self.call_missed(cache, &key, looked_up, args, values, f),
        }
    }

    /// A cached call that missed (or whose lookup failed): single-flight in this process and
    /// across processes, the work, and the store of its value.
    #[inline(never)]
    fn call_missed<A, V, T, E, F>(
        &self,
        cache: &C,
        key: &CacheKey<'_>,
        looked_up: Result<Option<T>, OperoError>,
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
        let key = *key;
        let backend_up = match looked_up {
            Ok(Some(hit)) => return Ok(hit),
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
                // Other processes: the backend's own flight, when it has one.
                let lease = if backend_up {
                    let start = cache.flight_begin(&key);
                    let looked_up = match &start {
                        Ok(FlightStart::Lead(lease)) if lease.entry_absent() => Ok(None),
                        Ok(FlightStart::Lead(_) | FlightStart::Waited) => cache.lookup(&key),
                        _ => Ok(None),
                    };
                    match self.after_flight_begin(&key, start, looked_up) {
                        Ok(hit) => {
                            guard.finish_with(|| Some(C::share(&hit.0)));
                            if let Some(lease) = hit.1 {
                                self.end_flight(&key, cache.flight_end(&key, lease));
                            }
                            return Ok(hit.0);
                        }
                        Err(lease) => lease,
                    }
                } else {
                    None
                };
                // Released on every way out, a panic of the work included: other processes
                // then run their own call at once instead of waiting out the lock's expiry.
                let release = lease.map(|lease| {
                    OnDrop(Some(|| {
                        self.end_flight(&key, cache.flight_end(&key, lease))
                    }))
                });
                let result = run();
                drop(release);
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
    #[inline]
    pub fn call_attempts_async<'a, A, V, T, E, F, Fut>(
        &'a self,
        function: FunctionId<'a>,
        args: &'a A,
        values: &'a [V],
        mut f: F,
    ) -> impl Future<Output = Result<T, AllFailedError<E>>> + 'a
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: FnMut(&A, &V) -> Fut + 'a,
        Fut: Future<Output = Result<T, AttemptError<E>>> + 'a,
        P: RetryPolicy<E>,
        E: Display + 'a,
        T: 'a,
    {
        self.counters().call();
        match &self.shared.cache {
            // Without a cache the future is the bare attempt loop's. The cached path's state is
            // several times larger and goes to the heap, so that the uncached future every
            // caller holds and moves stays small; a cached call does I/O or a lookup that
            // outweighs one allocation.
            None => Either::Left {
                inner: Uncached::new(
                    self,
                    values,
                    move |v| f(args, v),
                    |attempts: Attempts<'a, P>, values: &'a [V], f, start| {
                        attempts.run_async_boxed(values, f, start)
                    },
                ),
            },
            Some(cache) => Either::Right {
                inner: Box::pin(self.call_cached_async(cache, function, args, values, f)),
            },
        }
    }

    /// [`call_attempts_async`](Self::call_attempts_async) with a cache.
    async fn call_cached_async<A, V, T, E, F, Fut>(
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
        F: FnMut(&A, &V) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        P: RetryPolicy<E>,
        E: Display,
    {
        let function = self.function_or_name(function);
        let Some(key) = self.make_key(&function, |ns| {
            C::key_hash(
                &self.shared.key_fn,
                ns,
                self.shared.namespace_fingerprint,
                &function,
                args,
            )
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
        let lease = if leader.is_some() && backend_up {
            let start = cache.flight_begin_async(&key).await;
            let looked_up = match &start {
                Ok(FlightStart::Lead(lease)) if lease.entry_absent() => Ok(None),
                Ok(FlightStart::Lead(_) | FlightStart::Waited) => cache.lookup_async(&key).await,
                _ => Ok(None),
            };
            match self.after_flight_begin(&key, start, looked_up) {
                Ok((hit, lease)) => {
                    if let Some(guard) = leader {
                        guard.finish_with(|| Some(C::share(&hit)));
                    }
                    if let Some(lease) = lease {
                        self.end_flight(&key, cache.flight_end_async(&key, lease).await);
                    }
                    return Ok(hit);
                }
                Err(lease) => lease,
            }
        } else {
            None
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
        if let Some(lease) = lease {
            self.end_flight(&key, cache.flight_end_async(&key, lease).await);
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
    ///
    /// The key is the one the pipeline's calls use: the stable [`KeyFn::hash`], or for a memory
    /// backend ([`CacheBackend::LOCAL_KEYS`]) the process-local [`KeyFn::hash_local`].
    pub fn key<'k, A: Serialize + ?Sized>(
        &'k self,
        function: &'k FunctionId<'k>,
        args: &A,
    ) -> Option<CacheKey<'k>>
    where
        C: KeyScope,
    {
        let key_fn = &self.shared.key_fn;
        let ns_fp = self.shared.namespace_fingerprint;
        self.make_key(function, |ns| {
            if C::LOCAL {
                key_fn.hash_local(ns, ns_fp, function, args)
            } else {
                key_fn.hash_prepared(ns, ns_fp, function, args)
            }
        })
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
        function: &'k FunctionId<'k>,
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

    /// What a backend's flight across processes decided, given the lookup made after it (for a
    /// leader or a waiter): `Ok((value, lease))` when that lookup hit, else `Err(lease)`, the
    /// lease to end once the work ran (`None` when this process does not lead).
    #[allow(clippy::type_complexity)]
    fn after_flight_begin<T>(
        &self,
        key: &CacheKey<'_>,
        start: Result<FlightStart, OperoError>,
        looked_up: Result<Option<T>, OperoError>,
    ) -> Result<(T, Option<FlightLease>), Option<FlightLease>> {
        let lease = match start {
            Ok(FlightStart::Off) => return Err(None),
            Ok(FlightStart::Lead(lease)) => Some(lease),
            Ok(FlightStart::Waited) => None,
            Err(e) => {
                self.on_backend_error("flight", key, &e);
                return Err(None);
            }
        };
        match looked_up {
            // Another process's value: its flight ended (or ended just before ours began).
            Ok(Some(hit)) => {
                self.shared.metrics.coalesced();
                Ok((hit, lease))
            }
            Ok(None) => Err(lease),
            Err(e) => {
                self.on_backend_error("get", key, &e);
                Err(lease)
            }
        }
    }

    fn end_flight(&self, key: &CacheKey<'_>, ended: Result<(), OperoError>) {
        if let Err(e) = ended {
            self.on_backend_error("flight_end", key, &e);
        }
    }

    #[cold]
    fn on_unidentified(&self, function: &FunctionId<'_>) {
        self.counters().unidentified();
        warn_once_unidentified(function);
    }

    #[inline(always)]
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
        self.check_sync()?;
        self.refuse_hedge_for_sync()?;
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
        self.check_sync()?;
        self.refuse_hedge_for_sync()?;
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

    /// Refuses settings a sync form cannot honour: `retry.attempt_timeout`, since a blocking
    /// call cannot be preempted. The sync forms call it when wrapping; an executor that runs
    /// blocking attempts itself can call it when it is built.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let opero = Opero::<NoCache>::builder().attempt_timeout(Duration::from_secs(1)).build().unwrap();
    /// assert_eq!(opero.check_sync().unwrap_err().field(), Some("retry.attempt_timeout"));
    /// let err = opero.wrap(|x: &u32| Ok::<_, String>(*x)).err().unwrap();
    /// assert_eq!(err.field(), Some("retry.attempt_timeout"));
    /// ```
    pub fn check_sync(&self) -> Result<(), OperoError> {
        match self.shared.limits.attempt_timeout {
            None => Ok(()),
            Some(timeout) => Err(OperoError::invalid_config(
                "retry.attempt_timeout",
                humantime::format_duration(timeout),
                "a sync call cannot be preempted, so it cannot be bounded per attempt; use the \
                 async forms (or opmap's process mode and its `timeout`), or bound the whole \
                 call with retry.deadline, which the sync forms check between attempts",
            )),
        }
    }

    /// A sync wrapper of a hedged pipeline is refused: a blocking call cannot run two attempts
    /// side by side.
    fn refuse_hedge_for_sync(&self) -> Result<(), OperoError> {
        match self.shared.guards.as_ref().and_then(|g| g.hedge) {
            None => Ok(()),
            Some(hedge) => Err(OperoError::invalid_config(
                "hedge",
                format!("{:?} × {}", hedge.delay, hedge.max_hedges),
                "hedging needs an async form (wrap_async, run_async, call_async): a blocking \
                 call cannot run two attempts side by side",
            )),
        }
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
        let Some(Name { text: name, .. }) = &self.name else {
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
                &**name,
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

/// Runs its closure when dropped, unwinding included.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
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
    #[inline]
    pub fn call<A, T, E>(&self, args: &A) -> Result<T, AllFailedError<E>>
    where
        A: ?Sized,
        C: CacheFor<A, T>,
        F: Fn(&A, &V) -> Result<T, E>,
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display,
    {
        let opero = &self.opero;
        let f = |a: &A, v: &V| checked(&opero.shared.policy, (self.f)(a, v));
        let values = self.fallbacks.as_slice();
        if opero.shared.plain {
            // The plain path of `call_attempts`, taken here so that the function's identity (five
            // words the plain path never reads) is not copied into the call.
            opero.counters().call();
            return opero.attempts().run_sync_unguarded(values, |v| f(args, v));
        }
        opero.call_attempts(self.function, args, values, f)
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
    ///
    /// The future borrows the wrapper, owns the arguments, and does nothing until polled.
    #[inline]
    pub fn call<'s, A, T, E, Fut>(
        &'s self,
        args: A,
    ) -> impl Future<Output = Result<T, AllFailedError<E>>> + 's
    where
        A: Clone + 's,
        C: CacheFor<A, T>,
        F: Fn(A, V) -> Fut,
        Fut: Future<Output = Result<T, E>> + 's,
        V: Clone,
        P: RetryPolicy<E> + OkPolicy<T, E>,
        E: Display + 's,
        T: 's,
    {
        let opero = &self.opero;
        let values = self.fallbacks.as_slice();
        opero.counters().call();
        match &opero.shared.cache {
            // What `call_attempts_async` does, with the arguments owned by the attempt's closure
            // rather than by an `async` block around the pipeline's future: one state fewer.
            None => Either::Left {
                inner: Uncached::new(
                    opero,
                    values,
                    // Only the wrapper and the arguments are captured: the pipeline is reached
                    // through the wrapper, keeping the closure (held by the future) two words.
                    move |v: &V| {
                        Checked::new(&self.opero.shared.policy, (self.f)(args.clone(), v.clone()))
                    },
                    |attempts: Attempts<'s, P>, values: &'s [V], f, start| {
                        attempts.run_async_boxed(values, f, start)
                    },
                ),
            },
            Some(cache) => Either::Right {
                inner: Box::pin(async move {
                    let f = |a: &A, v: &V| {
                        Checked::new(&opero.shared.policy, (self.f)(a.clone(), v.clone()))
                    };
                    opero
                        .call_cached_async(cache, self.function, &args, values, f)
                        .await
                }),
            },
        }
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
    limiter_backend: Option<BuildLimiter>,
    name: Option<String>,
}

/// Builds the shared rate limiter of a [`RateLimitConfig`] whose backend is not `"local"` (see
/// [`OperoBuilder::rate_limiter_backend`]); the facade's is `opero::build_rate_limiter`.
pub type BuildLimiter = fn(&RateLimitConfig) -> Result<Arc<dyn RateLimiter>, OperoError>;

impl<C> OperoBuilder<C> {
    /// A builder from a config.
    pub fn from_config(config: OperoConfig) -> Self {
        OperoBuilder {
            policy: Backoff::unchecked(config.retry.clone()),
            config,
            cache: None,
            key_fn: StableKey,
            limiter: None,
            limiter_backend: None,
            name: None,
        }
    }
}

impl<C, K, R, H, O> OperoBuilder<C, K, Backoff<R, H, O>> {
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
    pub fn retry_on<R2>(self, retry_on: R2) -> OperoBuilder<C, K, Backoff<R2, H, O>> {
        OperoBuilder {
            policy: self.policy.with_retry_on(retry_on),
            config: self.config,
            cache: self.cache,
            key_fn: self.key_fn,
            limiter: self.limiter,
            limiter_backend: self.limiter_backend,
            name: self.name,
        }
    }

    /// A server's hint of the least delay before the next attempt, read from the function's
    /// error: `|e: &MyError| e.retry_after` (see [`RetryHint`](crate::RetryHint)). Default: none.
    ///
    /// It sits in the retry step and only sets *how long* to wait: the delay is the backoff's
    /// (jitter applied) raised to the hint, capped by `max_delay` and by the
    /// [`deadline`](Self::deadline). `retry_on` and `retries` still decide *whether* to retry,
    /// and a crashed or timed-out attempt keeps the backoff's delay.
    ///
    /// ```
    /// use opero_core::{Jitter, NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// struct Busy { retry_after: Option<Duration> }
    /// impl std::fmt::Display for Busy {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("busy") }
    /// }
    /// let opero = Opero::<NoCache>::builder()
    ///     .retries(1)
    ///     .min_delay(Duration::ZERO)
    ///     .max_delay(Duration::from_millis(20))
    ///     .jitter(Jitter::None)
    ///     .retry_after(|e: &Busy| e.retry_after)
    ///     .build()
    ///     .unwrap();
    /// let start = std::time::Instant::now();
    /// let mut calls = 0;
    /// let _ = opero.run(|| { calls += 1; Err::<(), _>(Busy { retry_after: Some(Duration::from_secs(60)) }) });
    /// assert_eq!(calls, 2);
    /// assert!(start.elapsed() >= Duration::from_millis(20), "the hint waited, capped by max_delay");
    /// ```
    pub fn retry_after<H2>(self, hint: H2) -> OperoBuilder<C, K, Backoff<R, H2, O>> {
        OperoBuilder {
            policy: self.policy.with_retry_after(hint),
            config: self.config,
            cache: self.cache,
            key_fn: self.key_fn,
            limiter: self.limiter,
            limiter_backend: self.limiter_backend,
            name: self.name,
        }
    }

    /// Retries a success that is really a failure: `check` gets each `Ok` value and returns it
    /// (accepted) or the function's own error, which can carry the value (see
    /// [`OkCheck`](crate::OkCheck)). Default: every `Ok` is accepted.
    ///
    /// It sits in the retry step, right after the call: a rejected value becomes
    /// [`AttemptError::RejectedOk`] and is retried as any failure is, through `retry_on`, the
    /// server hint ([`retry_after`](Self::retry_after)), the backoff and the deadline. When
    /// every attempt ends so, the error's [`last_error`](AllFailedError::last_error) is the last
    /// rejection, value included. A check whose value or error type is not the function's does
    /// not compile. It applies to the typed forms (`run`, `call`, their `_fallback` and
    /// `_async` forms, the wrappers), not to the general `*_attempts` forms, where an executor
    /// reports outcomes itself.
    ///
    /// ```
    /// use opero_core::{AttemptError, NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// #[derive(Debug)]
    /// struct Page { status: u16, body: &'static str }
    /// #[derive(Debug)]
    /// enum Error { Unavailable(Page) }
    /// impl std::fmt::Display for Error {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
    /// }
    ///
    /// let opero = Opero::<NoCache>::builder()
    ///     .retries(2)
    ///     .min_delay(Duration::ZERO)
    ///     .retry_if_ok(|p: Page| if p.status == 503 { Err(Error::Unavailable(p)) } else { Ok(p) })
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let page = opero.run(|| {
    ///     calls += 1;
    ///     Ok::<_, Error>(if calls < 3 { Page { status: 503, body: "busy" } } else { Page { status: 200, body: "hello" } })
    /// });
    /// assert_eq!(page.unwrap().body, "hello");
    ///
    /// let err = opero.run(|| Ok::<_, Error>(Page { status: 503, body: "still busy" })).unwrap_err();
    /// assert!(matches!(err.attempts()[2].error, AttemptError::RejectedOk(_)));
    /// let Some(Error::Unavailable(last)) = err.into_last_error() else { panic!() };
    /// assert_eq!(last.body, "still busy", "the last rejected value is kept");
    /// ```
    pub fn retry_if_ok<O2>(self, check: O2) -> OperoBuilder<C, K, Backoff<R, H, O2>> {
        OperoBuilder {
            policy: self.policy.with_retry_if_ok(check),
            config: self.config,
            cache: self.cache,
            key_fn: self.key_fn,
            limiter: self.limiter,
            limiter_backend: self.limiter_backend,
            name: self.name,
        }
    }
}

impl<C, K, P> OperoBuilder<C, K, P> {
    /// Replaces the built-in backoff with a policy of the user's, stored as a [`CustomPolicy`]
    /// (the backoff settings then only serve validation; `deadline` and `attempt_timeout` still
    /// apply, and every `Ok` value is accepted).
    pub fn retry_policy<P2>(self, policy: P2) -> OperoBuilder<C, K, CustomPolicy<P2>> {
        OperoBuilder {
            config: self.config,
            cache: self.cache,
            key_fn: self.key_fn,
            policy: CustomPolicy(policy),
            limiter: self.limiter,
            limiter_backend: self.limiter_backend,
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
            limiter_backend: self.limiter_backend,
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
            limiter_backend: self.limiter_backend,
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

    /// Builds the limiter of a config whose `rate_limit.backend` is not `"local"` with `build`.
    /// Without one, such a config is refused when the pipeline is built (field
    /// `rate_limit.backend`). The facade's `opero()` and `opmap()` builders install
    /// `opero::build_rate_limiter`, which knows `"redis"` with its `redis` feature.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero, OperoError, RateLimitConfig, RateLimiter, TokenBucket};
    /// use std::sync::Arc;
    ///
    /// fn build(config: &RateLimitConfig) -> Result<Arc<dyn RateLimiter>, OperoError> {
    ///     // A backend of one's own; here a local bucket under another name.
    ///     let local = RateLimitConfig { backend: "local".into(), backend_options: Default::default(), ..config.clone() };
    ///     Ok(Arc::new(TokenBucket::new(&local)?))
    /// }
    /// let config = RateLimitConfig::per_second(5.0).with_backend("mine", []);
    /// let err = Opero::<NoCache>::builder().rate_limit_config(config.clone()).build().unwrap_err();
    /// assert_eq!(err.field(), Some("rate_limit.backend"));
    /// let opero = Opero::<NoCache>::builder()
    ///     .rate_limit_config(config)
    ///     .rate_limiter_backend(build)
    ///     .build()
    ///     .unwrap();
    /// assert!(opero.rate_limiter().is_some());
    /// ```
    pub fn rate_limiter_backend(mut self, build: BuildLimiter) -> Self {
        self.limiter_backend = Some(build);
        self
    }

    /// Uses this limiter, shared with whoever else holds it, instead of building one.
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The whole call's time budget, across every fallback value and every retry. Default: none.
    ///
    /// It sits outside the fallback and retry steps (inside the cache: a hit never meets it).
    /// No backoff delay or rate-limit wait runs past it: a retry whose delay would cross it is
    /// not started, and no further fallback value is tried once it has passed; the call then
    /// ends at once with an [`AllFailedError`] whose
    /// [`ended_by_deadline`](AllFailedError::ended_by_deadline) gives the deadline. In the async
    /// forms an attempt still running when it passes is cut
    /// ([`AttemptError::DeadlineExceeded`]); the sync forms check it between attempts (a
    /// blocking attempt cannot be cut). Zero is refused, naming `retry.deadline`.
    ///
    /// With [`hedge`](Self::hedge) it bounds the whole hedged race: no hedge starts that the
    /// deadline would overtake, and when it passes every racing attempt is cut.
    ///
    /// The async forms read the clock lazily: without a rate limiter, the deadline (like an
    /// attempt timeout's timer) starts at the first attempt's first wait, or at its failure, so
    /// that a call that completes in one poll reads no clock. Work the first attempt does before
    /// it first waits is not counted; a future that does not wait cannot be cut anyway. A
    /// guarded call that finds no free bulkhead slot, or its first breaker not closed, starts
    /// the clock when its attempt loop starts (after the slot's wait).
    ///
    /// ```
    /// use opero_core::{Jitter, NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let opero = Opero::<NoCache>::builder()
    ///     .retries(10)
    ///     .min_delay(Duration::from_millis(400))
    ///     .jitter(Jitter::None)
    ///     .deadline(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// let start = tokio::time::Instant::now();
    /// let err = opero.run_async(|| async { Err::<(), _>("down") }).await.unwrap_err();
    /// // Attempts at 0 and 400 ms; the third would start at 1 s (400 + 600 ms), on the
    /// // deadline, so it is not started and the call ends at once.
    /// assert_eq!(err.len(), 2);
    /// assert_eq!(start.elapsed(), Duration::from_millis(400));
    /// assert_eq!(err.ended_by_deadline(), Some(Duration::from_secs(1)));
    /// # }
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.retry.deadline = Some(deadline);
        self
    }

    /// How long one attempt of an async form may run. Default: no limit.
    ///
    /// It sits innermost, around the call (after the rate-limit permit): a late attempt is
    /// dropped (cancelled at its current `.await`), recorded as [`AttemptError::TimedOut`],
    /// and retried per the retry settings, as a crashed attempt is (with the backoff's delay).
    /// A sync form cannot preempt a blocking call, so it refuses a pipeline with an attempt
    /// timeout: [`wrap`](Self::wrap) with an [`OperoError`] naming `retry.attempt_timeout`, a
    /// direct sync call with [`AttemptError::Unsupported`]. Zero, or more than the
    /// [`deadline`](Self::deadline), is refused when built. With [`hedge`](Self::hedge), each
    /// hedged attempt has its own timeout, from the moment it starts.
    ///
    /// ```
    /// use opero_core::{AttemptError, Jitter, NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let opero = Opero::<NoCache>::builder()
    ///     .retries(1)
    ///     .min_delay(Duration::ZERO)
    ///     .attempt_timeout(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let got = opero.run_async(|| {
    ///     calls += 1;
    ///     let hang = calls == 1;
    ///     async move {
    ///         if hang { std::future::pending::<()>().await }
    ///         Ok::<_, String>("second try")
    ///     }
    /// }).await;
    /// assert_eq!(got.unwrap(), "second try");
    ///
    /// let err = opero.run(|| Ok::<_, String>(1)).unwrap_err();
    /// assert!(matches!(err.attempts()[0].error, AttemptError::Unsupported { field: "retry.attempt_timeout", .. }));
    /// # }
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.retry.attempt_timeout = Some(timeout);
        self
    }

    /// One circuit breaker per fallback value, shared by every clone of the pipeline (and every
    /// opmap worker). An open breaker refuses its value's attempts at once with
    /// [`AttemptError::BreakerOpen`], without a delay, and the call moves on to the next value.
    /// Breakers belong to positions in the fallback list (the first million have one each; the
    /// positions past that share the last). Default: none.
    ///
    /// ```
    /// use opero_core::{AttemptError, BreakerConfig, NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// let opero = Opero::<NoCache>::builder()
    ///     .retries(0)
    ///     .circuit_breaker(BreakerConfig { failure_threshold: Some(2), ..Default::default() })
    ///     .build()
    ///     .unwrap();
    /// let _ = opero.run(|| Err::<(), _>("down"));
    /// let _ = opero.run(|| Err::<(), _>("down"));
    /// let mut called = false;
    /// let err = opero.run(|| { called = true; Ok::<_, &str>(()) }).unwrap_err();
    /// assert!(!called, "the breaker is open: the function is not called");
    /// assert_eq!(err.attempts()[0].error, AttemptError::BreakerOpen);
    ///
    /// let bad = Opero::<NoCache>::builder()
    ///     .circuit_breaker(BreakerConfig { failure_ratio: Some(0.0), ..Default::default() })
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(bad.field(), Some("breaker.failure_ratio"));
    /// ```
    pub fn circuit_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.config.breaker = Some(breaker);
        self
    }

    /// At most `max_concurrent` calls of this pipeline (and its clones) in flight at once, and
    /// `max_queue` more waiting for a slot (a sync call blocks, an async one awaits); past that a
    /// call fails at once with [`AttemptError::BulkheadFull`]. A cache hit takes no slot.
    /// Default: no limit.
    ///
    /// ```
    /// use opero_core::{NoCache, Opero};
    ///
    /// let opero = Opero::<NoCache>::builder().bulkhead(8, 32).build().unwrap();
    /// assert_eq!(opero.run(|| Ok::<_, String>(1)).unwrap(), 1);
    /// let err = Opero::<NoCache>::builder().bulkhead(0, 4).build().unwrap_err();
    /// assert_eq!(err.field(), Some("bulkhead.max_concurrent"));
    /// ```
    pub fn bulkhead(mut self, max_concurrent: usize, max_queue: usize) -> Self {
        self.config.bulkhead = Some(BulkheadConfig {
            max_concurrent,
            max_queue,
        });
        self
    }

    /// Hedging for the async forms: when an attempt has not answered after `delay`, a hedge
    /// starts beside it (on the next fallback value, or another attempt of the last one), at
    /// most `max_hedges` per call; the first success wins and the others are dropped. A sync
    /// form on a hedged pipeline fails with [`AttemptError::Unsupported`] naming `hedge`, and a
    /// sync wrapper of one is refused when built. Default: none.
    ///
    /// It sits inside the [`deadline`](Self::deadline) and outside the
    /// [`attempt_timeout`](Self::attempt_timeout): no hedge starts that the deadline would
    /// overtake, the deadline ends the whole race (every racing attempt recorded as
    /// [`AttemptError::DeadlineExceeded`], the call [ended by the
    /// deadline](AllFailedError::ended_by_deadline)), and the attempt timeout cuts each hedged
    /// attempt alone ([`AttemptError::TimedOut`]).
    ///
    /// ```
    /// use opero_core::{AttemptError, NoCache, Opero};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let hedged = Opero::<NoCache>::builder().hedge(Duration::from_millis(50), 1);
    /// let err = hedged.wrap(|x: &u32| Ok::<_, String>(*x)).err().unwrap();
    /// assert_eq!(err.field(), Some("hedge"));
    ///
    /// let opero = Opero::<NoCache>::builder()
    ///     .hedge(Duration::from_millis(50), 3)
    ///     .deadline(Duration::from_millis(120))
    ///     .build()
    ///     .unwrap();
    /// let start = tokio::time::Instant::now();
    /// let err = opero
    ///     .run_async(|| async { std::future::pending::<Result<(), String>>().await })
    ///     .await
    ///     .unwrap_err();
    /// // Attempts at 0, 50 and 100 ms; the hedge due at 150 ms is past the deadline.
    /// assert_eq!(err.len(), 3);
    /// assert_eq!(start.elapsed(), Duration::from_millis(120));
    /// assert_eq!(err.attempts()[2].error, AttemptError::DeadlineExceeded(Duration::from_millis(120)));
    /// # }
    /// ```
    pub fn hedge(mut self, delay: Duration, max_hedges: u32) -> Self {
        self.config.hedge = Some(HedgeConfig { delay, max_hedges });
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
            (None, Some(_)) if self.config.rate_limit.backend == crate::config::LOCAL_LIMITER => {
                Some(Arc::new(TokenBucket::new(&self.config.rate_limit)?) as Arc<dyn RateLimiter>)
            }
            (None, Some(_)) => match self.limiter_backend {
                Some(build) => Some(build(&self.config.rate_limit)?),
                None => {
                    return Err(OperoError::invalid_config(
                        "rate_limit.backend",
                        &self.config.rate_limit.backend,
                        "unknown rate-limit backend here; the built-in one is \"local\" \
                         (\"redis\" needs the facade's opero() builder and its `redis` feature)",
                    )
                    .with_kind(crate::error::ErrorKind::UnknownBackend))
                }
            },
            (None, None) => None,
        };
        let limits = Limits {
            deadline: self.config.retry.deadline,
            attempt_timeout: self.config.retry.attempt_timeout,
        };
        let guards = Guards {
            breakers: self.config.breaker.clone().map(Breakers::new),
            bulkhead: self
                .config
                .bulkhead
                .map(|b| Bulkhead::new(&b))
                .transpose()?,
            hedge: self.config.hedge,
        };
        let guards = guards.any().then(|| Box::new(guards));
        Ok(Opero {
            shared: Arc::new(Shared {
                plain: cache.is_none() && guards.is_none(),
                inline_async: match (cache.is_none() && limiter.is_none(), guards.is_some()) {
                    (false, _) => InlineAsync::No,
                    (true, false) => InlineAsync::Plain,
                    (true, true) => InlineAsync::Guarded,
                },
                cache,
                namespace_fingerprint: crate::key::namespace_fingerprint(
                    &self.config.cache.namespace,
                ),
                cache_config: self.config.cache,
                key_fn: self.key_fn,
                policy: self.policy,
                limiter,
                limits,
                guards,
                metrics: Arc::new(Metrics::default()),
                flights: Flights::default(),
                wrapper_names: Default::default(),
            }),
            name: self.name.map(|n| Name::new(Arc::from(n))),
        })
    }
}

pin_project_lite::pin_project! {
    /// One of two futures with one output: lets a form return the small uncached future or the
    /// cached one without boxing either.
    #[project = EitherProj]
    enum Either<L, R> {
        Left { #[pin] inner: L },
        Right { #[pin] inner: R },
    }
}

impl<L: Future, R: Future<Output = L::Output>> Future for Either<L, R> {
    type Output = L::Output;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<L::Output> {
        match self.project() {
            EitherProj::Left { inner } => inner.poll(cx),
            EitherProj::Right { inner } => inner.poll(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an uncached async call: one reference to the pipeline, the fallback values,
    /// the user's function and its first attempt's future, and nothing else until that attempt
    /// fails. A hand-written future rather than an `async fn`, so that the no-fault path builds,
    /// moves, polls and drops one small state instead of nested state machines holding the loop's
    /// parts. With a deadline or an attempt timeout the first attempt is cut as the loop cuts
    /// every attempt; the clock is read and the timer made only once the attempt waits (or
    /// fails), so a no-fault call that completes in one poll pays neither. Guards are passed
    /// inline too: a free bulkhead slot and a closed first breaker let the first attempt run
    /// here; a full bulkhead, a breaker not closed, a limiter, and a first attempt that fails go
    /// on in the attempt loop (`R`, made by `resume` and boxed), whose type `resume` names so
    /// that the future stays `Send` when the user's is. A hedged call whose first attempt waits
    /// hands it to the race through a [`Handoff`](crate::hedge::Handoff): this future goes on
    /// polling it, the race takes its outcome (or drops it).
    pub(crate) struct Uncached<'a, C, K, P, V, F, Fut, G, R, O> {
        opero: &'a Opero<C, K, P>,
        values: &'a [V],
        f: Option<F>,
        resume: G,
        timer: Option<crate::metrics::AttemptTimer>,
        // BOUNDED: the pipeline has a deadline or an attempt timeout; GUARDED: the first
        // attempt passed the guards inline and holds what they gave (a bulkhead slot if there is
        // a bulkhead, given back on drop; a closed first breaker's leave if there are breakers).
        // One byte: a second flag byte beside the others made the
        // future's first write and its copy disagree in width, a store-forwarding stall that
        // tripled the no-fault call.
        flags: u8,
        budget: Option<crate::pipeline::Budget>,
        cut: Option<(crate::pipeline::Cut, crate::sleep::Sleep)>,
        #[pin]
        first: Option<Fut>,
        rest: Option<std::pin::Pin<Box<Rest<R, O>>>>,
    }
    impl<'a, C, K, P, V, F, Fut, G, R, O> PinnedDrop for Uncached<'a, C, K, P, V, F, Fut, G, R, O> {
        fn drop(this: Pin<&mut Self>) {
            // A call dropped while its first attempt ran inline: the slot goes back.
            let this = this.project();
            if *this.flags & GUARDED != 0 {
                release_dropped_slot(this.opero.shared.guards.as_deref());
            }
        }
    }
}

/// Gives back the bulkhead slot an inline first attempt took.
#[inline(always)]
fn release_slot(guards: Option<&crate::pipeline::Guards>) {
    if let Some(bulkhead) = guards.and_then(|g| g.bulkhead.as_ref()) {
        bulkhead.release_slot();
    }
}

/// [`release_slot`] for a dropped call, out of line: the drop of every uncached future holds
/// this call, not the release.
#[cold]
#[inline(never)]
fn release_dropped_slot(guards: Option<&crate::pipeline::Guards>) {
    release_slot(guards);
}

/// The permit for the bulkhead slot an inline first attempt took, for the loop to hold.
fn slot_permit(
    guards: Option<&crate::pipeline::Guards>,
) -> Option<crate::bulkhead::BulkheadPermit<'_>> {
    guards
        .and_then(|g| g.bulkhead.as_ref())
        .map(|b| b.permit_for_slot())
}

pin_project_lite::pin_project! {
    /// The attempt loop [`Uncached`] goes on in, and, for a hedged race that took the first
    /// attempt over running, the holder's end of its handoff (boxed with the loop, so that the
    /// no-fault future neither holds nor drops it).
    pub(crate) struct Rest<R, O> {
        handoff: Option<crate::hedge::Handoff<O>>,
        #[pin]
        attempts: R,
    }
}

impl<R, O> Rest<R, O> {
    fn boxed(attempts: R, handoff: Option<crate::hedge::Handoff<O>>) -> std::pin::Pin<Box<Self>> {
        Box::pin(Rest { handoff, attempts })
    }
}

impl<'a, C, K, P, V, F, Fut, G, R, O> Uncached<'a, C, K, P, V, F, Fut, G, R, O> {
    #[inline(always)]
    fn new<T, E>(opero: &'a Opero<C, K, P>, values: &'a [V], f: F, resume: G) -> Self
    where
        F: FnMut(&V) -> Fut,
        G: Fn(Attempts<'a, P>, &'a [V], F, crate::pipeline::Start<'a, T, E>) -> R,
        R: Future<Output = Result<T, AllFailedError<E>>>,
    {
        Uncached {
            opero,
            values,
            f: Some(f),
            resume,
            timer: None,
            flags: 0,
            budget: None,
            cut: None,
            first: None,
            rest: None,
        }
    }
}

/// Whether an uncached async call runs its first attempt inline ([`Uncached`]): not with a
/// cache or a limiter; with guards, through them. One load tells the plain path it has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InlineAsync {
    No,
    Plain,
    Guarded,
}

/// [`Uncached`]'s flags.
const BOUNDED: u8 = 1;
const GUARDED: u8 = 2;

/// Whether an inline first attempt passes the guards: a free bulkhead slot, taken, and a closed
/// first breaker. False when the attempt loop must take the call (a full bulkhead queues there,
/// a breaker not closed is asked there, each counted once).
#[inline(always)]
fn passes_inline(guards: &crate::pipeline::Guards) -> bool {
    if let Some(bulkhead) = &guards.bulkhead {
        if !bulkhead.try_take_slot() {
            return false;
        }
    }
    if let Some(breakers) = &guards.breakers {
        if !breakers.get(0).is_closed() {
            release_slot(Some(guards));
            return false;
        }
    }
    true
}

/// What an inline first attempt that passed its guards holds, for the loop or the race to hold
/// on to: the slot's permit and the closed breaker's leave.
#[allow(clippy::type_complexity)]
fn held(
    guards: Option<&crate::pipeline::Guards>,
) -> (
    Option<crate::bulkhead::BulkheadPermit<'_>>,
    Option<crate::breaker::Leave<'_>>,
) {
    let leave = guards
        .and_then(|g| g.breakers.as_ref())
        .map(|_| crate::breaker::Leave::Closed);
    (slot_permit(guards), leave)
}

impl<'a, C, K, P, V, T, E, F, Fut, G, R> Future
    for Uncached<'a, C, K, P, V, F, Fut, G, R, Result<T, AttemptError<E>>>
where
    F: FnMut(&V) -> Fut,
    Fut: Future<Output = Result<T, AttemptError<E>>>,
    G: Fn(Attempts<'a, P>, &'a [V], F, crate::pipeline::Start<'a, T, E>) -> R,
    R: Future<Output = Result<T, AllFailedError<E>>>,
{
    type Output = Result<T, AllFailedError<E>>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use crate::pipeline::Start;
        use std::task::Poll;
        let mut this = self.project();
        if let Some(rest) = this.rest {
            let rest = rest.as_mut().project();
            let Some(handoff) = rest.handoff.as_ref() else {
                return rest.attempts.poll(cx);
            };
            // The hedged race's first attempt, polled before the race takes its outcome.
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                if handoff.dropped() {
                    this.first.set(None);
                } else if let Poll::Ready(out) = first.poll(cx) {
                    handoff.put(out);
                    this.first.set(None);
                }
            }
            let polled = rest.attempts.poll(cx);
            // Dropped by the race (won by another attempt, or cut): dropped here too.
            if polled.is_ready() || handoff.dropped() {
                this.first.set(None);
            }
            return polled;
        }
        let opero: &'a Opero<C, K, P> = this.opero;
        let values: &'a [V] = this.values;
        // Read where needed: the plain first attempt never loads it.
        let guards = || opero.shared.guards.as_deref();
        if this.first.as_ref().get_ref().is_none() {
            // `f` is gone once the output was returned: a poll after that has nothing to run.
            let Some(f) = this.f.as_mut() else {
                return Poll::Pending;
            };
            let mut flags = 0;
            let value = match (values.first(), opero.shared.inline_async) {
                (Some(value), InlineAsync::Plain) => Some(value),
                (Some(value), InlineAsync::Guarded) => {
                    guards().is_some_and(passes_inline).then(|| {
                        flags = GUARDED;
                        value
                    })
                }
                _ => None,
            };
            let Some(value) = value else {
                let Some(f) = this.f.take() else {
                    return Poll::Pending;
                };
                let rest = (this.resume)(opero.attempts(), values, f, Start::Fresh);
                return this
                    .rest
                    .insert(Rest::boxed(rest, None))
                    .as_mut()
                    .project()
                    .attempts
                    .poll(cx);
            };
            let limits = &opero.shared.limits;
            if limits.deadline.is_some() || limits.attempt_timeout.is_some() {
                flags |= BOUNDED;
            }
            *this.flags = flags;
            *this.timer = Some(opero.counters().attempt());
            this.first.set(Some(f(value)));
        }
        let Some(first) = this.first.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        // Looked at only once the attempt waits or fails.
        let hedged = || guards().is_some_and(|g| g.hedge.is_some());
        let outcome = match first.poll(cx) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending if hedged() => {
                // The first wait of a hedged call: the race starts now, beside this attempt.
                let Some(f) = this.f.take() else {
                    return Poll::Pending;
                };
                let (ours, theirs) = crate::hedge::Handoff::new(None);
                // The slot and the breaker's leave go to the race, and the attempt's timer.
                // A hedged call's inline attempt always passed its guards.
                *this.flags = 0;
                let (slot, leave) = held(guards());
                let first = crate::hedge::FirstAttempt {
                    handoff: theirs,
                    leave,
                    slot,
                    timer: this.timer.take(),
                };
                let rest = (this.resume)(opero.attempts(), values, f, Start::Racing(first));
                let rest = this
                    .rest
                    .insert(Rest::boxed(rest, Some(ours)))
                    .as_mut()
                    .project();
                // The race's first poll: the attempt it was handed has not ended, so the race
                // neither answers nor drops it yet; it arms its timers.
                return rest.attempts.poll(cx);
            }
            Poll::Pending => {
                if *this.flags & BOUNDED == 0 {
                    return Poll::Pending;
                }
                if this.cut.is_none() {
                    // The attempt's first wait: the deadline's clock starts here, as an attempt
                    // timeout's timer starts at the attempt's first wait, and a no-fault call
                    // that never waits reads no clock. This attempt has the whole deadline.
                    *this.budget = crate::pipeline::Budget::tokio(&opero.shared.limits);
                    if let Some(cut) = opero.attempts().cut(*this.budget, true) {
                        *this.cut = Some((cut, crate::sleep::sleep(cut.limit())));
                    }
                }
                let Some((cut, timer)) = this.cut else {
                    return Poll::Pending;
                };
                // Polled after the attempt, as `timeout` does: a ready attempt wins.
                std::task::ready!(std::pin::Pin::new(timer).poll(cx));
                // As in the loop, a cut attempt has no latency to record.
                *this.timer = None;
                Err(cut.error(*this.budget))
            }
        };
        this.first.set(None);
        *this.cut = None;
        if let Some(timer) = this.timer.take() {
            timer.finish(Some(opero.counters()));
        }
        let Some(f) = this.f.take() else {
            return Poll::Pending;
        };
        // An inline attempt ran through the guards whenever the pipeline has any: what they
        // gave it is given back or handed on below, and no longer the drop's to give back.
        *this.flags = 0;
        match outcome {
            Ok(v) => {
                if let Some(guards) = guards() {
                    // Told directly: an optional leave passed by reference made the callee
                    // copy it through memory, a store-forwarding stall.
                    if let Some(breakers) = &guards.breakers {
                        let metrics = Some(opero.counters());
                        breakers
                            .get(0)
                            .left_ok(crate::breaker::Leave::Closed, metrics);
                    }
                    release_slot(Some(guards));
                }
                Poll::Ready(Ok(v))
            }
            Err(e) => {
                let attempts = opero.attempts();
                let (slot, leave) = held(guards());
                let start = if hedged() {
                    // The race books the failure, from an attempt that ended before it began.
                    let (_, theirs) = crate::hedge::Handoff::new(Some(Err(e)));
                    Start::Racing(crate::hedge::FirstAttempt {
                        handoff: theirs,
                        leave,
                        slot,
                        timer: None,
                    })
                } else {
                    // A budget started at the attempt's first wait goes on; without one (the
                    // attempt failed without waiting, or there is no deadline) the loop starts
                    // its own.
                    Start::Failed {
                        open: attempts.breaker_failed(0, leave),
                        error: e,
                        budget: *this.budget,
                        slot,
                    }
                };
                let rest = (this.resume)(attempts, values, f, start);
                this.rest
                    .insert(Rest::boxed(rest, None))
                    .as_mut()
                    .project()
                    .attempts
                    .poll(cx)
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The user's future checked as [`checked`] checks a sync result: its error reported as
    /// [`AttemptError::Failed`], an `Ok` that `retry_if_ok` rejects as
    /// [`AttemptError::RejectedOk`]. A combinator rather than an `async` block: one state machine
    /// fewer on every attempt.
    pub(crate) struct Checked<'p, P, Fut> {
        policy: &'p P,
        #[pin]
        inner: Fut,
    }
}

impl<'p, P, Fut> Checked<'p, P, Fut> {
    #[inline]
    pub(crate) fn new(policy: &'p P, inner: Fut) -> Self {
        Checked { policy, inner }
    }
}

impl<T, E, P: OkPolicy<T, E>, Fut: Future<Output = Result<T, E>>> Future for Checked<'_, P, Fut> {
    type Output = Result<T, AttemptError<E>>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let policy: &P = this.policy;
        this.inner.poll(cx).map(|r| checked(policy, r))
    }
}

pin_project_lite::pin_project! {
    /// The user's future with its error reported as [`AttemptError::Failed`]: a combinator rather
    /// than an `async` block, one state machine fewer on every attempt.
    pub(crate) struct Failed<Fut> {
        #[pin]
        inner: Fut,
    }
}

impl<Fut> Failed<Fut> {
    #[inline]
    pub(crate) fn new(inner: Fut) -> Self {
        Failed { inner }
    }
}

impl<T, E, Fut: Future<Output = Result<T, E>>> Future for Failed<Fut> {
    type Output = Result<T, AttemptError<E>>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|r| r.map_err(AttemptError::Failed))
    }
}
