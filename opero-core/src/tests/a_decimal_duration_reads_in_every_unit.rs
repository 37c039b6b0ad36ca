//! A duration with a decimal number (`"1.5m"`) reads in every unit opero documents, with or
//! without a space before the unit; an unknown unit is refused by the field's name.

use std::time::Duration;

use crate::parse_duration;

fn read(text: &str) -> Result<Duration, Option<&'static str>> {
    parse_duration("retry.min_delay", &serde_json::json!(text)).map_err(|e| e.field())
}

#[test]
fn every_unit_reads_a_decimal_number() {
    let cases = [
        ("3.0ns", Duration::from_nanos(3)),
        ("1.5us", Duration::from_nanos(1_500)),
        ("1.5µs", Duration::from_nanos(1_500)),
        ("1.5ms", Duration::from_micros(1_500)),
        ("1.5s", Duration::from_millis(1_500)),
        ("1.5sec", Duration::from_millis(1_500)),
        ("1.5secs", Duration::from_millis(1_500)),
        ("1.5m", Duration::from_secs(90)),
        ("1.5min", Duration::from_secs(90)),
        ("0.5mins", Duration::from_secs(30)),
        ("1.5h", Duration::from_secs(5_400)),
        ("1.5hr", Duration::from_secs(5_400)),
        ("0.5hrs", Duration::from_secs(1_800)),
        ("2.5 min", Duration::from_secs(150)),
    ];
    for (text, want) in cases {
        assert_eq!(read(text), Ok(want), "{text}");
    }
}

#[test]
fn an_unknown_unit_is_refused_by_the_field_s_name() {
    assert_eq!(read("1.5 fortnights"), Err(Some("retry.min_delay")));
    assert_eq!(read("1.5"), Ok(Duration::from_millis(1_500)), "seconds");
}
