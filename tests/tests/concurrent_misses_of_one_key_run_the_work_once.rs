//! Single-flight: concurrent misses of one key in one process run the work once and share its
//! value; a failing, panicking or cancelled leader leaves every follower to run on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use opero::{CacheConfig, MemoryCache, OperoConfig};
use opero_tests::no_delay;

type Opero = opero::Opero<MemoryCache>;

fn pipeline() -> Opero {
    Opero::new(OperoConfig {
        retry: opero::RetryConfig {
            retries: 0,
            ..no_delay()
        },
        cache: CacheConfig::enabled("memory"),
        ..Default::default()
    })
    .unwrap()
}

fn slow(opero: &Opero, runs: &AtomicU64, fail: bool) -> Result<u64, String> {
    opero
        .named("slow")
        .call(&7u64, |x: &u64| {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(Duration::from_millis(100));
            if fail {
                Err(format!("run {n} failed"))
            } else {
                Ok(x * 6)
            }
        })
        .map_err(|e| e.into_last_error().unwrap())
}

#[test]
fn a_hundred_sync_callers_run_the_work_once() {
    let opero = pipeline();
    let runs = AtomicU64::new(0);
    let barrier = Barrier::new(100);
    std::thread::scope(|s| {
        for _ in 0..100 {
            s.spawn(|| {
                barrier.wait();
                assert_eq!(slow(&opero, &runs, false), Ok(42));
            });
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let m = opero.metrics();
    assert_eq!(m.cache_coalesced + m.cache_hits, 99, "{m:?}");
    assert!(m.cache_coalesced > 0);
}

#[test]
fn followers_of_a_failing_leader_each_get_their_own_error() {
    let opero = pipeline();
    let runs = AtomicU64::new(0);
    let barrier = Barrier::new(8);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    slow(&opero, &runs, true).unwrap_err()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every caller ran its own attempt and got that attempt's error.
    assert_eq!(runs.load(Ordering::SeqCst), 8);
    let mut distinct = errors.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{errors:?}");
}

#[test]
fn a_panicking_leader_does_not_strand_its_followers() {
    let opero = pipeline();
    let runs = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let (tx, rx) = mpsc::channel();
    for _ in 0..8 {
        let (opero, runs, barrier, tx) = (opero.clone(), runs.clone(), barrier.clone(), tx.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                opero.named("panics_once").call(&1u8, |x: &u8| {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    if n == 0 {
                        panic!("the leader's work panics");
                    }
                    Ok::<_, String>(u64::from(*x) + 1)
                })
            }));
            let _ = tx.send(outcome.map(|r| r.unwrap()).is_ok());
        });
    }
    let mut ok = 0;
    for _ in 0..8 {
        // A stranded follower would never report: bound the wait instead of hanging.
        if rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no caller is stranded")
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 7, "one panicked, the others got a value");
}

async fn slow_async(opero: &Opero, runs: Arc<AtomicU64>, wait: Duration) -> u64 {
    opero
        .named("slow_async")
        .call_async(5u64, move |x: u64| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(wait).await;
                Ok::<_, String>(x * 2)
            }
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_async_callers_run_the_work_once() {
    let opero = pipeline();
    let runs = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (opero, runs, barrier) = (opero.clone(), runs.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                slow_async(&opero, runs, Duration::from_millis(100)).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 10);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_async_leader_releases_its_followers() {
    let opero = pipeline();
    let runs = Arc::new(AtomicU64::new(0));
    // The leader is abandoned long before its work ends.
    let leader = tokio::time::timeout(
        Duration::from_millis(50),
        slow_async(&opero, runs.clone(), Duration::from_secs(30)),
    );
    let follower = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        slow_async(&opero, runs.clone(), Duration::from_millis(10)).await
    };
    let (lead, follow) = tokio::join!(leader, follower);
    assert!(lead.is_err(), "the leader timed out");
    assert_eq!(follow, 10);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
