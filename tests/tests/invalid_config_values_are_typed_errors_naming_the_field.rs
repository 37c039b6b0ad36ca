//! Every invalid configuration value gives an `OperoError` of kind `InvalidConfig` that names the
//! field and the value; nothing panics.

use std::time::Duration;

use opero::{
    AnyCache, BuildCache, CacheConfig, ErrorKind, Fallbacks, MemoryCache, NoCache, Opero,
    OperoConfig, OperoError, RateLimitConfig, RetryConfig,
};

fn assert_names(err: OperoError, field: &str, value: &str) {
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert_eq!(err.field(), Some(field), "{err}");
    assert_eq!(err.value(), Some(value), "{err}");
    let text = err.to_string();
    assert!(text.contains(field) && text.contains(value), "{text}");
}

fn build(cfg: OperoConfig) -> OperoError {
    Opero::<NoCache>::new(cfg).unwrap_err()
}

#[test]
fn nan_and_negative_backoff_factors() {
    for (factor, shown) in [
        (f64::NAN, "NaN"),
        (-1.5, "-1.5"),
        (0.5, "0.5"),
        (f64::INFINITY, "inf"),
    ] {
        let err = build(OperoConfig {
            retry: RetryConfig {
                backoff_factor: factor,
                ..Default::default()
            },
            ..Default::default()
        });
        assert_names(err, "retry.backoff_factor", shown);
    }
}

#[test]
fn zero_negative_and_nan_rates() {
    for (rate, shown) in [(0.0, "0"), (-3.0, "-3"), (f64::NAN, "NaN")] {
        let err = build(OperoConfig {
            rate_limit: RateLimitConfig::per_second(rate),
            ..Default::default()
        });
        assert_names(err, "rate_limit.rate", shown);
    }
    let err = build(OperoConfig {
        rate_limit: RateLimitConfig::per_second(5.0).with_burst(0),
        ..Default::default()
    });
    assert_names(err, "rate_limit.burst", "0");
}

#[test]
fn min_delay_above_max_delay() {
    let err = Opero::<NoCache>::builder()
        .min_delay(Duration::from_secs(5))
        .max_delay(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_names(err, "retry.min_delay", "5s");
}

#[test]
fn an_empty_fallback_list() {
    let err = Fallbacks::<String>::new(Vec::new()).unwrap_err();
    assert_names(err, "fallbacks", "[]");
}

#[test]
fn negative_and_malformed_durations_in_a_file() {
    let err = OperoConfig::from_json(r#"{"retry": {"min_delay": -0.5}}"#).unwrap_err();
    assert_names(err, "retry.min_delay", "-0.5");
    let err = OperoConfig::from_json(r#"{"retry": {"max_delay": "-3s"}}"#).unwrap_err();
    assert_names(err, "retry.max_delay", "-3s");
    let err = OperoConfig::from_json(r#"{"cache": {"ttl": "a while"}}"#).unwrap_err();
    assert_names(err, "cache.ttl", "a while");
    let err = OperoConfig::from_json(r#"{"rate_limit": {"rate": 0}}"#).unwrap_err();
    assert_names(err, "rate_limit.rate", "0");
    // Through plain serde the message still names the field.
    let err = serde_json::from_str::<RetryConfig>(r#"{"backoff_factor": -2}"#).unwrap_err();
    assert!(err.to_string().contains("retry.backoff_factor"), "{err}");
}

#[test]
fn cache_settings() {
    let err = build(OperoConfig {
        cache: CacheConfig {
            ttl: Some(Duration::ZERO),
            ..CacheConfig::enabled("memory")
        },
        ..Default::default()
    });
    assert_names(err, "cache.ttl", "0s");
    let err = build(OperoConfig {
        cache: CacheConfig {
            namespace: String::new(),
            ..CacheConfig::enabled("memory")
        },
        ..Default::default()
    });
    assert_names(err, "cache.namespace", "");
    let mut cfg = CacheConfig::enabled("memory");
    cfg.backend_options
        .insert("max_capacity".into(), "-1".into());
    let err = MemoryCache::build(&cfg).unwrap_err();
    assert_names(err, "max_capacity", "-1");
}

#[test]
fn unknown_backends_and_backends_whose_feature_is_off() {
    let err = AnyCache::build(&CacheConfig::enabled("memcached")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownBackend);
    assert_eq!(err.field(), Some("cache.backend"));
    assert_eq!(err.value(), Some("memcached"));
    let err = opero::opero()
        .cache(true)
        .cache_backend_name("memcached")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownBackend);
}
