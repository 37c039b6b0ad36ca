//! A config file's mistakes are typed errors that name the field: a value of the wrong type or
//! out of range, a misspelt key (with the nearest known one), a document that is not an object.
//! Before, `{"retry": {"retrys": 9}}` loaded silently with the defaults and type errors only said
//! "line 1 column N".

use opero::{ErrorKind, OperoConfig, OpmapConfig};

fn field_of(json: &str) -> (Option<&'static str>, String) {
    let err = OperoConfig::from_json(json).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    (err.field(), err.to_string())
}

#[test]
fn type_errors_name_the_field_and_the_value() {
    for (json, field, value) in [
        (r#"{"retry": {"retries": -1}}"#, "retry.retries", "-1"),
        (
            r#"{"retry": {"retries": 4294967296}}"#,
            "retry.retries",
            "4294967296",
        ),
        (r#"{"retry": {"retries": 1.5}}"#, "retry.retries", "1.5"),
        (r#"{"rate_limit": {"burst": -1}}"#, "rate_limit.burst", "-1"),
        (
            r#"{"retry": {"backoff_factor": "NaN"}}"#,
            "retry.backoff_factor",
            "NaN",
        ),
        (
            r#"{"retry": {"jitter": "sometimes"}}"#,
            "retry.jitter",
            "sometimes",
        ),
        (r#"{"cache": {"enabled": "yes"}}"#, "cache.enabled", "yes"),
    ] {
        let (got, text) = field_of(json);
        assert_eq!(got, Some(field), "{json}: {text}");
        assert!(text.contains(value), "{json}: the value is named: {text}");
    }
    // A number too large for any float fails while parsing, still at its field.
    let (got, text) = field_of(r#"{"retry": {"backoff_factor": 1e999}}"#);
    assert_eq!(got, Some("retry.backoff_factor"), "{text}");
}

#[test]
fn a_document_that_is_not_an_object_is_refused() {
    for json in ["[]", "3", "\"retry\"", "null"] {
        assert_eq!(field_of(json).0, Some("config"), "{json}");
    }
    assert_eq!(field_of(r#"{"retry": 3}"#).0, Some("retry"));
    assert_eq!(
        OpmapConfig::from_json("[]").unwrap_err().field(),
        Some("config")
    );
}

#[test]
fn unknown_keys_are_refused_at_every_level_with_the_nearest_known_one() {
    let (field, text) = field_of(r#"{"retry": {"retrys": 9}}"#);
    assert_eq!(field, Some("retry"));
    assert!(
        text.contains("unknown field `retrys` in `retry`; did you mean `retries`?"),
        "{text}"
    );

    let (field, text) = field_of(r#"{"rate_limt": {"rate": 5}}"#);
    assert_eq!(field, Some("config"));
    assert!(text.contains("did you mean `rate_limit`?"), "{text}");

    let (field, text) = field_of(r#"{"cache": {"namspace": "x"}}"#);
    assert_eq!(field, Some("cache"));
    assert!(text.contains("did you mean `namespace`?"), "{text}");

    // Nothing near: the known keys are listed.
    let (_, text) = field_of(r#"{"rate_limit": {"speed": 5}}"#);
    assert!(text.contains("known: rate, burst"), "{text}");

    // An opmap config knows its own keys too.
    let err = OpmapConfig::from_json(r#"{"workerz": 4}"#).unwrap_err();
    assert_eq!(err.field(), Some("config"));
    assert!(err.to_string().contains("did you mean `workers`?"), "{err}");
    let err = OpmapConfig::from_json(r#"{"retry": {"retrys": 1}}"#).unwrap_err();
    assert_eq!(err.field(), Some("retry"));
}

#[test]
fn a_valid_document_still_loads() {
    let cfg = OperoConfig::from_json(
        r#"{"retry": {"retries": 2, "min_delay": "5ms", "jitter": "none"},
            "cache": {"enabled": true, "cache_backend": "memory", "ttl": 60},
            "rate_limit": {"rate": 5, "burst": 2}}"#,
    )
    .unwrap();
    assert_eq!(cfg.retry.retries, 2);
    assert!(cfg.cache.enabled);
    let opmap = OpmapConfig::from_json(r#"{"workers": 3, "retry": {"retries": 1}}"#).unwrap();
    assert_eq!(opmap.workers, 3);
}
