//! The Redis rate limiter: chosen by `rate_limit.backend = "redis"` (bad options refused by field
//! name), shared by pipelines naming one limit, and usable blocking, async and try-only, with
//! or without a lease.

use std::time::Duration;

use opero::{ErrorKind, OperoConfig, PermitSource, RedisLimiterOptions, RedisRateLimiter};
use opero_core::{RateLimitConfig, RateLimiter};
use opero_tests::RedisServer;

fn config(json: &str) -> Result<OperoConfig, opero::OperoError> {
    OperoConfig::from_json(json)
}

#[test]
fn a_config_with_backend_redis_builds_one_limit_shared_by_its_name() {
    let server = RedisServer::start();
    let json = format!(
        r#"{{"rate_limit": {{"rate": 1, "backend": "redis",
            "backend_options": {{"url": "{}", "name": "from-config"}}}}}}"#,
        server.url()
    );
    let a = opero::opero()
        .rate_limit_config(config(&json).unwrap().rate_limit)
        .build()
        .unwrap();
    let b = opero::opero()
        .rate_limit_config(config(&json).unwrap().rate_limit)
        .build()
        .unwrap();
    assert!(a.rate_limiter().unwrap().try_acquire());
    assert!(
        !b.rate_limiter().unwrap().try_acquire(),
        "the other pipeline shares the spent permit"
    );
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg("opero:limit:{from-config}")
        .query(&mut conn)
        .unwrap();
    assert!(
        exists,
        "the bucket lives in Redis under its hash-tagged name"
    );
}

#[test]
fn bad_rate_limit_backends_and_options_are_refused_by_field_name() {
    let field = |json: &str| -> Option<String> {
        let err = match config(json) {
            Err(e) => e,
            Ok(cfg) => opero::opero()
                .rate_limit_config(cfg.rate_limit)
                .build()
                .unwrap_err(),
        };
        err.field().map(str::to_owned)
    };
    let redis = |options: &str| {
        format!(
            r#"{{"rate_limit": {{"rate": 10, "burst": 2, "backend": "redis", "backend_options": {{{options}}}}}}}"#
        )
    };
    assert_eq!(
        field(r#"{"rate_limit": {"rate": 5, "backnd": "redis"}}"#).as_deref(),
        Some("rate_limit")
    );
    assert_eq!(
        field(r#"{"rate_limit": {"rate": 5, "backend": "memcached"}}"#).as_deref(),
        Some("rate_limit.backend")
    );
    assert_eq!(
        field(r#"{"rate_limit": {"backend": "redis"}}"#).as_deref(),
        Some("rate_limit.backend"),
        "no rate: nothing would be limited"
    );
    assert_eq!(
        field(r#"{"rate_limit": {"rate": 5, "backend_options": {"url": "redis://x"}}}"#).as_deref(),
        Some("rate_limit.backend_options"),
        "the local bucket takes no options"
    );
    assert_eq!(
        field(r#"{"rate_limit": {"rate": 5, "backend": ""}}"#).as_deref(),
        Some("rate_limit.backend")
    );
    assert_eq!(
        field(&redis(r#""urll": "redis://x""#)).as_deref(),
        Some("rate_limit.backend_options")
    );
    assert_eq!(
        field(&redis(r#""down": "maybe""#)).as_deref(),
        Some("rate_limit.backend_options.down")
    );
    assert_eq!(
        field(&redis(r#""lease": "3""#)).as_deref(),
        Some("rate_limit.backend_options.lease"),
        "a lease above the burst"
    );
    assert_eq!(
        field(&redis(r#""lease": "0""#)).as_deref(),
        Some("rate_limit.backend_options.lease")
    );
    assert_eq!(
        field(&redis(r#""name": "a}b""#)).as_deref(),
        Some("rate_limit.backend_options.name")
    );
    assert_eq!(
        field(&redis(r#""name": """#)).as_deref(),
        Some("rate_limit.backend_options.name")
    );
    assert_eq!(
        field(&redis(r#""url": "http://x""#)).as_deref(),
        Some("rate_limit.backend_options.url")
    );
    assert_eq!(
        field(&redis(r#""cluster": "yes""#)).as_deref(),
        Some("rate_limit.backend_options.cluster")
    );
    assert_eq!(
        field(&redis(r#""connect_timeout": "soon""#)).as_deref(),
        Some("rate_limit.backend_options.connect_timeout")
    );
    assert_eq!(
        field(&redis(r#""response_timeout": "0s""#)).as_deref(),
        Some("rate_limit.backend_options.response_timeout")
    );
    assert_eq!(
        field(&redis(r#""down_min_wait": "10s", "down_max_wait": "1s""#)).as_deref(),
        Some("rate_limit.backend_options.down_min_wait")
    );
    assert_eq!(
        field(&redis(r#""local_rate": "-1""#)).as_deref(),
        Some("rate_limit.backend_options.local_rate")
    );
    assert_eq!(
        field(r#"{"rate_limit": {"rate": 2e6, "backend": "redis"}}"#).as_deref(),
        Some("rate_limit.rate"),
        "above a permit per microsecond"
    );
    // Without the facade's builder, a backend other than "local" has nothing to build it.
    let cfg = config(&redis("")).unwrap();
    let err = opero_core::Opero::<opero_core::NoCache>::builder()
        .rate_limit_config(cfg.rate_limit)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownBackend);
    assert_eq!(err.field(), Some("rate_limit.backend"));
}

#[test]
fn an_opmap_refuses_to_split_a_shared_limit_per_worker() {
    let cfg = config(r#"{"rate_limit": {"rate": 5, "backend": "redis"}}"#).unwrap();
    let err = opero::opmap()
        .rate_limit_config(cfg.rate_limit)
        .rate_limit_scope(opero::RateLimitScope::PerWorker)
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .unwrap_err();
    assert_eq!(err.field(), Some("rate_limit_scope"));
}

fn limiter(
    server: &RedisServer,
    name: &str,
    rate: f64,
    burst: u32,
    lease: u32,
) -> RedisRateLimiter {
    let mut o = RedisLimiterOptions::new(server.url(), name);
    o.lease = lease;
    RedisRateLimiter::new(&RateLimitConfig::per_second(rate).with_burst(burst), o).unwrap()
}

#[test]
fn the_blocking_and_try_forms_follow_one_schedule() {
    let server = RedisServer::start();
    let l = limiter(&server, "forms-sync", 20.0, 2, 1);
    assert!(l.try_acquire_permit().unwrap());
    assert!(l.try_acquire_permit().unwrap());
    assert!(
        !l.try_acquire_permit().unwrap(),
        "the burst of two is spent"
    );
    let permit = l.reserve_permit().unwrap();
    assert_eq!(permit.source, PermitSource::Redis);
    assert!(
        permit.wait > Duration::ZERO && permit.wait <= Duration::from_millis(50),
        "{permit:?}"
    );
    let start = std::time::Instant::now();
    l.acquire_blocking_permit().unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "the next permit is one interval later"
    );
    // The trait's forms on the same bucket.
    assert!(!l.try_acquire());
    assert!(l.reserve() > Duration::ZERO);
    assert_eq!(l.stats().round_trips, 7);
}

#[tokio::test(flavor = "current_thread")]
async fn the_async_forms_follow_one_schedule() {
    let server = RedisServer::start();
    let l = limiter(&server, "forms-async", 20.0, 1, 1);
    assert!(l.try_acquire_permit_async().await.unwrap());
    assert!(!l.try_acquire_permit_async().await.unwrap());
    let start = std::time::Instant::now();
    l.acquire_permit().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(40),
        "{:?}",
        start.elapsed()
    );
    let wait = l.reserve_async().await.unwrap();
    assert!(wait > Duration::ZERO);
    // The async pipeline reserves through reserve_async.
    let opero = opero::opero()
        .rate_limiter(std::sync::Arc::new(l.clone()))
        .build()
        .unwrap();
    let before = l.stats().round_trips;
    opero
        .run_async(|| async { Ok::<_, String>(()) })
        .await
        .unwrap();
    assert_eq!(l.stats().round_trips, before + 1);
}

#[test]
fn a_lease_takes_up_to_burst_permits_in_one_round_trip() {
    let server = RedisServer::start();
    let leased = limiter(&server, "lease", 1000.0, 10, 10);
    for _ in 0..10 {
        assert!(leased.try_acquire_permit().unwrap());
    }
    let stats = leased.stats();
    assert_eq!(stats.round_trips, 1, "{stats:?}");
    assert_eq!(stats.leased_permits, 9, "{stats:?}");
    // Another process (here another limiter on the same name) sees the lease as taken.
    let other = limiter(&server, "lease", 1000.0, 10, 1);
    assert!(
        !other.try_acquire_permit().unwrap(),
        "the whole burst was leased"
    );
    // Blocking permits from a lease keep the schedule: 100 permits at 1000/s take ~90 ms.
    let start = std::time::Instant::now();
    for _ in 0..100 {
        leased.acquire_blocking_permit().unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(85),
        "{:?}",
        start.elapsed()
    );
    // Ten round trips when every lease is used in time; a leased permit not used within one
    // interval of its time is dropped (so that leases never bank stale permits), which a loaded
    // machine that deschedules this thread turns into a few more trips. Without leases it
    // would be 101.
    assert!(leased.stats().round_trips <= 25, "{:?}", leased.stats());
}
