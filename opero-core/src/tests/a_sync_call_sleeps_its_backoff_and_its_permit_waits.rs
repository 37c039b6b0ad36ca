//! The sync forms block their thread for each backoff delay and each rate-limit wait (no runtime
//! needed), so the spacing a user asked for holds on a real clock; the bounds are lower bounds.

use std::time::{Duration, Instant};

use crate::{Jitter, NoCache, Opero};

#[test]
fn sync_retries_sleep_each_backoff_delay() {
    let opero = Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(Duration::from_millis(40))
        .backoff_factor(1.0)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut at = Vec::new();
    let err = opero
        .run(|| {
            at.push(start.elapsed());
            Err::<(), _>("busy")
        })
        .unwrap_err();
    assert_eq!(err.len(), 3);
    assert!(at[1] >= Duration::from_millis(40), "{at:?}");
    assert!(at[2] - at[1] >= Duration::from_millis(40), "{at:?}");
    assert_eq!(opero.metrics().retries, 2);
}

#[test]
fn sync_calls_wait_for_their_rate_limit_permits() {
    let opero = Opero::<NoCache>::builder()
        .rate_limit(25.0)
        .retries(0)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..3 {
        opero
            .run(|| {
                at.push(start.elapsed());
                Ok::<_, String>(())
            })
            .unwrap();
    }
    // One permit every 40 ms, the first at once.
    assert!(at[1] >= Duration::from_millis(35), "{at:?}");
    assert!(at[2] >= Duration::from_millis(75), "{at:?}");
    assert_eq!(opero.metrics().rate_limit_waits, 2);
}
