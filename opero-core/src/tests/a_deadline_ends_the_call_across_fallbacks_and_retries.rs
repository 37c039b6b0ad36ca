//! `deadline` bounds a whole call across every fallback value and retry: no sleep runs past it,
//! a retry whose delay would cross it is not started, an async attempt still running when it
//! passes is cut, and the error says the deadline ended the call. The sync forms check it
//! between attempts.

use std::sync::Mutex;
use std::time::Duration;

use crate::{AttemptError, Fallbacks, Jitter, NoCache, Opero};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_retry_whose_delay_would_cross_the_deadline_is_not_started() {
    let opero = Opero::<NoCache>::builder()
        .retries(10)
        .backoff_factor(2.0)
        .min_delay(ms(100))
        .jitter(Jitter::None)
        .deadline(ms(1_000))
        .build()
        .unwrap();
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let err = opero
        .run_async(|| {
            times.lock().unwrap().push(start.elapsed().as_millis());
            async { Err::<(), _>("down") }
        })
        .await
        .unwrap_err();
    // Delays 100, 200, 400; the next (800 ms, at 700 ms) would end at 1.5 s.
    assert_eq!(times.into_inner().unwrap(), [0, 100, 300, 700]);
    assert_eq!(
        start.elapsed(),
        ms(700),
        "the call ends at once, no sleep toward the deadline"
    );
    assert_eq!(err.ended_by_deadline(), Some(ms(1_000)));
    assert_eq!(err.len(), 4);
    assert_eq!(err.last_error(), Some(&"down"));
    assert!(
        err.to_string()
            .starts_with("the deadline of 1s ended the call after 4 failed attempts"),
        "{err}"
    );
    assert_eq!(opero.metrics().deadlines_exceeded, 1);
}

#[tokio::test(start_paused = true)]
async fn an_async_attempt_running_at_the_deadline_is_cut() {
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .deadline(ms(1_000))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = opero
        .run_async(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, String>("too late")
        })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(1_000));
    assert_eq!(err.len(), 1);
    assert_eq!(
        err.attempts()[0].error,
        AttemptError::DeadlineExceeded(ms(1_000))
    );
    assert_eq!(err.ended_by_deadline(), Some(ms(1_000)));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_spans_every_fallback_value() {
    let opero = Opero::<NoCache>::builder()
        .retries(1)
        .min_delay(ms(300))
        .jitter(Jitter::None)
        .deadline(ms(1_000))
        .build()
        .unwrap();
    let values = Fallbacks::new(vec!["a", "b", "c"]).unwrap();
    let start = Instant::now();
    let tried = Mutex::new(Vec::new());
    let err = opero
        .run_fallback_async(&values, |v| {
            tried.lock().unwrap().push((v, start.elapsed().as_millis()));
            async {
                tokio::time::sleep(ms(200)).await;
                Err::<(), _>("refused")
            }
        })
        .await
        .unwrap_err();
    // a: 0-200, 300 ms delay, 500-700; b: 700-900, then a 300 ms delay would cross 1 s.
    assert_eq!(
        tried.into_inner().unwrap(),
        [("a", 0), ("a", 500), ("b", 700)]
    );
    assert_eq!(start.elapsed(), ms(900));
    assert_eq!(err.fallbacks_tried(), 2, "value c is never tried");
    assert_eq!(err.ended_by_deadline(), Some(ms(1_000)));
}

#[tokio::test(start_paused = true)]
async fn a_server_hint_that_would_cross_the_deadline_ends_the_call() {
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .min_delay(ms(100))
        .max_delay(Duration::from_secs(60))
        .jitter(Jitter::None)
        .retry_after(|e: &u64| Some(Duration::from_secs(*e)))
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut calls = 0;
    let err = opero
        .run_async(|| {
            calls += 1;
            async { Err::<(), u64>(10) }
        })
        .await
        .unwrap_err();
    assert_eq!(
        calls, 1,
        "a 10 s Retry-After does not fit in a 2 s deadline"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.ended_by_deadline(), Some(Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_succeeds_in_time_is_untouched() {
    let opero = Opero::<NoCache>::builder()
        .min_delay(ms(100))
        .jitter(Jitter::None)
        .deadline(ms(1_000))
        .build()
        .unwrap();
    let mut calls = 0;
    let got = opero
        .run_async(|| {
            calls += 1;
            let fail = calls < 3;
            async move {
                if fail {
                    Err("busy")
                } else {
                    Ok(calls)
                }
            }
        })
        .await;
    assert_eq!(got.unwrap(), 3);
    assert_eq!(opero.metrics().deadlines_exceeded, 0);
}

#[test]
fn the_sync_forms_check_the_deadline_between_attempts() {
    let opero = Opero::<NoCache>::builder()
        .retries(1_000)
        .min_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .deadline(ms(100))
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let mut calls = 0;
    let err = opero
        .run(|| {
            calls += 1;
            std::thread::sleep(ms(30));
            Err::<(), _>("slow and failing")
        })
        .unwrap_err();
    // 30 ms attempts in a 100 ms budget: the one that ends past 100 ms is the last.
    assert!((2..=4).contains(&calls), "{calls} attempts");
    assert!(start.elapsed() >= ms(90));
    assert_eq!(err.ended_by_deadline(), Some(ms(100)));
}

#[test]
fn a_sync_retry_that_would_cross_the_deadline_is_not_slept_on() {
    let opero = Opero::<NoCache>::builder()
        .min_delay(Duration::from_secs(3_600))
        .max_delay(Duration::from_secs(3_600))
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = opero.run(|| Err::<(), _>("down")).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err.ended_by_deadline(), Some(Duration::from_secs(1)));
}

#[test]
fn a_rate_limit_wait_that_would_cross_the_deadline_is_not_slept_on() {
    let opero = Opero::<NoCache>::builder()
        .retries(10)
        .min_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .rate_limit(5.0)
        .deadline(ms(300))
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let mut calls = 0;
    let err = opero
        .run(|| {
            calls += 1;
            Err::<(), _>("down")
        })
        .unwrap_err();
    // Permits at 0 and 200 ms; the third, at 400 ms, is past the deadline.
    assert_eq!(calls, 2);
    assert!(start.elapsed() >= ms(190));
    assert_eq!(err.ended_by_deadline(), Some(ms(300)));
}
