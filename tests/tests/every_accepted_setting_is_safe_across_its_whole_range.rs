//! A setting that validation accepts is safe for its whole range: no overflow panic later, in a
//! call, a cached call (memory and disk) or an opmap. What would overflow is refused with a typed
//! error naming the field; a huge TTL or a very slow rate saturate to their obvious meaning
//! ("never expires", "not in this process's life"). Debug builds check overflow, so a missed
//! case panics here.

use std::time::Duration;

use opero::{
    AnyCache, Backoff, BuildCache, CacheConfig, DiskCache, Jitter, MemoryCache, Opero, OperoConfig,
    RateLimitConfig, RateLimiter, RetryConfig, TokenBucket,
};
use proptest::prelude::*;

fn cached_twice<C: opero::CacheBackend>(opero: &Opero<C>) {
    for _ in 0..2 {
        let v = opero
            .named("double")
            .call(&21u32, |x: &u32| Ok::<_, String>(x * 2))
            .unwrap();
        assert_eq!(v, 42);
    }
    assert_eq!(opero.metrics().cache_hits, 1);
}

// ===== the findings, one by one =====

#[test]
fn a_thousand_year_ttl_never_expires_on_memory_and_disk() {
    for ttl in ["1000y", "18446744073709551615s"] {
        let cfg = OperoConfig::from_json(&format!(
            r#"{{"cache": {{"enabled": true, "ttl": "{ttl}"}}}}"#
        ))
        .unwrap();
        cached_twice(&Opero::<MemoryCache>::new(cfg.clone()).unwrap());
        let dir = tempfile::tempdir().unwrap();
        cached_twice(&Opero::with_cache(cfg, DiskCache::new(dir.path())).unwrap());
    }
    // Redis: past 2^62 ms the entry is set without an expiry instead of being refused by Redis.
    let server = opero_tests::RedisServer::start();
    let redis = opero::RedisCache::new(opero::RedisOptions::url(server.url())).unwrap();
    let opero = Opero::with_cache(
        OperoConfig::from_json(r#"{"cache": {"enabled": true, "ttl": "1000000000y"}}"#).unwrap(),
        redis,
    )
    .unwrap();
    cached_twice(&opero);
    assert_eq!(opero.metrics().cache_errors, 0, "the SET was accepted");
    let max = Opero::<MemoryCache>::builder()
        .cache(true)
        .cache_ttl(Duration::MAX)
        .build()
        .unwrap();
    cached_twice(&max);
}

#[test]
fn extreme_buckets_hand_out_permits_without_overflow() {
    for (rate, burst) in [(1.1e-10, 1), (0.1, u32::MAX), (1e-9, 100), (1e9, u32::MAX)] {
        let bucket =
            TokenBucket::new(&RateLimitConfig::per_second(rate).with_burst(burst)).unwrap();
        assert!(
            bucket.try_acquire(),
            "the first permit is free ({rate}, {burst})"
        );
        for _ in 0..3 {
            let _ = bucket.reserve();
            let _ = bucket.try_acquire();
        }
    }
}

#[test]
fn a_rate_above_one_per_nanosecond_is_refused() {
    for rate in [1e308, 2e9] {
        let err = TokenBucket::per_second(rate).unwrap_err();
        assert_eq!(err.field(), Some("rate_limit.rate"));
        let err = Opero::<MemoryCache>::builder()
            .rate_limit(rate)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), Some("rate_limit.rate"));
    }
}

#[test]
fn huge_redis_waits_are_refused_by_name() {
    for (field, value) in [
        ("down_max_wait", "1e19"),
        ("connect_timeout", "18446744073709551615s"),
        ("response_timeout", "100y"),
        ("down_min_wait", "2d"),
    ] {
        let mut cache = CacheConfig::enabled("redis");
        cache
            .backend_options
            .insert("url".into(), "redis://127.0.0.1:1/".into());
        cache.backend_options.insert(field.into(), value.into());
        let err = AnyCache::build(&cache).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
    }
}

#[test]
fn a_huge_opmap_timeout_is_safe() {
    let cfg = opero::OpmapConfig::from_json(
        r#"{"mode": "async", "timeout": "18446744073709551615s", "progress": false}"#,
    );
    // Accepted or refused by name, never a panic; accepted, it bounds nothing in practice.
    if let Ok(cfg) = cfg {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        if let Ok(map) = opero::OpmapBuilder::<opero::NoCache>::from_config(cfg)
            .wrap_async(|x: u32| async move { Ok::<_, String>(x + 1) })
        {
            assert_eq!(rt.block_on(map.call([1])), [Ok(2)]);
        }
    }
}

// ===== every field over its accepted range =====

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..10, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        Just(Duration::MAX),
        Just(Duration::ZERO),
    ]
}

fn any_rate() -> impl Strategy<Value = f64> {
    // Log-uniform over the accepted range and a little past both ends.
    (-11.0f64..9.5).prop_map(|e| 10f64.powf(e))
}

fn any_config() -> impl Strategy<Value = OperoConfig> {
    (
        any::<u32>(),
        prop_oneof![1.0f64..4.0, 1.0f64..f64::MAX, Just(f64::MAX)],
        any_duration(),
        any_duration(),
        prop::bool::ANY,
        prop::option::of(any_duration()),
        prop::option::of(any_rate()),
        prop_oneof![Just(1u32), any::<u32>(), Just(u32::MAX)],
    )
        .prop_map(
            |(retries, factor, a, b, full, ttl, rate, burst)| OperoConfig {
                retry: RetryConfig {
                    retries,
                    backoff_factor: factor,
                    min_delay: a.min(b),
                    max_delay: a.max(b),
                    jitter: if full { Jitter::Full } else { Jitter::None },
                    ..RetryConfig::default()
                },
                cache: CacheConfig {
                    enabled: true,
                    ttl,
                    ..CacheConfig::default()
                },
                rate_limit: RateLimitConfig {
                    rate,
                    burst,
                    ..Default::default()
                },
                ..OperoConfig::default()
            },
        )
}

/// Everything a config drives, without sleeping: the first attempt succeeds and takes the
/// bucket's free permit; the backoff's delays and the bucket's later waits are computed, not
/// slept.
fn exercise(cfg: OperoConfig, dir: &std::path::Path) {
    let Ok(opero) = Opero::<MemoryCache>::new(cfg.clone()) else {
        // Refused: it must have been by name.
        let err = Opero::<MemoryCache>::new(cfg).unwrap_err();
        assert!(err.field().is_some(), "{err}");
        return;
    };
    cached_twice(&opero);
    cached_twice(&Opero::with_cache(cfg.clone(), DiskCache::new(dir)).unwrap());
    if let Ok(backoff) = Backoff::new(cfg.retry.clone()) {
        for n in [1, 2, 17, 1_000, u32::MAX] {
            let _ = backoff.delay(n);
            let _ = backoff.ceiling(n);
        }
    }
    if let Some(limiter) = opero.rate_limiter() {
        for _ in 0..3 {
            let _ = limiter.reserve();
            let _ = limiter.try_acquire();
        }
    }
    // The builder takes the same values one by one.
    let built = Opero::<MemoryCache>::builder()
        .retries(cfg.retry.retries)
        .backoff_factor(cfg.retry.backoff_factor)
        .min_delay(cfg.retry.min_delay)
        .max_delay(cfg.retry.max_delay)
        .cache_config(cfg.cache.clone())
        .rate_limit_config(cfg.rate_limit.clone())
        .build()
        .unwrap();
    cached_twice(&built);
    // One item through an opmap (one item: its permit is the free one).
    let map = opero::opmap()
        .retries(cfg.retry.retries)
        .backoff_factor(cfg.retry.backoff_factor)
        .min_delay(cfg.retry.min_delay)
        .max_delay(cfg.retry.max_delay)
        .rate_limit_config(cfg.rate_limit.clone())
        .cache_config(cfg.cache.clone())
        .progress(false)
        .name("plus_one")
        .wrap(|x: &u32| Ok::<_, String>(x + 1))
        .unwrap();
    assert_eq!(map.call([1]), [Ok(2)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_accepted_config_runs_without_panicking(cfg in any_config()) {
        let dir = tempfile::tempdir().unwrap();
        exercise(cfg, dir.path());
    }
}
