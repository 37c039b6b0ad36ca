//! The deadline bounds the whole call: the first attempt may use all of it, and every later
//! attempt (a retry, the next fallback value) is cut when what is left of it runs out, or at its
//! attempt timeout when that comes sooner. On tokio's paused clock, so the instants are exact.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::{AttemptError, Fallbacks, Jitter, NoCache, Opero};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Fails after 300 ms the first time it runs, and never answers after that.
async fn fails_then_hangs(runs: &Mutex<u32>) -> Result<(), String> {
    let n = {
        let mut runs = runs.lock().unwrap();
        *runs += 1;
        *runs
    };
    if n == 1 {
        tokio::time::sleep(ms(300)).await;
        Err("refused".into())
    } else {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_cut_when_what_is_left_of_the_deadline_runs_out() {
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .min_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .deadline(ms(500))
        .build()
        .unwrap();
    let runs = Mutex::new(0);
    let start = Instant::now();
    let err = opero
        .run_async(|| fails_then_hangs(&runs))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(500), "not 300 + 500");
    assert_eq!(err.len(), 2);
    assert_eq!(err.ended_by_deadline(), Some(ms(500)));
    assert!(matches!(
        err.attempts()[1].error,
        AttemptError::DeadlineExceeded(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_next_fallback_value_is_cut_when_what_is_left_of_the_deadline_runs_out() {
    let opero = Opero::<NoCache>::builder()
        .retries(0)
        .deadline(ms(500))
        .build()
        .unwrap();
    let values = Fallbacks::new(vec![1, 2]).unwrap();
    let runs = Mutex::new(0);
    let start = Instant::now();
    let err = opero
        .run_fallback_async(&values, |_| fails_then_hangs(&runs))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(500));
    assert_eq!(err.fallbacks_tried(), 2);
    assert_eq!(err.ended_by_deadline(), Some(ms(500)));
}

#[tokio::test(start_paused = true)]
async fn each_attempt_ends_at_the_sooner_of_its_timeout_and_the_deadline() {
    let opero = Opero::<NoCache>::builder()
        .retries(5)
        .min_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .attempt_timeout(ms(200))
        .deadline(ms(500))
        .build()
        .unwrap();
    let start = Instant::now();
    let at = Mutex::new(Vec::new());
    let err = opero
        .run_async(|| {
            at.lock().unwrap().push(start.elapsed());
            std::future::pending::<Result<(), String>>()
        })
        .await
        .unwrap_err();
    // 0-200 and 200-400 end at the timeout, 400-500 at the deadline.
    assert_eq!(*at.lock().unwrap(), [ms(0), ms(200), ms(400)]);
    assert_eq!(start.elapsed(), ms(500));
    let errors: Vec<_> = err.attempts().iter().map(|a| a.error.clone()).collect();
    assert_eq!(
        errors,
        [
            AttemptError::TimedOut(ms(200)),
            AttemptError::TimedOut(ms(200)),
            AttemptError::DeadlineExceeded(ms(500)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_as_long_as_the_deadline_leaves_the_deadline_to_end_the_call() {
    let opero = Opero::<NoCache>::builder()
        .retries(5)
        .attempt_timeout(ms(500))
        .deadline(ms(500))
        .build()
        .unwrap();
    let err = opero
        .run_async(std::future::pending::<Result<(), String>>)
        .await
        .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(
        err.attempts()[0].error,
        AttemptError::DeadlineExceeded(ms(500))
    );
    assert_eq!(err.ended_by_deadline(), Some(ms(500)));
}

#[tokio::test(start_paused = true)]
async fn every_move_to_the_next_value_is_counted_once() {
    let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
    let values = Fallbacks::new(vec![1, 2, 3]).unwrap();
    let got = opero
        .run_fallback_async(&values, |v| async move {
            if v == 3 {
                Ok(v)
            } else {
                Err("refused")
            }
        })
        .await;
    assert_eq!(got.unwrap(), 3);
    assert_eq!(opero.metrics().fallback_switches, 2);
    assert!(opero
        .run_async(|| async { Err::<(), _>("no") })
        .await
        .is_err());
    assert_eq!(opero.metrics().fallback_switches, 2, "one value, no switch");
}
