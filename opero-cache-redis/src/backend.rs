//! [`RedisCache`]: pooled blocking connections, one multiplexed async connection, and a breaker
//! that stops paying timeouts while the server is known to be down.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opero_core::{
    BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, Codec, Decoded, FlightLease,
    FlightStart, OperoError, SigningKey,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig, ClusterConnection};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, Connection, RedisError, RedisResult, Value};

/// The URL used when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/";

/// Settings of a [`RedisCache`].
///
/// # Default
///
/// URL [`DEFAULT_URL`], postcard codec, connect and response timeouts of 1 s each, up to 8 idle
/// blocking connections kept, and after a connection failure no new attempt for 250 ms, doubling
/// with each further failure up to 5 s. Single-flight across processes on, with a lock expiry
/// of 10 s and waits of at most 20 s; entries checksummed, not signed; one server, not a cluster.
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
    /// Whether `url` names seeds of a Redis Cluster. Several comma-separated URLs always do.
    pub cluster: bool,
    /// Single-flight across processes (option `single_flight`): when several processes miss
    /// one key at once, one runs the work and the others wait for its value. See
    /// [`RedisCache`] for how.
    pub single_flight: bool,
    /// How long a process leading a flight holds its lock (option `flight_lock_ttl`): if it
    /// dies, another process takes over after this long. Set it above the longest call, or a
    /// call still running when it expires is run a second time. 10 ms to 1 day.
    pub flight_lock_ttl: Duration,
    /// The longest a process waits for another's flight before it runs its own call (option
    /// `flight_wait`). Positive, at most 1 day.
    pub flight_wait: Duration,
    /// When set (option `signing_key`, at least 16 bytes), entries are signed with HMAC-SHA256
    /// under this key and only entries signed with it are read: a process that can write to
    /// the server but lacks the key cannot plant values. Every process sharing the cache needs
    /// the same key. Never shown in `Debug` output.
    pub signing_key: Option<SigningKey>,
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
            cluster: false,
            single_flight: true,
            flight_lock_ttl: Duration::from_secs(10),
            flight_wait: Duration::from_secs(20),
            signing_key: None,
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

    /// The defaults on a Redis Cluster reached through these seed URLs.
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        let seeds: Vec<String> = seeds.into_iter().map(Into::into).collect();
        RedisOptions {
            url: seeds.join(","),
            cluster: true,
            ..Default::default()
        }
    }

    /// The seed URLs: `url` split at commas.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether the options name a cluster: `cluster`, or several URLs.
    pub fn is_cluster(&self) -> bool {
        self.cluster || self.urls().len() > 1
    }

    /// Reads the backend options `url`, `codec`, `connect_timeout`, `response_timeout`,
    /// `pool_size`, `down_min_wait`, `down_max_wait`, `cluster`, `single_flight`,
    /// `flight_lock_ttl`, `flight_wait` and `signing_key` of `config`.
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
            cluster: config.option("cluster")?.unwrap_or(d.cluster),
            single_flight: config.option("single_flight")?.unwrap_or(d.single_flight),
            flight_lock_ttl: config
                .duration_option("flight_lock_ttl")?
                .unwrap_or(d.flight_lock_ttl),
            flight_wait: config
                .duration_option("flight_wait")?
                .unwrap_or(d.flight_wait),
            // Parsed here rather than through `option`, whose error would echo the secret.
            signing_key: match config.backend_options.get("signing_key") {
                Some(text) => Some(SigningKey::new(text.as_bytes())?),
                None => d.signing_key,
            },
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
        if self.flight_lock_ttl < MIN_LOCK_TTL || self.flight_lock_ttl > MAX_WAIT {
            return Err(OperoError::invalid_config(
                "flight_lock_ttl",
                format!("{:?}", self.flight_lock_ttl),
                "must be between 10ms and 1 day",
            ));
        }
        if self.flight_wait.is_zero() || self.flight_wait > MAX_WAIT {
            return Err(OperoError::invalid_config(
                "flight_wait",
                format!("{:?}", self.flight_wait),
                "must be positive and at most 1 day (turn single_flight off not to wait)",
            ));
        }
        if self.urls().is_empty() {
            return Err(OperoError::invalid_config("url", "", "no Redis URL given"));
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

/// The shortest flight lock: below it, a lock could expire before the leader's next command.
const MIN_LOCK_TTL: Duration = Duration::from_millis(10);

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
/// # Redis Cluster
///
/// With [`RedisOptions::cluster`] (or several comma-separated URLs, or the `cluster = "true"`
/// option) the cache talks to a cluster: each command goes to the primary of its key's slot,
/// clearing a namespace SCANs every primary, and the keys of one entry's flight share that
/// entry's hash tag, so the scripts that touch them run on one node.
///
/// # Single-flight across processes
///
/// On by default ([`RedisOptions::single_flight`]). A process that misses a key and leads the
/// flight for it in this process takes a lock beside the entry (`SET NX PX`, expiring after
/// [`flight_lock_ttl`](RedisOptions::flight_lock_ttl)), runs the work, stores the value, then
/// releases the lock and wakes the waiters. A process that finds the lock taken waits, without
/// polling, for the wake-up or the lock's expiry, whichever comes first, for at most
/// [`flight_wait`](RedisOptions::flight_wait) in all; then it reads the entry. A leader that
/// failed stores nothing, so its waiters find no value and run their own call (errors are not
/// shared); a leader that died leaves its lock to expire, and a waiter then takes it over.
///
/// The wake-up is a list beside the lock, which waiters block on with `BLMOVE list list` (the
/// element stays, so every blocked waiter is served) rather than a pub/sub channel: a list
/// lives in the entry's slot, so it works unchanged on a cluster, where sharded pub/sub would
/// need a connection per node; a wake-up sent before a waiter blocks is not lost (the list
/// keeps it, with an expiry, until the next leader empties it); and it needs no subscriber
/// connection per waiting process, only a blocking command on a pooled connection. Needs Redis
/// 6.2 or later.
///
/// # Integrity
///
/// Every entry carries an XXH3 checksum of its payload and the key it was written for: an
/// altered, truncated or swapped entry is a miss (counted in the pipeline's `cache_errors` and
/// logged), never a wrong value. With a [`signing_key`](RedisOptions::signing_key), an
/// HMAC-SHA256 under that key replaces the checksum's role, so only holders of the key can
/// write entries that are read.
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
    server: Server,
    options: RedisOptions,
    pool: Mutex<Vec<Conn>>,
    manager: Mutex<Option<AsyncConn>>,
    breaker: Breaker,
}

/// One server or a cluster.
// One per cache, behind its Arc and never moved: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Server {
    Single(Client),
    Cluster(ClusterClient),
}

/// A blocking connection to either.
enum Conn {
    Single(Connection),
    // Boxed: a cluster connection is five times the size of a plain one.
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn set_timeouts(&self, read: Duration, write: Duration) -> RedisResult<()> {
        match self {
            Conn::Single(c) => {
                c.set_read_timeout(Some(read))?;
                c.set_write_timeout(Some(write))
            }
            Conn::Cluster(c) => {
                c.set_read_timeout(Some(read))?;
                c.set_write_timeout(Some(write))
            }
        }
    }
}

impl redis::ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn req_command(&mut self, cmd: &redis::Cmd) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_command(cmd),
            Conn::Cluster(c) => c.req_command(cmd),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Single(c) => c.check_connection(),
            Conn::Cluster(c) => c.check_connection(),
        }
    }
    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
        }
    }
}

/// The shared async connection to either.
#[derive(Clone)]
enum AsyncConn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl AsyncConn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            AsyncConn::Single(m) => cmd.query_async(m).await,
            AsyncConn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

impl fmt::Debug for RedisCache {
    // The URL may hold a password, so only the address is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = match &self.inner.server {
            Server::Single(client) => client.get_connection_info().addr().to_string(),
            Server::Cluster(_) => "cluster".to_owned(),
        };
        f.debug_struct("RedisCache")
            .field("addr", &addr)
            .field("codec", &self.inner.options.codec)
            .field("single_flight", &self.inner.options.single_flight)
            .field("signed", &self.inner.options.signing_key.is_some())
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
        let url_error = |e: RedisError| {
            let tls_hint = if options.url.contains("rediss://") && !cfg!(feature = "tls") {
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
        };
        let server = if options.is_cluster() {
            let client = ClusterClientBuilder::new(options.urls())
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.response_timeout)
                // Our breaker paces reconnection; the client's own retries would hold calls up.
                .retries(1)
                .build()
                .map_err(url_error)?;
            Server::Cluster(client)
        } else {
            Server::Single(Client::open(options.url.as_str()).map_err(url_error)?)
        };
        Ok(RedisCache {
            inner: Arc::new(Inner {
                server,
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

    /// The key of the lock a process holds while it leads the flight of `key` (see "Single-flight
    /// across processes" above), to inspect with `redis-cli`: it sits in the entry's cluster
    /// slot. `None` for a key whose braces no hash tag can reproduce (no flight for it).
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_cache_redis::{RedisCache, RedisOptions};
    /// use opero_core::{CacheKey, FunctionLabel};
    ///
    /// let cache = RedisCache::new(RedisOptions::default()).unwrap();
    /// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 1 };
    /// let lock = cache.flight_lock_key(&key).unwrap();
    /// assert!(lock.starts_with(&format!("{{{key}}}")));
    /// ```
    pub fn flight_lock_key(&self, key: &CacheKey<'_>) -> Option<String> {
        self.flight_keys(&key.to_string()).map(|k| k.lock)
    }

    /// Whether the cache currently skips the server after connection failures.
    pub fn is_marked_down(&self) -> bool {
        self.inner.breaker.is_open()
    }

    // ===== blocking connections =====

    fn connect(&self) -> Result<Conn, RedisError> {
        let o = &self.inner.options;
        let conn = match &self.inner.server {
            Server::Single(client) => {
                Conn::Single(client.get_connection_with_timeout(o.connect_timeout)?)
            }
            Server::Cluster(client) => Conn::Cluster(Box::new(client.get_connection()?)),
        };
        conn.set_timeouts(o.response_timeout, o.response_timeout)?;
        Ok(conn)
    }

    fn with_conn<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Conn) -> Result<T, RedisError>,
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

    fn manager(&self) -> Result<AsyncConn, OperoError> {
        let mut slot = lock(&self.inner.manager);
        if let Some(m) = &*slot {
            return Ok(m.clone());
        }
        let o = &self.inner.options;
        let m = match &self.inner.server {
            Server::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(o.connect_timeout))
                    .set_response_timeout(Some(o.response_timeout))
                    // Our breaker paces reconnection; the manager's own retries would only hold
                    // calls up.
                    .set_number_of_retries(1)
                    .set_max_delay(o.down_min_wait);
                AsyncConn::Single(
                    ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(
                        |e| OperoError::backend("redis async connection setup failed", e),
                    )?,
                )
            }
            Server::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(o.connect_timeout)
                    .set_response_timeout(o.response_timeout);
                AsyncConn::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
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
        match tokio::time::timeout(bound, m.query::<T>(&cmd)).await {
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
        let signing = self.inner.options.signing_key.as_ref();
        match self
            .inner
            .options
            .codec
            .decode_signed::<V>(key, &bytes, signing)?
        {
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
        let o = &self.inner.options;
        let bytes = o
            .codec
            .encode_signed(key, value, None, o.signing_key.as_ref())?;
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

// ===== single-flight across processes =====

/// Takes the lock (KEYS[1]) for token ARGV[1] with expiry ARGV[2] ms, emptying the wake-up list
/// (KEYS[2]) of an earlier flight: `{1, whether the entry KEYS[3] exists}`, so that a leader
/// need not look the entry up again when it is absent. When another holds the lock:
/// `{0, ms left}`. All three keys share one hash tag, so the script runs on a cluster too.
const ACQUIRE_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return {1, redis.call('EXISTS', KEYS[3])}
end
return {0, redis.call('PTTL', KEYS[1])}
";

/// Releases the lock if token ARGV[1] still holds it, and wakes every waiter: one element in
/// the list, kept for ARGV[2] ms (waiters rotate it, so it stays for all of them).
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// The lock and wake-up list of one entry's flight.
struct FlightKeys {
    lock: String,
    wake: String,
    entry: String,
}

impl RedisCache {
    /// The flight keys of the entry `data_key`, in its cluster slot: `{tag}:...` where `tag` is
    /// what Redis hashes in `data_key` (its first `{...}`, else all of it). `None` for the odd
    /// key whose whole-key tag holds a brace, which no tag can reproduce (then no flight).
    fn flight_keys(&self, data_key: &str) -> Option<FlightKeys> {
        let tag = hash_tag(data_key);
        if tag.len() == data_key.len() && data_key.contains(['{', '}']) {
            tracing::debug!(target: "opero", "no flight across processes for a key with braces");
            return None;
        }
        Some(FlightKeys {
            lock: format!("{{{tag}}}:opero-flight-lock:{data_key}"),
            wake: format!("{{{tag}}}:opero-flight-wake:{data_key}"),
            entry: data_key.to_owned(),
        })
    }

    fn acquire_cmd(&self, keys: &FlightKeys, token: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ACQUIRE_SCRIPT)
            .arg(3)
            .arg(&keys.lock)
            .arg(&keys.wake)
            .arg(&keys.entry)
            .arg(token)
            .arg(self.inner.options.flight_lock_ttl.as_millis() as u64);
        cmd
    }

    fn release_cmd(&self, keys: &FlightKeys, lease: &FlightLease) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE_SCRIPT)
            .arg(2)
            .arg(&keys.lock)
            .arg(&keys.wake)
            .arg(lease.token())
            .arg(self.inner.options.flight_lock_ttl.as_millis() as u64);
        cmd
    }

    /// Leads the flight of `data_key`, or waits for the one in progress (blocking), as the
    /// type's docs describe.
    fn flight_begin_blocking(&self, data_key: &str) -> Result<FlightStart, OperoError> {
        let Some(keys) = self.flight_keys(data_key) else {
            return Ok(FlightStart::Off);
        };
        let o = &self.inner.options;
        let token = new_token();
        let deadline = Instant::now() + o.flight_wait;
        loop {
            let got: Vec<i64> =
                self.with_conn("flight lock", |c| self.acquire_cmd(&keys, &token).query(c))?;
            if got.first() == Some(&1) {
                return Ok(FlightStart::Lead(lease(token, &got)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(FlightStart::Waited);
            }
            // Until the wake-up, or the lock's expiry (its holder may have died), or our bound.
            let lock_left = match got.get(1) {
                Some(&ms) if ms > 0 => Duration::from_millis(ms as u64),
                // A lock without expiry is not ours to wait for; look again shortly.
                _ => MIN_LOCK_TTL,
            };
            let block = lock_left.min(left).max(Duration::from_millis(1));
            let mut wait = redis::cmd("BLMOVE");
            wait.arg(&keys.wake)
                .arg(&keys.wake)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(format!("{:.3}", block.as_secs_f64()));
            let woke: Option<Vec<u8>> = self.with_conn("flight wait", |c| {
                c.set_timeouts(block + o.response_timeout, o.response_timeout)?;
                let woke = wait.query(c);
                c.set_timeouts(o.response_timeout, o.response_timeout)?;
                woke
            })?;
            if woke.is_some() {
                return Ok(FlightStart::Waited);
            }
        }
    }
}

/// The lease of a lock just taken, marked when the acquire script saw no entry.
fn lease(token: String, acquired: &[i64]) -> FlightLease {
    let lease = FlightLease::new(token);
    if acquired.get(1) == Some(&0) {
        lease.with_entry_absent()
    } else {
        lease
    }
}

/// What Redis Cluster hashes in `key`: the text between its first `{` and the next `}`, when
/// not empty; else the whole key.
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// A lock token unique across processes and machines sharing the server: process id, time
/// and a counter, so that a process only ever releases its own lock.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos:x}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        // Two machines may share a pid and a clock reading; a random word separates them.
        {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.finish()
        }
    )
}

/// The primaries' addresses in a `CLUSTER SLOTS` reply, each once.
fn primaries(slots: &Value) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = slots else {
        return out;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let Some(Value::Array(primary)) = fields.get(2) else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let node = (host, *port as u16);
        if !out.contains(&node) {
            out.push(node);
        }
    }
    out
}

fn by_address(host: &str, port: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port,
    })
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
        // One server: one keyspace. A cluster: every primary's, in turn.
        let nodes = match &self.inner.server {
            Server::Single(_) => vec![None],
            Server::Cluster(_) => self
                .with_conn("CLUSTER SLOTS", |c| {
                    redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(c)
                })
                .map(|v| primaries(&v))?
                .into_iter()
                .map(Some)
                .collect(),
        };
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let scan = Self::scan_cmd(&pattern, cursor);
                let (next, keys): (u64, Vec<Vec<u8>>) =
                    self.with_conn("SCAN", |c| match (c, &node) {
                        (Conn::Cluster(c), Some((host, port))) => {
                            let v = c.route_command(&scan, by_address(host, *port))?;
                            Ok(redis::from_redis_value(v)?)
                        }
                        (c, _) => scan.query(c),
                    })?;
                if !keys.is_empty() {
                    self.with_conn("UNLINK", |c| match c {
                        Conn::Single(c) => unlink_cmd(&keys).query::<()>(c),
                        // Keys of several slots cannot go in one command on a cluster.
                        Conn::Cluster(c) => keys
                            .iter()
                            .try_for_each(|k| unlink_cmd(std::slice::from_ref(k)).query(c)),
                    })?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
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
        if let Server::Cluster(_) = &self.inner.server {
            // Visiting each primary takes a blocking cluster connection; clearing is rare.
            let this = self.clone();
            let namespace = namespace.to_owned();
            return tokio::task::spawn_blocking(move || this.clear(&namespace))
                .await
                .map_err(|e| OperoError::backend("redis clear failed", e.to_string()))?;
        }
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

    fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        if !self.inner.options.single_flight {
            return Ok(FlightStart::Off);
        }
        self.flight_begin_blocking(&key.to_string())
    }

    fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError> {
        let Some(keys) = self.flight_keys(&key.to_string()) else {
            return Ok(());
        };
        let cmd = self.release_cmd(&keys, &lease);
        self.with_conn("flight release", |c| cmd.query::<()>(c))
    }

    async fn flight_begin_async(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        if !self.inner.options.single_flight {
            return Ok(FlightStart::Off);
        }
        let data_key = key.to_string();
        let Some(keys) = self.flight_keys(&data_key) else {
            return Ok(FlightStart::Off);
        };
        // The first try needs no blocking command: most misses find no flight in progress.
        let token = new_token();
        let got: Vec<i64> = self
            .with_manager("flight lock", self.acquire_cmd(&keys, &token))
            .await?;
        if got.first() == Some(&1) {
            return Ok(FlightStart::Lead(lease(token, &got)));
        }
        // Waiting blocks a connection, so it must not sit on the shared multiplexed one.
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.flight_begin_blocking(&data_key))
            .await
            .map_err(|e| OperoError::backend("redis flight wait failed", e.to_string()))?
    }

    async fn flight_end_async(
        &self,
        key: &CacheKey<'_>,
        lease: FlightLease,
    ) -> Result<(), OperoError> {
        let Some(keys) = self.flight_keys(&key.to_string()) else {
            return Ok(());
        };
        self.with_manager::<()>("flight release", self.release_cmd(&keys, &lease))
            .await
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
    fn hash_tags_follow_the_cluster_rules() {
        assert_eq!(hash_tag("ns:f:01"), "ns:f:01");
        assert_eq!(hash_tag("ns:{user1}:x"), "user1");
        assert_eq!(hash_tag("ns:a::{{closure}}:x"), "{closure");
        assert_eq!(hash_tag("ns:{}:x"), "ns:{}:x");
        assert_eq!(hash_tag("ns:{:x"), "ns:{:x");
        let cache = RedisCache::new(RedisOptions::default()).unwrap();
        for data in ["ns:f:01", "ns:{user1}:x", "ns:a::{{closure}}:x"] {
            let keys = cache.flight_keys(data).unwrap();
            // The flight keys' own tag is the entry's.
            assert_eq!(hash_tag(&keys.lock), hash_tag(data));
            assert_eq!(hash_tag(&keys.wake), hash_tag(data));
            assert_ne!(keys.lock, keys.wake);
        }
        // A whole-key tag with a brace in it cannot be reproduced: no flight, never a wrong slot.
        assert!(cache.flight_keys("ns:{}:x").is_none());
    }

    #[test]
    fn signing_keys_never_show() {
        let mut cfg = CacheConfig::enabled("redis");
        cfg.backend_options
            .insert("signing_key".into(), "the secret of sixteen+".into());
        let options = RedisOptions::from_config(&cfg).unwrap();
        assert!(!format!("{options:?}").contains("secret"));
        let cache = RedisCache::new(options).unwrap();
        assert!(!format!("{cache:?}").contains("secret"));
        for short in ["", "short secret"] {
            cfg.backend_options
                .insert("signing_key".into(), short.into());
            let err = RedisOptions::from_config(&cfg).unwrap_err();
            assert_eq!(err.field(), Some("signing_key"));
            assert!(
                short.is_empty() || !err.to_string().contains(short),
                "{err}"
            );
        }
    }

    #[test]
    fn cluster_seeds_come_from_several_urls_or_the_option() {
        let o = RedisOptions::url("redis://127.0.0.1:7000/, redis://127.0.0.1:7001/");
        assert!(o.is_cluster());
        assert_eq!(o.urls().len(), 2);
        let mut cfg = CacheConfig::enabled("redis");
        cfg.backend_options.insert("cluster".into(), "true".into());
        assert!(RedisOptions::from_config(&cfg).unwrap().is_cluster());
        cfg.backend_options
            .insert("cluster".into(), "yes please".into());
        assert_eq!(
            RedisOptions::from_config(&cfg).unwrap_err().field(),
            Some("cluster")
        );
        let cache = RedisCache::new(RedisOptions::cluster(["redis://127.0.0.1:7000/"])).unwrap();
        assert!(format!("{cache:?}").contains("cluster"));
        assert_eq!(
            RedisCache::new(RedisOptions::url(" , "))
                .unwrap_err()
                .field(),
            Some("url")
        );
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
