//! What a built `Opero` says about itself matches what it was built with, and what it counts
//! matches what ran.

use std::time::Duration;

use crate::{BreakerConfig, NoCache, Opero};

#[test]
fn a_pipeline_reports_its_parts_and_settings() {
    let bare = Opero::<NoCache>::builder().build().unwrap();
    assert!(bare.cache().is_none());
    assert!(bare.rate_limiter().is_none());
    assert!(bare.circuit_breaker(0).is_none());
    assert!(bare.bulkhead().is_none());
    assert!(!bare.guarded());
    assert_eq!(bare.name(), None);
    assert_eq!(bare.deadline(), None);

    let full = Opero::<NoCache>::builder()
        .rate_limit(50.0)
        .circuit_breaker(BreakerConfig::default())
        .bulkhead(3, 2)
        .deadline(Duration::from_secs(2))
        .name("orders")
        .build()
        .unwrap();
    assert!(full.rate_limiter().is_some());
    assert!(full.circuit_breaker(0).is_some());
    assert!(
        full.circuit_breaker(5).is_some(),
        "one breaker per fallback position"
    );
    let bulkhead = full.bulkhead().unwrap().config();
    assert_eq!((bulkhead.max_concurrent, bulkhead.max_queue), (3, 2));
    assert!(full.guarded());
    assert_eq!(full.name(), Some("orders"));
    assert_eq!(full.deadline(), Some(Duration::from_secs(2)));
    assert_eq!(full.cache_config().namespace, "opero");
    let renamed = Opero::<NoCache>::builder()
        .cache_namespace("weather")
        .build()
        .unwrap();
    assert_eq!(renamed.cache_config().namespace, "weather");
}

#[test]
fn the_counters_count_what_ran() {
    let opero = Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(Duration::ZERO)
        .build()
        .unwrap();
    let mut n = 0;
    opero
        .run(|| {
            n += 1;
            if n < 3 {
                Err("again")
            } else {
                Ok(n)
            }
        })
        .unwrap();
    let m = opero.metrics();
    assert_eq!((m.failed_attempts, m.retries, m.failed_calls), (2, 2, 0));
    assert_eq!(opero.metrics_handle().snapshot().failed_attempts, 2);
}
