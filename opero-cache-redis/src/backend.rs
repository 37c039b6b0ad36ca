//! [`RedisCache`]: pooled blocking connections, one multiplexed async connection, and a breaker
//! that stops paying timeouts while the server is known to be down.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opero_core::{
    BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, Codec, Decoded, OperoError,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Connection, RedisError};

/// The URL used when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/";

/// Settings of a [`RedisCache`].
///
/// # Default
///
/// URL [`DEFAULT_URL`], postcard codec, connect and response timeouts of 1 s each, up to 8 idle
/// blocking connections kept, and after a connection failure no new attempt for 250 ms, doubling
/// with each further failure up to 5 s.
///
/// # Examples
///
/// ```
/// use opero_cache_redis::RedisOptions;
/// use opero_core::CacheConfig;
/// use std::time::Duration;
///
/// let mut config = CacheConfig::enabled("redis");
/// config.backend_options.insert("url".into(), "redis://:secret@127.0.0.1:6379/2".into());
/// config.backend_options.insert("response_timeout".into(), "200ms".into());
/// let options = RedisOptions::from_config(&config).unwrap();
/// assert_eq!(options.response_timeout, Duration::from_millis(200));
/// assert_eq!(options.pool_size, 8);
///
/// config.backend_options.insert("pool_size".into(), "many".into());
/// assert_eq!(RedisOptions::from_config(&config).unwrap_err().field(), Some("pool_size"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RedisOptions {
    /// `redis://[:password@]host[:port][/db]`, or `rediss://` for TLS (with the `tls` feature).
    pub url: String,
    /// The codec of new entries.
    pub codec: Codec,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on waiting for a reply.
    pub response_timeout: Duration,
    /// Idle blocking connections kept for reuse.
    pub pool_size: usize,
    /// Wait after the first connection failure before trying the server again.
    pub down_min_wait: Duration,
    /// Ceiling of that wait as failures repeat.
    pub down_max_wait: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: DEFAULT_URL.to_owned(),
            codec: Codec::default(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            pool_size: 8,
            down_min_wait: Duration::from_millis(250),
            down_max_wait: Duration::from_secs(5),
        }
    }
}

impl RedisOptions {
    /// The defaults with this URL.
    pub fn url(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            ..Default::default()
        }
    }

    /// Reads the backend options `url`, `codec`, `connect_timeout`, `response_timeout`,
    /// `pool_size`, `down_min_wait` and `down_max_wait` of `config`.
    pub fn from_config(config: &CacheConfig) -> Result<Self, OperoError> {
        let d = RedisOptions::default();
        Ok(RedisOptions {
            url: config.backend_options.get("url").cloned().unwrap_or(d.url),
            codec: config.option("codec")?.unwrap_or(d.codec),
            connect_timeout: config
                .duration_option("connect_timeout")?
                .unwrap_or(d.connect_timeout),
            response_timeout: config
                .duration_option("response_timeout")?
                .unwrap_or(d.response_timeout),
            pool_size: config.option("pool_size")?.unwrap_or(d.pool_size),
            down_min_wait: config
                .duration_option("down_min_wait")?
                .unwrap_or(d.down_min_wait),
            down_max_wait: config
                .duration_option("down_max_wait")?
                .unwrap_or(d.down_max_wait),
        })
    }

    fn validate(&self) -> Result<(), OperoError> {
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if value.is_zero() {
                return Err(OperoError::invalid_config(name, "0s", "must be positive"));
            }
        }
        // Longer waits mean nothing for a cache lookup, and the client adds them to its clock.
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("down_min_wait", self.down_min_wait),
            ("down_max_wait", self.down_max_wait),
        ] {
            if value > MAX_WAIT {
                return Err(OperoError::invalid_config(
                    name,
                    format!("{value:?}"),
                    "must be at most 1 day",
                ));
            }
        }
        if self.down_min_wait > self.down_max_wait {
            return Err(OperoError::invalid_config(
                "down_min_wait",
                format!("{:?}", self.down_min_wait),
                format!("must not exceed down_max_wait ({:?})", self.down_max_wait),
            ));
        }
        Ok(())
    }
}

/// The longest timeout or back-off wait the Redis options accept.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The longest TTL given to Redis as such (2^62 ms, about 146 million years).
const MAX_REDIS_TTL_MS: u128 = 1 << 62;

/// A cache in Redis: keys `namespace:function:hash`, values through a [`Codec`], the TTL set in
/// the same `SET ... PX` as the value.
///
/// Blocking calls take a connection from a small pool (a connection that failed is dropped, never
/// reused: a late reply must not answer the next command). Async calls share one multiplexed,
/// auto-reconnecting [`ConnectionManager`], created on the first async call in the tokio runtime
/// of that call. Every call is bounded by the connect and response timeouts; after a connection
/// failure the cache fails fast for a short, growing wait instead of paying the timeout on every
/// call, then tries again, so caching resumes by itself once the server is back.
///
/// Namespaces must not contain `:`, the separator of the key layout, so that clearing one (SCAN
/// with a pattern, then UNLINK; never KEYS) cannot touch another.
///
/// Clones share the pool, the async connection and the breaker.
///
/// # Examples
///
/// ```no_run
/// use opero_cache_redis::{RedisCache, RedisOptions};
/// use opero_core::{CacheBackend, CacheKey, FunctionLabel};
/// use std::time::Duration;
///
/// let cache = RedisCache::new(RedisOptions::url("redis://:secret@127.0.0.1:6379/0")).unwrap();
/// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 7 };
/// cache.set(&key, &"hello".to_string(), Some(Duration::from_secs(60))).unwrap();
/// assert_eq!(cache.get::<String>(&key).unwrap().as_deref(), Some("hello"));
/// ```
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    options: RedisOptions,
    pool: Mutex<Vec<Connection>>,
    manager: Mutex<Option<ConnectionManager>>,
    breaker: Breaker,
}

impl fmt::Debug for RedisCache {
    // The URL may hold a password, so only the address is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field(
                "addr",
                &self.inner.client.get_connection_info().addr().to_string(),
            )
            .field("codec", &self.inner.options.codec)
            .field("down", &self.inner.breaker.is_open())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedisCache {
    /// A cache on the server at `options.url`. No connection is made yet, so a server that is
    /// down now only makes the first calls run uncached.
    pub fn new(options: RedisOptions) -> Result<Self, OperoError> {
        options.validate()?;
        let client = Client::open(options.url.as_str()).map_err(|e| {
            let tls_hint = if options.url.starts_with("rediss://") && !cfg!(feature = "tls") {
                "; rediss:// needs the `tls` feature of opero-cache-redis (`redis-tls` of opero)"
            } else {
                ""
            };
            // The URL is not echoed: it may hold a password.
            OperoError::invalid_config(
                "url",
                "(hidden)",
                format!("not a usable Redis URL: {e}{tls_hint}"),
            )
        })?;
        Ok(RedisCache {
            inner: Arc::new(Inner {
                client,
                breaker: Breaker::new(options.down_min_wait, options.down_max_wait),
                options,
                pool: Mutex::new(Vec::new()),
                manager: Mutex::new(None),
            }),
        })
    }

    /// The settings.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Whether the cache currently skips the server after connection failures.
    pub fn is_marked_down(&self) -> bool {
        self.inner.breaker.is_open()
    }

    // ===== blocking connections =====

    fn connect(&self) -> Result<Connection, RedisError> {
        let o = &self.inner.options;
        let conn = self
            .inner
            .client
            .get_connection_with_timeout(o.connect_timeout)?;
        conn.set_read_timeout(Some(o.response_timeout))?;
        conn.set_write_timeout(Some(o.response_timeout))?;
        Ok(conn)
    }

    fn with_conn<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, OperoError> {
        self.inner.breaker.check(op)?;
        let pooled = lock(&self.inner.pool).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect().map_err(|e| self.failed(op, e, true))?,
        };
        match f(&mut conn) {
            Ok(v) => {
                self.inner.breaker.success();
                let mut pool = lock(&self.inner.pool);
                if pool.len() < self.inner.options.pool_size {
                    pool.push(conn);
                }
                Ok(v)
            }
            Err(e) => Err(self.failed(op, e, false)),
        }
    }

    /// Books a failure. The connection it happened on is already dropped; when the link itself
    /// failed, the idle ones are likely dead too (a restarted server), so they go as well.
    #[cold]
    fn failed(&self, op: &'static str, e: RedisError, connecting: bool) -> OperoError {
        if connecting || is_link_failure(&e) {
            lock(&self.inner.pool).clear();
            self.inner.breaker.failure();
        }
        OperoError::backend(format!("redis {op} failed"), e)
    }

    // ===== the async connection =====

    fn manager(&self) -> Result<ConnectionManager, OperoError> {
        let mut slot = lock(&self.inner.manager);
        if let Some(m) = &*slot {
            return Ok(m.clone());
        }
        let o = &self.inner.options;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(o.connect_timeout))
            .set_response_timeout(Some(o.response_timeout))
            // Our breaker paces reconnection; the manager's own retries would only hold calls up.
            .set_number_of_retries(1)
            .set_max_delay(o.down_min_wait);
        let m = ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)
            .map_err(|e| OperoError::backend("redis async connection setup failed", e))?;
        *slot = Some(m.clone());
        Ok(m)
    }

    async fn with_manager<T>(&self, op: &'static str, cmd: redis::Cmd) -> Result<T, OperoError>
    where
        T: redis::FromRedisValue,
    {
        self.inner.breaker.check(op)?;
        let mut m = self.manager()?;
        let o = &self.inner.options;
        // The manager bounds each stage itself; this outer bound covers a reconnection in progress.
        let bound = o.connect_timeout.saturating_add(o.response_timeout);
        match tokio::time::timeout(bound, cmd.query_async::<T>(&mut m)).await {
            Ok(Ok(v)) => {
                self.inner.breaker.success();
                Ok(v)
            }
            Ok(Err(e)) => Err(self.failed(op, e, false)),
            Err(_) => {
                self.inner.breaker.failure();
                Err(OperoError::backend(
                    format!("redis {op} failed"),
                    format!("no reply within {bound:?}"),
                ))
            }
        }
    }

    // ===== commands =====

    fn decode<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        bytes: Option<Vec<u8>>,
    ) -> Result<Option<V>, OperoError> {
        let Some(bytes) = bytes else { return Ok(None) };
        match self.inner.options.codec.decode::<V>(key, &bytes)? {
            Decoded::Value(v) => Ok(Some(v)),
            Decoded::Expired | Decoded::Foreign => Ok(None),
        }
    }

    fn set_cmd<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<redis::Cmd, OperoError> {
        check_namespace(key.namespace)?;
        // Redis owns the expiry; the header's stays empty so clocks of other clients don't matter.
        let bytes = self.inner.options.codec.encode(key, value, None)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key.to_string()).arg(bytes);
        // Redis refuses an expiry past its clock's range (about 2^63 ms from now); a TTL that long
        // means never expiring, so it sets none.
        if let Some(ms) = ttl
            .map(|t| t.as_millis().max(1))
            .filter(|ms| *ms <= MAX_REDIS_TTL_MS)
        {
            cmd.arg("PX").arg(ms as u64);
        }
        Ok(cmd)
    }

    fn get_cmd(key: &CacheKey<'_>) -> redis::Cmd {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key.to_string());
        cmd
    }

    fn del_cmd(key: &CacheKey<'_>) -> redis::Cmd {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(key.to_string());
        cmd
    }

    fn scan_cmd(pattern: &str, cursor: u64) -> redis::Cmd {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        cmd
    }
}

const SCAN_COUNT: usize = 500;

fn unlink_cmd(keys: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = redis::cmd("UNLINK");
    for k in keys {
        cmd.arg(k.as_slice());
    }
    cmd
}

/// The SCAN pattern of every key of `namespace`, glob characters escaped.
fn namespace_pattern(namespace: &str) -> String {
    let mut p = String::with_capacity(namespace.len() + 2);
    for c in namespace.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str(":*");
    p
}

fn check_namespace(namespace: &str) -> Result<(), OperoError> {
    if namespace.contains(':') {
        return Err(OperoError::invalid_config(
            "cache.namespace",
            namespace,
            "a Redis cache namespace must not contain ':', the separator of its keys",
        ));
    }
    Ok(())
}

/// Whether the link to the server failed (as opposed to the server refusing one command).
fn is_link_failure(e: &RedisError) -> bool {
    !matches!(e.kind(), redis::ErrorKind::Server(_))
}

impl CacheBackend for RedisCache {
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        let bytes = self.with_conn("GET", |c| Self::get_cmd(key).query::<Option<Vec<u8>>>(c))?;
        self.decode(key, bytes)
    }

    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        let cmd = self.set_cmd(key, value, ttl)?;
        self.with_conn("SET", |c| cmd.query::<()>(c))
    }

    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        self.with_conn("UNLINK", |c| Self::del_cmd(key).query::<()>(c))
    }

    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        check_namespace(namespace)?;
        let pattern = namespace_pattern(namespace);
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) =
                self.with_conn("SCAN", |c| Self::scan_cmd(&pattern, cursor).query(c))?;
            if !keys.is_empty() {
                self.with_conn("UNLINK", |c| unlink_cmd(&keys).query::<()>(c))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn get_async<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        let bytes = self
            .with_manager::<Option<Vec<u8>>>("GET", Self::get_cmd(key))
            .await?;
        self.decode(key, bytes)
    }

    async fn set_async<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        let cmd = self.set_cmd(key, value, ttl)?;
        self.with_manager::<()>("SET", cmd).await
    }

    async fn delete_async(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        self.with_manager::<()>("UNLINK", Self::del_cmd(key)).await
    }

    async fn clear_async(&self, namespace: &str) -> Result<(), OperoError> {
        check_namespace(namespace)?;
        let pattern = namespace_pattern(namespace);
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .with_manager("SCAN", Self::scan_cmd(&pattern, cursor))
                .await?;
            if !keys.is_empty() {
                self.with_manager::<()>("UNLINK", unlink_cmd(&keys)).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl BuildCache for RedisCache {
    fn build(config: &CacheConfig) -> Result<Self, OperoError> {
        check_namespace(&config.namespace)?;
        RedisCache::new(RedisOptions::from_config(config)?)
    }
}

// ===== Breaker =====

/// Fails calls fast for a while after the server could not be reached: `min` after the first
/// failure, doubling per further failure up to `max`. The first call after the wait tries the
/// server again; a success closes the breaker.
struct Breaker {
    epoch: Instant,
    /// Milliseconds since `epoch` until which calls fail fast; 0 when closed.
    open_until_ms: AtomicU64,
    failures: AtomicU32,
    min: Duration,
    max: Duration,
}

impl Breaker {
    fn new(min: Duration, max: Duration) -> Self {
        Breaker {
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            min,
            max,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_open(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    #[inline]
    fn check(&self, op: &'static str) -> Result<(), OperoError> {
        if self.open_until_ms.load(Ordering::Relaxed) == 0 || !self.is_open() {
            return Ok(());
        }
        Err(OperoError::backend(
            format!("redis {op} skipped"),
            format!(
                "the server is marked down after {} connection failures",
                self.failures.load(Ordering::Relaxed)
            ),
        ))
    }

    #[inline]
    fn success(&self) {
        // Only a recovery writes; the healthy path just reads.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.open_until_ms.store(0, Ordering::Relaxed);
            tracing::info!(target: "opero", "redis cache is reachable again");
        }
    }

    #[cold]
    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let wait = self
            .min
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(self.max);
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.open_until_ms.store(
            self.now_ms().saturating_add(wait_ms).saturating_add(1),
            Ordering::Relaxed,
        );
        tracing::warn!(
            target: "opero",
            failures = n,
            wait_ms = wait.as_millis() as u64,
            "redis cache unreachable; calls run uncached until the next try"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_waits_longer_per_failure_up_to_the_ceiling() {
        let b = Breaker::new(Duration::from_millis(100), Duration::from_millis(300));
        assert!(b.check("GET").is_ok());
        b.failure();
        assert!(b.check("GET").is_err());
        b.failure();
        b.failure();
        let left = b.open_until_ms.load(Ordering::Relaxed) - b.now_ms();
        assert!(left <= 301, "{left}");
        b.success();
        assert!(b.check("GET").is_ok());
    }

    #[test]
    fn patterns_escape_glob_characters() {
        assert_eq!(namespace_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\:*");
    }

    #[test]
    fn bad_options_are_named() {
        let mut cfg = CacheConfig::enabled("redis");
        cfg.backend_options
            .insert("connect_timeout".into(), "0".into());
        assert_eq!(
            RedisCache::build(&cfg).unwrap_err().field(),
            Some("connect_timeout")
        );
        cfg.backend_options
            .insert("connect_timeout".into(), "soon".into());
        assert_eq!(RedisCache::build(&cfg).unwrap_err().value(), Some("soon"));
        let mut cfg = CacheConfig::enabled("redis");
        cfg.backend_options
            .insert("url".into(), "http://:pw@host".into());
        let err = RedisCache::build(&cfg).unwrap_err();
        assert_eq!(err.field(), Some("url"));
        assert!(!err.to_string().contains("pw"), "{err}");
        let mut cfg = CacheConfig::enabled("redis");
        cfg.namespace = "a:b".into();
        assert_eq!(
            RedisCache::build(&cfg).unwrap_err().field(),
            Some("cache.namespace")
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn rediss_urls_build_a_tls_client_without_a_server() {
        let cache = RedisCache::new(RedisOptions {
            connect_timeout: Duration::from_millis(200),
            ..RedisOptions::url("rediss://:pw@127.0.0.1:1/")
        })
        .unwrap();
        let key = CacheKey {
            namespace: "ns",
            function: opero_core::FunctionLabel::Named("f"),
            hash: 1,
        };
        // Nothing listens on port 1: an error, and no panic for want of a crypto provider.
        assert!(cache.get::<u8>(&key).is_err());
    }

    #[test]
    fn urls_with_password_and_db_are_accepted() {
        let c = RedisCache::new(RedisOptions::url("redis://:secret@127.0.0.1:6390/2")).unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }
}
