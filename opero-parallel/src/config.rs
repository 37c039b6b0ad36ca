//! [`Mode`] and [`OpmapConfig`]: how `opmap` runs, serde-(de)serializable like the rest of opero's
//! configuration.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use opero_core::{ErrorKind, OperoConfig, OperoError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where `opmap` runs each item.
///
/// | mode | runs | for |
/// |---|---|---|
/// | `thread` | a pool of `workers` OS threads | blocking work (files, blocking HTTP clients) |
/// | `rayon` | a rayon pool of `workers` threads | CPU-bound work |
/// | `async` | tokio tasks, `workers` in flight | async functions |
/// | `process`, `async_process` | worker processes re-executing this binary | isolation from crashes and from non-thread-safe code |
///
/// # Examples
///
/// ```
/// use opero_parallel::Mode;
///
/// assert_eq!("rayon".parse::<Mode>().unwrap(), Mode::Rayon);
/// assert_eq!(Mode::AsyncProcess.to_string(), "async_process");
/// let err = "fork".parse::<Mode>().unwrap_err();
/// assert_eq!(err.field(), Some("mode"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Blocking work on a pool of OS threads. The default.
    #[default]
    Thread,
    /// CPU-bound work on a rayon pool of its own.
    Rayon,
    /// Async functions as tokio tasks.
    Async,
    /// A named blocking function in worker processes: build it with
    /// [`wrap_process`](crate::OpmapBuilder::wrap_process) (cargo feature `process`).
    Process,
    /// A named async function in worker processes, several items at once in each: build it with
    /// [`wrap_process_async`](crate::OpmapBuilder::wrap_process_async) (cargo feature `process`).
    AsyncProcess,
}

impl Mode {
    /// Every mode, in the order of the table above.
    pub const ALL: [Mode; 5] = [
        Mode::Thread,
        Mode::Rayon,
        Mode::Async,
        Mode::Process,
        Mode::AsyncProcess,
    ];

    /// The name used in configs: `"thread"`, `"rayon"`, `"async"`, `"process"`, `"async_process"`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Thread => "thread",
            Mode::Rayon => "rayon",
            Mode::Async => "async",
            Mode::Process => "process",
            Mode::AsyncProcess => "async_process",
        }
    }

    /// Whether this mode runs async functions (rather than blocking ones).
    pub fn is_async(self) -> bool {
        matches!(self, Mode::Async | Mode::AsyncProcess)
    }

    /// Checks that this build can run the mode.
    pub(crate) fn check_available(self) -> Result<(), OperoError> {
        match self {
            Mode::Process | Mode::AsyncProcess if !cfg!(feature = "process") => {
                Err(OperoError::invalid_config(
                    "mode",
                    self.name(),
                    "worker-process modes need the cargo feature `process` (of `opero`, on by default)",
                )
                .with_kind(ErrorKind::FeatureDisabled))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = OperoError;

    fn from_str(name: &str) -> Result<Self, OperoError> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                OperoError::invalid_config(
                    "mode",
                    name,
                    "unknown mode; known: \"thread\", \"rayon\", \"async\", \"process\", \"async_process\"",
                )
            })
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Which workers of an opmap share a rate limiter: all of them (the default), or none.
///
/// | scope | limiters | calls per second with `rate` r and `workers` n |
/// |---|---|---|
/// | `shared` (default) | one for the whole map | about r |
/// | `per_worker` | one per worker, each of rate r and the map's burst | about n × r |
///
/// Python's opero documents `rate_limit` of `@opmap` as "per worker"; here the default is one
/// shared limiter, because a rate usually protects one API and more workers must not mean more
/// calls. `per_worker` is for a limit that really belongs to each worker (its own API key, its
/// own connection).
///
/// Who "a worker" is, per mode: a thread of the pool (`thread`), a thread of the rayon pool
/// (`rayon`), one of the `workers` items in flight (`async`), the parent thread that serves one
/// worker process (`process`), one worker's share of `in_flight_per_worker` items in flight
/// (`async_process`). `per_worker` needs a `rate` to give each worker: with no rate, or with a
/// limiter instance passed in (which cannot be split), building the map is an error naming
/// `rate_limit_scope`.
///
/// # Examples
///
/// ```
/// use opero_parallel::RateLimitScope;
///
/// assert_eq!(RateLimitScope::default(), RateLimitScope::Shared);
/// assert_eq!("per_worker".parse::<RateLimitScope>().unwrap(), RateLimitScope::PerWorker);
/// assert_eq!(RateLimitScope::PerWorker.to_string(), "per_worker");
/// let err = "per_thread".parse::<RateLimitScope>().unwrap_err();
/// assert_eq!(err.field(), Some("rate_limit_scope"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitScope {
    /// One limiter for every worker of the map. The default.
    #[default]
    Shared,
    /// A limiter of its own for each worker.
    PerWorker,
}

impl RateLimitScope {
    /// The name used in configs: `"shared"` or `"per_worker"`.
    pub fn name(self) -> &'static str {
        match self {
            RateLimitScope::Shared => "shared",
            RateLimitScope::PerWorker => "per_worker",
        }
    }
}

impl fmt::Display for RateLimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RateLimitScope {
    type Err = OperoError;

    fn from_str(name: &str) -> Result<Self, OperoError> {
        [RateLimitScope::Shared, RateLimitScope::PerWorker]
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                OperoError::invalid_config(
                    "rate_limit_scope",
                    name,
                    "unknown scope; known: \"shared\", \"per_worker\"",
                )
            })
    }
}

impl Serialize for RateLimitScope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for RateLimitScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Refuses `per_worker` when there is no rate to give each worker: a scope with nothing to scope
/// would otherwise be silently ignored.
pub(crate) fn check_scope(
    scope: RateLimitScope,
    rate: Option<f64>,
    limiter_passed_in: bool,
    backend: &str,
) -> Result<(), OperoError> {
    if scope != RateLimitScope::PerWorker {
        return Ok(());
    }
    if backend != opero_core::LOCAL_LIMITER {
        return Err(OperoError::invalid_config(
            "rate_limit_scope",
            scope,
            "a shared rate-limit backend (rate_limit.backend other than \"local\") is one limit \
             for every process and cannot be split per worker",
        ));
    }
    if limiter_passed_in {
        return Err(OperoError::invalid_config(
            "rate_limit_scope",
            scope,
            "a limiter passed in with `rate_limiter` is one limiter and cannot be split per \
             worker: set `rate_limit` (and `burst`) instead",
        ));
    }
    if rate.is_none() {
        return Err(OperoError::invalid_config(
            "rate_limit_scope",
            scope,
            "needs `rate_limit.rate`, the rate each worker gets",
        ));
    }
    Ok(())
}

/// The settings of one `opmap`: the pipeline each item goes through, plus how the items are run.
///
/// # Default
///
/// [`OperoConfig::default`] with the cache namespace `"opero_opmap_item"`, mode
/// [`thread`](Mode::Thread), 4 workers, ordered results, progress bar on (shown only when stderr is
/// a terminal).
///
/// # Examples
///
/// ```
/// use opero_parallel::{Mode, OpmapConfig};
///
/// let cfg = OpmapConfig::from_json(r#"{
///     "mode": "rayon", "workers": 8, "ordered": false,
///     "retry": {"retries": 1}, "rate_limit": {"rate": 50}
/// }"#).unwrap();
/// assert_eq!(cfg.mode, Mode::Rayon);
/// assert_eq!(cfg.workers, 8);
/// assert!(cfg.progress);
/// assert_eq!(cfg.opero.cache.namespace, "opero_opmap_item");
///
/// let err = OpmapConfig::from_json(r#"{"workers": 0}"#).unwrap_err();
/// assert_eq!(err.field(), Some("workers"));
/// let err = OpmapConfig::from_json(r#"{"mode": "gpu"}"#).unwrap_err();
/// assert_eq!(err.field(), Some("mode"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct OpmapConfig {
    /// The pipeline every item goes through (retry, cache, rate limit).
    #[serde(flatten)]
    pub opero: OperoConfig,
    /// Where items run.
    pub mode: Mode,
    /// How many items run at once; at least 1.
    pub workers: usize,
    /// Whether results come back in input order (else in completion order, with their index).
    pub ordered: bool,
    /// Whether to draw a progress bar on stderr when it is a terminal.
    pub progress: bool,
    /// How long one attempt may run: in `async` mode the attempt is dropped, in the process
    /// modes its worker is killed; either way it fails as timed out and is retried per the retry
    /// settings. `thread` and `rayon` refuse it when the opmap is built (a blocking call cannot be
    /// stopped). `None` for no limit.
    #[serde(with = "opero_core::optional_duration")]
    pub timeout: Option<Duration>,
    /// Mode `async_process` only: how many items each worker process runs at once; at least 1.
    pub in_flight_per_worker: usize,
    /// Whether the workers share one rate limiter (`"shared"`, the default) or each has its own
    /// (`"per_worker"`, which needs `rate_limit.rate`).
    pub rate_limit_scope: RateLimitScope,
}

/// The keys an opmap config has beside the pipeline's sections (for suggesting a misspelt one).
const OPMAP_KEYS: &[&str] = &[
    "mode",
    "workers",
    "ordered",
    "progress",
    "timeout",
    "in_flight_per_worker",
    "rate_limit_scope",
];

/// Items in flight in each worker process of an `async_process` map unless set otherwise.
pub const DEFAULT_IN_FLIGHT_PER_WORKER: usize = 8;

/// The cache namespace of opmap items unless set otherwise.
pub const DEFAULT_NAMESPACE: &str = "opero_opmap_item";

/// Workers unless set otherwise.
pub const DEFAULT_WORKERS: usize = 4;

impl Default for OpmapConfig {
    fn default() -> Self {
        let mut opero = OperoConfig::default();
        opero.cache.namespace = DEFAULT_NAMESPACE.to_owned();
        OpmapConfig {
            opero,
            mode: Mode::default(),
            workers: DEFAULT_WORKERS,
            ordered: true,
            progress: true,
            timeout: None,
            in_flight_per_worker: DEFAULT_IN_FLIGHT_PER_WORKER,
            rate_limit_scope: RateLimitScope::Shared,
        }
    }
}

impl OpmapConfig {
    /// Checks every value; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), OperoError> {
        self.opero.validate()?;
        check_workers(self.workers)?;
        if self.timeout == Some(Duration::ZERO) {
            return Err(OperoError::invalid_config(
                "timeout",
                "0s",
                "must be positive; leave it unset for no limit",
            ));
        }
        if self.in_flight_per_worker == 0 {
            return Err(OperoError::invalid_config(
                "in_flight_per_worker",
                0,
                "must be at least 1",
            ));
        }
        check_scope(
            self.rate_limit_scope,
            self.opero.rate_limit.rate,
            false,
            &self.opero.rate_limit.backend,
        )
    }

    /// Parses and validates a JSON document, keeping the typed error of a bad value.
    pub fn from_json(text: &str) -> Result<Self, OperoError> {
        let mut doc = opero_core::parse_document(text)?;
        let mut cfg = OpmapConfig::default();
        if let Some(mode) = doc.remove("mode") {
            let name = mode.as_str().ok_or_else(|| {
                OperoError::invalid_config("mode", &mode, "must be a mode name as text")
            })?;
            cfg.mode = name.parse()?;
        }
        if let Some(workers) = doc.remove("workers") {
            cfg.workers = workers
                .as_u64()
                .and_then(|w| usize::try_from(w).ok())
                .ok_or_else(|| {
                    OperoError::invalid_config("workers", &workers, "must be a whole number")
                })?;
        }
        if let Some(timeout) = doc.remove("timeout") {
            if !timeout.is_null() {
                cfg.timeout = Some(opero_core::parse_duration("timeout", &timeout)?);
            }
        }
        if let Some(n) = doc.remove("in_flight_per_worker") {
            cfg.in_flight_per_worker = n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    OperoError::invalid_config("in_flight_per_worker", &n, "must be a whole number")
                })?;
        }
        if let Some(scope) = doc.remove("rate_limit_scope") {
            let name = scope.as_str().ok_or_else(|| {
                OperoError::invalid_config(
                    "rate_limit_scope",
                    &scope,
                    "must be \"shared\" or \"per_worker\" as text",
                )
            })?;
            cfg.rate_limit_scope = name.parse()?;
        }
        for (field, slot) in [
            ("ordered", &mut cfg.ordered),
            ("progress", &mut cfg.progress),
        ] {
            if let Some(value) = doc.remove(field) {
                *slot = value.as_bool().ok_or_else(|| {
                    OperoError::invalid_config(field, &value, "must be true or false")
                })?;
            }
        }
        // The pipeline sections keep opmap's default namespace unless the document sets one.
        let cache = doc
            .entry("cache")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(cache) = cache.as_object_mut() {
            cache
                .entry("namespace")
                .or_insert_with(|| DEFAULT_NAMESPACE.into());
        }
        cfg.opero = OperoConfig::from_document(doc, OPMAP_KEYS)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

pub(crate) fn check_workers(workers: usize) -> Result<(), OperoError> {
    if workers == 0 {
        return Err(OperoError::invalid_config(
            "workers",
            0,
            "must be at least 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_by_name() {
        for mode in Mode::ALL {
            let text = serde_json::to_string(&mode).unwrap();
            assert_eq!(text, format!("\"{}\"", mode.name()));
            assert_eq!(serde_json::from_str::<Mode>(&text).unwrap(), mode);
        }
        assert!(serde_json::from_str::<Mode>("\"fork\"").is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = OpmapConfig {
            mode: Mode::Async,
            workers: 20,
            ordered: false,
            progress: false,
            timeout: Some(Duration::from_millis(1500)),
            in_flight_per_worker: 3,
            rate_limit_scope: RateLimitScope::PerWorker,
            opero: OperoConfig {
                rate_limit: opero_core::RateLimitConfig::per_second(5.0),
                ..OpmapConfig::default().opero
            },
        };
        let text = serde_json::to_string(&cfg).unwrap();
        let back = OpmapConfig::from_json(&text).unwrap();
        assert_eq!(back.mode, Mode::Async);
        assert_eq!(back.workers, 20);
        assert!(!back.ordered && !back.progress);
        assert_eq!(back.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(back.in_flight_per_worker, 3);
        assert_eq!(back.rate_limit_scope, RateLimitScope::PerWorker);
        assert_eq!(back.opero.cache.namespace, DEFAULT_NAMESPACE);
        let serde_back: OpmapConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_back.workers, 20);
        assert_eq!(serde_back.timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |text: &str| OpmapConfig::from_json(text).unwrap_err().field();
        assert_eq!(field(r#"{"workers": -1}"#), Some("workers"));
        assert_eq!(field(r#"{"ordered": "yes"}"#), Some("ordered"));
        assert_eq!(field(r#"{"timeout": "soon"}"#), Some("timeout"));
        assert_eq!(field(r#"{"timeout": 0}"#), Some("timeout"));
        assert_eq!(
            field(r#"{"in_flight_per_worker": 0}"#),
            Some("in_flight_per_worker")
        );
        assert_eq!(field(r#"{"mode": 3}"#), Some("mode"));
        assert_eq!(
            field(r#"{"rate_limit_scope": "per_thread"}"#),
            Some("rate_limit_scope")
        );
        assert_eq!(
            field(r#"{"rate_limit_scope": "per_worker"}"#),
            Some("rate_limit_scope")
        );
        assert_eq!(
            field(r#"{"retry": {"backoff_factor": 0.5}}"#),
            Some("retry.backoff_factor")
        );
    }
}
