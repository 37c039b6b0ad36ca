//! A hedged call keeps the circuit breakers' rules: a value whose breaker is open is skipped at
//! once (the race starts on the next value), and a failure that opens a value's breaker ends that
//! value's retries without a backoff wait, as in an unhedged call. On tokio's paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::{AttemptError, BreakerConfig, BreakerState, Fallbacks, Jitter, NoCache, Opero};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn hedged_with_breakers(threshold: u32) -> Opero<NoCache> {
    Opero::<NoCache>::builder()
        .hedge(ms(1_000), 1)
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(threshold),
            open_duration: ms(60_000),
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
async fn a_failure_that_opens_the_breaker_moves_to_the_next_value_without_a_wait() {
    let opero = hedged_with_breakers(1);
    let values = Fallbacks::new(vec!["down", "up"]).unwrap();
    let start = Instant::now();
    let tried = Mutex::new(Vec::new());
    let got = opero
        .run_fallback_async(&values, |v: &str| {
            tried.lock().unwrap().push((v, start.elapsed()));
            async move {
                if v == "down" {
                    Err("refused")
                } else {
                    Ok(v)
                }
            }
        })
        .await;
    assert_eq!(got.unwrap(), "up");
    assert_eq!(*tried.lock().unwrap(), [("down", ms(0)), ("up", ms(0))]);
    assert_eq!(
        opero.circuit_breaker(0).unwrap().state(),
        BreakerState::Open
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_breaker_leaves_the_value_its_retries_in_a_hedged_call() {
    let opero = hedged_with_breakers(10);
    let values = Fallbacks::new(vec!["down", "up"]).unwrap();
    let start = Instant::now();
    let tried = Mutex::new(Vec::new());
    let got = opero
        .run_fallback_async(&values, |v: &str| {
            tried.lock().unwrap().push((v, start.elapsed()));
            async move {
                if v == "down" {
                    Err("refused")
                } else {
                    Ok(v)
                }
            }
        })
        .await;
    assert_eq!(got.unwrap(), "up");
    assert_eq!(
        *tried.lock().unwrap(),
        [
            ("down", ms(0)),
            ("down", ms(100)),
            ("down", ms(200)),
            ("up", ms(200))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_value_whose_breaker_is_open_is_skipped_and_the_race_starts_on_the_next() {
    let opero = hedged_with_breakers(1);
    let values = Fallbacks::new(vec!["down", "up"]).unwrap();
    // The first call opens the first value's breaker.
    let first = opero
        .run_fallback_async(&values, |v: &str| async move {
            if v == "down" {
                Err("refused")
            } else {
                Ok(v)
            }
        })
        .await;
    assert_eq!(first.unwrap(), "up");
    let tried = Mutex::new(Vec::new());
    let got = opero
        .run_fallback_async(&values, |v: &str| {
            tried.lock().unwrap().push(v);
            async move { Ok::<_, &str>(v) }
        })
        .await;
    assert_eq!(got.unwrap(), "up");
    assert_eq!(
        *tried.lock().unwrap(),
        ["up"],
        "the open value is not called"
    );
    // Every breaker open: nothing runs, and the error says why.
    let only_down = Fallbacks::new(vec!["down"]).unwrap();
    let err = opero
        .run_fallback_async(&only_down, |v: &str| async move { Ok::<_, &str>(v) })
        .await
        .unwrap_err();
    assert!(
        matches!(err.attempts()[0].error, AttemptError::BreakerOpen),
        "{err:?}"
    );
}
