//! A server's hint (Retry-After) read from the error raises the backoff's delay to at least the
//! hint, capped by `max_delay`; `retry_on`, the retry count, jitter and the retries of crashed
//! attempts keep working beside it.

use std::sync::Mutex;
use std::time::Duration;

use crate::{AttemptError, Jitter, NoCache, Opero};
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Http {
    status: u16,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn busy(after: Option<u64>) -> Http {
    Http {
        status: 503,
        retry_after: after.map(ms),
    }
}

/// Runs `script` (one error per attempt, then Ok) and returns when each attempt started.
async fn attempt_times<P>(
    opero: &Opero<NoCache, crate::StableKey, P>,
    script: Vec<Http>,
) -> Vec<u128>
where
    P: crate::RetryPolicy<Http> + crate::OkPolicy<(), Http>,
{
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let script = Mutex::new(script.into_iter());
    let _ = opero
        .run_async(|| {
            times.lock().unwrap().push(start.elapsed().as_millis());
            let next = script.lock().unwrap().next();
            async move {
                match next {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
        })
        .await;
    times.into_inner().unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_delay_is_the_longer_of_hint_and_backoff_capped_by_max_delay() {
    let opero = Opero::<NoCache>::builder()
        .retries(4)
        .backoff_factor(2.0)
        .min_delay(ms(100))
        .max_delay(ms(5_000))
        .jitter(Jitter::None)
        .retry_after(|e: &Http| e.retry_after)
        .build()
        .unwrap();
    // Backoff 100, 200, 400, 800. Hints: 1 s (wins), none (backoff), 50 ms (backoff wins),
    // an hour (capped at 5 s).
    let script = vec![
        busy(Some(1_000)),
        busy(None),
        busy(Some(50)),
        busy(Some(3_600_000)),
    ];
    let times = attempt_times(&opero, script).await;
    assert_eq!(times, [0, 1_000, 1_200, 1_600, 6_600]);
}

#[tokio::test(start_paused = true)]
async fn retry_on_still_decides_whether_and_retries_how_often() {
    let opero = Opero::<NoCache>::builder()
        .retries(1)
        .min_delay(ms(100))
        .jitter(Jitter::None)
        .retry_on(|e: &Http| e.status != 400)
        .retry_after(|e: &Http| e.retry_after)
        .build()
        .unwrap();
    let bad_request = Http {
        status: 400,
        retry_after: Some(ms(10)),
    };
    assert_eq!(attempt_times(&opero, vec![bad_request]).await, [0]);
    // One retry only, whatever the hints say.
    let times = attempt_times(&opero, vec![busy(Some(300)), busy(Some(300)), busy(None)]).await;
    assert_eq!(times, [0, 300]);
}

#[tokio::test(start_paused = true)]
async fn with_full_jitter_a_hinted_delay_is_never_below_the_hint() {
    let opero = Opero::<NoCache>::builder()
        .retries(1)
        .min_delay(ms(100))
        .max_delay(ms(10_000))
        .jitter(Jitter::Full)
        .retry_after(|e: &Http| e.retry_after)
        .build()
        .unwrap();
    for _ in 0..50 {
        let times = attempt_times(&opero, vec![busy(Some(700))]).await;
        assert_eq!(times, [0, 700]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_crashed_attempt_keeps_the_backoff_delay() {
    let opero = Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(ms(100))
        .backoff_factor(2.0)
        .jitter(Jitter::None)
        .retry_after(|e: &Http| e.retry_after)
        .build()
        .unwrap();
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let err = opero
        .run_attempts_async(&[()], |_| {
            times.lock().unwrap().push(start.elapsed().as_millis());
            async { Err::<(), _>(AttemptError::<Http>::Crashed("signal 9".into())) }
        })
        .await
        .unwrap_err();
    assert_eq!(times.into_inner().unwrap(), [0, 100, 300]);
    assert_eq!(err.len(), 3);
}

#[test]
fn the_sync_form_waits_at_least_the_hint() {
    let opero = Opero::<NoCache>::builder()
        .retries(1)
        .min_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .retry_after(|e: &Http| e.retry_after)
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let mut calls = 0;
    let _ = opero.run(|| {
        calls += 1;
        Err::<(), _>(busy(Some(30)))
    });
    assert_eq!(calls, 2);
    assert!(start.elapsed() >= ms(30));
}
