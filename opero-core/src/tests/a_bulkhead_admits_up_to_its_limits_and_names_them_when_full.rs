//! `Bulkhead` on its own: the largest accepted size, its settings read back, and the refusal
//! that names both limits.

use crate::{AttemptError, Bulkhead, BulkheadConfig, BulkheadFull};

#[test]
fn the_largest_bulkhead_is_accepted_and_one_more_slot_refused_by_name() {
    let max = tokio::sync::Semaphore::MAX_PERMITS;
    let at_max = BulkheadConfig {
        max_concurrent: max,
        max_queue: 0,
    };
    assert!(at_max.validate().is_ok());
    assert!(Bulkhead::new(&at_max).is_ok());
    let past = BulkheadConfig {
        max_concurrent: max + 1,
        ..at_max
    };
    let err = past.validate().unwrap_err();
    assert_eq!(err.field(), Some("bulkhead.max_concurrent"));
    assert_eq!(err.value(), Some((max + 1).to_string().as_str()));
}

#[test]
fn a_full_bulkhead_refuses_naming_both_limits() {
    let config = BulkheadConfig {
        max_concurrent: 1,
        max_queue: 0,
    };
    let bulkhead = Bulkhead::new(&config).unwrap();
    assert_eq!(bulkhead.config(), config);
    let _held = bulkhead.enter_blocking().unwrap();
    assert_eq!(bulkhead.in_flight(), 1);
    let full = bulkhead.enter_blocking().unwrap_err();
    assert_eq!(
        full,
        BulkheadFull {
            max_concurrent: 1,
            max_queue: 0
        }
    );
    assert_eq!(
        full.to_string(),
        "bulkhead full: 1 calls in flight (bulkhead.max_concurrent) and 0 waiting (bulkhead.max_queue)"
    );
    assert_eq!(
        AttemptError::<String>::from(full),
        AttemptError::BulkheadFull {
            max_concurrent: 1,
            max_queue: 0
        }
    );
}
