//! `retries = N` gives `N + 1` attempts per fallback value; `retries = 0` gives one.

use std::sync::atomic::{AtomicU32, Ordering};

use opero::{NoCache, Opero, OperoConfig};
use opero_tests::no_delay;

fn attempts_with(retries: u32) -> (u32, usize) {
    let cfg = OperoConfig {
        retry: opero::RetryConfig {
            retries,
            ..no_delay()
        },
        ..Default::default()
    };
    let opero = Opero::<NoCache>::new(cfg).unwrap();
    let mut calls = 0;
    let err = opero
        .run(|| {
            calls += 1;
            Err::<(), _>(format!("failure {calls}"))
        })
        .unwrap_err();
    (calls, err.len())
}

#[test]
fn every_retry_count_gives_one_more_attempt() {
    for retries in [0, 1, 2, 3, 7] {
        let (calls, recorded) = attempts_with(retries);
        assert_eq!(calls, retries + 1, "retries = {retries}");
        assert_eq!(recorded, (retries + 1) as usize);
    }
}

#[test]
fn the_default_is_three_retries() {
    let cfg = OperoConfig {
        retry: no_delay(),
        ..Default::default()
    };
    assert_eq!(cfg.retry.retries, 3);
    let opero = Opero::<NoCache>::new(cfg).unwrap();
    let mut calls = 0;
    let _ = opero.run(|| {
        calls += 1;
        Err::<(), _>("no")
    });
    assert_eq!(calls, 4);
}

#[test]
fn a_success_stops_the_retries() {
    let opero = Opero::<NoCache>::new(OperoConfig {
        retry: no_delay(),
        ..Default::default()
    })
    .unwrap();
    let calls = AtomicU32::new(0);
    let out = opero.run(|| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 2 {
            Err("flaky")
        } else {
            Ok(n)
        }
    });
    assert_eq!(out.unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let m = opero.metrics();
    assert_eq!((m.failed_attempts, m.retries, m.failed_calls), (1, 1, 0));
}

#[tokio::test]
async fn the_async_path_counts_attempts_the_same_way() {
    let opero = Opero::<NoCache>::new(OperoConfig {
        retry: opero::RetryConfig {
            retries: 2,
            ..no_delay()
        },
        ..Default::default()
    })
    .unwrap();
    let calls = AtomicU32::new(0);
    let err = opero
        .run_async(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>("down")
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(err.len(), 3);
}
