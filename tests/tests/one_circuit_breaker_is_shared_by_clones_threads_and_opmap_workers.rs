//! A pipeline's breakers live in its shared state: failures seen through one clone, on one
//! thread, or by one opmap worker open the breaker for every other clone, thread and worker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opero::{opero, opmap, AttemptError, BreakerConfig, BreakerState, Mode};

fn breaker(threshold: u32) -> BreakerConfig {
    BreakerConfig {
        failure_threshold: Some(threshold),
        open_duration: Duration::from_secs(3600),
        ..Default::default()
    }
}

#[test]
fn failures_on_many_threads_through_clones_open_one_breaker_for_all() {
    let pipeline = opero()
        .retries(0)
        .circuit_breaker(breaker(8))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let clone = pipeline.clone();
            let calls = Arc::clone(&calls);
            std::thread::spawn(move || {
                for _ in 0..2 {
                    let _ = clone.run(|| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Err::<(), _>("down")
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    // Eight failures across four threads: open for a clone that saw none of them.
    let fresh = pipeline.clone();
    assert_eq!(
        fresh.circuit_breaker(0).unwrap().state(),
        BreakerState::Open
    );
    let err = fresh
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, &str>(())
        })
        .unwrap_err();
    assert_eq!(err.attempts()[0].error, AttemptError::BreakerOpen);
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    assert_eq!(pipeline.metrics().breaker_opened, 1);
}

#[test]
fn opmap_workers_in_thread_mode_share_the_breaker_of_their_pipeline() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let map = opmap()
        .mode(Mode::Thread)
        .workers(4)
        .retries(0)
        .progress(false)
        .circuit_breaker(breaker(3))
        .wrap(move |_: &u32| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err::<u32, _>("down")
        })
        .unwrap();
    let out = map.call(0..40u32);
    let opened = out
        .iter()
        .filter(|r| r.as_ref().unwrap_err().attempts()[0].error == AttemptError::BreakerOpen)
        .count();
    // Up to one in-flight item per worker may have started before the third failure landed.
    let ran = calls.load(Ordering::SeqCst) as usize;
    assert!((3..3 + 4).contains(&ran), "{ran} items ran");
    assert_eq!(opened, 40 - ran);
    assert_eq!(map.opero().metrics().breaker_opened, 1);
    assert_eq!(
        map.opero().circuit_breaker(0).unwrap().state(),
        BreakerState::Open
    );
}

#[tokio::test(start_paused = true)]
async fn async_opmap_workers_share_the_breaker_and_skip_to_the_backup_value() {
    let map = opmap()
        .mode(Mode::Async)
        .workers(1)
        .retries(0)
        .progress(false)
        .circuit_breaker(breaker(2))
        .wrap_fallback_async(
            opero::Fallbacks::new(vec!["primary", "backup"]).unwrap(),
            |item: u32, endpoint: &'static str| async move {
                if endpoint == "primary" {
                    Err(format!("{item}: primary down"))
                } else {
                    Ok(item)
                }
            },
        )
        .unwrap();
    let out = map.call(0..5u32).await;
    assert_eq!(
        out,
        (0..5u32).map(Ok).collect::<Vec<_>>(),
        "the backup served every item"
    );
    let m = map.opero().metrics();
    // Items 0 and 1 tried the primary; from item 2 on its breaker is open.
    assert_eq!((m.breaker_opened, m.breaker_rejections), (1, 3));
}
