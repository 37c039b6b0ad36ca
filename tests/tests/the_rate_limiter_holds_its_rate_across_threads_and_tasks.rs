//! One token bucket shared by several threads, or by many tasks, delivers permits at its
//! configured rate: within 2% over a few seconds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opero::{NoCache, Opero, RateLimiter, TokenBucket};

const RATE: f64 = 200.0;
const PERMITS: u32 = 500;

fn within_two_percent(permits: u32, elapsed: Duration) {
    // With burst 1 the first permit is free, so n permits span (n - 1) intervals.
    let achieved = f64::from(permits - 1) / elapsed.as_secs_f64();
    let off = (achieved - RATE).abs() / RATE;
    assert!(
        off < 0.02,
        "achieved {achieved:.2}/s vs {RATE}/s ({:.2}% off)",
        off * 100.0
    );
}

#[test]
fn several_threads_share_one_rate() {
    let bucket = Arc::new(TokenBucket::per_second(RATE).unwrap());
    let taken = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let last = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (bucket, taken, last) = (bucket.clone(), taken.clone(), last.clone());
            std::thread::spawn(move || loop {
                if taken.fetch_add(1, Ordering::SeqCst) >= PERMITS {
                    return;
                }
                bucket.acquire_blocking();
                let mut l = last.lock().unwrap();
                *l = (*l).max(start.elapsed());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = *last.lock().unwrap();
    within_two_percent(PERMITS, elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_rate() {
    let opero = Opero::<NoCache>::builder()
        .rate_limit(RATE)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..PERMITS)
        .map(|i| {
            let opero = opero.clone();
            tokio::spawn(async move {
                opero
                    .run_async(|| async { Ok::<_, String>(i) })
                    .await
                    .unwrap();
                start.elapsed()
            })
        })
        .collect();
    let mut elapsed = Duration::ZERO;
    for t in tasks {
        elapsed = elapsed.max(t.await.unwrap());
    }
    within_two_percent(PERMITS, elapsed);
    assert!(opero.metrics().rate_limit_waits >= u64::from(PERMITS) - 2);
}

#[tokio::test(start_paused = true)]
async fn on_a_paused_clock_the_schedule_is_exact() {
    let opero = Opero::<NoCache>::builder()
        .rate_limit(10.0)
        .burst(2)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let mut at = Vec::new();
    for _ in 0..5 {
        opero
            .run_async(|| async { Ok::<_, String>(()) })
            .await
            .unwrap();
        at.push(start.elapsed().as_millis());
    }
    assert_eq!(at, [0, 0, 100, 200, 300]);
}
