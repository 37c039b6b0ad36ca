//! An error that `retry_on` rejects ends the retries for the current fallback value at once and
//! moves on to the next value.

use opero::{Backoff, Fallbacks, NoCache, Opero, RetryOn, StableKey};
use opero_tests::no_delay;

#[derive(Debug, Clone, PartialEq)]
enum ApiError {
    Unauthorized,
    Timeout,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

// A typed predicate is part of the pipeline's type.
fn pipeline() -> Opero<NoCache, StableKey, Backoff<impl Fn(&ApiError) -> bool>> {
    Opero::<NoCache>::builder()
        .retries(3)
        .min_delay(no_delay().min_delay)
        .max_delay(no_delay().max_delay)
        .retry_on(RetryOn::when(|e: &ApiError| *e == ApiError::Timeout))
        .build()
        .unwrap()
}

#[test]
fn a_rejected_error_switches_to_the_next_key_after_one_attempt() {
    let keys = Fallbacks::new(vec!["revoked", "good"]).unwrap();
    let mut log = Vec::new();
    let out = pipeline().run_fallback(&keys, |key: &&str| {
        log.push(*key);
        match *key {
            "revoked" => Err(ApiError::Unauthorized),
            _ => Ok("data"),
        }
    });
    assert_eq!(out.unwrap(), "data");
    assert_eq!(log, ["revoked", "good"]);
}

#[test]
fn an_accepted_error_is_retried_before_switching() {
    let keys = Fallbacks::new(vec!["slow", "good"]).unwrap();
    let mut log = Vec::new();
    let out = pipeline().run_fallback(&keys, |key: &&str| {
        log.push(*key);
        match *key {
            "slow" => Err(ApiError::Timeout),
            _ => Ok("data"),
        }
    });
    assert_eq!(out.unwrap(), "data");
    assert_eq!(log, ["slow", "slow", "slow", "slow", "good"]);
}

#[test]
fn a_rejected_error_mid_retries_stops_that_value() {
    let keys = Fallbacks::new(vec!["a", "b"]).unwrap();
    let mut calls = 0;
    let err = pipeline()
        .run_fallback(&keys, |_key: &&str| {
            calls += 1;
            // Timeout, then Unauthorized: retried once, then the value is abandoned.
            if calls % 2 == 1 {
                Err::<(), _>(ApiError::Timeout)
            } else {
                Err(ApiError::Unauthorized)
            }
        })
        .unwrap_err();
    let shape: Vec<(usize, u32)> = err
        .attempts()
        .iter()
        .map(|a| (a.fallback_index, a.attempt))
        .collect();
    assert_eq!(shape, [(0, 1), (0, 2), (1, 1), (1, 2)]);
}

#[tokio::test]
async fn the_async_path_honours_retry_on_too() {
    let keys = Fallbacks::new(vec!["revoked".to_string(), "good".to_string()]).unwrap();
    let calls = std::sync::atomic::AtomicU32::new(0);
    let out = pipeline()
        .run_fallback_async(&keys, |key: String| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if key == "revoked" {
                    Err(ApiError::Unauthorized)
                } else {
                    Ok(key)
                }
            }
        })
        .await;
    assert_eq!(out.unwrap(), "good");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
