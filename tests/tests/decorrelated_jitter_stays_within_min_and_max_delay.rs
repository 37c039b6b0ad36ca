//! Decorrelated jitter ("V2") keeps every delay within `[min_delay, max_delay]`, over any draw,
//! any retry number and any valid setting; it is chosen by config, builder and attribute alike.

use std::time::Duration;

use opero::{Backoff, Jitter, NoCache, Opero, OperoConfig, RetryConfig};
use proptest::prelude::*;

fn config(factor: f64, min_ms: u64, span_ms: u64) -> RetryConfig {
    RetryConfig {
        retries: u32::MAX,
        backoff_factor: factor,
        min_delay: Duration::from_millis(min_ms),
        max_delay: Duration::from_millis(min_ms + span_ms),
        jitter: Jitter::Decorrelated,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn every_draw_stays_within_min_and_max_delay(
        factor in 1.0f64..16.0,
        min_ms in 0u64..10_000,
        span_ms in 0u64..600_000,
        n in 1u32..=u32::MAX,
        r in 0.0f64..1.0,
    ) {
        let cfg = config(factor, min_ms, span_ms);
        let b = Backoff::new(cfg.clone()).unwrap();
        let d = b.decorrelated(n, r);
        prop_assert!(d >= cfg.min_delay && d <= cfg.max_delay, "{d:?} outside [{:?}, {:?}]", cfg.min_delay, cfg.max_delay);
        let random = b.delay(n.min(1_000)).unwrap();
        prop_assert!(random >= cfg.min_delay && random <= cfg.max_delay);
    }
}

#[test]
fn the_delays_grow_with_the_retry_number_on_average() {
    let b = Backoff::new(RetryConfig {
        backoff_factor: 2.0,
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(3600),
        retries: 10,
        jitter: Jitter::Decorrelated,
        ..Default::default()
    })
    .unwrap();
    let mean = |n: u32| {
        (0..1000)
            .map(|i| b.decorrelated(n, f64::from(i) / 1000.0).as_secs_f64())
            .sum::<f64>()
            / 1000.0
    };
    let means: Vec<f64> = (1..=8).map(mean).collect();
    assert!(means.windows(2).all(|w| w[1] > w[0]), "{means:?}");
    // The median first delay is about `min_delay`.
    assert!((0.08..0.2).contains(&means[0]), "{means:?}");
}

#[test]
fn config_builder_and_text_choose_decorrelated_jitter() {
    let cfg = OperoConfig::from_json(r#"{"retry": {"jitter": "decorrelated"}}"#).unwrap();
    assert_eq!(cfg.retry.jitter, Jitter::Decorrelated);
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(text.contains(r#""jitter":"decorrelated""#), "{text}");
    let err = OperoConfig::from_json(r#"{"retry": {"jitter": "decorelated"}}"#).unwrap_err();
    assert_eq!(err.field(), Some("retry.jitter"));

    let opero = Opero::<NoCache>::builder()
        .jitter(Jitter::Decorrelated)
        .min_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    assert!(opero
        .retry_policy()
        .delays()
        .all(|d| d >= Duration::from_millis(1) && d <= Duration::from_millis(5)));
}
