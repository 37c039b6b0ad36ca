//! Every invalid value of `retry.deadline` and `retry.attempt_timeout`, from the builder or from
//! a config document, is an `OperoError` naming the field and the value; unknown keys near them
//! are refused with a suggestion; valid ones round-trip.

use std::time::Duration;

use crate::{ErrorKind, NoCache, Opero, OperoConfig};

fn json_field(text: &str) -> Option<&'static str> {
    let err = OperoConfig::from_json(text).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    err.field()
}

#[test]
fn a_zero_deadline_is_refused() {
    let err = Opero::<NoCache>::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(
        (err.field(), err.value()),
        (Some("retry.deadline"), Some("0s"))
    );
    assert_eq!(
        json_field(r#"{"retry": {"deadline": 0}}"#),
        Some("retry.deadline")
    );
    assert_eq!(
        json_field(r#"{"retry": {"deadline": "0s"}}"#),
        Some("retry.deadline")
    );
}

#[test]
fn a_zero_attempt_timeout_is_refused() {
    let err = Opero::<NoCache>::builder()
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), Some("retry.attempt_timeout"));
    assert_eq!(
        json_field(r#"{"retry": {"attempt_timeout": 0}}"#),
        Some("retry.attempt_timeout")
    );
}

#[test]
fn an_attempt_timeout_above_the_deadline_is_refused() {
    let err = Opero::<NoCache>::builder()
        .deadline(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert_eq!(
        (err.field(), err.value()),
        (Some("retry.attempt_timeout"), Some("2s"))
    );
    assert!(err.to_string().contains("retry.deadline"), "{err}");
    assert_eq!(
        json_field(r#"{"retry": {"deadline": "1s", "attempt_timeout": "1.5s"}}"#),
        Some("retry.attempt_timeout")
    );
    // Equal is fine: the attempt may use the whole budget.
    assert!(Opero::<NoCache>::builder()
        .deadline(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .is_ok());
}

#[test]
fn malformed_durations_name_their_field() {
    for (text, field) in [
        (r#"{"retry": {"deadline": "soon"}}"#, "retry.deadline"),
        (r#"{"retry": {"deadline": -1}}"#, "retry.deadline"),
        (r#"{"retry": {"deadline": "-2s"}}"#, "retry.deadline"),
        (r#"{"retry": {"deadline": true}}"#, "retry.deadline"),
        (
            r#"{"retry": {"attempt_timeout": "later"}}"#,
            "retry.attempt_timeout",
        ),
        (
            r#"{"retry": {"attempt_timeout": 1e400}}"#,
            "retry.attempt_timeout",
        ),
        (
            r#"{"retry": {"attempt_timeout": [1]}}"#,
            "retry.attempt_timeout",
        ),
    ] {
        assert_eq!(json_field(text), Some(field), "{text}");
    }
}

#[test]
fn unknown_keys_near_the_new_ones_are_refused_with_a_suggestion() {
    let err = OperoConfig::from_json(r#"{"retry": {"deadlin": "1s"}}"#).unwrap_err();
    assert_eq!(err.field(), Some("retry"));
    assert!(
        err.to_string().contains("did you mean `deadline`?"),
        "{err}"
    );
    let err = OperoConfig::from_json(r#"{"retry": {"attempt_timout": "1s"}}"#).unwrap_err();
    assert!(
        err.to_string().contains("did you mean `attempt_timeout`?"),
        "{err}"
    );
    let err = OperoConfig::from_json(r#"{"retry": {"timeout": "1s"}}"#).unwrap_err();
    assert_eq!(err.field(), Some("retry"));
}

#[test]
fn valid_settings_take_effect_and_round_trip() {
    let cfg = OperoConfig::from_json(
        r#"{"retry": {"deadline": "2.5s", "attempt_timeout": 0.5, "jitter": "decorrelated"}}"#,
    )
    .unwrap();
    assert_eq!(cfg.retry.deadline, Some(Duration::from_millis(2_500)));
    assert_eq!(cfg.retry.attempt_timeout, Some(Duration::from_millis(500)));
    let back = OperoConfig::from_json(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back.retry.deadline, cfg.retry.deadline);
    assert_eq!(back.retry.attempt_timeout, cfg.retry.attempt_timeout);
    // Unset, they stay out of the written document.
    let text = serde_json::to_string(&OperoConfig::default()).unwrap();
    assert!(
        !text.contains("deadline") && !text.contains("attempt_timeout"),
        "{text}"
    );
    // Null means unset.
    let cfg = OperoConfig::from_json(r#"{"retry": {"deadline": null}}"#).unwrap();
    assert_eq!(cfg.retry.deadline, None);

    // A config's deadline reaches the pipeline.
    let cfg = OperoConfig::from_json(
        r#"{"retry": {"deadline": "1s", "min_delay": "1h", "max_delay": "1h"}}"#,
    )
    .unwrap();
    let err = Opero::<NoCache>::new(cfg)
        .unwrap()
        .run(|| Err::<(), _>("x"))
        .unwrap_err();
    assert_eq!(err.ended_by_deadline(), Some(Duration::from_secs(1)));
}

#[test]
fn a_deadline_and_an_attempt_timeout_compose_with_hedging() {
    // Hedged attempts keep both bounds (see a_hedge_starts_after_its_delay_and_the_first_success_wins),
    // so the combination builds, from the builder and from a config.
    assert!(Opero::<NoCache>::builder()
        .deadline(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(300))
        .hedge(Duration::from_millis(50), 1)
        .build()
        .is_ok());
    let cfg = OperoConfig::from_json(
        r#"{"retry": {"deadline": "1s", "attempt_timeout": "300ms"}, "hedge": {"delay": "50ms", "max_hedges": 1}}"#,
    )
    .unwrap();
    assert!(Opero::<NoCache>::new(cfg).is_ok());
    // A timeout longer than the deadline is still refused, hedged or not.
    let err = Opero::<NoCache>::builder()
        .deadline(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(2))
        .hedge(Duration::from_millis(50), 1)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), Some("retry.attempt_timeout"));
}
