//! A pipeline's circuit breaker (one per fallback value) counts each failed attempt; while it
//! stays closed a failing value gets its whole retry budget on the backoff's schedule, and the
//! moment it opens that value's retries end without a delay and the call moves on to the next
//! value, on tokio's paused clock.

use std::time::Duration;

use tokio::time::Instant;

use crate::{AttemptError, BreakerConfig, BreakerState, Fallbacks, Jitter, NoCache, Opero};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn with_breaker(threshold: u32) -> Opero<NoCache> {
    Opero::<NoCache>::builder()
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(threshold),
            open_duration: ms(10_000),
            ..Default::default()
        })
        .retries(2)
        .min_delay(ms(100))
        .backoff_factor(1.0)
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_closed_breaker_leaves_a_failing_value_its_whole_retry_budget() {
    let opero = with_breaker(10);
    let start = Instant::now();
    let mut at = Vec::new();
    let err = opero
        .run_async(|| {
            at.push(start.elapsed());
            async { Err::<(), _>("busy") }
        })
        .await
        .unwrap_err();
    assert_eq!(at, [ms(0), ms(100), ms(200)]);
    assert_eq!(err.len(), 3);
    assert_eq!(
        opero.circuit_breaker(0).unwrap().state(),
        BreakerState::Closed
    );
}

#[test]
fn a_closed_breaker_leaves_a_failing_sync_value_its_whole_retry_budget() {
    let opero = with_breaker(10);
    let mut runs = 0;
    let err = opero
        .run(|| {
            runs += 1;
            Err::<(), _>("busy")
        })
        .unwrap_err();
    assert_eq!((runs, err.len()), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_opens_ends_the_value_s_retries_and_the_next_value_runs_at_once() {
    let opero = with_breaker(2);
    let keys = Fallbacks::new(vec!["revoked", "good"]).unwrap();
    let start = Instant::now();
    let mut at = Vec::new();
    let got = opero
        .run_fallback_async(&keys, |key: &str| {
            at.push((key, start.elapsed()));
            async move {
                if key == "revoked" {
                    Err("401")
                } else {
                    Ok("served")
                }
            }
        })
        .await;
    assert_eq!(got.unwrap(), "served");
    // The second failure opens the first value's breaker: no third attempt, no wait before
    // the next value.
    assert_eq!(
        at,
        [("revoked", ms(0)), ("revoked", ms(100)), ("good", ms(100))]
    );
    assert_eq!(
        opero.circuit_breaker(0).unwrap().state(),
        BreakerState::Open
    );
    assert_eq!(
        opero.circuit_breaker(1).unwrap().state(),
        BreakerState::Closed
    );
}

#[test]
fn a_sync_call_s_open_breaker_skips_its_value_and_says_so() {
    let opero = with_breaker(1);
    let keys = Fallbacks::new(vec![1, 2]).unwrap();
    let mut tried = Vec::new();
    let err = opero
        .run_fallback(&keys, |k: &i32| {
            tried.push(*k);
            Err::<(), _>("down")
        })
        .unwrap_err();
    // Each value's first failure opens its breaker, ending its retries.
    assert_eq!(tried, [1, 2]);
    assert_eq!(err.len(), 2);
    tried.clear();
    let err = opero
        .run_fallback(&keys, |k: &i32| {
            tried.push(*k);
            Ok::<_, &str>(())
        })
        .unwrap_err();
    assert!(tried.is_empty(), "open breakers skip their values");
    assert!(err
        .attempts()
        .iter()
        .all(|a| matches!(a.error, AttemptError::BreakerOpen)));
}

#[test]
fn a_guarded_sync_call_s_first_failure_waits_its_backoff_before_the_retry() {
    // The guarded first attempt runs ahead of the loop; its failure still waits the backoff.
    let opero = with_breaker(10);
    let start = std::time::Instant::now();
    let mut at = Vec::new();
    let got = opero.run(|| {
        at.push(start.elapsed());
        if at.len() < 2 {
            Err("busy")
        } else {
            Ok(at.len())
        }
    });
    assert_eq!(got.unwrap(), 2);
    assert!(at[1] >= ms(100), "the retry waited {:?}", at[1]);
    assert!(at[1] < ms(5_000));
}
