//! With jitter off, retries wait exactly `d(n) = min(max_delay, min_delay * factor^(n-1))`;
//! with the default jitter every delay stays within `[min_delay, d(n)]`.

use std::sync::Mutex;
use std::time::Duration;

use crate::{Jitter, NoCache, Opero};
use tokio::time::Instant;

fn pipeline(jitter: Jitter) -> Opero<NoCache> {
    Opero::<NoCache>::builder()
        .retries(6)
        .backoff_factor(2.0)
        .min_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(1_000))
        .jitter(jitter)
        .build()
        .unwrap()
}

async fn attempt_times(opero: &Opero<NoCache>) -> Vec<Duration> {
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let _ = opero
        .run_async(|| {
            times.lock().unwrap().push(start.elapsed());
            async { Err::<(), _>("fail") }
        })
        .await;
    times.into_inner().unwrap()
}

#[tokio::test(start_paused = true)]
async fn without_jitter_the_schedule_is_exact() {
    let times = attempt_times(&pipeline(Jitter::None)).await;
    // Delays 100, 200, 400, 800, then capped at 1000, 1000.
    let expected_ms = [0, 100, 300, 700, 1_500, 2_500, 3_500];
    let got: Vec<u128> = times.iter().map(|d| d.as_millis()).collect();
    assert_eq!(got, expected_ms);
    // The paused clock advances exactly: no drift at all.
    assert_eq!(times[6], Duration::from_millis(3_500));
}

#[tokio::test(start_paused = true)]
async fn with_full_jitter_every_delay_is_within_bounds() {
    let opero = pipeline(Jitter::Full);
    for _ in 0..200 {
        let times = attempt_times(&opero).await;
        for n in 1..times.len() {
            let delay = times[n] - times[n - 1];
            let ceiling = Duration::from_millis((100u64 << (n - 1)).min(1_000));
            assert!(delay >= Duration::from_millis(100), "retry {n}: {delay:?}");
            assert!(delay <= ceiling, "retry {n}: {delay:?} > {ceiling:?}");
        }
    }
}

#[test]
fn the_sync_path_sleeps_at_least_the_schedule() {
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .backoff_factor(2.0)
        .min_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let mut at = Vec::new();
    let _ = opero.run(|| {
        at.push(start.elapsed());
        Err::<(), _>("fail")
    });
    // 10 + 20 + 40 ms of backoff: a lower bound, never an exact wall time.
    for (n, min_gap) in [(1, 10), (2, 20), (3, 40)] {
        assert!(at[n] - at[n - 1] >= Duration::from_millis(min_gap));
    }
    assert!(start.elapsed() >= Duration::from_millis(70));
}
