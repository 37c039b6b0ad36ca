//! `#[opmap]`: the original's opmap decorator cases (workers, fallback, retries) written with the
//! attribute, in every mode.

use std::sync::atomic::{AtomicU32, Ordering};

use opero::opmap;

opero::enable_process_test_support!();

#[opmap(
    mode = "thread",
    workers = 4,
    ordered = true,
    progress = false,
    retries = 2
)]
fn square(x: &u64) -> Result<u64, String> {
    Ok(x * x)
}

#[opmap(mode = "rayon", workers = 2, progress = false)]
fn double(x: u64) -> Result<u64, String> {
    Ok(x * 2)
}

#[opmap(workers = 3, progress = false, retries = 0)]
async fn halve(x: u64) -> Result<u64, String> {
    tokio::task::yield_now().await;
    if x % 2 == 1 {
        Err(format!("{x} is odd"))
    } else {
        Ok(x / 2)
    }
}

#[opmap(mode = "process", workers = 2, progress = false, retries = 0)]
fn triple(x: &u64) -> Result<u64, String> {
    Ok(x * 3)
}

#[opmap(mode = "async_process", workers = 2, progress = false, retries = 0)]
async fn negate(x: i64) -> Result<i64, String> {
    Ok(-x)
}

#[test]
fn thread_mode_maps_with_workers_in_input_order() {
    assert_eq!(square(1..=5), [Ok(1), Ok(4), Ok(9), Ok(16), Ok(25)]);
    assert!(square(Vec::new()).is_empty());
    assert!(square_opmap().is_ok());
}

#[test]
fn rayon_mode_maps_items_taken_by_value() {
    assert_eq!(double([1, 2, 3]), [Ok(2), Ok(4), Ok(6)]);
}

#[tokio::test]
async fn async_mode_maps_an_async_function_and_keeps_failures_per_item() {
    let out = halve([2, 3, 4]).await;
    assert_eq!(out[0], Ok(1));
    assert_eq!(
        out[1].as_ref().unwrap_err().last_error().unwrap(),
        "3 is odd"
    );
    assert_eq!(out[2], Ok(2));
}

#[test]
fn process_mode_runs_the_function_in_worker_processes() {
    assert_eq!(triple([1, 2, 3]), [Ok(3), Ok(6), Ok(9)]);
}

#[tokio::test]
async fn async_process_mode_runs_the_async_function_in_worker_processes() {
    assert_eq!(negate([1, -2]).await, [Ok(-1), Ok(2)]);
}

static RETRY_CALLS: AtomicU32 = AtomicU32::new(0);

#[opmap(workers = 2, progress = false, retries = 2, min_delay = 0)]
fn fails_twice(x: &u32) -> Result<u32, String> {
    // Every item fails on its first two attempts (counted together: 3 items, 9 attempts).
    let n = RETRY_CALLS.fetch_add(1, Ordering::SeqCst);
    let _ = n;
    Err(format!("{x} failed"))
}

#[test]
fn each_item_gets_its_own_retries() {
    let out = fails_twice([1, 2, 3]);
    for r in &out {
        assert_eq!(r.as_ref().unwrap_err().len(), 3);
    }
    assert_eq!(RETRY_CALLS.load(Ordering::SeqCst), 9);
}

#[opmap(workers = 2, progress = false, retries = 1, min_delay = 0, arg_fallback = key)]
fn with_key(x: &u32, key: &str) -> Result<String, String> {
    if key == "bad" {
        Err("refused".into())
    } else {
        Ok(format!("{x}:{key}"))
    }
}

#[test]
fn each_item_falls_back_across_the_values_given_with_the_call() {
    let out = with_key([1, 2], &["bad", "good"]);
    assert_eq!(out, [Ok("1:good".to_string()), Ok("2:good".to_string())]);
    let failed = with_key([1], &["bad"]);
    assert_eq!(failed[0].as_ref().unwrap_err().len(), 2);
}

static CACHED_ITEMS: AtomicU32 = AtomicU32::new(0);

#[opmap(workers = 2, progress = false, cache = true)]
fn cached_item(x: &u32) -> Result<u32, String> {
    CACHED_ITEMS.fetch_add(1, Ordering::SeqCst);
    Ok(x + 100)
}

#[test]
fn a_cached_opmap_keeps_its_cache_between_calls() {
    assert_eq!(cached_item([1, 2]), [Ok(101), Ok(102)]);
    assert_eq!(cached_item([2]), [Ok(102)]);
    assert_eq!(CACHED_ITEMS.load(Ordering::SeqCst), 2);
    let map = cached_item_opmap().as_ref().unwrap();
    assert_eq!(map.opero().metrics().cache_hits, 1);
}

// `retry_on` sees the function's own error type.
#[allow(clippy::ptr_arg)]
fn is_busy(e: &String) -> bool {
    e == "busy"
}

static NOT_RETRIED: AtomicU32 = AtomicU32::new(0);

#[opmap(workers = 2, progress = false, retries = 3, min_delay = 0, retry_on = is_busy)]
fn gone(_x: &u32) -> Result<u32, String> {
    NOT_RETRIED.fetch_add(1, Ordering::SeqCst);
    Err("gone".into())
}

#[test]
fn an_error_retry_on_rejects_ends_the_item_at_once() {
    assert!(gone([1, 2]).iter().all(Result::is_err));
    assert_eq!(NOT_RETRIED.load(Ordering::SeqCst), 2);
}
