//! `attempt_timeout` cuts a late async attempt, records it as `AttemptError::TimedOut` and
//! retries it; with a deadline, whichever comes first cuts. The sync forms cannot preempt a
//! blocking call, so they refuse it with a typed error naming `retry.attempt_timeout`.

use std::time::Duration;

use opero::{AttemptError, Jitter, NoCache, Opero};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pipeline() -> opero::OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(ms(100))
        .backoff_factor(1.5)
        .jitter(Jitter::None)
        .attempt_timeout(ms(1_000))
}

#[tokio::test(start_paused = true)]
async fn a_late_attempt_times_out_and_is_retried() {
    let opero = pipeline().build().unwrap();
    let start = Instant::now();
    let mut calls = 0;
    let got = opero
        .run_async(|| {
            calls += 1;
            let hang = calls == 1;
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok::<_, String>(start.elapsed())
            }
        })
        .await;
    assert_eq!(got.unwrap(), ms(1_100), "cut at 1 s, retried after 100 ms");
    assert_eq!(opero.metrics().attempt_timeouts, 1);
    assert_eq!(opero.metrics().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_timing_out_follows_the_backoff() {
    let opero = pipeline().build().unwrap();
    let start = Instant::now();
    let err = opero
        .run_async(std::future::pending::<Result<(), String>>)
        .await
        .unwrap_err();
    // 1 s, 100 ms, 1 s, 150 ms, 1 s.
    assert_eq!(start.elapsed(), ms(3_250));
    assert_eq!(err.len(), 3);
    assert!(err
        .attempts()
        .iter()
        .all(|a| a.error == AttemptError::TimedOut(ms(1_000))));
    assert_eq!(err.ended_by_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_an_attempt_before_its_timeout() {
    let opero = pipeline().deadline(ms(2_500)).build().unwrap();
    let start = Instant::now();
    let err = opero
        .run_async(std::future::pending::<Result<(), String>>)
        .await
        .unwrap_err();
    // 0-1000 timed out, 1100-2100 timed out, 2250 cut by the deadline at 2500.
    assert_eq!(start.elapsed(), ms(2_500));
    let errors: Vec<_> = err.attempts().iter().map(|a| a.error.clone()).collect();
    assert_eq!(
        errors,
        [
            AttemptError::TimedOut(ms(1_000)),
            AttemptError::TimedOut(ms(1_000)),
            AttemptError::DeadlineExceeded(ms(2_500)),
        ]
    );
    assert_eq!(err.ended_by_deadline(), Some(ms(2_500)));
}

#[test]
fn a_sync_call_is_refused_without_running_the_function() {
    let opero = pipeline().build().unwrap();
    let mut calls = 0;
    let err = opero
        .run(|| {
            calls += 1;
            Ok::<_, String>(())
        })
        .unwrap_err();
    assert_eq!(calls, 0);
    assert_eq!(err.len(), 1);
    match &err.attempts()[0].error {
        AttemptError::Unsupported { field, .. } => assert_eq!(*field, "retry.attempt_timeout"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(err.to_string().contains("retry.attempt_timeout"), "{err}");
}

#[test]
fn sync_wrappers_are_refused_when_built() {
    let err = pipeline()
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .err()
        .unwrap();
    assert_eq!(err.field(), Some("retry.attempt_timeout"));
    assert_eq!(err.value(), Some("1s"));
    let opero = pipeline().build().unwrap();
    let err = opero.wrap(|x: &u32| Ok::<_, String>(*x)).err().unwrap();
    assert_eq!(err.field(), Some("retry.attempt_timeout"));
    // The async wrapper accepts it.
    assert!(opero
        .wrap_async(|x: u32| async move { Ok::<_, String>(x) })
        .is_ok());
}

#[test]
fn an_opmap_of_blocking_calls_is_refused_when_built() {
    let mut config = opero::OpmapConfig::default();
    config.opero.retry.attempt_timeout = Some(ms(500));
    let err = opero::OpmapBuilder::<NoCache>::from_config(config.clone())
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .err()
        .unwrap();
    assert_eq!(err.field(), Some("retry.attempt_timeout"));
}
