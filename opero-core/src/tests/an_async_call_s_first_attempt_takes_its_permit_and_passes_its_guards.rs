//! The async forms of an uncached pipeline run their first attempt inline when nothing stands
//! between the call and the function; with a rate limit, a bulkhead or a breaker that first
//! attempt still takes its permit, its slot and its breaker's leave, on tokio's paused clock.

use std::time::Duration;

use tokio::time::Instant;

use crate::{AttemptError, BreakerConfig, BreakerState, Jitter, NoCache, Opero};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn each_call_s_first_attempt_waits_for_its_rate_limit_permit() {
    let opero = Opero::<NoCache>::builder()
        .rate_limit(10.0)
        .retries(0)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..3 {
        let got = opero
            .run_async(|| {
                at.push(start.elapsed());
                async { Ok::<_, String>(()) }
            })
            .await;
        assert!(got.is_ok());
    }
    assert_eq!(at, [ms(0), ms(100), ms(200)]);
    assert_eq!(opero.metrics().rate_limit_waits, 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_past_a_full_bulkhead_is_refused_before_its_first_attempt() {
    let opero = Opero::<NoCache>::builder()
        .bulkhead(1, 0)
        .retries(0)
        .build()
        .unwrap();
    let mut second_ran = false;
    let (first, second) = tokio::join!(
        opero.run_async(|| async {
            tokio::time::sleep(ms(100)).await;
            Ok::<_, String>("first")
        }),
        opero.run_async(|| {
            second_ran = true;
            async { Ok::<_, String>("second") }
        })
    );
    assert_eq!(first.unwrap(), "first");
    let err = second.unwrap_err();
    assert!(
        matches!(
            err.attempts()[0].error,
            AttemptError::BulkheadFull {
                max_concurrent: 1,
                max_queue: 0
            }
        ),
        "{err:?}"
    );
    assert!(!second_ran, "the refused call never ran");
    // The slot is free again once the first call ended.
    assert_eq!(
        opero
            .run_async(|| async { Ok::<_, String>("third") })
            .await
            .unwrap(),
        "third"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_skips_the_first_attempt_of_the_next_call() {
    let opero = Opero::<NoCache>::builder()
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(1),
            open_duration: ms(1_000),
            ..Default::default()
        })
        .retries(0)
        .min_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let failed = opero
        .run_async(|| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!(failed.last_error(), Some(&"down"));
    assert_eq!(
        opero.circuit_breaker(0).unwrap().state(),
        BreakerState::Open
    );
    let mut ran = false;
    let skipped = opero
        .run_async(|| {
            ran = true;
            async { Ok::<_, &str>(()) }
        })
        .await
        .unwrap_err();
    assert!(!ran, "an open breaker's value is not called");
    assert!(
        matches!(skipped.attempts()[0].error, AttemptError::BreakerOpen),
        "{skipped:?}"
    );
}
