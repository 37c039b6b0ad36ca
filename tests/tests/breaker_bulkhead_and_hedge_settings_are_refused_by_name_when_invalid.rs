//! Every invalid circuit breaker, bulkhead and hedging setting is refused with an `OperoError`
//! naming the field and the value, from the builders and from a JSON config alike (the opmap
//! config too); misspelt keys in these sections are refused with the nearest known one; valid
//! sections load and take effect.

use std::time::Duration;

use opero::{opero, opmap, BreakerConfig, ErrorKind, HedgeConfig, OperoConfig, OpmapConfig};

fn refused_json(json: &str) -> (&'static str, String) {
    let err = OperoConfig::from_json(json).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    let opmap_err = OpmapConfig::from_json(json).unwrap_err();
    assert_eq!(opmap_err.field(), err.field(), "opmap: {opmap_err}");
    (err.field().unwrap(), err.to_string())
}

#[test]
fn every_invalid_value_in_a_config_file_is_named() {
    for (json, field, value) in [
        (
            r#"{"breaker": {"failure_threshold": 0}}"#,
            "breaker.failure_threshold",
            "0",
        ),
        (
            r#"{"breaker": {"failure_threshold": -1}}"#,
            "breaker.failure_threshold",
            "-1",
        ),
        (
            r#"{"breaker": {"failure_ratio": 0}}"#,
            "breaker.failure_ratio",
            "0",
        ),
        (
            r#"{"breaker": {"failure_ratio": 1.5}}"#,
            "breaker.failure_ratio",
            "1.5",
        ),
        (
            r#"{"breaker": {"failure_ratio": -0.5}}"#,
            "breaker.failure_ratio",
            "-0.5",
        ),
        (
            r#"{"breaker": {"failure_threshold": null}}"#,
            "breaker.failure_threshold",
            "none",
        ),
        (r#"{"breaker": {"window": "0s"}}"#, "breaker.window", "0s"),
        (
            r#"{"breaker": {"window": "soon"}}"#,
            "breaker.window",
            "soon",
        ),
        (
            r#"{"breaker": {"min_throughput": 0}}"#,
            "breaker.min_throughput",
            "0",
        ),
        (
            r#"{"breaker": {"open_duration": 0}}"#,
            "breaker.open_duration",
            "0s",
        ),
        (
            r#"{"breaker": {"open_duration": "-1s"}}"#,
            "breaker.open_duration",
            "-1s",
        ),
        (
            r#"{"breaker": {"half_open_probes": 0}}"#,
            "breaker.half_open_probes",
            "0",
        ),
        (
            r#"{"bulkhead": {"max_concurrent": 0}}"#,
            "bulkhead.max_concurrent",
            "0",
        ),
        (
            r#"{"bulkhead": {"max_concurrent": -2}}"#,
            "bulkhead.max_concurrent",
            "-2",
        ),
        (
            r#"{"bulkhead": {"max_queue": "many"}}"#,
            "bulkhead.max_queue",
            "many",
        ),
        (r#"{"hedge": {"delay": 0}}"#, "hedge.delay", "0s"),
        (r#"{"hedge": {"delay": "later"}}"#, "hedge.delay", "later"),
        (r#"{"hedge": {"max_hedges": 0}}"#, "hedge.max_hedges", "0"),
        (r#"{"breaker": 5}"#, "breaker", "5"),
    ] {
        let (got, text) = refused_json(json);
        assert_eq!(got, field, "{json}: {text}");
        assert!(text.contains(value), "{json}: the value is named: {text}");
    }
}

#[test]
fn misspelt_keys_in_the_new_sections_are_refused_with_a_suggestion() {
    for (json, section, suggestion) in [
        (
            r#"{"breaker": {"failure_treshold": 3}}"#,
            "breaker",
            "failure_threshold",
        ),
        (r#"{"breaker": {"open_for": "1s"}}"#, "breaker", "known:"),
        (
            r#"{"bulkhead": {"max_concurent": 3}}"#,
            "bulkhead",
            "max_concurrent",
        ),
        (r#"{"hedge": {"max_hedge": 3}}"#, "hedge", "max_hedges"),
        (r#"{"breakers": {}}"#, "config", "breaker"),
    ] {
        let (got, text) = refused_json(json);
        assert_eq!(got, section, "{json}: {text}");
        assert!(text.contains(suggestion), "{json}: {text}");
    }
}

#[test]
fn every_invalid_builder_setting_is_named() {
    let field = |b: opero::OperoBuilder<opero::NoCache<opero::AnyCache>>| {
        b.build().unwrap_err().field().unwrap()
    };
    let breaker = |cfg: BreakerConfig| field(opero().circuit_breaker(cfg));
    let d = BreakerConfig::default;
    assert_eq!(
        breaker(BreakerConfig {
            failure_threshold: Some(0),
            ..d()
        }),
        "breaker.failure_threshold"
    );
    assert_eq!(
        breaker(BreakerConfig {
            failure_threshold: None,
            failure_ratio: None,
            ..d()
        }),
        "breaker.failure_threshold"
    );
    for ratio in [0.0, -1.0, 1.000_001, f64::NAN, f64::INFINITY] {
        assert_eq!(
            breaker(BreakerConfig {
                failure_ratio: Some(ratio),
                ..d()
            }),
            "breaker.failure_ratio",
            "{ratio}"
        );
    }
    assert_eq!(
        breaker(BreakerConfig {
            window: Duration::ZERO,
            ..d()
        }),
        "breaker.window"
    );
    assert_eq!(
        breaker(BreakerConfig {
            min_throughput: 0,
            ..d()
        }),
        "breaker.min_throughput"
    );
    assert_eq!(
        breaker(BreakerConfig {
            open_duration: Duration::ZERO,
            ..d()
        }),
        "breaker.open_duration"
    );
    assert_eq!(
        breaker(BreakerConfig {
            half_open_probes: 0,
            ..d()
        }),
        "breaker.half_open_probes"
    );
    assert_eq!(field(opero().bulkhead(0, 0)), "bulkhead.max_concurrent");
    assert_eq!(
        field(opero().bulkhead(usize::MAX, 0)),
        "bulkhead.max_concurrent"
    );
    assert_eq!(field(opero().hedge(Duration::ZERO, 1)), "hedge.delay");
    assert_eq!(
        field(opero().hedge(Duration::from_millis(5), 0)),
        "hedge.max_hedges"
    );

    // The opmap builder refuses the same settings by the same names.
    let err = opmap()
        .bulkhead(0, 1)
        .progress(false)
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .err()
        .unwrap();
    assert_eq!(err.field(), Some("bulkhead.max_concurrent"));
    let err = opmap()
        .hedge(Duration::from_millis(5), 0)
        .progress(false)
        .wrap_async(|x: u32| async move { Ok::<_, String>(x) })
        .err()
        .unwrap();
    assert_eq!(err.field(), Some("hedge.max_hedges"));
}

#[test]
fn valid_sections_load_round_trip_and_take_effect() {
    let cfg = OperoConfig::from_json(
        r#"{
            "retry": {"retries": 0},
            "breaker": {"failure_threshold": 1, "failure_ratio": 0.5, "window": "10s",
                        "min_throughput": 5, "open_duration": "1m", "half_open_probes": 2},
            "bulkhead": {"max_concurrent": 3, "max_queue": 0},
            "hedge": {"delay": "150ms", "max_hedges": 2}
        }"#,
    )
    .unwrap();
    assert_eq!(
        cfg.breaker,
        Some(BreakerConfig {
            failure_threshold: Some(1),
            failure_ratio: Some(0.5),
            window: Duration::from_secs(10),
            min_throughput: 5,
            open_duration: Duration::from_secs(60),
            half_open_probes: 2,
        })
    );
    assert_eq!(
        cfg.bulkhead.map(|b| (b.max_concurrent, b.max_queue)),
        Some((3, 0))
    );
    assert_eq!(
        cfg.hedge,
        Some(HedgeConfig {
            delay: Duration::from_millis(150),
            max_hedges: 2
        })
    );
    let text = serde_json::to_string(&cfg).unwrap();
    let back = OperoConfig::from_json(&text).unwrap();
    assert_eq!(
        (back.breaker, back.bulkhead, back.hedge),
        (cfg.breaker.clone(), cfg.bulkhead, cfg.hedge)
    );

    // Without the hedge (which the sync form refuses), the breaker and bulkhead take effect.
    let pipeline =
        opero::Opero::<opero::MemoryCache>::new(OperoConfig { hedge: None, ..cfg }).unwrap();
    assert_eq!(pipeline.bulkhead().unwrap().config().max_concurrent, 3);
    let _ = pipeline.run(|| Err::<(), _>("down"));
    assert_eq!(
        pipeline.circuit_breaker(0).unwrap().state(),
        opero::BreakerState::Open
    );
}
