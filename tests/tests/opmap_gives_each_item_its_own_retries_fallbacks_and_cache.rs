//! Per-item resilience: a fallback per item, a retry after one failure, the cache serving a
//! second run with zero calls.

use opero::{opmap, AnyCache, Fallbacks, Jitter, Mode, NoCache, OpmapBuilder};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

fn quiet(mode: Mode) -> OpmapBuilder<NoCache<AnyCache>> {
    opmap()
        .mode(mode)
        .workers(3)
        .progress(false)
        .min_delay(Duration::ZERO)
        .max_delay(Duration::ZERO)
        .jitter(Jitter::None)
}

#[test]
fn each_item_falls_back_to_the_next_value() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let keys = Fallbacks::new(vec!["revoked".to_string(), "good".to_string()]).unwrap();
        let map = quiet(mode)
            .retries(1)
            .wrap_fallback(keys, |x: &u32, key: &String| {
                if key == "revoked" {
                    Err(format!("401 for {x}"))
                } else {
                    Ok(format!("{x} via {key}"))
                }
            })
            .unwrap();
        let out = map.call([1, 2, 3, 4]);
        assert_eq!(out[3], Ok("4 via good".to_string()));
        assert!(out.iter().all(Result::is_ok));
        let m = map.opero().metrics();
        assert_eq!(m.fallback_switches, 4, "{mode}");
        assert_eq!(
            m.failed_attempts, 8,
            "{mode}: two attempts of the revoked key per item"
        );
    }
}

#[tokio::test]
async fn each_async_item_falls_back_to_the_next_value() {
    let keys = Fallbacks::new(vec![0_u32, 1]).unwrap();
    let map = quiet(Mode::Async)
        .retries(0)
        .wrap_fallback_async(keys, |x: u32, key: u32| async move {
            if key == 0 {
                Err("bad key")
            } else {
                Ok(x + 100)
            }
        })
        .unwrap();
    assert_eq!(map.call([1, 2]).await, [Ok(101), Ok(102)]);
    assert_eq!(map.opero().metrics().fallback_switches, 2);
}

#[test]
fn items_that_fail_once_succeed_on_retry() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let failed_once = Mutex::new(HashSet::new());
        let map = quiet(mode)
            .retries(2)
            .wrap(|x: &u32| {
                if failed_once.lock().unwrap().insert(*x) {
                    Err(format!("{x}: transient"))
                } else {
                    Ok(x * 10)
                }
            })
            .unwrap();
        let out = map.call(0..10);
        assert!(
            out.iter().enumerate().all(|(i, r)| r == &Ok(i as u32 * 10)),
            "{mode}"
        );
        assert_eq!(map.opero().metrics().retries, 10, "{mode}");
    }
}

#[tokio::test(start_paused = true)]
async fn async_items_that_fail_once_succeed_on_retry_after_the_exact_delay() {
    let attempts = std::sync::Arc::new(Mutex::new(HashSet::new()));
    let map = opmap()
        .workers(5)
        .progress(false)
        .retries(1)
        .min_delay(Duration::from_millis(100))
        .jitter(Jitter::None)
        .wrap_async(move |x: u32| {
            let first = attempts.lock().unwrap().insert(x);
            async move {
                if first {
                    Err("transient")
                } else {
                    Ok(x)
                }
            }
        })
        .unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(map.call(0..5).await, (0..5).map(Ok).collect::<Vec<_>>());
    // All five fail at t = 0, wait 100 ms together, and succeed.
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[test]
fn the_cache_serves_a_second_run_with_zero_calls() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let calls = AtomicUsize::new(0);
        let map = quiet(mode)
            .cache(true)
            .name("plus_one")
            .wrap(|x: &u64| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(x + 1)
            })
            .unwrap();
        assert_eq!(map.call(0..20).len(), 20);
        assert_eq!(calls.load(Ordering::SeqCst), 20);
        let again = map.call(0..20);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            20,
            "{mode}: the second run made calls"
        );
        assert!(again
            .iter()
            .enumerate()
            .all(|(i, r)| r == &Ok(i as u64 + 1)));
        assert_eq!(map.opero().metrics().cache_hits, 20);
        assert_eq!(map.opero().cache_config().namespace, "opero_opmap_item");
    }
}

#[tokio::test]
async fn the_cache_serves_a_second_async_run_with_zero_calls() {
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let map = quiet(Mode::Async)
        .cache(true)
        .name("plus_one")
        .wrap_async(move |x: u64| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, String>(x + 1) }
        })
        .unwrap();
    map.call(0..20).await;
    map.call(0..20).await;
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    assert_eq!(map.opero().metrics().cache_hits, 20);
}
