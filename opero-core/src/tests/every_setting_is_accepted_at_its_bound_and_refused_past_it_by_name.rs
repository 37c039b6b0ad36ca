//! The config sections on their own: each bound accepted exactly at its edge and refused just
//! past it with an error naming the field; durations in every written form; unknown keys with
//! the nearest known one.

use std::time::Duration;

use crate::{
    parse_duration, BreakerConfig, BulkheadConfig, CacheConfig, HedgeConfig, OperoConfig,
    OperoError, RateLimitConfig, RetryConfig,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn field(result: Result<(), OperoError>) -> Option<String> {
    result.err().map(|e| e.field().unwrap_or("-").to_owned())
}

fn retry(change: impl FnOnce(&mut RetryConfig)) -> Option<String> {
    let mut config = RetryConfig::default();
    change(&mut config);
    field(config.validate())
}

#[test]
fn retry_settings_are_refused_just_past_their_bounds() {
    assert_eq!(retry(|r| r.backoff_factor = 1.0), None);
    for bad in [0.999, f64::NAN, f64::INFINITY] {
        assert_eq!(
            retry(|r| r.backoff_factor = bad).as_deref(),
            Some("retry.backoff_factor")
        );
    }
    assert_eq!(retry(|r| (r.min_delay, r.max_delay) = (ms(5), ms(5))), None);
    assert_eq!(
        retry(|r| (r.min_delay, r.max_delay) = (ms(6), ms(5))).as_deref(),
        Some("retry.min_delay")
    );
    assert_eq!(
        retry(|r| r.deadline = Some(Duration::ZERO)).as_deref(),
        Some("retry.deadline")
    );
    assert_eq!(retry(|r| r.deadline = Some(Duration::from_nanos(1))), None);
    assert_eq!(
        retry(|r| r.attempt_timeout = Some(Duration::ZERO)).as_deref(),
        Some("retry.attempt_timeout")
    );
    assert_eq!(
        retry(|r| (r.attempt_timeout, r.deadline) = (Some(ms(5)), Some(ms(5)))),
        None
    );
    assert_eq!(
        retry(|r| (r.attempt_timeout, r.deadline) = (Some(ms(6)), Some(ms(5)))).as_deref(),
        Some("retry.attempt_timeout")
    );
    assert_eq!(retry(|r| r.attempt_timeout = Some(ms(6))), None);
}

#[test]
fn cache_settings_are_refused_by_name_and_options_parsed_by_name() {
    let enabled = CacheConfig::enabled("disk");
    assert!(enabled.enabled);
    assert_eq!(enabled.backend, "disk");
    assert_eq!(enabled.namespace, CacheConfig::default().namespace);
    assert_eq!(field(enabled.validate()), None);
    let with = |change: fn(&mut CacheConfig)| {
        let mut c = CacheConfig::enabled("memory");
        change(&mut c);
        field(c.validate())
    };
    assert_eq!(
        with(|c| c.ttl = Some(Duration::ZERO)).as_deref(),
        Some("cache.ttl")
    );
    assert_eq!(with(|c| c.ttl = Some(Duration::from_nanos(1))), None);
    assert_eq!(
        with(|c| c.namespace.clear()).as_deref(),
        Some("cache.namespace")
    );
    assert_eq!(
        with(|c| c.key_function = "fast".into()).as_deref(),
        Some("cache.key_function")
    );

    let mut c = CacheConfig::enabled("memory");
    for (k, v) in [
        ("max_capacity", "12"),
        ("flush", "250ms"),
        ("bad", "x"),
        ("secs", " 1.5 "),
    ] {
        c.backend_options.insert(k.into(), v.into());
    }
    assert_eq!(c.option::<u64>("max_capacity").unwrap(), Some(12));
    assert_eq!(c.option::<u64>("absent").unwrap(), None);
    assert_eq!(c.option::<u64>("bad").unwrap_err().field(), Some("bad"));
    assert_eq!(c.duration_option("flush").unwrap(), Some(ms(250)));
    assert_eq!(c.duration_option("secs").unwrap(), Some(ms(1500)));
    assert_eq!(c.duration_option("absent").unwrap(), None);
    assert_eq!(c.duration_option("bad").unwrap_err().field(), Some("bad"));
}

fn rate(change: impl FnOnce(&mut RateLimitConfig)) -> Option<String> {
    let mut config = RateLimitConfig::per_second(10.0);
    change(&mut config);
    field(config.validate())
}

#[test]
fn rate_limit_settings_are_refused_just_past_their_bounds() {
    let c = RateLimitConfig::per_second(5.0);
    assert_eq!(
        (c.rate, c.burst, c.backend.as_str()),
        (Some(5.0), 1, "local")
    );
    assert_eq!(c.clone().with_burst(4).burst, 4);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-10, 1.000_001e9] {
        assert_eq!(
            rate(|r| r.rate = Some(bad)).as_deref(),
            Some("rate_limit.rate"),
            "{bad}"
        );
    }
    // One permit per ~300 years still fits the bucket's nanoseconds; a billion per second is the top.
    // The slowest rate accepted: an interval of exactly 2^63 nanoseconds.
    for good in [1e9 / 2f64.powi(63), 2e-10, 1e9, 0.5] {
        assert_eq!(rate(|r| r.rate = Some(good)), None, "{good}");
    }
    assert_eq!(rate(|r| r.burst = 0).as_deref(), Some("rate_limit.burst"));
    assert_eq!(
        rate(|r| r.backend.clear()).as_deref(),
        Some("rate_limit.backend")
    );
    // A limit without a rate would limit nothing: refused, except as the default "no limit".
    assert_eq!(
        rate(|r| (r.rate, r.backend) = (None, "redis".into())).as_deref(),
        Some("rate_limit.backend")
    );
    assert_eq!(rate(|r| r.rate = None), None);
    assert_eq!(
        rate(|r| {
            r.backend_options.insert("url".into(), "x".into());
        })
        .as_deref(),
        Some("rate_limit.backend_options")
    );
    let redis = RateLimitConfig::per_second(1.0)
        .with_backend("redis", [("key_ttl", "2s"), ("bad", "soon")]);
    assert_eq!(redis.backend, "redis");
    assert_eq!(field(redis.validate()), None);
    assert_eq!(
        redis
            .duration_option("key_ttl", "rate_limit.key_ttl")
            .unwrap(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(redis.duration_option("absent", "x").unwrap(), None);
    assert_eq!(
        redis
            .duration_option("bad", "rate_limit.bad")
            .unwrap_err()
            .field(),
        Some("rate_limit.bad")
    );
}

#[test]
fn every_section_is_validated_and_hedging_keeps_a_time_budget() {
    let hedged = OperoConfig {
        hedge: Some(HedgeConfig::default()),
        ..Default::default()
    };
    assert_eq!(field(hedged.validate()), None);
    // A hedged race ends by the deadline and cuts each attempt by the timeout.
    let mut bounded = hedged.clone();
    bounded.retry.deadline = Some(ms(100));
    bounded.retry.attempt_timeout = Some(ms(50));
    assert_eq!(field(bounded.validate()), None);
    // A timeout the deadline would always cut first is refused, hedged or not.
    let mut past_deadline = bounded.clone();
    past_deadline.retry.attempt_timeout = Some(ms(150));
    assert_eq!(
        field(past_deadline.validate()).as_deref(),
        Some("retry.attempt_timeout")
    );
    let bad = |config: OperoConfig| field(config.validate());
    assert_eq!(
        bad(OperoConfig {
            breaker: Some(BreakerConfig {
                half_open_probes: 0,
                ..Default::default()
            }),
            ..Default::default()
        })
        .as_deref(),
        Some("breaker.half_open_probes")
    );
    assert_eq!(
        bad(OperoConfig {
            bulkhead: Some(BulkheadConfig {
                max_concurrent: 0,
                max_queue: 0
            }),
            ..Default::default()
        })
        .as_deref(),
        Some("bulkhead.max_concurrent")
    );
    let mut config = OperoConfig::default();
    config.retry.backoff_factor = 0.5;
    assert_eq!(bad(config).as_deref(), Some("retry.backoff_factor"));
    let mut config = OperoConfig::default();
    config.cache.namespace.clear();
    assert_eq!(bad(config).as_deref(), Some("cache.namespace"));
    let mut config = OperoConfig::default();
    config.rate_limit.burst = 0;
    assert_eq!(bad(config).as_deref(), Some("rate_limit.burst"));
}

#[test]
fn durations_are_read_in_every_written_form() {
    let d = |text: &str| parse_duration("d", &serde_json::json!(text));
    for (text, expected) in [
        ("1.5s", ms(1500)),
        ("1.5 sec", ms(1500)),
        ("2.5secs", ms(2500)),
        ("0.5ms", Duration::from_micros(500)),
        ("1.5us", Duration::from_nanos(1500)),
        ("2.5µs", Duration::from_nanos(2500)),
        ("3ns", Duration::from_nanos(3)),
        ("1.5m", Duration::from_secs(90)),
        ("0.5min", Duration::from_secs(30)),
        ("1.5mins", Duration::from_secs(90)),
        ("0.5h", Duration::from_secs(1800)),
        ("1.5hr", Duration::from_secs(5400)),
        ("0.25hrs", Duration::from_secs(900)),
        ("1m 30s", Duration::from_secs(90)),
        ("2", Duration::from_secs(2)),
        (" 0.25 ", ms(250)),
    ] {
        assert_eq!(d(text).unwrap(), expected, "{text}");
    }
    assert_eq!(
        parse_duration("d", &serde_json::json!(0.5)).unwrap(),
        ms(500)
    );
    for bad in ["-1s", "-0.5", "1.5parsecs", "s", "1..5s", "", "fast"] {
        assert_eq!(d(bad).unwrap_err().field(), Some("d"), "{bad:?}");
    }
    assert!(parse_duration("d", &serde_json::json!(-1.0)).is_err());
    assert!(parse_duration("d", &serde_json::json!(true)).is_err());
}

#[test]
fn a_config_document_round_trips_through_json() {
    let mut config = OperoConfig::default();
    config.retry.retries = 7;
    config.retry.deadline = Some(Duration::from_secs(90));
    config.retry.min_delay = ms(250);
    config.cache = CacheConfig::enabled("memory");
    config.cache.ttl = Some(Duration::from_secs(3600));
    config.breaker = Some(BreakerConfig {
        open_duration: Duration::from_secs(12),
        ..Default::default()
    });
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["retry"]["deadline"], "1m 30s");
    assert_eq!(json["retry"]["min_delay"], "250ms");
    assert_eq!(json["cache"]["ttl"], "1h");
    let back = OperoConfig::from_json(&json.to_string()).unwrap();
    assert_eq!(back.retry.retries, 7);
    assert_eq!(back.retry.deadline, Some(Duration::from_secs(90)));
    assert_eq!(back.retry.min_delay, ms(250));
    assert_eq!(back.cache.ttl, Some(Duration::from_secs(3600)));
    assert!(back.cache.enabled);
    assert_eq!(back.breaker, config.breaker);
    let none = serde_json::to_value(OperoConfig::default()).unwrap();
    assert!(none["retry"]["deadline"].is_null());
    let back = OperoConfig::from_json(&none.to_string()).unwrap();
    assert_eq!(back.retry.deadline, None);
}

#[test]
fn a_document_s_errors_name_the_field_and_the_nearest_known_key() {
    let err = |text: &str| OperoConfig::from_json(text).unwrap_err();
    let e = err(r#"{"retry": {"retrys": 9}}"#);
    assert_eq!(e.field(), Some("retry"));
    assert!(
        e.to_string()
            .contains("in `retry`; did you mean `retries`?"),
        "{e}"
    );
    let e = err(r#"{"retyr": {}}"#);
    assert_eq!(e.field(), Some("config"));
    assert!(
        e.to_string()
            .contains("at the top level; did you mean `retry`?"),
        "{e}"
    );
    // Two edits away from a four-letter key is near enough; three is not.
    let e = err(r#"{"rate_limit": {"rxtx": 1}}"#);
    assert!(e.to_string().contains("did you mean `rate`?"), "{e}");
    let e = err(r#"{"rate_limit": {"rxxx": 1}}"#);
    assert!(
        e.to_string()
            .contains("; known: rate, burst, backend, backend_options"),
        "{e}"
    );
    let e = err(r#"{"retry": {"min_dleay": "1s"}}"#);
    assert!(e.to_string().contains("did you mean `min_delay`?"), "{e}");
    let e = err(r#"{"bulkhead": {"max_concurent": 1}}"#);
    assert!(
        e.to_string().contains("did you mean `max_concurrent`?"),
        "{e}"
    );
    let e = err(r#"{"retry": {"retries": -1}}"#);
    assert_eq!((e.field(), e.value()), (Some("retry.retries"), Some("-1")));
    let e = err(r#"{"retry": {"jitter": "sometimes"}}"#);
    assert_eq!(e.field(), Some("retry.jitter"));
    assert_eq!(err(r#"{"retry": 3}"#).field(), Some("retry"));
    assert_eq!(err("[]").field(), Some("config"));
    assert_eq!(err("{} {}").field(), Some("config"));
    assert_eq!(
        err(r#"{"retry": {"min_delay": "-1s"}}"#).field(),
        Some("retry.min_delay")
    );
    let ok = OperoConfig::from_json(r#"{"cache": {"namespace": "n"}}"#).unwrap();
    assert_eq!(ok.retry.retries, RetryConfig::default().retries);
    assert_eq!(ok.cache.namespace, "n");
}

#[test]
fn durations_finer_than_a_nanosecond_are_read_to_the_nanosecond() {
    let d = |text: &str| parse_duration("d", &serde_json::json!(text)).unwrap();
    let near = |got: Duration, want: Duration| {
        let gap = got.abs_diff(want);
        assert!(gap <= Duration::from_nanos(1), "{got:?} vs {want:?}");
    };
    near(d("1.0000000001ns"), Duration::from_nanos(1));
    near(d("1.0000000001us"), Duration::from_micros(1));
    near(d("1.0000000001µs"), Duration::from_micros(1));
    near(d("1.0000000001ms"), ms(1));
    near(d("1.0000000001s"), Duration::from_secs(1));
    near(d("1.0000000001sec"), Duration::from_secs(1));
    near(d("1.0000000001secs"), Duration::from_secs(1));
    near(d("1.0000000001m"), Duration::new(60, 6));
    near(d("1.0000000001min"), Duration::new(60, 6));
    near(d("1.0000000001mins"), Duration::new(60, 6));
    near(d("1.0000000001h"), Duration::new(3600, 360));
    near(d("1.0000000001hr"), Duration::new(3600, 360));
    near(d("1.0000000001hrs"), Duration::new(3600, 360));
    assert!(parse_duration("d", &serde_json::json!("1.0000000001parsecs")).is_err());
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UserSettings {
    #[serde(with = "crate::optional_duration", default)]
    timeout: Option<Duration>,
}

#[test]
fn a_user_s_optional_duration_reads_and_writes_as_opero_s_do() {
    let read = |json: &str| serde_json::from_str::<UserSettings>(json).map(|s| s.timeout);
    assert_eq!(read(r#"{"timeout": "1.5s"}"#).unwrap(), Some(ms(1500)));
    assert_eq!(
        read(r#"{"timeout": 2}"#).unwrap(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(read(r#"{"timeout": null}"#).unwrap(), None);
    assert!(read(r#"{"timeout": "-1s"}"#).is_err());
    let written = serde_json::to_value(UserSettings {
        timeout: Some(Duration::from_secs(90)),
    })
    .unwrap();
    assert_eq!(written["timeout"], "1m 30s");
    let none = serde_json::to_value(UserSettings { timeout: None }).unwrap();
    assert!(none["timeout"].is_null());
}

#[test]
fn the_nearest_key_is_suggested_within_a_third_of_its_length() {
    let suggestion = |key: &str, known: &[&str]| {
        let text = crate::unknown_key("section", key, known).to_string();
        text.split("did you mean `")
            .nth(1)
            .map(|rest| rest.trim_end_matches("`?").to_owned())
    };
    // Three edits away from a fifteen-letter key: near enough (a third is five).
    assert_eq!(
        suggestion("bckend_optns", &["backend_options", "rate"]).as_deref(),
        Some("backend_options")
    );
    assert_eq!(suggestion("xbcdef", &["abcdef"]).as_deref(), Some("abcdef"));
    assert_eq!(suggestion("abcd", &["abcdef"]).as_deref(), Some("abcdef"));
    assert_eq!(
        suggestion("abc", &["abcdef"]),
        None,
        "three edits of six letters"
    );
    assert_eq!(suggestion("abcdefghi", &["abc"]), None, "six edits");
    assert_eq!(
        suggestion("bcdefg", &["abcdefg"]).as_deref(),
        Some("abcdefg")
    );
    assert_eq!(suggestion("zzzzzz", &["abcdef"]), None);
    // The nearest of several wins.
    assert_eq!(
        suggestion("retrie", &["retry", "retries", "rate"]).as_deref(),
        Some("retries")
    );
    assert_eq!(
        suggestion("rety", &["retry", "retries"]).as_deref(),
        Some("retry")
    );
}
