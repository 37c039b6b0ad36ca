//! An uncached async call runs its first attempt inline through its guards too: it takes a free
//! bulkhead slot and passes a closed first breaker there, and hands what it holds on to the
//! attempt loop or the hedged race when that attempt fails or waits. On tokio's paused clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::{AttemptError, BreakerConfig, Jitter, NoCache, Opero};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `fut` once: whether it answered.
async fn polled_once<F: Future>(fut: Pin<&mut F>) -> bool {
    let mut fut = fut;
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
}

/// Counts its drops.
struct DropCount(Arc<AtomicU32>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn refused_by_the_bulkhead(err: &crate::AllFailedError<String>) -> bool {
    matches!(err.attempts()[0].error, AttemptError::BulkheadFull { .. })
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_during_its_inline_attempt_gives_its_slot_back() {
    let opero = Opero::<NoCache>::builder()
        .bulkhead(1, 0)
        .retries(0)
        .build()
        .unwrap();
    let hanging = opero.run_async(|| async {
        tokio::time::sleep(ms(1_000)).await;
        Ok::<_, String>("late")
    });
    // One poll: the attempt runs, holding the only slot.
    let mut hanging = Box::pin(hanging);
    assert!(!polled_once(hanging.as_mut()).await);
    let err = opero
        .run_async(|| async { Ok::<_, String>("second") })
        .await
        .unwrap_err();
    assert!(refused_by_the_bulkhead(&err), "{err:?}");
    drop(hanging);
    let third = opero.run_async(|| async { Ok::<_, String>("third") }).await;
    assert_eq!(third.unwrap(), "third");
    assert_eq!(opero.metrics().bulkhead_rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_inline_attempt_keeps_its_slot_through_the_retries() {
    let opero = Opero::<NoCache>::builder()
        .bulkhead(1, 0)
        .retries(2)
        .min_delay(ms(100))
        .backoff_factor(1.0)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut runs = 0;
    let (first, second) = tokio::join!(
        opero.run_async(|| {
            runs += 1;
            let fail = runs < 3;
            async move {
                if fail {
                    Err("busy".to_string())
                } else {
                    Ok(start.elapsed())
                }
            }
        }),
        async {
            // Between the first call's retries: its slot is still taken.
            tokio::time::sleep(ms(50)).await;
            opero.run_async(|| async { Ok::<_, String>(()) }).await
        }
    );
    assert_eq!(first.unwrap(), ms(200));
    assert!(refused_by_the_bulkhead(&second.unwrap_err()));
    // And given back at the end.
    assert!(opero
        .run_async(|| async { Ok::<_, String>(()) })
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_is_not_closed_is_asked_once_by_the_attempt_loop() {
    let opero = Opero::<NoCache>::builder()
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(1),
            open_duration: ms(10_000),
            ..Default::default()
        })
        .bulkhead(1, 0)
        .retries(0)
        .build()
        .unwrap();
    assert!(opero
        .run_async(|| async { Err::<(), _>("down".to_string()) })
        .await
        .is_err());
    let mut ran = false;
    let err = opero
        .run_async(|| {
            ran = true;
            async { Ok::<_, String>(()) }
        })
        .await
        .unwrap_err();
    assert!(!ran);
    assert!(matches!(err.attempts()[0].error, AttemptError::BreakerOpen));
    let m = opero.metrics();
    assert_eq!((m.breaker_opened, m.breaker_rejections), (1, 1));
    // The slot the inline look took was given back: a probe past the open duration runs.
    tokio::time::advance(ms(10_000)).await;
    assert!(opero
        .run_async(|| async { Ok::<_, String>(()) })
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_hedged_call_s_race_holds_the_inline_attempt_s_slot_to_its_end() {
    let opero = Opero::<NoCache>::builder()
        .bulkhead(1, 0)
        .hedge(ms(100), 1)
        .retries(0)
        .build()
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let (hedged, other) = tokio::join!(
        opero.run_async(|| {
            let n = started.fetch_add(1, Ordering::SeqCst);
            async move {
                // The first attempt hangs; the hedge answers 30 ms after it starts.
                tokio::time::sleep(if n == 0 { ms(1_000) } else { ms(30) }).await;
                Ok::<_, String>(n)
            }
        }),
        async {
            tokio::time::sleep(ms(110)).await;
            opero.run_async(|| async { Ok::<_, String>(9) }).await
        }
    );
    assert_eq!(hedged.unwrap(), 1);
    assert_eq!(start.elapsed(), ms(130));
    assert!(refused_by_the_bulkhead(&other.unwrap_err()));
    assert_eq!(
        opero
            .run_async(|| async { Ok::<_, String>(7) })
            .await
            .unwrap(),
        7
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedged_first_attempt_that_fails_at_once_is_retried_by_the_race() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(100), 1)
        .retries(1)
        .min_delay(ms(40))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut at = Vec::new();
    let got = opero
        .run_async(|| {
            at.push(start.elapsed());
            let n = at.len();
            async move {
                if n == 1 {
                    Err("busy".to_string())
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(got.unwrap(), 2);
    assert_eq!(at, [ms(0), ms(40)]);
    assert_eq!(opero.metrics().hedges, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hedged_call_dropped_during_its_race_gives_its_slot_back() {
    let opero = Opero::<NoCache>::builder()
        .bulkhead(1, 0)
        .hedge(ms(100), 1)
        .retries(0)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    let mut racing = Box::pin(opero.run_async(|| {
        let guard = DropCount(Arc::clone(&dropped));
        async move {
            let _guard = guard;
            tokio::time::sleep(ms(1_000)).await;
            Ok::<_, String>(())
        }
    }));
    assert!(!polled_once(racing.as_mut()).await);
    tokio::time::advance(ms(150)).await;
    assert!(!polled_once(racing.as_mut()).await, "hedged at 100 ms");
    drop(racing);
    assert_eq!(dropped.load(Ordering::SeqCst), 2, "both attempts dropped");
    assert!(opero
        .run_async(|| async { Ok::<_, String>(()) })
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_wins_drops_the_inline_attempt_before_the_call_answers() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(100), 1)
        .retries(0)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    let started = AtomicU32::new(0);
    let mut call = Box::pin(opero.run_async(|| {
        let n = started.fetch_add(1, Ordering::SeqCst);
        let guard = DropCount(Arc::clone(&dropped));
        async move {
            let _guard = guard;
            tokio::time::sleep(if n == 0 { ms(1_000) } else { ms(30) }).await;
            Ok::<_, String>(n)
        }
    }));
    // Awaited in place, so that the call's future is still alive when it answers.
    let answer = std::future::poll_fn(|cx| call.as_mut().poll(cx)).await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "the hanging first attempt is dropped by the time the hedge's answer comes back"
    );
}

#[tokio::test(start_paused = true)]
async fn an_inline_attempt_cut_by_its_timeout_in_a_race_is_dropped_before_the_retry() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(100), 1)
        .attempt_timeout(ms(50))
        .retries(1)
        .min_delay(ms(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut seen = Vec::new();
    let answer = opero
        .run_async(|| {
            // What the attempts before this one left: dropped or not.
            seen.push((start.elapsed(), dropped.load(Ordering::SeqCst)));
            let first = seen.len() == 1;
            let guard = DropCount(Arc::clone(&dropped));
            async move {
                let _guard = guard;
                if first {
                    tokio::time::sleep(ms(1_000)).await;
                }
                Ok::<_, String>(if first { 1 } else { 2 })
            }
        })
        .await;
    assert_eq!(answer.unwrap(), 2);
    // Cut at 50 ms, retried 10 ms later: by then the cut attempt was dropped.
    assert_eq!(seen, [(ms(0), 0), (ms(60), 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_hedged_call_tells_its_breaker_each_outcome_of_the_first_value() {
    let opero = Opero::<NoCache>::builder()
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(2),
            open_duration: ms(10_000),
            ..Default::default()
        })
        .hedge(ms(100), 1)
        .retries(1)
        .min_delay(ms(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    // Each call: the first attempt fails (at once, then after a wait), the retry succeeds. The
    // success resets the breaker's count, so two calls never make two failures in a row.
    for wait in [0, 20] {
        let mut runs = 0;
        let got = opero
            .run_async(|| {
                runs += 1;
                let fail = runs == 1;
                async move {
                    tokio::time::sleep(ms(wait)).await;
                    if fail {
                        Err("busy".to_string())
                    } else {
                        Ok(runs)
                    }
                }
            })
            .await;
        assert_eq!(got.unwrap(), 2, "wait {wait}");
    }
    assert_eq!(opero.metrics().breaker_opened, 0);
    // Two failures in a row, the second after a wait: the race told the breaker of both.
    for _ in 0..2 {
        let _ = opero
            .run_async(|| async {
                tokio::time::sleep(ms(20)).await;
                Err::<(), _>("down".to_string())
            })
            .await;
    }
    assert_eq!(opero.metrics().breaker_opened, 1);
}

#[tokio::test(start_paused = true)]
async fn an_inline_attempt_cut_in_a_race_is_dropped_at_the_cut_not_at_the_retry() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(100), 1)
        .attempt_timeout(ms(50))
        .retries(1)
        .min_delay(ms(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicU32::new(0));
    // A task of its own, so that its wake-up does not poll the call too.
    let sampler = tokio::spawn({
        let dropped = Arc::clone(&dropped);
        async move {
            // Cut at 50 ms, retried at 60 ms: halfway through the backoff.
            tokio::time::sleep(ms(55)).await;
            dropped.load(Ordering::SeqCst)
        }
    });
    let mut runs = 0;
    let answer = opero
        .run_async(|| {
            runs += 1;
            let first = runs == 1;
            let guard = DropCount(Arc::clone(&dropped));
            async move {
                let _guard = guard;
                if first {
                    tokio::time::sleep(ms(1_000)).await;
                }
                Ok::<_, String>(())
            }
        })
        .await;
    assert!(answer.is_ok());
    let during_backoff = sampler.await.unwrap();
    assert_eq!(
        during_backoff, 1,
        "the cut attempt is dropped when it is cut"
    );
}
