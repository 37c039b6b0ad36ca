//! A bulkhead lets at most `max_concurrent` calls of one pipeline (all its clones) run at once
//! and `max_queue` more wait; past that a call fails at once with
//! `AttemptError::BulkheadFull`, which names both limits. Async calls wait on tokio's paused
//! clock in first-come order; sync calls block real threads; a queue of 0 refuses at once.
//!
//! The twin, in opero-core, of the facade's test of the same name (the mutation run of
//! opero-core rebuilds only this crate).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::{AttemptError, NoCache, Opero, OperoBuilder};
use tokio::time::Instant;

fn opero() -> OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
}

const FULL: AttemptError<&str> = AttemptError::BulkheadFull {
    max_concurrent: 2,
    max_queue: 1,
};

#[tokio::test(start_paused = true)]
async fn two_run_one_waits_and_the_fourth_is_refused_at_once() {
    let pipeline = opero().retries(0).bulkhead(2, 1).build().unwrap();
    let start = Instant::now();
    let call = |id: u32| {
        let p = pipeline.clone();
        tokio::spawn(async move {
            let out = p
                .run_async(|| async move {
                    let began = start.elapsed();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, &str>((id, began))
                })
                .await;
            (out, start.elapsed())
        })
    };
    let a = call(1);
    let b = call(2);
    let c = call(3);
    tokio::task::yield_now().await;
    let bulkhead = pipeline.bulkhead().unwrap();
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (2, 1));
    let d = call(4).await.unwrap();
    let refused = d.0.unwrap_err();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused.attempts()[0].error, FULL);
    assert_eq!(d.1, Duration::ZERO, "refused without waiting");
    assert!(
        refused.to_string().contains("bulkhead.max_concurrent"),
        "{refused}"
    );

    // The first two run at 0 ms; the queued one starts when the first slot frees, at 100 ms.
    assert_eq!(a.await.unwrap().0.unwrap(), (1, Duration::ZERO));
    assert_eq!(b.await.unwrap().0.unwrap(), (2, Duration::ZERO));
    let (out, ended) = c.await.unwrap();
    assert_eq!(out.unwrap(), (3, Duration::from_millis(100)));
    assert_eq!(ended, Duration::from_millis(200));
    assert_eq!(pipeline.metrics().bulkhead_rejections, 1);
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_queue_of_zero_refuses_as_soon_as_every_slot_is_taken() {
    let pipeline = opero().retries(0).bulkhead(1, 0).build().unwrap();
    let holder = {
        let p = pipeline.clone();
        tokio::spawn(async move {
            p.run_async(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, &str>(())
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    let refused = pipeline
        .run_async(|| async { Ok::<_, &str>(()) })
        .await
        .unwrap_err();
    assert_eq!(
        refused.attempts()[0].error,
        AttemptError::BulkheadFull {
            max_concurrent: 1,
            max_queue: 0
        }
    );
    holder.await.unwrap().unwrap();
    // The slot is back.
    assert!(pipeline
        .run_async(|| async { Ok::<_, &str>(()) })
        .await
        .is_ok());
}

#[test]
fn sync_calls_on_real_threads_never_exceed_the_limit_and_the_rest_are_refused() {
    const THREADS: usize = 8;
    let pipeline = opero().retries(0).bulkhead(2, 1).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let p = pipeline.clone();
            let (running, peak, barrier) = (
                Arc::clone(&running),
                Arc::clone(&peak),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                barrier.wait();
                p.run(|| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, &str>(())
                })
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(peak.load(Ordering::SeqCst) <= 2);
    // Two run and one waits; the queued one runs later, so at least 3 succeed. With 200 ms
    // calls, threads released together mostly find the bulkhead full.
    assert!(ok >= 3, "{ok} succeeded");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.attempts()[0].error, FULL);
        }
    }
    assert_eq!(
        pipeline.metrics().bulkhead_rejections as usize,
        THREADS - ok
    );
}

#[test]
fn a_blocked_sync_caller_waits_in_the_queue_for_the_slot() {
    let pipeline = opero().retries(0).bulkhead(1, 4).build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let p = pipeline.clone();
        std::thread::spawn(move || {
            p.run(|| {
                rx.recv().unwrap();
                Ok::<_, &str>("first")
            })
        })
    };
    while pipeline.bulkhead().unwrap().in_flight() == 0 {
        std::thread::yield_now();
    }
    let waiter = {
        let p = pipeline.clone();
        std::thread::spawn(move || p.run(|| Ok::<_, &str>("second")))
    };
    while pipeline.bulkhead().unwrap().queued() == 0 {
        std::thread::yield_now();
    }
    tx.send(()).unwrap();
    assert_eq!(holder.join().unwrap().unwrap(), "first");
    assert_eq!(waiter.join().unwrap().unwrap(), "second");
    assert_eq!(pipeline.metrics().bulkhead_rejections, 0);
}
