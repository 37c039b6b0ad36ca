//! [`RedisRateLimiter`]: one GCRA bucket in Redis, shared by every process that names it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opero_core::{BucketClock, OperoError, RateLimitConfig, RateLimiter, Reservation, TokenBucket};
use redis::aio::ConnectionManager;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Client, Connection, RedisError, Script};

/// The GCRA, run by the server in one step, on the server's clock (`TIME`), so that machines
/// with skewed clocks share one schedule.
///
/// `KEYS[1]`: the bucket. `ARGV`: the interval between permits and the burst tolerance (both in
/// microseconds, possibly fractional), the number of permits `n`, and the mode: `0` takes `n`
/// permits unconditionally (some may be valid only later), `1` takes up to `n` permits valid now.
/// The reply is `{taken, now, base}`: `taken` permits, the server's time in microseconds, and
/// `base` such that permit `i` (from 0) is valid at `now + base + (i + 1) × interval`; with
/// nothing taken in mode `1`, the next permit is valid at `now + base + interval`. Times are
/// sent as text: Lua numbers are doubles, and an integer reply would truncate them.
pub const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local take = n
if ARGV[4] == '1' then
  local free = math.floor((now + tolerance - tat) / interval + 1e-9)
  if free < take then take = free end
  if take <= 0 then
    return {0, string.format('%.3f', now), string.format('%.3f', tat - tolerance - now)}
  end
end
local new_tat = tat + take * interval
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {take, string.format('%.3f', now), string.format('%.3f', tat - tolerance - now)}
";

/// The highest rate the Redis limiter accepts: it counts in microseconds of the server's clock.
pub const MAX_REDIS_RATE: f64 = 1e6;

/// What a [`RedisRateLimiter`] does while its Redis server cannot be reached. Every permit
/// given this way is counted in [`RedisLimiterStats`], and the first failure of each outage is
/// logged as a `tracing` warning; the return of the server is logged too.
///
/// Option `down` of the backend: `"local"`, `"wait"` or `"fail"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisDown {
    /// The default: permits come from a [`TokenBucket`] in this process at `local_rate` (the
    /// shared rate unless set), so calls go on at once and the server is tried again after
    /// `down_min_wait`, growing to `down_max_wait`. While the server is down each process keeps
    /// its own rate: N processes may send up to N × `local_rate` together; set `local_rate` to
    /// the rate divided by the number of processes to keep the aggregate.
    #[default]
    Local,
    /// Calls wait for the server, trying it every `down_min_wait`, for at most `wait_limit`;
    /// past it the attempt fails as under [`Fail`](RedisDown::Fail). The shared rate is never
    /// exceeded.
    Wait,
    /// The attempt fails at once with [`AttemptError::NoPermit`](opero_core::AttemptError)
    /// (retried per the retry settings); [`RedisRateLimiter::reserve_permit`] returns an
    /// [`OperoError`] of kind `Backend`. The shared rate is never exceeded.
    Fail,
}

impl std::str::FromStr for RedisDown {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(RedisDown::Local),
            "wait" => Ok(RedisDown::Wait),
            "fail" => Ok(RedisDown::Fail),
            _ => Err("known: \"local\", \"wait\", \"fail\"".to_owned()),
        }
    }
}

/// Settings of a [`RedisRateLimiter`] beyond `rate` and `burst`; from config, they are the
/// `rate_limit.backend_options` (text).
///
/// | option | default | meaning |
/// |---|---|---|
/// | `url` | `redis://127.0.0.1:6379/0` | the server; with `cluster = true`, comma-separated seed nodes |
/// | `cluster` | `false` | a Redis Cluster (the bucket's key carries a hash tag: one slot) |
/// | `name` | `default` | the limit's name, shared by every process that uses the limit |
/// | `lease` | `1` | permits taken per round trip (1 to `burst`), handed out locally |
/// | `down` | `local` | [`RedisDown`]: `local`, `wait` or `fail` |
/// | `local_rate` | the rate | the rate of the local bucket under `down = "local"` |
/// | `connect_timeout` | `1s` | bound on connecting |
/// | `response_timeout` | `1s` | bound on one reply |
/// | `down_min_wait` | `250ms` | first wait before trying a down server again |
/// | `down_max_wait` | `5s` | longest such wait |
/// | `wait_limit` | `30s` | longest wait for a permit under `down = "wait"` |
///
/// # Examples
///
/// ```
/// use opero_cache_redis::{RedisDown, RedisLimiterOptions};
/// use opero_core::RateLimitConfig;
///
/// let config = RateLimitConfig::per_second(50.0)
///     .with_backend("redis", [("name", "geo-api"), ("down", "fail")]);
/// let options = RedisLimiterOptions::from_config(&config).unwrap();
/// assert_eq!(options.down, RedisDown::Fail);
///
/// let bad = RateLimitConfig::per_second(50.0).with_backend("redis", [("down", "maybe")]);
/// let err = RedisLimiterOptions::from_config(&bad).unwrap_err();
/// assert_eq!(err.field(), Some("rate_limit.backend_options.down"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RedisLimiterOptions {
    /// The server URL, or comma-separated seed nodes of a cluster.
    pub url: String,
    /// Whether `url` names a Redis Cluster.
    pub cluster: bool,
    /// The limit's name; the Redis key is `opero:limit:{name}`.
    pub name: String,
    /// Permits taken per round trip, 1 (no lease) to `burst`.
    pub lease: u32,
    /// What happens while the server is down.
    pub down: RedisDown,
    /// The local bucket's rate under [`RedisDown::Local`]; `None`: the shared rate.
    pub local_rate: Option<f64>,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Bound on one reply.
    pub response_timeout: Duration,
    /// First wait before trying a down server again.
    pub down_min_wait: Duration,
    /// Longest wait before trying a down server again.
    pub down_max_wait: Duration,
    /// Longest wait for a permit under [`RedisDown::Wait`].
    pub wait_limit: Duration,
}

impl Default for RedisLimiterOptions {
    fn default() -> Self {
        RedisLimiterOptions {
            url: crate::DEFAULT_URL.to_owned(),
            cluster: false,
            name: "default".to_owned(),
            lease: 1,
            down: RedisDown::Local,
            local_rate: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            down_min_wait: Duration::from_millis(250),
            down_max_wait: Duration::from_secs(5),
            wait_limit: Duration::from_secs(30),
        }
    }
}

/// Every option and the field an error about it names.
const OPTIONS: &[(&str, &str)] = &[
    ("url", "rate_limit.backend_options.url"),
    ("cluster", "rate_limit.backend_options.cluster"),
    ("name", "rate_limit.backend_options.name"),
    ("lease", "rate_limit.backend_options.lease"),
    ("down", "rate_limit.backend_options.down"),
    ("local_rate", "rate_limit.backend_options.local_rate"),
    (
        "connect_timeout",
        "rate_limit.backend_options.connect_timeout",
    ),
    (
        "response_timeout",
        "rate_limit.backend_options.response_timeout",
    ),
    ("down_min_wait", "rate_limit.backend_options.down_min_wait"),
    ("down_max_wait", "rate_limit.backend_options.down_max_wait"),
    ("wait_limit", "rate_limit.backend_options.wait_limit"),
];

fn field(option: &str) -> &'static str {
    OPTIONS
        .iter()
        .find(|(name, _)| *name == option)
        .map(|(_, field)| *field)
        .unwrap_or("rate_limit.backend_options")
}

impl RedisLimiterOptions {
    /// A limit named `name` on the server at `url`, other settings at their defaults.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        RedisLimiterOptions {
            url: url.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// Reads `config.backend_options`; an unknown option or a malformed value is an error naming
    /// it (`rate_limit.backend_options.<option>`).
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, OperoError> {
        let mut o = RedisLimiterOptions::default();
        for (key, text) in &config.backend_options {
            let f = field(key);
            if f == "rate_limit.backend_options" {
                let known: Vec<&str> = OPTIONS.iter().map(|(n, _)| *n).collect();
                return Err(OperoError::invalid_config(
                    f,
                    key,
                    format!("unknown option of the redis rate limiter; known: {known:?}"),
                ));
            }
            let parse_err =
                |why: String| OperoError::invalid_config(f, text, format!("cannot parse: {why}"));
            let duration = || {
                config
                    .duration_option(key, f)
                    .map(Option::unwrap_or_default)
            };
            match key.as_str() {
                "url" => o.url = text.clone(),
                "cluster" => o.cluster = text.parse().map_err(|e| parse_err(format!("{e}")))?,
                "name" => o.name = text.clone(),
                "lease" => o.lease = text.parse().map_err(|e| parse_err(format!("{e}")))?,
                "down" => o.down = text.parse().map_err(parse_err)?,
                "local_rate" => {
                    o.local_rate = Some(text.parse().map_err(|e| parse_err(format!("{e}")))?)
                }
                "connect_timeout" => o.connect_timeout = duration()?,
                "response_timeout" => o.response_timeout = duration()?,
                "down_min_wait" => o.down_min_wait = duration()?,
                "down_max_wait" => o.down_max_wait = duration()?,
                "wait_limit" => o.wait_limit = duration()?,
                _ => unreachable!("every option of OPTIONS is matched"),
            }
        }
        Ok(o)
    }

    /// Checks every value against the limit's `burst`; the error names the first bad option.
    pub fn validate(&self, burst: u32) -> Result<(), OperoError> {
        if self.name.is_empty() || self.name.contains(['{', '}']) {
            return Err(OperoError::invalid_config(
                field("name"),
                &self.name,
                "must be non-empty, without '{' or '}' (the name is the key's hash tag)",
            ));
        }
        if self.lease == 0 || self.lease > burst {
            return Err(OperoError::invalid_config(
                field("lease"),
                self.lease,
                format!("must be between 1 (no lease) and the burst ({burst})"),
            ));
        }
        if let Some(r) = self.local_rate {
            RateLimitConfig::per_second(r).validate().map_err(|_| {
                OperoError::invalid_config(
                    field("local_rate"),
                    r,
                    "must be a finite number of permits per second above 0",
                )
            })?;
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("down_min_wait", self.down_min_wait),
            ("down_max_wait", self.down_max_wait),
        ] {
            if d.is_zero() || d > Duration::from_secs(24 * 3600) {
                return Err(OperoError::invalid_config(
                    field(name),
                    format!("{d:?}"),
                    "must be above 0 and at most 24h",
                ));
            }
        }
        if self.down_min_wait > self.down_max_wait {
            return Err(OperoError::invalid_config(
                field("down_min_wait"),
                format!("{:?}", self.down_min_wait),
                format!("must not exceed down_max_wait ({:?})", self.down_max_wait),
            ));
        }
        if self.wait_limit > Duration::from_secs(24 * 3600) {
            return Err(OperoError::invalid_config(
                field("wait_limit"),
                format!("{:?}", self.wait_limit),
                "must be at most 24h",
            ));
        }
        Ok(())
    }
}

/// Counters of a [`RedisRateLimiter`], shared by its clones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimiterStats {
    /// Round trips that reached the server.
    pub round_trips: u64,
    /// Permits handed out from a lease, without a round trip.
    pub leased_permits: u64,
    /// Failed round trips (connection refused, timeout, ...).
    pub redis_errors: u64,
    /// Permits taken from the local bucket while the server was down ([`RedisDown::Local`]).
    pub local_permits: u64,
    /// Permits refused because the server was down ([`RedisDown::Fail`], or
    /// [`RedisDown::Wait`] past `wait_limit`).
    pub refused_permits: u64,
}

/// Where a [`Permit`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermitSource {
    /// A round trip to the shared bucket.
    Redis,
    /// A lease taken earlier from the shared bucket.
    Lease,
    /// The local bucket, while the server was down.
    Local,
}

/// One permit of a [`RedisRateLimiter`]: how long to wait before using it and, when it came from
/// the shared bucket, when it is valid on the server's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Permit {
    /// How long to wait before using the permit.
    pub wait: Duration,
    /// When the permit is valid, in microseconds since the Unix epoch on the server's clock
    /// (`None` for a local permit).
    pub server_time_us: Option<f64>,
    /// Where it came from.
    pub source: PermitSource,
}

/// A rate limit shared by every process (on any machine) that uses the same Redis server and
/// `name`: a GCRA bucket kept in Redis and updated by one Lua script per round trip (`EVALSHA`,
/// `EVAL` when the server does not know the script yet), on the server's clock.
///
/// `rate` and `burst` mean what they mean for [`TokenBucket`]; every process using a name must
/// give the same ones. With `lease` above 1, one round trip takes up to `lease` permits, which
/// this process hands out itself: a lease may be used from its valid time for one interval, then
/// its unused permits are dropped (never spent late), so the aggregate holds within one permit.
///
/// Forms: blocking ([`acquire_blocking_permit`](Self::acquire_blocking_permit), or the
/// [`RateLimiter`] trait's `acquire_blocking`), async ([`acquire_permit`](Self::acquire_permit);
/// in a pipeline, the trait's `reserve_async`, which never blocks the runtime) and try
/// ([`try_acquire_permit`](Self::try_acquire_permit), [`try_acquire_permit_async`](Self::try_acquire_permit_async)).
/// The async forms need a tokio runtime (outside one they make a blocking round trip). The
/// trait's infallible `reserve`, `acquire` and `acquire_blocking` cannot report a down server:
/// under [`RedisDown::Fail`] or past `wait_limit` they take a local permit instead (counted).
///
/// While the server is down, [`RedisDown`] decides; the default is [`RedisDown::Local`]. A
/// restarted server without persistence starts the bucket afresh (one burst may pass at once).
///
/// # Examples
///
/// Two terminals, one Redis: run this in both and together they make 5 calls a second.
///
/// ```no_run
/// use opero_cache_redis::{RedisLimiterOptions, RedisRateLimiter};
/// use opero_core::{NoCache, Opero, RateLimitConfig};
/// use std::sync::Arc;
///
/// let limiter = RedisRateLimiter::new(
///     &RateLimitConfig::per_second(5.0),
///     RedisLimiterOptions::new("redis://127.0.0.1:6379/0", "geo-api"),
/// )
/// .unwrap();
/// let opero = Opero::<NoCache>::builder().rate_limiter(Arc::new(limiter)).build().unwrap();
/// for i in 0..20 {
///     opero.run(|| Ok::<_, String>(i)).unwrap();
/// }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    options: RedisLimiterOptions,
    key: String,
    script: Script,
    interval_us: f64,
    tolerance_us: f64,
    target: Target,
    pool: Mutex<Vec<SyncConn>>,
    aconn: tokio::sync::Mutex<Option<AsyncConn>>,
    local: TokenBucket,
    lease: Mutex<VecDeque<Leased>>,
    health: Health,
    stats: Stats,
}

// One per limiter: the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single(Client),
    Cluster(ClusterClient),
}

enum SyncConn {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

#[derive(Clone)]
enum AsyncConn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// A leased permit: valid from `valid`, dropped after `expires`.
#[derive(Clone, Copy)]
struct Leased {
    valid: Instant,
    expires: Instant,
    server_us: f64,
}

/// One reply of the script.
struct Grant {
    taken: u32,
    now_us: f64,
    base_us: f64,
    at: Instant,
}

#[derive(Default)]
struct Stats {
    round_trips: AtomicU64,
    leased_permits: AtomicU64,
    redis_errors: AtomicU64,
    local_permits: AtomicU64,
    refused_permits: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for RedisRateLimiter {
    // The URL may hold a password: only the name and the settings are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.inner.options;
        f.debug_struct("RedisRateLimiter")
            .field("name", &o.name)
            .field("cluster", &o.cluster)
            .field("interval_us", &self.inner.interval_us)
            .field("lease", &o.lease)
            .field("down", &o.down)
            .field("marked_down", &self.inner.health.is_down())
            .finish()
    }
}

impl RedisRateLimiter {
    /// A limiter of `config.rate` and `config.burst` (its backend options are not read: see
    /// [`from_config`](Self::from_config)) with `options`. No connection is made yet.
    pub fn new(config: &RateLimitConfig, options: RedisLimiterOptions) -> Result<Self, OperoError> {
        let local = RateLimitConfig {
            backend: opero_core::LOCAL_LIMITER.to_owned(),
            backend_options: Default::default(),
            ..config.clone()
        };
        local.validate()?;
        let rate = local.rate.ok_or_else(|| {
            OperoError::invalid_config("rate_limit.rate", "none", "a rate limiter needs a rate")
        })?;
        if rate > MAX_REDIS_RATE {
            return Err(OperoError::invalid_config(
                "rate_limit.rate",
                rate,
                format!("the redis rate limiter counts in microseconds: at most {MAX_REDIS_RATE:e} permits per second"),
            ));
        }
        options.validate(config.burst)?;
        let target = if options.cluster {
            let nodes: Vec<&str> = options.url.split(',').map(str::trim).collect();
            ClusterClient::builder(nodes)
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.response_timeout)
                .build()
                .map(Target::Cluster)
        } else {
            Client::open(options.url.as_str()).map(Target::Single)
        }
        .map_err(|e| {
            // The URL is not echoed: it may hold a password.
            OperoError::invalid_config(
                field("url"),
                "(hidden)",
                format!("not a usable Redis URL: {e}"),
            )
        })?;
        let local_bucket = TokenBucket::with_clock(
            &RateLimitConfig {
                rate: Some(options.local_rate.unwrap_or(rate)),
                ..local.clone()
            },
            BucketClock::Tsc,
        )?;
        let interval_us = 1e6 / rate;
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                key: format!("opero:limit:{{{}}}", options.name),
                script: Script::new(GCRA_SCRIPT),
                interval_us,
                tolerance_us: interval_us * f64::from(config.burst),
                target,
                pool: Mutex::new(Vec::new()),
                aconn: tokio::sync::Mutex::new(None),
                local: local_bucket,
                lease: Mutex::new(VecDeque::new()),
                health: Health::new(options.down_min_wait, options.down_max_wait),
                stats: Stats::default(),
                options,
            }),
        })
    }

    /// A limiter from a config whose backend is `"redis"`, its options read from
    /// `backend_options` (see [`RedisLimiterOptions`]).
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, OperoError> {
        Self::new(config, RedisLimiterOptions::from_config(config)?)
    }

    /// The settings.
    pub fn options(&self) -> &RedisLimiterOptions {
        &self.inner.options
    }

    /// The Redis key of the bucket: `opero:limit:{name}`.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The Lua source of the script, [`GCRA_SCRIPT`].
    pub fn script() -> &'static str {
        GCRA_SCRIPT
    }

    /// The arguments of [`GCRA_SCRIPT`] for `n` permits, `try_only` for mode 1: with the key,
    /// what one `EVALSHA` of this limiter sends.
    pub fn script_args(&self, n: u32, try_only: bool) -> [String; 4] {
        [
            format!("{:.3}", self.inner.interval_us),
            format!("{:.3}", self.inner.tolerance_us),
            n.to_string(),
            if try_only { "1" } else { "0" }.to_owned(),
        ]
    }

    /// The counters so far.
    pub fn stats(&self) -> RedisLimiterStats {
        let s = &self.inner.stats;
        RedisLimiterStats {
            round_trips: s.round_trips.load(Ordering::Relaxed),
            leased_permits: s.leased_permits.load(Ordering::Relaxed),
            redis_errors: s.redis_errors.load(Ordering::Relaxed),
            local_permits: s.local_permits.load(Ordering::Relaxed),
            refused_permits: s.refused_permits.load(Ordering::Relaxed),
        }
    }

    /// Whether the limiter currently skips the server after a failure.
    pub fn is_marked_down(&self) -> bool {
        self.inner.health.is_down()
    }

    // ===== the blocking forms =====

    /// Takes the next permit (one round trip, or none with a lease in hand) and says how long to
    /// wait before using it, without waiting. Blocks the thread for the round trip; with the
    /// server down, does what [`RedisDown`] says.
    pub fn reserve_permit(&self) -> Result<Permit, OperoError> {
        if let Some(p) = self.leased_permit(false) {
            return Ok(p);
        }
        let deadline = Instant::now() + self.inner.options.wait_limit;
        loop {
            let error = if self.inner.health.may_try(self.inner.options.down) {
                match self.round_trip_sync(self.inner.options.lease, false) {
                    Ok(grant) => return Ok(self.take_grant(grant)),
                    Err(e) => self.failed(e),
                }
            } else {
                self.inner.health.last_error()
            };
            match self.when_down(&error, deadline)? {
                Some(permit) => return Ok(permit),
                None => std::thread::sleep(self.retry_pause(deadline)),
            }
        }
    }

    /// Blocks until a permit is valid; the round trip and the wait both block the thread.
    pub fn acquire_blocking_permit(&self) -> Result<Permit, OperoError> {
        let permit = self.reserve_permit()?;
        if !permit.wait.is_zero() {
            std::thread::sleep(permit.wait);
        }
        Ok(permit)
    }

    /// Takes a permit only if one is valid now. With the server down: the local bucket's answer
    /// under [`RedisDown::Local`], an error otherwise (never a wait).
    pub fn try_acquire_permit(&self) -> Result<bool, OperoError> {
        if self.leased_permit(true).is_some() {
            return Ok(true);
        }
        let error = if self.inner.health.may_try(RedisDown::Local) {
            match self.round_trip_sync(self.inner.options.lease, true) {
                Ok(grant) => return Ok(self.take_try_grant(grant)),
                Err(e) => self.failed(e),
            }
        } else {
            self.inner.health.last_error()
        };
        self.try_when_down(&error)
    }

    // ===== the async forms =====

    /// The async [`reserve_permit`](Self::reserve_permit): the round trip and any wait for the
    /// server never block the runtime.
    pub async fn reserve_permit_async(&self) -> Result<Permit, OperoError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.reserve_permit();
        }
        if let Some(p) = self.leased_permit(false) {
            return Ok(p);
        }
        let deadline = Instant::now() + self.inner.options.wait_limit;
        loop {
            let error = if self.inner.health.may_try(self.inner.options.down) {
                match self.round_trip_async(self.inner.options.lease, false).await {
                    Ok(grant) => return Ok(self.take_grant(grant)),
                    Err(e) => self.failed(e),
                }
            } else {
                self.inner.health.last_error()
            };
            match self.when_down(&error, deadline)? {
                Some(permit) => return Ok(permit),
                None => tokio::time::sleep(self.retry_pause(deadline)).await,
            }
        }
    }

    /// Waits, without blocking the runtime, until a permit is valid.
    pub async fn acquire_permit(&self) -> Result<Permit, OperoError> {
        let permit = self.reserve_permit_async().await?;
        if !permit.wait.is_zero() {
            opero_core::Acquire::after(permit.wait).await;
        }
        Ok(permit)
    }

    /// The async [`try_acquire_permit`](Self::try_acquire_permit).
    pub async fn try_acquire_permit_async(&self) -> Result<bool, OperoError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.try_acquire_permit();
        }
        if self.leased_permit(true).is_some() {
            return Ok(true);
        }
        let error = if self.inner.health.may_try(RedisDown::Local) {
            match self.round_trip_async(self.inner.options.lease, true).await {
                Ok(grant) => return Ok(self.take_try_grant(grant)),
                Err(e) => self.failed(e),
            }
        } else {
            self.inner.health.last_error()
        };
        self.try_when_down(&error)
    }

    // ===== leases =====

    /// The next leased permit, if one is in hand (and valid now, for `now_only`).
    fn leased_permit(&self, now_only: bool) -> Option<Permit> {
        if self.inner.options.lease <= 1 {
            return None;
        }
        let now = Instant::now();
        let mut lease = lock(&self.inner.lease);
        while let Some(next) = lease.front().copied() {
            if next.expires < now {
                // Spent late, it would add to permits of a later interval.
                lease.pop_front();
                continue;
            }
            if now_only && next.valid > now {
                return None;
            }
            lease.pop_front();
            self.inner
                .stats
                .leased_permits
                .fetch_add(1, Ordering::Relaxed);
            return Some(Permit {
                wait: next.valid.saturating_duration_since(now),
                server_time_us: Some(next.server_us),
                source: PermitSource::Lease,
            });
        }
        None
    }

    /// The first permit of a grant; the others go to the lease.
    fn take_grant(&self, g: Grant) -> Permit {
        let interval = self.inner.interval_us;
        let valid = |i: u32| -> (Instant, f64) {
            let offset_us = (g.base_us + f64::from(i + 1) * interval).max(0.0);
            (
                g.at + Duration::from_secs_f64(offset_us / 1e6),
                g.now_us + offset_us,
            )
        };
        if g.taken > 1 {
            let mut lease = lock(&self.inner.lease);
            for i in 1..g.taken {
                let (at, server_us) = valid(i);
                lease.push_back(Leased {
                    valid: at,
                    expires: at + Duration::from_secs_f64(interval / 1e6),
                    server_us,
                });
            }
        }
        let (at, server_us) = valid(0);
        Permit {
            wait: at.saturating_duration_since(Instant::now()),
            server_time_us: Some(server_us),
            source: PermitSource::Redis,
        }
    }

    fn take_try_grant(&self, g: Grant) -> bool {
        if g.taken == 0 {
            return false;
        }
        let _ = self.take_grant(g);
        true
    }

    // ===== the server down =====

    /// A permit, an error, or `None` to try the server again, per the down policy.
    #[cold]
    fn when_down(&self, error: &str, deadline: Instant) -> Result<Option<Permit>, OperoError> {
        match self.inner.options.down {
            RedisDown::Local => Ok(Some(self.local_permit())),
            RedisDown::Wait if Instant::now() < deadline => Ok(None),
            RedisDown::Wait | RedisDown::Fail => Err(self.refused(error)),
        }
    }

    #[cold]
    fn try_when_down(&self, error: &str) -> Result<bool, OperoError> {
        match self.inner.options.down {
            RedisDown::Local => {
                let ok = self.inner.local.try_acquire();
                if ok {
                    self.inner
                        .stats
                        .local_permits
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(ok)
            }
            RedisDown::Wait | RedisDown::Fail => Err(self.refused(error)),
        }
    }

    fn local_permit(&self) -> Permit {
        self.inner
            .stats
            .local_permits
            .fetch_add(1, Ordering::Relaxed);
        Permit {
            wait: self.inner.local.reserve(),
            server_time_us: None,
            source: PermitSource::Local,
        }
    }

    fn refused(&self, error: &str) -> OperoError {
        self.inner
            .stats
            .refused_permits
            .fetch_add(1, Ordering::Relaxed);
        OperoError::backend(
            format!(
                "redis rate limiter {:?}: no permit while the server is down",
                self.inner.options.name
            ),
            error.to_owned(),
        )
    }

    fn retry_pause(&self, deadline: Instant) -> Duration {
        self.inner
            .options
            .down_min_wait
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1))
    }

    #[cold]
    fn failed(&self, e: RedisError) -> String {
        self.inner
            .stats
            .redis_errors
            .fetch_add(1, Ordering::Relaxed);
        if is_link_failure(&e) {
            self.inner.pool_clear();
        }
        let text = e.to_string();
        self.inner
            .health
            .failure(&self.inner.options.name, self.inner.options.down, &text);
        text
    }

    // ===== round trips =====

    fn round_trip_sync(&self, n: u32, try_only: bool) -> Result<Grant, RedisError> {
        let pooled = lock(&self.inner.pool).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.inner.connect()?,
        };
        let mut inv = self.inner.script.key(&self.inner.key);
        for a in self.script_args(n, try_only) {
            inv.arg(a);
        }
        let reply: (u32, String, String) = match &mut conn {
            SyncConn::Single(c) => inv.invoke(c)?,
            SyncConn::Cluster(c) => inv.invoke(&mut **c)?,
        };
        let at = Instant::now();
        let mut pool = lock(&self.inner.pool);
        if pool.len() < 8 {
            pool.push(conn);
        }
        drop(pool);
        self.grant(reply, at)
    }

    async fn round_trip_async(&self, n: u32, try_only: bool) -> Result<Grant, RedisError> {
        let mut conn = self.inner.async_conn().await?;
        let mut inv = self.inner.script.key(&self.inner.key);
        for a in self.script_args(n, try_only) {
            inv.arg(a);
        }
        let o = &self.inner.options;
        let bound = o.connect_timeout.saturating_add(o.response_timeout);
        let call = async {
            match &mut conn {
                AsyncConn::Single(c) => inv.invoke_async::<(u32, String, String)>(c).await,
                AsyncConn::Cluster(c) => inv.invoke_async::<(u32, String, String)>(c).await,
            }
        };
        let reply = match tokio::time::timeout(bound, call).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply within {bound:?}"),
                )))
            }
        };
        self.grant(reply, Instant::now())
    }

    fn grant(
        &self,
        (taken, now, base): (u32, String, String),
        at: Instant,
    ) -> Result<Grant, RedisError> {
        self.inner.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        self.inner.health.success(&self.inner.options.name);
        let parse = |s: &str| {
            s.parse::<f64>().map_err(|_| {
                RedisError::from((
                    redis::ErrorKind::Parse,
                    "the rate-limit script replied with a malformed time",
                ))
            })
        };
        Ok(Grant {
            taken,
            now_us: parse(&now)?,
            base_us: parse(&base)?,
            at,
        })
    }
}

impl Inner {
    fn connect(&self) -> Result<SyncConn, RedisError> {
        let o = &self.options;
        match &self.target {
            Target::Single(client) => {
                let conn = client.get_connection_with_timeout(o.connect_timeout)?;
                conn.set_read_timeout(Some(o.response_timeout))?;
                conn.set_write_timeout(Some(o.response_timeout))?;
                Ok(SyncConn::Single(conn))
            }
            Target::Cluster(client) => Ok(SyncConn::Cluster(Box::new(client.get_connection()?))),
        }
    }

    fn pool_clear(&self) {
        lock(&self.pool).clear();
    }

    async fn async_conn(&self) -> Result<AsyncConn, RedisError> {
        let mut slot = self.aconn.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let o = &self.options;
        let conn = match &self.target {
            Target::Single(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(o.connect_timeout))
                    .set_response_timeout(Some(o.response_timeout))
                    // Our health check paces reconnection; the manager's retries would hold calls.
                    .set_number_of_retries(1)
                    .set_max_delay(o.down_min_wait);
                AsyncConn::Single(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?)
            }
            Target::Cluster(client) => {
                let bound = o.connect_timeout.saturating_add(o.response_timeout);
                match tokio::time::timeout(bound, client.get_async_connection()).await {
                    Ok(c) => AsyncConn::Cluster(c?),
                    Err(_) => {
                        return Err(RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "cluster connection timed out",
                        )))
                    }
                }
            }
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// Whether the link to the server failed (as opposed to the server refusing one command).
fn is_link_failure(e: &RedisError) -> bool {
    !matches!(e.kind(), redis::ErrorKind::Server(_))
}

/// Whether the server is marked down, and when to try it again.
struct Health {
    down: AtomicBool,
    state: Mutex<HealthState>,
    min: Duration,
    max: Duration,
}

struct HealthState {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl Health {
    fn new(min: Duration, max: Duration) -> Self {
        Health {
            down: AtomicBool::new(false),
            state: Mutex::new(HealthState {
                failures: 0,
                retry_at: None,
                last_error: String::new(),
            }),
            min,
            max,
        }
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Whether to try the server now. Under [`RedisDown::Wait`] the caller paces its own tries.
    #[inline]
    fn may_try(&self, policy: RedisDown) -> bool {
        if !self.is_down() || policy == RedisDown::Wait {
            return true;
        }
        let state = lock(&self.state);
        state.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn last_error(&self) -> String {
        lock(&self.state).last_error.clone()
    }

    #[inline]
    fn success(&self, name: &str) {
        // Only a recovery writes; the healthy path just reads.
        if self.is_down() {
            let mut state = lock(&self.state);
            if state.failures > 0 {
                tracing::info!(target: "opero", limit = name, after_failures = state.failures, "redis rate limiter is reachable again");
            }
            state.failures = 0;
            state.retry_at = None;
            self.down.store(false, Ordering::Relaxed);
        }
    }

    #[cold]
    fn failure(&self, name: &str, policy: RedisDown, error: &str) {
        let mut state = lock(&self.state);
        state.failures = state.failures.saturating_add(1);
        let wait = self
            .min
            .saturating_mul(1u32 << (state.failures - 1).min(16))
            .min(self.max);
        state.retry_at = Some(Instant::now() + wait);
        state.last_error = error.to_owned();
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "opero",
                limit = name,
                policy = ?policy,
                error,
                "redis rate limiter unreachable; permits follow its down policy until it is back"
            );
        }
    }
}

impl RateLimiter for RedisRateLimiter {
    /// One round trip, blocking. A down server under [`RedisDown::Fail`] (or past `wait_limit`)
    /// cannot be reported here: a local permit is taken instead, and counted.
    fn reserve(&self) -> Duration {
        match self.reserve_permit() {
            Ok(p) => p.wait,
            Err(_) => self.local_permit().wait,
        }
    }

    fn try_acquire(&self) -> bool {
        self.try_acquire_permit().unwrap_or(false)
    }

    fn try_reserve(&self) -> Result<Duration, OperoError> {
        self.reserve_permit().map(|p| p.wait)
    }

    fn reserve_async(&self) -> Reservation<'_> {
        Reservation::pending(async move { self.reserve_permit_async().await.map(|p| p.wait) })
    }
}
