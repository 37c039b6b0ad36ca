//! Hedging on tokio's paused clock: when an attempt has not answered after the hedge delay, a
//! hedge starts beside it (on the next fallback value, or another attempt of the last one), at
//! most `max_hedges` per call; the first success wins and the attempts still running are
//! dropped. (The blocking forms' refusal and opmap's hedging are tested in the facade's
//! test of the same name.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::{AttemptError, Fallbacks, Jitter, NoCache, Opero};

const HEDGE: Duration = Duration::from_millis(100);

/// Sets its flag when dropped: an attempt dropped before it finished never clears it first.
struct DroppedUnfinished(Arc<AtomicU32>, bool);

impl Drop for DroppedUnfinished {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_hedge_starts_on_the_next_value_at_the_delay_and_the_slow_attempt_is_dropped() {
    let pipeline = Opero::<NoCache>::builder()
        .retries(0)
        .hedge(HEDGE, 1)
        .build()
        .unwrap();
    let mirrors = Fallbacks::new(vec![("slow", 1_000u64), ("fast", 30)]).unwrap();
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicU32::new(0));
    let answer = pipeline
        .run_fallback_async(&mirrors, |(name, ms): (&'static str, u64)| {
            starts.lock().unwrap().push((name, start.elapsed()));
            let guard = DroppedUnfinished(Arc::clone(&dropped), false);
            async move {
                let mut guard = guard;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                guard.1 = true;
                Ok::<_, String>(name)
            }
        })
        .await;
    assert_eq!(answer.unwrap(), "fast");
    assert_eq!(
        *starts.lock().unwrap(),
        vec![("slow", Duration::ZERO), ("fast", HEDGE)]
    );
    assert_eq!(start.elapsed(), HEDGE + Duration::from_millis(30));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the slow attempt was dropped"
    );
    let m = pipeline.metrics();
    assert_eq!((m.hedges, m.fallback_switches), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn hedges_are_bounded_and_start_one_delay_apart_on_the_same_value() {
    let pipeline = Opero::<NoCache>::builder()
        .retries(0)
        .hedge(HEDGE, 2)
        .build()
        .unwrap();
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let n = AtomicU32::new(0);
    let answer = pipeline
        .run_async(|| {
            let attempt = n.fetch_add(1, Ordering::SeqCst) + 1;
            starts.lock().unwrap().push(start.elapsed());
            async move {
                // Every attempt takes 1 s: the first one still wins, at 1 s.
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, String>(attempt)
            }
        })
        .await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(
        *starts.lock().unwrap(),
        vec![Duration::ZERO, HEDGE, HEDGE * 2],
        "two hedges at most"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_hedged_call_that_fails_everywhere_keeps_every_attempt_and_retries_on_the_backoff() {
    let pipeline = Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(Duration::from_millis(50))
        .backoff_factor(1.0)
        .jitter(Jitter::None)
        .hedge(HEDGE, 1)
        .build()
        .unwrap();
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let n = AtomicU32::new(0);
    let failed = pipeline
        .run_async(|| {
            let attempt = n.fetch_add(1, Ordering::SeqCst) + 1;
            starts.lock().unwrap().push(start.elapsed());
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err::<(), _>(format!("attempt {attempt} failed"))
            }
        })
        .await
        .unwrap_err();
    // 0: attempt 1; 100: the hedge (attempt 2); 300: attempt 1 fails while the hedge runs;
    // 400: the hedge fails, the last one running: its retry (attempt 3 of 3) comes after the
    // 50 ms backoff, at 450, with the only hedge spent; it fails at 750.
    assert_eq!(
        *starts.lock().unwrap(),
        vec![Duration::ZERO, HEDGE, Duration::from_millis(450)]
    );
    assert_eq!(start.elapsed(), Duration::from_millis(750));
    let seen: Vec<_> = failed
        .attempts()
        .iter()
        .map(|a| (a.attempt, a.error.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, AttemptError::Failed("attempt 1 failed".to_string())),
            (2, AttemptError::Failed("attempt 2 failed".to_string())),
            (3, AttemptError::Failed("attempt 3 failed".to_string())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_starts_no_hedge() {
    let pipeline = Opero::<NoCache>::builder()
        .retries(0)
        .hedge(HEDGE, 3)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let out = pipeline
        .run_async(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(HEDGE - Duration::from_millis(1)).await;
                Ok::<_, String>(())
            }
        })
        .await;
    assert!(out.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), HEDGE - Duration::from_millis(1));
    assert_eq!(pipeline.metrics().hedges, 0);
}
