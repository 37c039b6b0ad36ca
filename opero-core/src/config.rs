//! Configuration: [`RetryConfig`], [`CacheConfig`], [`RateLimitConfig`] and [`OperoConfig`].
//!
//! Every config is serde-(de)serializable, so it can come from a file. Durations are written for
//! people (`"100ms"`, `"1.5s"`, `"2m"`) or as a number of seconds (`0.1`). Values are validated when
//! a pipeline is built; a bad one gives an [`OperoError`] naming the field and the value.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::{BreakerConfig, RawBreakerConfig};
use crate::bulkhead::BulkheadConfig;
use crate::error::OperoError;
use crate::hedge::{HedgeConfig, RawHedgeConfig};
use crate::retry::{Jitter, RetryOn};

/// The highest rate a token bucket accepts: one permit per nanosecond.
pub const MAX_RATE: f64 = 1e9;

/// Retry settings: how many times, how long to wait between tries, and which errors to retry.
///
/// # Default
///
/// `retries` 3 (so 4 attempts), `backoff_factor` 1.5, `min_delay` 100 ms, `max_delay` 30 s, jitter
/// [`Jitter::Full`], `retry_on` every error — the defaults of the original `opero`.
///
/// # Examples
///
/// ```
/// use opero_core::RetryConfig;
/// use std::time::Duration;
///
/// let cfg: RetryConfig = serde_json::from_str(r#"{"retries": 2, "min_delay": "50ms"}"#).unwrap();
/// assert_eq!(cfg.retries, 2);
/// assert_eq!(cfg.min_delay, Duration::from_millis(50));
/// assert_eq!(cfg.max_delay, Duration::from_secs(30));
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RawRetryConfig", into = "RawRetryConfig")]
pub struct RetryConfig {
    /// Retries after the first attempt: `retries + 1` attempts per fallback value; 0 means one attempt.
    pub retries: u32,
    /// Growth of the delay from one retry to the next; at least 1.
    pub backoff_factor: f64,
    /// Delay before the first retry, and the floor of every jittered delay.
    pub min_delay: Duration,
    /// Ceiling of every delay.
    pub max_delay: Duration,
    /// How the delay is randomised.
    pub jitter: Jitter,
    /// Which of the user's errors are retried (not serialized: set it in code).
    pub retry_on: RetryOn,
    /// The whole call's time budget, across every fallback value and every retry; `None` (the
    /// default) for none. It wraps the fallback, retry, rate-limit and call steps (a cache hit
    /// never meets it): no delay or permit wait runs past it, a retry whose delay would cross it
    /// is not started, no further fallback value is tried after it, and in the async forms an
    /// attempt still running when it passes is cut ([`AttemptError::DeadlineExceeded`]). The
    /// sync forms check it between attempts, and count it from a process clock that a background
    /// thread ticks every millisecond while sync calls with a deadline run (it parks after
    /// 100 ms without one): the last tick is never after the call, so a sync deadline may end a
    /// call up to about a millisecond early, never late, and reading no clock on the no-fault
    /// path keeps it as cheap as a call without one. A call it ends says so in
    /// [`AllFailedError::ended_by_deadline`]. Must be positive.
    ///
    /// [`AttemptError::DeadlineExceeded`]: crate::AttemptError::DeadlineExceeded
    /// [`AllFailedError::ended_by_deadline`]: crate::AllFailedError::ended_by_deadline
    pub deadline: Option<Duration>,
    /// How long one attempt may run in the async forms; `None` (the default) for no limit. It
    /// sits innermost, around the call itself (after the rate-limit permit): a late attempt is
    /// abandoned as [`AttemptError::TimedOut`] and retried per the retry settings. The sync
    /// forms cannot preempt a blocking call, so they refuse it (a sync `wrap` with an
    /// [`OperoError`] naming `retry.attempt_timeout`, a sync call with
    /// [`AttemptError::Unsupported`]). Must be positive and at most `deadline`.
    ///
    /// [`AttemptError::TimedOut`]: crate::AttemptError::TimedOut
    /// [`AttemptError::Unsupported`]: crate::AttemptError::Unsupported
    pub attempt_timeout: Option<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            retries: 3,
            backoff_factor: 1.5,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Full,
            retry_on: RetryOn::Always,
            deadline: None,
            attempt_timeout: None,
        }
    }
}

impl fmt::Debug for RetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfig")
            .field("retries", &self.retries)
            .field("backoff_factor", &self.backoff_factor)
            .field("min_delay", &self.min_delay)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("retry_on", &self.retry_on)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl RetryConfig {
    /// Checks every value; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), OperoError> {
        let f = self.backoff_factor;
        if !f.is_finite() || f < 1.0 {
            return Err(OperoError::invalid_config(
                "retry.backoff_factor",
                f,
                "must be a finite number of at least 1",
            ));
        }
        if self.min_delay > self.max_delay {
            return Err(OperoError::invalid_config(
                "retry.min_delay",
                humantime::format_duration(self.min_delay),
                format!(
                    "must not exceed retry.max_delay ({})",
                    humantime::format_duration(self.max_delay)
                ),
            ));
        }
        if self.deadline == Some(Duration::ZERO) {
            return Err(OperoError::invalid_config(
                "retry.deadline",
                "0s",
                "must be positive; leave it unset for no deadline",
            ));
        }
        if self.attempt_timeout == Some(Duration::ZERO) {
            return Err(OperoError::invalid_config(
                "retry.attempt_timeout",
                "0s",
                "must be positive; leave it unset for no per-attempt timeout",
            ));
        }
        if let (Some(timeout), Some(deadline)) = (self.attempt_timeout, self.deadline) {
            if timeout > deadline {
                return Err(OperoError::invalid_config(
                    "retry.attempt_timeout",
                    humantime::format_duration(timeout),
                    format!(
                        "must not exceed retry.deadline ({}): the deadline would always cut \
                         the attempt first",
                        humantime::format_duration(deadline)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Cache settings.
///
/// # Default
///
/// Off; when turned on: backend `"memory"`, namespace `"opero"`, no TTL (entries live until evicted),
/// key function `"stable"`, no backend options.
///
/// # Examples
///
/// ```
/// use opero_core::CacheConfig;
/// use std::time::Duration;
///
/// let cfg: CacheConfig = serde_json::from_str(r#"{"enabled": true, "ttl": "10m"}"#).unwrap();
/// assert_eq!(cfg.ttl, Some(Duration::from_secs(600)));
/// assert_eq!(cfg.backend, "memory");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawCacheConfig", into = "RawCacheConfig")]
pub struct CacheConfig {
    /// Whether calls consult the cache.
    pub enabled: bool,
    /// How long an entry lives; `None` keeps it until the backend evicts it.
    pub ttl: Option<Duration>,
    /// Backend name: `"memory"`, `"disk"`, `"redis"` (the last two behind the facade's features).
    pub backend: String,
    /// Prefix that isolates this cache's entries from others in the same store.
    pub namespace: String,
    /// Name of the key function; `"stable"` (the default) is the only built-in one.
    pub key_function: String,
    /// Backend-specific options (`max_capacity`, `dir`, `url`, ...), as text.
    pub backend_options: BTreeMap<String, String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            ttl: None,
            backend: "memory".to_owned(),
            namespace: "opero".to_owned(),
            key_function: "stable".to_owned(),
            backend_options: BTreeMap::new(),
        }
    }
}

impl CacheConfig {
    /// An enabled cache on `backend` with the default namespace.
    pub fn enabled(backend: &str) -> Self {
        CacheConfig {
            enabled: true,
            backend: backend.to_owned(),
            ..Default::default()
        }
    }

    /// Checks every value; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), OperoError> {
        if self.ttl == Some(Duration::ZERO) {
            return Err(OperoError::invalid_config(
                "cache.ttl",
                "0s",
                "must be positive; leave it unset for no expiry or set enabled = false",
            ));
        }
        if self.namespace.is_empty() {
            return Err(OperoError::invalid_config(
                "cache.namespace",
                "",
                "must not be empty",
            ));
        }
        if self.key_function != "stable" {
            return Err(OperoError::invalid_config(
                "cache.key_function",
                &self.key_function,
                "unknown key function; the built-in one is \"stable\" (pass a custom KeyFn in code)",
            ));
        }
        Ok(())
    }

    /// Parses the backend option `name`, if present, naming it in the error.
    pub fn option<T>(&self, name: &'static str) -> Result<Option<T>, OperoError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.backend_options.get(name) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|e| {
                OperoError::invalid_config(name, text, format!("cannot parse backend option: {e}"))
            }),
        }
    }
}

impl CacheConfig {
    /// Parses the backend option `name` as a duration (`"250ms"`, `"1.5s"`, or a number of
    /// seconds), if present; a malformed or negative one is an error naming the option.
    pub fn duration_option(&self, name: &'static str) -> Result<Option<Duration>, OperoError> {
        let Some(text) = self.backend_options.get(name) else {
            return Ok(None);
        };
        let trimmed = text.trim();
        let parsed = match trimmed.parse::<f64>() {
            Ok(secs) => Duration::try_from_secs_f64(secs).ok(),
            Err(_) => parse_human(trimmed),
        };
        parsed.map(Some).ok_or_else(|| {
            OperoError::invalid_config(
                name,
                text,
                "not a duration; write e.g. \"250ms\", \"1.5s\" or a number of seconds",
            )
        })
    }
}

/// Rate-limit settings: a token bucket of `rate` permits per second holding up to `burst`.
///
/// `backend` picks where the bucket lives: `"local"` (the default, a [`TokenBucket`] in this
/// process) or `"redis"` (one bucket shared by every process naming it, with the facade's `redis`
/// feature; its settings go in `backend_options`: `url`, `name`, ... see
/// `opero_cache_redis::RedisLimiterOptions`). A backend other than `"local"` or any backend
/// option without a `rate` is refused: it would silently limit nothing.
///
/// [`TokenBucket`]: crate::TokenBucket
///
/// # Default
///
/// Off (`rate: None`), `burst` 1, backend `"local"`, no backend options.
///
/// # Examples
///
/// ```
/// use opero_core::RateLimitConfig;
///
/// let cfg = RateLimitConfig::per_second(10.0).with_burst(5);
/// assert!(cfg.validate().is_ok());
/// assert!(RateLimitConfig::per_second(f64::NAN).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Permits per second; `None` turns rate limiting off.
    pub rate: Option<f64>,
    /// How many permits may be taken at once after an idle spell; at least 1.
    pub burst: u32,
    /// Where the bucket lives: `"local"` (this process) or `"redis"` (shared through Redis).
    pub backend: String,
    /// Backend-specific options (`url`, `name`, `down`, `lease`, ...), as text.
    pub backend_options: BTreeMap<String, String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            rate: None,
            burst: 1,
            backend: LOCAL_LIMITER.to_owned(),
            backend_options: BTreeMap::new(),
        }
    }
}

/// The name of the in-process rate-limit backend, [`TokenBucket`](crate::TokenBucket).
pub const LOCAL_LIMITER: &str = "local";

impl RateLimitConfig {
    /// `rate` permits per second with a burst of 1.
    pub fn per_second(rate: f64) -> Self {
        RateLimitConfig {
            rate: Some(rate),
            ..Default::default()
        }
    }

    /// Parses the backend option `option` as a duration (`"250ms"`, `"1.5s"`, or a number of
    /// seconds), if present; a malformed or negative one is an error naming `field`.
    pub fn duration_option(
        &self,
        option: &str,
        field: &'static str,
    ) -> Result<Option<Duration>, OperoError> {
        let Some(text) = self.backend_options.get(option) else {
            return Ok(None);
        };
        let trimmed = text.trim();
        let parsed = match trimmed.parse::<f64>() {
            Ok(secs) => Duration::try_from_secs_f64(secs).ok(),
            Err(_) => parse_human(trimmed),
        };
        parsed.map(Some).ok_or_else(|| {
            OperoError::invalid_config(
                field,
                text,
                "not a duration; write e.g. \"250ms\", \"1.5s\" or a number of seconds",
            )
        })
    }

    /// Sets the backend and its options.
    pub fn with_backend<'a>(
        mut self,
        backend: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.backend = backend.to_owned();
        self.backend_options = options
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self
    }

    /// Sets the burst.
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Checks every value; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), OperoError> {
        if let Some(rate) = self.rate {
            if !rate.is_finite() || rate <= 0.0 {
                return Err(OperoError::invalid_config(
                    "rate_limit.rate",
                    rate,
                    "must be a finite number of permits per second above 0",
                ));
            }
            // Below one permit per ~584 years the interval no longer fits in u64 nanoseconds.
            if 1e9 / rate > u64::MAX as f64 / 2.0 {
                return Err(OperoError::invalid_config(
                    "rate_limit.rate",
                    rate,
                    "is too small",
                ));
            }
            // The bucket counts in nanoseconds: above one permit per nanosecond a higher rate
            // would silently mean the same one.
            if rate > MAX_RATE {
                return Err(OperoError::invalid_config(
                    "rate_limit.rate",
                    rate,
                    format!("must be at most {MAX_RATE:e} permits per second; for no limit, leave it unset"),
                ));
            }
        }
        if self.burst == 0 {
            return Err(OperoError::invalid_config(
                "rate_limit.burst",
                0,
                "must be at least 1",
            ));
        }
        if self.backend.is_empty() {
            return Err(OperoError::invalid_config(
                "rate_limit.backend",
                "",
                "must not be empty; the built-in one is \"local\"",
            ));
        }
        // Settings that would limit nothing are refused rather than ignored.
        if self.rate.is_none() && self.backend != LOCAL_LIMITER {
            return Err(OperoError::invalid_config(
                "rate_limit.backend",
                &self.backend,
                "needs rate_limit.rate; without a rate nothing is limited",
            ));
        }
        if self.backend == LOCAL_LIMITER {
            if let Some(name) = self.backend_options.keys().next() {
                return Err(OperoError::invalid_config(
                    "rate_limit.backend_options",
                    name,
                    "the \"local\" backend takes no options",
                ));
            }
        }
        Ok(())
    }
}

/// The whole pipeline's settings.
///
/// # Examples
///
/// ```
/// use opero_core::OperoConfig;
///
/// let cfg = OperoConfig::from_json(r#"{
///     "retry": {"retries": 5, "backoff_factor": 2.0, "min_delay": "200ms", "max_delay": "10s"},
///     "cache": {"enabled": true, "ttl": "1h", "namespace": "weather"},
///     "rate_limit": {"rate": 20, "burst": 5}
/// }"#).unwrap();
/// assert_eq!(cfg.retry.retries, 5);
/// assert_eq!(cfg.rate_limit.rate, Some(20.0));
///
/// let err = OperoConfig::from_json(r#"{"retry": {"backoff_factor": -2}}"#).unwrap_err();
/// assert_eq!(err.field(), Some("retry.backoff_factor"));
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OperoConfig {
    /// Retry settings.
    pub retry: RetryConfig,
    /// Cache settings.
    pub cache: CacheConfig,
    /// Rate-limit settings.
    pub rate_limit: RateLimitConfig,
    /// Circuit breaker settings, one breaker per fallback value; `None` (the default) for none.
    pub breaker: Option<BreakerConfig>,
    /// Bulkhead settings; `None` (the default) for no limit on calls in flight.
    pub bulkhead: Option<BulkheadConfig>,
    /// Hedging settings (async forms only; the sync forms refuse a hedged pipeline); `None`
    /// (the default) for no hedging.
    pub hedge: Option<HedgeConfig>,
}

impl OperoConfig {
    /// Checks every section.
    pub fn validate(&self) -> Result<(), OperoError> {
        self.retry.validate()?;
        self.cache.validate()?;
        self.rate_limit.validate()?;
        if let Some(breaker) = &self.breaker {
            breaker.validate()?;
        }
        if let Some(bulkhead) = &self.bulkhead {
            bulkhead.validate()?;
        }
        if let Some(hedge) = &self.hedge {
            hedge.validate()?;
        }
        Ok(())
    }

    /// Parses and validates a JSON document, keeping the typed error of a bad value.
    ///
    /// Every error names the field: a value of the wrong type (`"retries": -1`,
    /// `"jitter": "sometimes"`), a number out of range, an unknown key (with the nearest known
    /// one: "unknown field `retrys` in `retry`; did you mean `retries`?"), or a document that is
    /// not an object.
    ///
    /// ```
    /// use opero_core::OperoConfig;
    ///
    /// let err = OperoConfig::from_json(r#"{"retry": {"retrys": 9}}"#).unwrap_err();
    /// assert_eq!(err.field(), Some("retry"));
    /// assert!(err.to_string().contains("did you mean `retries`?"), "{err}");
    /// let err = OperoConfig::from_json(r#"{"retry": {"retries": -1}}"#).unwrap_err();
    /// assert_eq!(err.field(), Some("retry.retries"));
    /// assert_eq!(OperoConfig::from_json("[]").unwrap_err().field(), Some("config"));
    /// ```
    pub fn from_json(text: &str) -> Result<Self, OperoError> {
        let doc = parse_document(text)?;
        Self::from_document(doc, &[])
    }

    /// The config in a parsed JSON object whose keys were checked except the sections'; keys in
    /// `also_known` (a wrapping config's own) only serve the suggestion of an unknown key.
    #[doc(hidden)]
    pub fn from_document(
        doc: serde_json::Map<String, serde_json::Value>,
        also_known: &[&str],
    ) -> Result<Self, OperoError> {
        let mut top: Vec<&str> = SECTIONS.iter().map(|(name, _)| *name).collect();
        top.extend_from_slice(also_known);
        for (key, value) in &doc {
            let Some((section, known)) = SECTIONS.iter().find(|(name, _)| name == key) else {
                if also_known.contains(&key.as_str()) {
                    continue;
                }
                return Err(unknown_key("config", key, &top));
            };
            match value {
                serde_json::Value::Object(fields) => {
                    if let Some(bad) = fields.keys().find(|k| !known.contains(&k.as_str())) {
                        return Err(unknown_key(section, bad, known));
                    }
                }
                serde_json::Value::Null => {}
                other => {
                    return Err(OperoError::invalid_config(
                        section,
                        other,
                        "must be an object of settings",
                    ))
                }
            }
        }
        let value = serde_json::Value::Object(doc);
        let raw: RawOperoConfig = serde_path_to_error::deserialize(&value)
            .map_err(|e| type_error(e.path().to_string(), &value, e.inner().to_string()))?;
        let cfg = OperoConfig {
            retry: raw.retry.try_into()?,
            cache: raw.cache.try_into()?,
            rate_limit: raw.rate_limit,
            breaker: raw.breaker.map(TryInto::try_into).transpose()?,
            bulkhead: raw.bulkhead,
            hedge: raw.hedge.map(TryInto::try_into).transpose()?,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The sections of a pipeline config and the keys each accepts (aliases included).
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "retry",
        &[
            "retries",
            "attempts_after_first",
            "backoff_factor",
            "min_delay",
            "max_delay",
            "jitter",
            "deadline",
            "attempt_timeout",
        ],
    ),
    (
        "cache",
        &[
            "enabled",
            "ttl",
            "backend",
            "cache_backend",
            "namespace",
            "key_function",
            "backend_options",
        ],
    ),
    (
        "rate_limit",
        &["rate", "burst", "backend", "backend_options"],
    ),
    (
        "breaker",
        &[
            "failure_threshold",
            "failure_ratio",
            "window",
            "min_throughput",
            "open_duration",
            "half_open_probes",
        ],
    ),
    ("bulkhead", &["max_concurrent", "max_queue"]),
    ("hedge", &["delay", "max_hedges"]),
];

/// Every field path of a pipeline config, so an error can name one as `&'static str`.
const FIELD_PATHS: &[&str] = &[
    "retry",
    "retry.retries",
    "retry.attempts_after_first",
    "retry.backoff_factor",
    "retry.min_delay",
    "retry.max_delay",
    "retry.jitter",
    "retry.deadline",
    "retry.attempt_timeout",
    "cache",
    "cache.enabled",
    "cache.ttl",
    "cache.backend",
    "cache.cache_backend",
    "cache.namespace",
    "cache.key_function",
    "cache.backend_options",
    "rate_limit",
    "rate_limit.rate",
    "rate_limit.burst",
    "rate_limit.backend",
    "rate_limit.backend_options",
    "breaker",
    "breaker.failure_threshold",
    "breaker.failure_ratio",
    "breaker.window",
    "breaker.min_throughput",
    "breaker.open_duration",
    "breaker.half_open_probes",
    "bulkhead",
    "bulkhead.max_concurrent",
    "bulkhead.max_queue",
    "hedge",
    "hedge.delay",
    "hedge.max_hedges",
];

/// Parses a config document, which must be a JSON object; a syntax error or a number out of
/// range names the field where it happened.
#[doc(hidden)]
pub fn parse_document(
    text: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, OperoError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: serde_json::Value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        type_error(path, &serde_json::Value::Null, e.inner().to_string())
    })?;
    de.end()
        .map_err(|e| OperoError::invalid_config("config", "", format!("malformed config: {e}")))?;
    match value {
        serde_json::Value::Object(doc) => Ok(doc),
        other => Err(OperoError::invalid_config(
            "config",
            other,
            "a config must be a JSON object of sections",
        )),
    }
}

/// A value of the wrong type or out of range at `path`, named by the path (or `config` when the
/// path names no known field).
fn type_error(path: String, doc: &serde_json::Value, message: String) -> OperoError {
    let field = FIELD_PATHS
        .iter()
        .find(|known| **known == path)
        .copied()
        .unwrap_or("config");
    let value = path
        .split('.')
        .try_fold(doc, |v, part| v.get(part))
        .filter(|v| !v.is_null())
        .map_or_else(|| path.clone(), |v| v.to_string());
    OperoError::invalid_config(field, value, message)
}

/// The error for a key that `known` does not have, suggesting the nearest known one.
#[doc(hidden)]
pub fn unknown_key(section: &'static str, key: &str, known: &[&str]) -> OperoError {
    let within = |k: &str| section_label(section, k);
    let suggestion = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(key.len()) / 3).max(2))
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_else(|| format!("; known: {}", known.join(", ")));
    OperoError::invalid_config(
        section,
        key,
        format!("unknown field `{key}` {}{suggestion}", within(key)),
    )
}

fn section_label(section: &str, _key: &str) -> String {
    if section == "config" {
        "at the top level".to_owned()
    } else {
        format!("in `{section}`")
    }
}

/// Levenshtein distance, for suggesting the key a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Reads a duration written for people (`"250ms"`, `"1.5s"`, `"2m"`) or as a number of seconds,
/// the way every opero config does; a malformed or negative one is an error naming `field`.
///
/// # Examples
///
/// ```
/// use opero_core::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("timeout", &serde_json::json!("1.5s")).unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("timeout", &serde_json::json!(2)).unwrap(), Duration::from_secs(2));
/// assert_eq!(parse_duration("timeout", &serde_json::json!(-1)).unwrap_err().field(), Some("timeout"));
/// ```
pub fn parse_duration(
    field: &'static str,
    value: &serde_json::Value,
) -> Result<Duration, OperoError> {
    match serde_json::from_value::<RawDuration>(value.clone()) {
        Ok(raw) => raw.into_duration(field),
        Err(_) => Err(OperoError::invalid_config(
            field,
            value,
            "not a duration; write e.g. \"250ms\", \"1.5s\" or a number of seconds",
        )),
    }
}

/// Serde for an optional duration in opero's file format: written as text for people
/// (`"1m 30s"`), read from text or a number of seconds. For `#[serde(with = "...")]`.
pub mod optional_duration {
    use super::RawDuration;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    /// Writes `Some(d)` as text, `None` as null.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        value.map(RawDuration::from_duration).serialize(s)
    }

    /// Reads text, a number of seconds, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<RawDuration>::deserialize(d)?
            .map(|raw| raw.into_duration("duration"))
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

// ===== raw (wire) forms, validated on the way in =====

/// A duration as written in a file: seconds as a number, or text such as `"1.5s"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Seconds(f64),
    Text(String),
}

impl RawDuration {
    pub(crate) fn into_duration(self, field: &'static str) -> Result<Duration, OperoError> {
        match self {
            RawDuration::Seconds(s) => Duration::try_from_secs_f64(s).map_err(|_| {
                OperoError::invalid_config(field, s, "must be a finite, non-negative duration")
            }),
            RawDuration::Text(t) => {
                let trimmed = t.trim();
                if trimmed.starts_with('-') {
                    return Err(OperoError::invalid_config(
                        field,
                        &t,
                        "must be a non-negative duration",
                    ));
                }
                if let Ok(secs) = trimmed.parse::<f64>() {
                    return RawDuration::Seconds(secs).into_duration(field);
                }
                parse_human(trimmed).ok_or_else(|| {
                    OperoError::invalid_config(
                        field,
                        &t,
                        "not a duration; write e.g. \"250ms\", \"1.5s\", \"2m\" or a number of seconds",
                    )
                })
            }
        }
    }

    pub(crate) fn from_duration(d: Duration) -> Self {
        RawDuration::Text(humantime::format_duration(d).to_string())
    }
}

/// Accepts humantime's forms plus a decimal number with a unit (`"1.5s"`), which humantime lacks.
fn parse_human(text: &str) -> Option<Duration> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Some(d);
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hrs" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * scale).ok()
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
struct RawRetryConfig {
    #[serde(alias = "attempts_after_first")]
    retries: u32,
    backoff_factor: f64,
    min_delay: RawDuration,
    max_delay: RawDuration,
    jitter: Jitter,
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<RawDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_timeout: Option<RawDuration>,
}

impl Default for RawRetryConfig {
    fn default() -> Self {
        RetryConfig::default().into()
    }
}

impl From<RetryConfig> for RawRetryConfig {
    fn from(c: RetryConfig) -> Self {
        RawRetryConfig {
            retries: c.retries,
            backoff_factor: c.backoff_factor,
            min_delay: RawDuration::from_duration(c.min_delay),
            max_delay: RawDuration::from_duration(c.max_delay),
            jitter: c.jitter,
            deadline: c.deadline.map(RawDuration::from_duration),
            attempt_timeout: c.attempt_timeout.map(RawDuration::from_duration),
        }
    }
}

impl TryFrom<RawRetryConfig> for RetryConfig {
    type Error = OperoError;
    fn try_from(raw: RawRetryConfig) -> Result<Self, OperoError> {
        let cfg = RetryConfig {
            retries: raw.retries,
            backoff_factor: raw.backoff_factor,
            min_delay: raw.min_delay.into_duration("retry.min_delay")?,
            max_delay: raw.max_delay.into_duration("retry.max_delay")?,
            jitter: raw.jitter,
            retry_on: RetryOn::Always,
            deadline: raw
                .deadline
                .map(|d| d.into_duration("retry.deadline"))
                .transpose()?,
            attempt_timeout: raw
                .attempt_timeout
                .map(|d| d.into_duration("retry.attempt_timeout"))
                .transpose()?,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
struct RawCacheConfig {
    enabled: bool,
    ttl: Option<RawDuration>,
    #[serde(alias = "cache_backend")]
    backend: String,
    namespace: String,
    key_function: String,
    backend_options: BTreeMap<String, String>,
}

impl Default for RawCacheConfig {
    fn default() -> Self {
        CacheConfig::default().into()
    }
}

impl From<CacheConfig> for RawCacheConfig {
    fn from(c: CacheConfig) -> Self {
        RawCacheConfig {
            enabled: c.enabled,
            ttl: c.ttl.map(RawDuration::from_duration),
            backend: c.backend,
            namespace: c.namespace,
            key_function: c.key_function,
            backend_options: c.backend_options,
        }
    }
}

impl TryFrom<RawCacheConfig> for CacheConfig {
    type Error = OperoError;
    fn try_from(raw: RawCacheConfig) -> Result<Self, OperoError> {
        let cfg = CacheConfig {
            enabled: raw.enabled,
            ttl: raw.ttl.map(|t| t.into_duration("cache.ttl")).transpose()?,
            backend: raw.backend,
            namespace: raw.namespace,
            key_function: raw.key_function,
            backend_options: raw.backend_options,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOperoConfig {
    retry: RawRetryConfig,
    cache: RawCacheConfig,
    rate_limit: RateLimitConfig,
    breaker: Option<RawBreakerConfig>,
    bulkhead: Option<BulkheadConfig>,
    hedge: Option<RawHedgeConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_text_or_seconds() {
        let d = |s: &str| {
            serde_json::from_str::<RawDuration>(s)
                .unwrap()
                .into_duration("f")
        };
        assert_eq!(d("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(d("\"1.5s\"").unwrap(), Duration::from_millis(1500));
        assert_eq!(d("\"2m 3s\"").unwrap(), Duration::from_secs(123));
        assert_eq!(d("\"100ms\"").unwrap(), Duration::from_millis(100));
        assert_eq!(d("-1").unwrap_err().field(), Some("f"));
        assert_eq!(d("\"-1s\"").unwrap_err().value(), Some("-1s"));
        assert!(d("\"soon\"").is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = OperoConfig {
            retry: RetryConfig {
                retries: 7,
                min_delay: Duration::from_millis(250),
                ..Default::default()
            },
            cache: CacheConfig {
                ttl: Some(Duration::from_secs(90)),
                ..CacheConfig::enabled("memory")
            },
            rate_limit: RateLimitConfig::per_second(3.5).with_burst(2),
            breaker: Some(BreakerConfig {
                failure_ratio: Some(0.25),
                ..Default::default()
            }),
            bulkhead: Some(BulkheadConfig {
                max_concurrent: 3,
                max_queue: 7,
            }),
            hedge: Some(HedgeConfig::default()),
        };
        let text = serde_json::to_string(&cfg).unwrap();
        let back = OperoConfig::from_json(&text).unwrap();
        assert_eq!(back.retry.retries, 7);
        assert_eq!(back.retry.min_delay, Duration::from_millis(250));
        assert_eq!(back.cache, cfg.cache);
        assert_eq!(back.rate_limit, cfg.rate_limit);
        assert_eq!(back.breaker, cfg.breaker);
        assert_eq!(back.bulkhead, cfg.bulkhead);
        assert_eq!(back.hedge, cfg.hedge);
    }
}
