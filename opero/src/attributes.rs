//! The attribute macros, documented where users find them.

/// Makes a function resilient, the counterpart of the original's `@opero` decorator: cache
/// lookup, then fallback across the values of one parameter, each with retries and exponential
/// backoff, each attempt rate-limited, then the function's own body.
///
/// The function keeps its name and parameters; it returns `Result<T, AllFailedError<E>>` for
/// its `Result<T, E>`. Its pipeline is built once, on the first call, and shared by every call;
/// `<fn>_opero()` (a function generated next to it, `Self::<fn>_opero()` for a method) returns it,
/// for its metrics and its cache.
///
/// | key | value | default |
/// |---|---|---|
/// | `retries` | retries after the first attempt, per fallback value | `3` |
/// | `backoff_factor` | growth of the delay, at least 1 | `1.5` |
/// | `min_delay`, `max_delay` | `"250ms"`, `"30s"`, or seconds (`0.25`) | `"100ms"`, `"30s"` |
/// | `jitter` | `"full"`, `"none"` or `"decorrelated"` | `"full"` |
/// | `retry_on` | a path to `fn(&E) -> bool` | every error |
/// | `deadline` | the whole call's time budget, a duration above zero (see the README's "Deadlines, timeouts and server hints") | none |
/// | `attempt_timeout` | one attempt's time, a duration above zero and at most the `deadline`; an `async fn` only (a blocking call cannot be preempted) | none |
/// | `breaker` | `true`: a circuit breaker per fallback value with the defaults of [`BreakerConfig`](crate::BreakerConfig); any `breaker_*` key also turns it on | off |
/// | `breaker_failure_threshold` | consecutive failures that open it, at least 1 | `5` |
/// | `breaker_failure_ratio`, `breaker_min_throughput`, `breaker_window` | the ratio trigger: a share in (0, 1] of failed calls, over at least that many calls (at least 1) in the last window (a duration above zero) | off, `10`, `"30s"` |
/// | `breaker_open_duration`, `breaker_half_open_probes` | how long it stays open (above zero), and the probes then let through (at least 1) | `"30s"`, `1` |
/// | `bulkhead_max_concurrent`, `bulkhead_max_queue` | calls in flight (at least 1) and calls waiting for a slot; either turns the bulkhead on | `10`, `0` |
/// | `hedge_delay`, `max_hedges` | hedging: a hedge after the delay (above zero) without an answer, at most that many (at least 1); either turns it on; an `async fn` only | `"1s"`, `1` |
/// | `arg_fallback` | a parameter: the function then takes `&[T]` for it (a `Fallbacks<T>` derefs to one) and runs with each value in turn, each with full retries; the value is never part of the cache key | none |
/// | `cache` | `true` / `false` | `false` |
/// | `cache_ttl` | a duration | until evicted |
/// | `cache_key` | a path to a unit struct implementing [`KeyFn`](crate::KeyFn) | [`StableKey`](crate::StableKey) |
/// | `cache_namespace` | a string | `"opero"` |
/// | `cache_backend` | `"memory"`, `"disk"` (feature `disk`), `"redis"` (feature `redis`) | `"memory"` |
/// | `rate_limit`, `burst` | permits per second, above 0; burst at least 1 | none, 1 |
/// | `name` | the name the function is cached under | its path, `module_path!()::name`; for a method `type_name::<Self>()::name` |
/// | `key` | for a method, the parameters that make the key, `key = (a, b)` | `self` and every parameter but the fallback one |
///
/// Every value is checked when the code compiles: an unknown key, a mistyped value, a duration
/// that does not parse, a negative rate, an unknown backend, an `arg_fallback` that names no
/// parameter, a setting out of its range, an `attempt_timeout` or hedging on a blocking function,
/// or a return type that is not a `Result` is a compile error pointing at it. The attribute
/// cannot turn the breaker's consecutive-failure trigger off (a config file can, with
/// `"failure_threshold": null`): for a breaker that the ratio alone opens, set
/// `breaker_failure_threshold` above any run of failures you expect. With the
/// cache on, the arguments (and `self`) must be `serde::Serialize` and the value a cacheable
/// `serde` type; every argument is `Clone` (each attempt gets it again; references are copied).
/// Settings that belong outside the code (a Redis URL, a cache directory) come from the
/// environment: `OPERO_DISK_DIR` for `"disk"`, `OPERO_REDIS_URL` for `"redis"`, read on the first
/// call. Methods take `&self`; generic functions are refused. An associated function without
/// `self` is not recognised as one (a macro cannot see the `impl` around it): keep such a
/// function free, or give it a `&self`. A backend that cannot be built on the first call (a
/// Redis server that is down) leaves the function running uncached, with a logged error, as a
/// backend failure later does.
///
/// # Examples
///
/// ```
/// use opero::opero;
///
/// #[opero(retries = 3, min_delay = "1ms", cache = true, cache_ttl = "5m")]
/// fn fetch_data(item_id: u32) -> Result<String, String> {
///     Ok(format!("data for {item_id}"))
/// }
///
/// #[opero(arg_fallback = endpoint, retries = 0)]
/// fn call_api(path: &str, endpoint: &str) -> Result<String, String> {
///     if endpoint.contains("primary") { Err("primary is down".into()) } else { Ok(format!("{endpoint}{path}")) }
/// }
///
/// assert_eq!(fetch_data(1).unwrap(), "data for 1");
/// assert_eq!(fetch_data(1).unwrap(), "data for 1");
/// assert_eq!(fetch_data_opero().metrics().cache_hits, 1);
///
/// let got = call_api("/users", &["https://primary.example", "https://backup.example"]);
/// assert_eq!(got.unwrap(), "https://backup.example/users");
/// ```
///
/// Async functions and `&self` methods work the same way:
///
/// ```
/// use opero::opero;
///
/// struct Client { base: String }
///
/// impl Client {
///     #[opero(retries = 1, min_delay = 0)]
///     async fn get(&self, id: u32) -> Result<String, String> {
///         Ok(format!("{}/{id}", self.base))
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let client = Client { base: "api".into() };
/// assert_eq!(client.get(7).await.unwrap(), "api/7");
/// assert_eq!(Client::get_opero().metrics().retries, 0);
/// # });
/// ```
pub use opero_macros::opero;

/// Makes a per-item function into a parallel map, the counterpart of the original's `@opmap`
/// decorator: the generated function takes `impl IntoIterator<Item = I>` and returns one
/// `Result<T, AllFailedError<E>>` per item, each item with the pipeline of [`macro@opero`].
///
/// It takes every key of [`macro@opero`] (with `arg_fallback`, the generated function also takes
/// the fallback values, as a slice) and `mode` (`"thread"`, `"rayon"`, `"async"`, `"process"`,
/// `"async_process"`; `"thread"` for a blocking function and `"async"` for an async one by
/// default), `workers` (default: the number of CPUs), `ordered` (default `true`) and `progress`.
/// The per-item function takes the item by reference (`&I`) or by value (`I`, cloned for each
/// attempt). The map is built once, on first use; `<fn>_opmap()` returns it (a `Result`: a map
/// that could not start, as worker processes without `init_workers()`, is an error there and
/// fails every item). With `arg_fallback` the map is built per call, since its values are.
///
/// The process modes run the function in worker processes that re-execute the binary: call
/// [`init_workers()`](crate::init_workers) first in `main`.
///
/// # Examples
///
/// ```
/// use opero::opmap;
///
/// #[opmap(mode = "thread", workers = 4, ordered = true, progress = false, retries = 2)]
/// fn square(x: &u64) -> Result<u64, String> {
///     Ok(x * x)
/// }
///
/// assert_eq!(square(1..=4), [Ok(1), Ok(4), Ok(9), Ok(16)]);
/// ```
#[cfg(feature = "parallel")]
pub use opero_macros::opmap;
