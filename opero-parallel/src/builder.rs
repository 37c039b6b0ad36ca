//! [`OpmapBuilder`]: opero's settings plus `mode`, `workers`, `ordered` and `progress`.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use opero_core::{
    Backoff, BreakerConfig, BuildCache, CacheConfig, CacheSwitch, Fallbacks, FunctionId, Jitter,
    KeyFn, OperoBuilder, OperoError, RateLimitConfig, RateLimiter, StableKey,
};

use crate::config::{check_scope, check_workers, Mode, OpmapConfig, RateLimitScope};
use crate::executor::{AnyAsyncExecutor, AnyExecutor};
use crate::opmap::{Inner, Opmap, OpmapAsync};
use crate::slots::{PerWorker, Slots};

/// Builds an opmap: a per-item function wrapped into a callable over any `IntoIterator`, every
/// item going through one pipeline (cache, fallback, retry, rate limit) on `workers` workers.
///
/// The setters of [`OperoBuilder`] are here under the same names; end the chain with
/// [`wrap`](Self::wrap) (blocking function), [`wrap_async`](Self::wrap_async) (async function) or
/// their `_fallback` forms.
///
/// # Default
///
/// [`OpmapConfig::default`]: mode `thread`, 4 workers, ordered, progress bar on (when stderr is a
/// terminal), cache namespace `"opero_opmap_item"`, and opero's retry defaults (3 retries, 100 ms
/// to 30 s).
///
/// # Examples
///
/// ```
/// use opero_parallel::{opmap, Mode};
/// use std::time::Duration;
///
/// let double = opmap()
///     .mode(Mode::Rayon)
///     .workers(2)
///     .retries(1)
///     .min_delay(Duration::ZERO)
///     .wrap(|x: &i64| if *x < 0 { Err("negative") } else { Ok(x * 2) })
///     .unwrap();
/// let out = double.call([1, -2, 3]);
/// assert_eq!(out[0], Ok(2));
/// assert_eq!(out[1].as_ref().unwrap_err().last_error(), Some(&"negative"));
/// assert_eq!(out[2], Ok(6));
///
/// let err = opmap().workers(0).wrap(|x: &i64| Ok::<_, String>(*x)).unwrap_err();
/// assert_eq!(err.field(), Some("workers"));
/// ```
#[must_use]
pub struct OpmapBuilder<C, K = StableKey, P = Backoff> {
    opero: OperoBuilder<C, K, P>,
    mode: Mode,
    workers: usize,
    ordered: bool,
    progress: bool,
    timeout: Option<Duration>,
    in_flight: usize,
    rate_limit_scope: RateLimitScope,
    /// A limiter instance was passed in, which `per_worker` cannot split.
    limiter_passed_in: bool,
}

impl<C> OpmapBuilder<C> {
    /// A builder from the defaults.
    pub fn new() -> Self {
        Self::from_config(OpmapConfig::default())
    }

    /// A builder from a config (validated when the opmap is built).
    pub fn from_config(config: OpmapConfig) -> Self {
        OpmapBuilder {
            opero: OperoBuilder::from_config(config.opero),
            mode: config.mode,
            workers: config.workers,
            ordered: config.ordered,
            progress: config.progress,
            timeout: config.timeout,
            in_flight: config.in_flight_per_worker,
            rate_limit_scope: config.rate_limit_scope,
            limiter_passed_in: false,
        }
    }
}

impl<C> Default for OpmapBuilder<C> {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $($arg: $ty),*) -> Self {
            self.opero = self.opero.$name($($arg),*);
            self
        }
    )*};
}

impl<C, K, R, H> OpmapBuilder<C, K, Backoff<R, H>> {
    /// Which errors to retry: [`RetryOn`](opero_core::RetryOn) or a predicate on the function's error type,
    /// `|e: &MyError| ..`; a predicate on another type does not compile. Default: all.
    pub fn retry_on<R2>(self, retry_on: R2) -> OpmapBuilder<C, K, Backoff<R2, H>> {
        self.with_opero(|o| o.retry_on(retry_on))
    }

    /// A server's hint of the least delay before an item's next attempt, read from the error
    /// (see [`OperoBuilder::retry_after`]). Default: none.
    pub fn retry_after<H2>(self, hint: H2) -> OpmapBuilder<C, K, Backoff<R, H2>> {
        self.with_opero(|o| o.retry_after(hint))
    }

    forward! {
        /// Retries after the first attempt of each item, per fallback value. Default 3.
        retries(retries: u32);
        /// Growth of the delay between retries. Default 1.5.
        backoff_factor(factor: f64);
        /// Delay before the first retry. Default 100 ms.
        min_delay(delay: Duration);
        /// Ceiling of every delay. Default 30 s.
        max_delay(delay: Duration);
        /// Delay randomisation. Default [`Jitter::Full`].
        jitter(jitter: Jitter);
    }
}

impl<C, K, P> OpmapBuilder<C, K, P> {
    forward! {
        /// How long entries live. Default: until evicted.
        cache_ttl(ttl: Duration);
        /// The cache backend by name, for backends that choose by name.
        cache_backend_name(backend: impl Into<String>);
        /// A backend-specific option.
        cache_option(name: impl Into<String>, value: impl Into<String>);
        /// Limits attempts to `rate` per second: across all workers together, or in each worker
        /// with [`rate_limit_scope`](Self::rate_limit_scope). Default: no limit.
        rate_limit(rate: f64);
        /// Permits available at once after an idle spell. Default 1.
        burst(burst: u32);
        /// The whole rate-limit section.
        rate_limit_config(rate_limit: RateLimitConfig);
        /// Each item's time budget across its fallback values and retries (see
        /// [`OperoBuilder::deadline`]). Default: none.
        deadline(deadline: Duration);
        /// How long one attempt of an item may run, for async functions in mode `async` or
        /// `async_process` (see [`OperoBuilder::attempt_timeout`]); refused by name when a
        /// blocking map is built (opmap's own `timeout` bounds a process-mode attempt).
        /// Default: none.
        attempt_timeout(timeout: Duration);
        /// One circuit breaker per fallback value, shared by every worker: see
        /// [`OperoBuilder::circuit_breaker`]. Default: none.
        circuit_breaker(breaker: BreakerConfig);
        /// At most `max_concurrent` items' calls in flight, `max_queue` more waiting: see
        /// [`OperoBuilder::bulkhead`]. Default: no limit beyond `workers`.
        bulkhead(max_concurrent: usize, max_queue: usize);
        /// Hedging of each item's attempts, for async functions (`wrap_async`,
        /// `wrap_process_async`); refused by name when a blocking map is built. See
        /// [`OperoBuilder::hedge`]. Default: none.
        hedge(delay: Duration, max_hedges: u32);
    }

    /// Names the per-item function for its cache keys. Needed to cache a function that does not
    /// identify itself (a `fn` pointer, a `dyn Fn`, a closure that captures state: building such
    /// an opmap with the cache on and no name is an error naming `name`), and recommended for
    /// disk and Redis caches, whose entries then survive edits of the code around the call.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.opero = self.opero.name(name);
        self
    }

    /// Uses this limiter, shared with whoever else holds it (and by every worker: it cannot be
    /// split per worker).
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.opero = self.opero.rate_limiter(limiter);
        self.limiter_passed_in = true;
        self
    }

    /// Builds the limiter of a config whose `rate_limit.backend` is not `"local"`; see
    /// [`OperoBuilder::rate_limiter_backend`](opero_core::OperoBuilder::rate_limiter_backend).
    pub fn rate_limiter_backend(mut self, build: opero_core::BuildLimiter) -> Self {
        self.opero = self.opero.rate_limiter_backend(build);
        self
    }

    /// Whether the workers share one rate limiter ([`RateLimitScope::Shared`], the default) or
    /// each has its own of the same rate and burst ([`RateLimitScope::PerWorker`]: `n` workers
    /// then make about `n × rate` calls per second). Every mode supports both; `PerWorker` needs
    /// [`rate_limit`](Self::rate_limit), and building is an error naming `rate_limit_scope`
    /// without it or with a limiter passed in.
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_parallel::{opmap, RateLimitScope};
    ///
    /// // Each of the 4 workers has its own API key, limited to 5 calls per second.
    /// let fetch = opmap()
    ///     .workers(4)
    ///     .rate_limit(5.0)
    ///     .rate_limit_scope(RateLimitScope::PerWorker)
    ///     .progress(false)
    ///     .wrap(|id: &u32| Ok::<_, String>(*id))
    ///     .unwrap();
    /// assert_eq!(fetch.call([1, 2]), [Ok(1), Ok(2)]);
    ///
    /// let err = opmap()
    ///     .rate_limit_scope(RateLimitScope::PerWorker)
    ///     .wrap(|id: &u32| Ok::<_, String>(*id))
    ///     .unwrap_err();
    /// assert_eq!(err.field(), Some("rate_limit_scope"));
    /// ```
    pub fn rate_limit_scope(mut self, scope: RateLimitScope) -> Self {
        self.rate_limit_scope = scope;
        self
    }

    /// Gives each of the `workers` of a map in `mode` a limiter of its own when the scope is
    /// per worker; for the async modes, also the slots their items in flight take (`per_slot`
    /// items at once in each).
    fn scoped(self, mode: Mode, per_slot: usize) -> Result<(Self, Option<Arc<Slots>>), OperoError> {
        check_scope(
            self.rate_limit_scope,
            self.opero.config().rate_limit.rate,
            self.limiter_passed_in,
            &self.opero.config().rate_limit.backend,
        )?;
        if self.rate_limit_scope != RateLimitScope::PerWorker {
            return Ok((self, None));
        }
        let limiter = PerWorker::new(mode, self.workers, &self.opero.config().rate_limit)?;
        let slots = mode.is_async().then(|| Slots::new(self.workers, per_slot));
        let mut scoped = self;
        scoped.opero = scoped.opero.rate_limiter(Arc::new(limiter));
        Ok((scoped, slots))
    }

    /// The cache namespace. Default `"opero_opmap_item"`.
    pub fn cache_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.opero = self.opero.cache_namespace(namespace);
        self
    }

    /// Replaces the built-in backoff with a policy of the user's.
    pub fn retry_policy<P2>(self, policy: P2) -> OpmapBuilder<C, K, opero_core::CustomPolicy<P2>> {
        self.with_opero(|o| o.retry_policy(policy))
    }

    /// The same settings over a pipeline builder of other types.
    fn with_opero<C2, K2, P2>(
        self,
        change: impl FnOnce(OperoBuilder<C, K, P>) -> OperoBuilder<C2, K2, P2>,
    ) -> OpmapBuilder<C2, K2, P2> {
        OpmapBuilder {
            opero: change(self.opero),
            mode: self.mode,
            workers: self.workers,
            ordered: self.ordered,
            progress: self.progress,
            timeout: self.timeout,
            in_flight: self.in_flight,
            rate_limit_scope: self.rate_limit_scope,
            limiter_passed_in: self.limiter_passed_in,
        }
    }

    /// Turns the per-item cache on or off. Default off. On a builder without a cache type
    /// (`NoCache<D>`, as the facade's `opmap()` starts) this switches it to the backend `D`.
    pub fn cache(self, enabled: bool) -> OpmapBuilder<C::On, K, P>
    where
        C: CacheSwitch,
    {
        self.with_opero(|o| o.cache(enabled))
    }

    /// The whole cache section (its namespace included); switches the cache type as
    /// [`cache`](Self::cache) does.
    pub fn cache_config(self, cache: CacheConfig) -> OpmapBuilder<C::On, K, P>
    where
        C: CacheSwitch,
    {
        self.with_opero(|o| o.cache_config(cache))
    }

    /// Caches in this backend instance (turns the cache on).
    pub fn cache_backend(self, cache: C::On) -> OpmapBuilder<C::On, K, P>
    where
        C: CacheSwitch,
    {
        self.with_opero(|o| o.cache_backend(cache))
    }

    /// Replaces the default key function.
    pub fn key_fn<K2: KeyFn>(self, key_fn: K2) -> OpmapBuilder<C, K2, P> {
        self.with_opero(|o| o.key_fn(key_fn))
    }

    /// Where items run. Default [`Mode::Thread`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How many items run at once; at least 1. Default 4.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Whether results come back in input order; when false they come in completion order, and
    /// the `_indexed` forms and streams tell each one's input index. Default true.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Whether to draw a progress bar on stderr (only ever when it is a terminal). Default true.
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// How long one attempt of an item may run before it fails with
    /// [`AttemptError::TimedOut`](opero_core::AttemptError::TimedOut), retried per the retry
    /// settings. Default: none.
    ///
    /// - `async`: the attempt's future is dropped when the time is up.
    /// - `process`, `async_process`: the worker process is killed (and replaced). Counted from
    ///   when the attempt is handed to the pool; in `async_process` it bounds the worker's whole
    ///   batch.
    /// - `thread`, `rayon`: refused when the opmap is built (an error naming `timeout`): a
    ///   blocking call on a thread cannot be stopped, so a timeout there would be a promise
    ///   nothing keeps. Use `process` mode to bound blocking work.
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_parallel::{opmap, Mode};
    /// use std::time::Duration;
    ///
    /// let err = opmap()
    ///     .mode(Mode::Thread)
    ///     .timeout(Duration::from_millis(10))
    ///     .wrap(|x: &u32| Ok::<_, String>(*x))
    ///     .unwrap_err();
    /// assert_eq!(err.field(), Some("timeout"));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Mode `async_process` only: how many items each worker process runs at once (one batch).
    /// At least 1. Default 8.
    pub fn in_flight_per_worker(mut self, items: usize) -> Self {
        self.in_flight = items;
        self
    }

    #[allow(clippy::type_complexity)]
    fn inner<F, V, X>(
        self,
        mode: Mode,
        executor: X,
        function: FunctionId<'static>,
        fallbacks: Fallbacks<V>,
        f: F,
    ) -> Result<Arc<Inner<C, K, P, F, V, X>>, OperoError>
    where
        C: BuildCache,
    {
        let (this, slots) = self.scoped(mode, 1)?;
        let opero = this.opero.build()?;
        let function = opero.wrapper_identity(function)?;
        Ok(Arc::new(Inner {
            bare: opero.cache().is_none() && opero.rate_limiter().is_none() && !opero.guarded(),
            slots,
            opero,
            function,
            fallbacks,
            f,
            executor,
            ordered: this.ordered,
            progress: this.progress,
            mode: this.mode,
            timeout: this.timeout,
        }))
    }

    /// Refuses `retry.attempt_timeout` where the attempts are blocking calls (thread, rayon,
    /// process modes): opero's sync loop cannot preempt them; opmap's own `timeout` is the
    /// setting that bounds a process-mode attempt.
    fn refuse_attempt_timeout(&self) -> Result<(), OperoError> {
        match self.opero.config().retry.attempt_timeout {
            None => Ok(()),
            Some(timeout) => Err(OperoError::invalid_config(
                "retry.attempt_timeout",
                humantime::format_duration(timeout),
                format!(
                    "mode \"{}\" runs blocking attempts, which opero's retry loop cannot \
                     preempt: use opmap's `timeout` (mode \"process\" or \"async\") or an async \
                     function in mode \"async\"",
                    self.mode
                ),
            )),
        }
    }

    /// Hedging runs two attempts of one item side by side, which a blocking call cannot.
    fn refuse_hedge(&self) -> Result<(), OperoError> {
        match self.opero.config().hedge {
            None => Ok(()),
            Some(hedge) => Err(OperoError::invalid_config(
                "hedge",
                format!("{:?} × {}", hedge.delay, hedge.max_hedges),
                format!(
                    "mode \"{}\" runs blocking calls, which cannot run two attempts side by \
                     side: hedge an async function (wrap_async, wrap_process_async)",
                    self.mode
                ),
            )),
        }
    }

    fn blocking_executor(&self) -> Result<AnyExecutor, OperoError> {
        check_workers(self.workers)?;
        self.opero.config().validate()?;
        self.refuse_attempt_timeout()?;
        self.refuse_hedge()?;
        if let Some(timeout) = self.timeout {
            return Err(OperoError::invalid_config(
                "timeout",
                humantime::format_duration(timeout),
                format!(
                    "mode \"{}\" runs blocking calls on threads, which cannot be stopped \
                     mid-call: use mode \"process\" (wrap_process), which kills a late \
                     attempt's worker, or an async function in mode \"async\"",
                    self.mode
                ),
            ));
        }
        AnyExecutor::new(self.mode, self.workers)
    }

    fn async_executor(&self) -> Result<AnyAsyncExecutor, OperoError> {
        check_workers(self.workers)?;
        self.opero.config().validate()?;
        let mode = if self.mode == Mode::Thread {
            // The default mode serves blocking functions; an async function means async mode.
            Mode::Async
        } else {
            self.mode
        };
        if self.timeout == Some(Duration::ZERO) {
            return Err(OperoError::invalid_config(
                "timeout",
                "0s",
                "must be above zero",
            ));
        }
        AnyAsyncExecutor::new(mode, self.workers)
    }

    /// Builds the opmap over a blocking per-item function (modes `thread` and `rayon`).
    ///
    /// A bad setting (zero workers, an async mode, a NaN backoff factor) is an [`OperoError`]
    /// naming it.
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn wrap<I, T, E, F>(
        self,
        f: F,
    ) -> Result<
        Opmap<C, K, P, impl Fn(&I, &()) -> Result<T, E> + Send + Sync, (), AnyExecutor>,
        OperoError,
    >
    where
        C: BuildCache,
        F: Fn(&I) -> Result<T, E> + Send + Sync,
    {
        let function = FunctionId::of::<F>(Location::caller());
        let executor = self.blocking_executor()?;
        let mode = self.mode;
        let inner = self.inner(
            mode,
            executor,
            function,
            Fallbacks::new(vec![()])?,
            move |item: &I, _: &()| f(item),
        )?;
        Ok(Opmap { inner })
    }

    /// Builds the opmap over a blocking function of the item and one fallback value: each item
    /// tries the values in order, each with its full retry budget.
    #[track_caller]
    pub fn wrap_fallback<I, V, T, E, F>(
        self,
        fallbacks: Fallbacks<V>,
        f: F,
    ) -> Result<Opmap<C, K, P, F, V, AnyExecutor>, OperoError>
    where
        C: BuildCache,
        F: Fn(&I, &V) -> Result<T, E> + Send + Sync,
    {
        let function = FunctionId::of::<F>(Location::caller());
        let executor = self.blocking_executor()?;
        let mode = self.mode;
        let inner = self.inner(mode, executor, function, fallbacks, f)?;
        Ok(Opmap { inner })
    }

    /// Builds the opmap over an async per-item function (mode `async`; the default mode `thread`
    /// is taken to mean `async` here). Each attempt gets a clone of the item.
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn wrap_async<I, T, E, F, Fut>(
        self,
        f: F,
    ) -> Result<
        OpmapAsync<C, K, P, impl Fn(I, ()) -> Fut + Send + Sync, (), AnyAsyncExecutor>,
        OperoError,
    >
    where
        C: BuildCache,
        F: Fn(I) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>>,
    {
        let function = FunctionId::of::<F>(Location::caller());
        let executor = self.async_executor()?;
        let inner = self.inner(
            Mode::Async,
            executor,
            function,
            Fallbacks::new(vec![()])?,
            move |item: I, _: ()| f(item),
        )?;
        Ok(OpmapAsync { inner })
    }

    /// Builds the opmap over an async function of the item and one fallback value.
    #[track_caller]
    pub fn wrap_fallback_async<I, V, T, E, F, Fut>(
        self,
        fallbacks: Fallbacks<V>,
        f: F,
    ) -> Result<OpmapAsync<C, K, P, F, V, AnyAsyncExecutor>, OperoError>
    where
        C: BuildCache,
        F: Fn(I, V) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>>,
    {
        let function = FunctionId::of::<F>(Location::caller());
        let executor = self.async_executor()?;
        let inner = self.inner(Mode::Async, executor, function, fallbacks, f)?;
        Ok(OpmapAsync { inner })
    }

    /// The process-mode settings checked, for `wanted` (the default mode `thread` is taken to
    /// mean `wanted` here).
    #[cfg(feature = "process")]
    fn process_mode(&self, wanted: Mode) -> Result<(), OperoError> {
        check_workers(self.workers)?;
        self.opero.config().validate()?;
        if wanted == Mode::Process {
            self.refuse_attempt_timeout()?;
        }
        if self.mode != wanted && self.mode != Mode::Thread {
            let hint = if wanted == Mode::Process {
                "`wrap_process` runs a blocking function in worker processes: pick \"process\" (or use `wrap`/`wrap_async` for the other modes)"
            } else {
                "`wrap_process_async` runs an async function in worker processes: pick \"async_process\" (or use `wrap`/`wrap_async` for the other modes)"
            };
            return Err(OperoError::invalid_config("mode", self.mode, hint));
        }
        if wanted == Mode::Process {
            self.refuse_hedge()?;
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(OperoError::invalid_config(
                "timeout",
                "0s",
                "must be above zero",
            ));
        }
        Ok(())
    }

    /// Builds the opmap over a named blocking function run in `workers` worker processes (mode
    /// [`process`](Mode::Process); the default mode `thread` is taken to mean it here). The item,
    /// the result and the function's error cross between processes serialized, so all three are
    /// serde types; the function reaches the workers by its type, so it must be a named `fn` (or a
    /// closure that captures nothing). See [`OpmapProcess`](crate::OpmapProcess) for what happens on a crash, and
    /// [`init_workers`](crate::init_workers) for the line `main` needs.
    ///
    /// Errors, up front: a capturing closure, a mode other than `process`, a bad setting, no
    /// init line, or worker processes that cannot start.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use opero_parallel::{init_workers, opmap};
    /// use std::time::Duration;
    ///
    /// fn risky(x: &u32) -> Result<u32, String> {
    ///     if *x == 3 { std::process::abort() }
    ///     Ok(x + 1)
    /// }
    ///
    /// fn main() {
    ///     init_workers();
    ///     let f = opmap().workers(2).retries(0).timeout(Duration::from_secs(5)).progress(false)
    ///         .wrap_process(risky).unwrap();
    ///     let out = f.call([1, 2, 3, 4]);
    ///     assert_eq!(out[0], Ok(2));
    ///     assert!(out[2].as_ref().unwrap_err().to_string().contains("worker crashed"));
    ///     assert_eq!(out[3], Ok(5));
    /// }
    /// ```
    #[cfg(feature = "process")]
    #[track_caller]
    pub fn wrap_process<I, T, E, F>(
        self,
        f: F,
    ) -> Result<crate::OpmapProcess<C, K, P, I, T, E>, OperoError>
    where
        C: BuildCache,
        F: Fn(&I) -> Result<T, E> + Copy + Send + Sync + 'static,
        I: serde::Serialize + serde::de::DeserializeOwned,
        T: serde::Serialize + serde::de::DeserializeOwned,
        E: serde::Serialize + serde::de::DeserializeOwned,
    {
        let _ = f;
        let function = FunctionId::of::<F>(Location::caller());
        self.process_mode(Mode::Process)?;
        crate::process::check_function::<F>()?;
        let threads = crate::ThreadExecutor::new(self.workers)?;
        let (this, _) = self.scoped(Mode::Process, 1)?;
        let (ordered, progress, timeout, workers) =
            (this.ordered, this.progress, this.timeout, this.workers);
        let opero = this.opero.build()?;
        let function = opero.wrapper_identity(function)?;
        let pool = crate::process::Workers::start(
            workers,
            timeout,
            crate::process::sync_trampoline::<F, I, T, E>(),
        )?;
        Ok(crate::OpmapProcess {
            inner: Arc::new(crate::process_map::ProcessInner {
                opero,
                function,
                workers: pool,
                threads,
                ordered,
                progress,
                types: std::marker::PhantomData,
            }),
        })
    }

    /// Builds the opmap over a named async function run in `workers` worker processes, up to
    /// [`in_flight_per_worker`](Self::in_flight_per_worker) items at once in each (mode
    /// [`async_process`](Mode::AsyncProcess); the default mode `thread` is taken to mean it
    /// here). The same rules as [`wrap_process`](Self::wrap_process); see
    /// [`OpmapProcessAsync`](crate::OpmapProcessAsync) for batches and crashes.
    #[cfg(feature = "process")]
    #[track_caller]
    pub fn wrap_process_async<I, T, E, F, Fut>(
        self,
        f: F,
    ) -> Result<crate::OpmapProcessAsync<C, K, P, I, T, E>, OperoError>
    where
        C: BuildCache,
        F: Fn(I) -> Fut + Copy + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>>,
        I: serde::Serialize + serde::de::DeserializeOwned,
        T: serde::Serialize + serde::de::DeserializeOwned,
        E: serde::Serialize + serde::de::DeserializeOwned,
    {
        let _ = f;
        let function = FunctionId::of::<F>(Location::caller());
        self.process_mode(Mode::AsyncProcess)?;
        crate::process::check_function::<F>()?;
        if self.in_flight == 0 {
            return Err(OperoError::invalid_config(
                "in_flight_per_worker",
                0,
                "must be at least 1",
            ));
        }
        let in_flight = self.in_flight;
        let (this, slots) = self.scoped(Mode::AsyncProcess, in_flight)?;
        let (ordered, progress, timeout, workers) =
            (this.ordered, this.progress, this.timeout, this.workers);
        let opero = this.opero.build()?;
        let function = opero.wrapper_identity(function)?;
        let pool = crate::process::Workers::start(
            workers,
            timeout,
            crate::process::async_trampoline::<F, I, T, E, Fut>(),
        )?;
        let batches = crate::process::Batches::start(pool, in_flight)?;
        Ok(crate::OpmapProcessAsync {
            inner: Arc::new(crate::process_map::AsyncProcessInner {
                opero,
                function,
                batches,
                slots,
                ordered,
                progress,
                types: std::marker::PhantomData,
            }),
        })
    }
}
