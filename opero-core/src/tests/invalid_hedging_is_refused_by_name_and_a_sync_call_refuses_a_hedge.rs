//! Hedging settings out of range are typed errors naming the field, from the builder, from a
//! config document and from `HedgeConfig::validate`; a valid one round-trips. A sync call on a
//! hedged pipeline cannot race two attempts, so it fails with an `Unsupported` error naming
//! `hedge` without calling the function.

use std::time::Duration;

use crate::{AttemptError, HedgeConfig, NoCache, Opero, OperoConfig};

#[test]
fn a_zero_delay_or_zero_hedges_is_refused_by_name_everywhere() {
    let field = |delay: Duration, max_hedges: u32| {
        let err = Opero::<NoCache>::builder()
            .hedge(delay, max_hedges)
            .build()
            .unwrap_err();
        err.field()
    };
    assert_eq!(field(Duration::ZERO, 1), Some("hedge.delay"));
    assert_eq!(
        field(Duration::from_millis(50), 0),
        Some("hedge.max_hedges")
    );
    assert!(Opero::<NoCache>::builder()
        .hedge(Duration::from_millis(1), 1)
        .build()
        .is_ok());
    let from_json = |text: &str| OperoConfig::from_json(text).unwrap_err().field();
    assert_eq!(
        from_json(r#"{"hedge": {"delay": "0s", "max_hedges": 1}}"#),
        Some("hedge.delay")
    );
    assert_eq!(
        from_json(r#"{"hedge": {"delay": "50ms", "max_hedges": 0}}"#),
        Some("hedge.max_hedges")
    );
    let bad = HedgeConfig {
        delay: Duration::ZERO,
        max_hedges: 1,
    };
    assert_eq!(bad.validate().unwrap_err().value(), Some("0s"));
    assert!(HedgeConfig::default().validate().is_ok());
}

#[test]
fn a_valid_hedge_round_trips_through_a_config_document() {
    let config =
        OperoConfig::from_json(r#"{"hedge": {"delay": "250ms", "max_hedges": 2}}"#).unwrap();
    let hedge = config.hedge.unwrap();
    assert_eq!(
        hedge,
        HedgeConfig {
            delay: Duration::from_millis(250),
            max_hedges: 2
        }
    );
    let text = serde_json::to_string(&hedge).unwrap();
    assert_eq!(serde_json::from_str::<HedgeConfig>(&text).unwrap(), hedge);
}

#[test]
fn a_sync_call_on_a_hedged_pipeline_is_refused_without_running() {
    let opero = Opero::<NoCache>::builder()
        .hedge(Duration::from_millis(50), 1)
        .build()
        .unwrap();
    let mut ran = false;
    let err = opero
        .run(|| {
            ran = true;
            Ok::<_, String>(())
        })
        .unwrap_err();
    assert!(!ran);
    assert!(
        matches!(
            err.attempts()[0].error,
            AttemptError::Unsupported { field: "hedge", .. }
        ),
        "{err:?}"
    );
    assert_eq!(opero.metrics().failed_calls, 1);
}
