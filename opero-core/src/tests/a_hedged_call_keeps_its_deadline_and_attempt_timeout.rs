//! Hedging composes with the total deadline and the per-attempt timeout, on tokio's paused clock:
//! no hedge starts past the deadline, the deadline ends the whole race (every attempt still
//! running is cut, and the error says the deadline ended the call, as for an unhedged call), a
//! retry whose delay would cross it is not started, and each hedged attempt is cut by the attempt
//! timeout (`TimedOut`, a failed attempt that the retry settings may retry).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{AttemptError, Fallbacks, Jitter, NoCache, Opero};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const HEDGE: Duration = Duration::from_millis(100);

/// Counts attempts dropped before they finished.
struct DroppedUnfinished(Arc<AtomicU32>, bool);

impl Drop for DroppedUnfinished {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A hedged pipeline with `retries` and a fixed 50 ms backoff.
fn hedged(max_hedges: u32, retries: u32) -> crate::OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
        .retries(retries)
        .min_delay(ms(50))
        .max_delay(ms(50))
        .jitter(Jitter::None)
        .hedge(HEDGE, max_hedges)
}

/// Runs `pipeline` with attempts that hang until dropped, recording when each started.
async fn hanging(
    pipeline: &Opero<NoCache>,
) -> (crate::AllFailedError<String>, Vec<Duration>, u32, Duration) {
    let start = Instant::now();
    let starts = Mutex::new(Vec::new());
    let dropped = Arc::new(AtomicU32::new(0));
    let err = pipeline
        .run_async(|| {
            starts.lock().unwrap().push(start.elapsed());
            let guard = DroppedUnfinished(Arc::clone(&dropped), false);
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap_err();
    let took = start.elapsed();
    (
        err,
        starts.into_inner().unwrap(),
        dropped.load(Ordering::SeqCst),
        took,
    )
}

#[tokio::test(start_paused = true)]
async fn a_deadline_before_the_second_hedge_ends_the_race_and_no_hedge_starts_past_it() {
    let pipeline = hedged(2, 0).deadline(ms(150)).build().unwrap();
    let (err, starts, dropped, took) = hanging(&pipeline).await;
    // The second hedge was due at 200 ms, past the deadline: never started.
    assert_eq!(starts, [Duration::ZERO, HEDGE]);
    assert_eq!(took, ms(150));
    assert_eq!(dropped, 2, "both racing attempts were dropped");
    assert_eq!(err.ended_by_deadline(), Some(ms(150)));
    let cut: Vec<_> = err
        .attempts()
        .iter()
        .map(|a| (a.fallback_index, a.attempt, a.error.clone()))
        .collect();
    assert_eq!(
        cut,
        [
            (0, 1, AttemptError::DeadlineExceeded(ms(150))),
            (0, 2, AttemptError::DeadlineExceeded(ms(150))),
        ]
    );
    assert!(
        err.to_string()
            .starts_with("the deadline of 150ms ended the call"),
        "{err}"
    );
    let m = pipeline.metrics();
    assert_eq!(
        (
            m.hedges,
            m.failed_attempts,
            m.deadlines_exceeded,
            m.failed_calls
        ),
        (1, 2, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_due_exactly_at_the_deadline_is_not_started() {
    let pipeline = hedged(2, 0).deadline(ms(200)).build().unwrap();
    let (err, starts, dropped, took) = hanging(&pipeline).await;
    assert_eq!(starts, [Duration::ZERO, HEDGE]);
    assert_eq!((took, dropped, err.len()), (ms(200), 2, 2));
    assert_eq!(pipeline.metrics().hedges, 1);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_a_race_across_fallback_values_where_every_attempt_hangs() {
    let pipeline = hedged(1, 3).deadline(ms(1_000)).build().unwrap();
    let mirrors = Fallbacks::new(vec!["a", "b"]).unwrap();
    let start = Instant::now();
    let starts = Mutex::new(Vec::new());
    let err = pipeline
        .run_fallback_async(&mirrors, |m: &'static str| {
            starts.lock().unwrap().push((m, start.elapsed()));
            async move {
                std::future::pending::<()>().await;
                Ok::<_, String>(m)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(
        *starts.lock().unwrap(),
        [("a", Duration::ZERO), ("b", HEDGE)]
    );
    assert_eq!(start.elapsed(), ms(1_000));
    assert_eq!(err.ended_by_deadline(), Some(ms(1_000)));
    assert_eq!(err.fallbacks_tried(), 2);
    assert!(err
        .attempts()
        .iter()
        .all(|a| a.error == AttemptError::DeadlineExceeded(ms(1_000))));

    // The same shape as an unhedged call that the deadline cuts.
    let plain = Opero::<NoCache>::builder()
        .retries(3)
        .deadline(ms(1_000))
        .build()
        .unwrap();
    let unhedged = plain
        .run_async(|| async {
            std::future::pending::<()>().await;
            Ok::<_, String>("never")
        })
        .await
        .unwrap_err();
    assert_eq!(
        unhedged.attempts()[0].error,
        AttemptError::DeadlineExceeded(ms(1_000))
    );
    assert_eq!(unhedged.ended_by_deadline(), err.ended_by_deadline());
}

#[tokio::test(start_paused = true)]
async fn a_retry_of_a_hedged_call_whose_delay_would_cross_the_deadline_is_not_started() {
    let pipeline = Opero::<NoCache>::builder()
        .retries(5)
        .min_delay(ms(300))
        .max_delay(ms(300))
        .jitter(Jitter::None)
        .hedge(HEDGE, 1)
        .deadline(ms(500))
        .build()
        .unwrap();
    let start = Instant::now();
    let starts = Mutex::new(Vec::new());
    let err = pipeline
        .run_async(|| {
            starts.lock().unwrap().push(start.elapsed());
            async {
                tokio::time::sleep(ms(50)).await;
                Err::<(), _>("refused")
            }
        })
        .await
        .unwrap_err();
    // 0-50 fails, 300 ms delay; 350-400 fails (its hedge, due at 450, never starts: the
    // attempt it would hedge ended first); a second 300 ms delay would end at 700, past 500.
    assert_eq!(*starts.lock().unwrap(), [Duration::ZERO, ms(350)]);
    assert_eq!(start.elapsed(), ms(400));
    assert_eq!(err.ended_by_deadline(), Some(ms(500)));
    assert_eq!(err.last_error(), Some(&"refused"));
    let m = pipeline.metrics();
    assert_eq!((m.hedges, m.retries, m.deadlines_exceeded), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_cuts_a_hanging_attempt_while_its_hedge_answers() {
    let pipeline = hedged(1, 0).attempt_timeout(ms(150)).build().unwrap();
    let start = Instant::now();
    let n = AtomicU32::new(0);
    let got = pipeline
        .run_async(|| {
            let first = n.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                // The hedge, started at 100 ms, answers at 180 ms.
                tokio::time::sleep(ms(80)).await;
                Ok::<_, String>("hedge")
            }
        })
        .await;
    assert_eq!(got.unwrap(), "hedge");
    assert_eq!(start.elapsed(), ms(180));
    let m = pipeline.metrics();
    // The first attempt timed out at 150 ms while the hedge ran: a failed attempt, no retry.
    assert_eq!(
        (m.hedges, m.attempt_timeouts, m.failed_attempts, m.retries),
        (1, 1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn every_hedged_attempt_is_cut_by_the_attempt_timeout_and_retried() {
    let pipeline = hedged(1, 2).attempt_timeout(ms(150)).build().unwrap();
    let (err, starts, dropped, took) = hanging(&pipeline).await;
    // 1 starts at 0, its hedge 2 at 100; 1 times out at 150 (2 still runs), 2 at 250; the
    // retry (attempt 3) starts after the 50 ms backoff at 300 and times out at 450. The one
    // hedge was spent, so the retry runs alone.
    assert_eq!(starts, [Duration::ZERO, HEDGE, ms(300)]);
    assert_eq!(took, ms(450));
    assert_eq!(dropped, 3, "every timed-out attempt was dropped");
    let errors: Vec<_> = err
        .attempts()
        .iter()
        .map(|a| (a.attempt, a.error.clone()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, AttemptError::TimedOut(ms(150))),
            (2, AttemptError::TimedOut(ms(150))),
            (3, AttemptError::TimedOut(ms(150))),
        ]
    );
    assert_eq!(err.ended_by_deadline(), None);
    let m = pipeline.metrics();
    assert_eq!(
        (m.hedges, m.attempt_timeouts, m.failed_attempts, m.retries),
        (1, 3, 3, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_shorter_than_an_attempt_timeout_cuts_the_race_first() {
    let pipeline = hedged(1, 3)
        .attempt_timeout(ms(300))
        .deadline(ms(350))
        .build()
        .unwrap();
    let (err, starts, _, took) = hanging(&pipeline).await;
    // Attempt 1 times out at 300 (its hedge, from 100, still runs); the deadline ends the
    // call at 350, cutting the hedge.
    assert_eq!(starts, [Duration::ZERO, HEDGE]);
    assert_eq!(took, ms(350));
    let errors: Vec<_> = err.attempts().iter().map(|a| a.error.clone()).collect();
    assert_eq!(
        errors,
        [
            AttemptError::TimedOut(ms(300)),
            AttemptError::DeadlineExceeded(ms(350)),
        ]
    );
    assert_eq!(err.ended_by_deadline(), Some(ms(350)));
}
