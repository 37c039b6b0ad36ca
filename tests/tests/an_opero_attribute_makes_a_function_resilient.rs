//! `#[opero]` on free functions, sync and async: the original's decorator cases (basic, fallback,
//! retry counting), written with the attribute.

use std::sync::atomic::{AtomicU32, Ordering};

use opero::opero;

#[opero(retries = 2, min_delay = 0)]
fn add_one(x: u32) -> Result<u32, String> {
    Ok(x + 1)
}

#[test]
fn a_function_that_succeeds_returns_its_value() {
    assert_eq!(add_one(1).unwrap(), 2);
    assert_eq!(add_one_opero().metrics().retries, 0);
    assert_eq!(add_one_opero().retry_policy().config().retries, 2);
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(retries = 3, min_delay = "1ms", max_delay = "2ms", jitter = "none")]
fn flaky() -> Result<&'static str, String> {
    if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
        Err("busy".into())
    } else {
        Ok("done")
    }
}

#[test]
fn retries_count_every_attempt_until_one_succeeds() {
    assert_eq!(flaky().unwrap(), "done");
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3);
}

static ALWAYS_CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(retries = 2, min_delay = 0)]
fn always_fails(x: u32) -> Result<u32, String> {
    ALWAYS_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(format!("no {x}"))
}

#[test]
fn when_every_attempt_fails_the_error_keeps_them_all() {
    let err = always_fails(5).unwrap_err();
    assert_eq!(err.len(), 3);
    assert_eq!(ALWAYS_CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(err.last_error().unwrap(), "no 5");
}

#[opero(arg_fallback = key, retries = 1, min_delay = 0)]
fn with_key(city: &str, key: &str) -> Result<String, String> {
    if key == "revoked" {
        Err(format!("{key} refused"))
    } else {
        Ok(format!("{city} via {key}"))
    }
}

#[test]
fn fallback_values_are_tried_in_order_with_full_retries() {
    assert_eq!(
        with_key("Oslo", &["revoked", "good"]).unwrap(),
        "Oslo via good"
    );
    let err = with_key("Oslo", &["revoked", "revoked"]).unwrap_err();
    assert_eq!(err.len(), 4, "two attempts for each of two values");
    assert_eq!(err.fallbacks_tried(), 2);
    let keys = opero::Fallbacks::new(vec!["good"]).unwrap();
    assert_eq!(with_key("Rome", &keys).unwrap(), "Rome via good");
}

static CACHED_CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(
    cache = true,
    cache_ttl = 300,
    cache_namespace = "tests",
    arg_fallback = "key"
)]
fn cached_lookup(id: u32, key: String) -> Result<String, String> {
    CACHED_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("{id} with {key}"))
}

#[test]
fn a_cached_function_runs_once_per_key_whatever_its_fallback_values() {
    let keys = ["a".to_string(), "b".to_string()];
    assert_eq!(cached_lookup(1, &keys).unwrap(), "1 with a");
    assert_eq!(
        cached_lookup(1, &keys[1..]).unwrap(),
        "1 with a",
        "fallback values are not in the key"
    );
    assert_eq!(cached_lookup(2, &keys).unwrap(), "2 with a");
    assert_eq!(CACHED_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(cached_lookup_opero().metrics().cache_hits, 1);
}

// `retry_on` takes a `fn(&E) -> bool` of the function's own error type, here `String`.
#[allow(clippy::ptr_arg)]
fn is_transient(e: &String) -> bool {
    e.starts_with("busy")
}

static PERMANENT_CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(retries = 5, min_delay = 0, retry_on = is_transient)]
fn permanent_failure() -> Result<(), String> {
    PERMANENT_CALLS.fetch_add(1, Ordering::SeqCst);
    Err("gone".into())
}

#[test]
fn an_error_retry_on_rejects_is_not_retried() {
    assert!(permanent_failure().is_err());
    assert_eq!(PERMANENT_CALLS.load(Ordering::SeqCst), 1);
}

static ASYNC_CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(retries = 2, min_delay = "10ms", jitter = "none", arg_fallback = endpoint)]
async fn fetch_async(path: &str, endpoint: &str) -> Result<String, String> {
    ASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    if endpoint == "down" {
        Err("down".into())
    } else {
        Ok(format!("{endpoint}{path}"))
    }
}

#[tokio::test(start_paused = true)]
async fn async_functions_retry_and_fall_back_on_the_paused_clock() {
    let start = tokio::time::Instant::now();
    assert_eq!(fetch_async("/x", &["down", "up"]).await.unwrap(), "up/x");
    assert_eq!(ASYNC_CALLS.load(Ordering::SeqCst), 4);
    // Two retries of "down": 10ms then 15ms.
    assert_eq!(start.elapsed(), std::time::Duration::from_millis(25));
}

#[opero(rate_limit = 1000.0, burst = 10, name = "renamed", cache = true)]
async fn named_async(x: u64) -> Result<u64, String> {
    Ok(x * 2)
}

#[tokio::test]
async fn a_name_given_to_the_attribute_names_the_pipeline() {
    assert_eq!(named_async(21).await.unwrap(), 42);
    assert_eq!(named_async(21).await.unwrap(), 42);
    assert_eq!(named_async_opero().name(), Some("renamed"));
    assert_eq!(named_async_opero().metrics().cache_hits, 1);
}

/// A key function that keys every call by nothing but the function: one entry for all arguments.
struct OneEntry;

impl opero::KeyFn for OneEntry {
    fn hash<A: serde::Serialize + ?Sized>(
        &self,
        namespace: &str,
        function: &opero::FunctionId<'_>,
        _args: &A,
    ) -> Result<u128, opero::OperoError> {
        opero::StableKey.hash(namespace, function, &())
    }
}

static ONE_ENTRY_CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(cache = true, cache_key = OneEntry)]
fn keyed_by_nothing(x: u32) -> Result<u32, String> {
    ONE_ENTRY_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(x)
}

#[test]
fn cache_key_names_the_key_function() {
    assert_eq!(keyed_by_nothing(1).unwrap(), 1);
    assert_eq!(
        keyed_by_nothing(2).unwrap(),
        1,
        "every call shares the one key"
    );
    assert_eq!(ONE_ENTRY_CALLS.load(Ordering::SeqCst), 1);
}

#[opero(retries = 1, min_delay = 0, rate_limit = 1000.0, arg_fallback = key)]
async fn spawnable(x: u64, key: String) -> Result<String, String> {
    tokio::task::yield_now().await;
    Ok(format!("{x}:{key}"))
}

#[tokio::test]
async fn an_attributed_async_function_s_future_can_be_spawned() {
    // `tokio::spawn` needs a `Send + 'static` future: owned arguments, values and a cached pipeline.
    let cached = tokio::spawn(named_async(5)).await.unwrap();
    assert_eq!(cached.unwrap(), 10);
    let keys: &'static [String] = Box::leak(vec!["k".to_string()].into_boxed_slice());
    let got = tokio::spawn(spawnable(3, keys)).await.unwrap();
    assert_eq!(got.unwrap(), "3:k");
}

#[opero(
    retries = 4,
    backoff_factor = 2.5,
    min_delay = "5ms",
    max_delay = "1s",
    jitter = "none",
    cache = true,
    cache_ttl = "10m",
    cache_namespace = "settings",
    rate_limit = 0.5,
    burst = 3
)]
fn every_setting(x: u32) -> Result<u32, String> {
    Ok(x)
}

#[test]
fn every_setting_of_the_attribute_reaches_the_pipeline() {
    use opero::RateLimiter;
    let opero = every_setting_opero();
    let retry = opero.retry_policy().config();
    assert_eq!(retry.retries, 4);
    assert_eq!(retry.backoff_factor, 2.5);
    assert_eq!(retry.min_delay, std::time::Duration::from_millis(5));
    assert_eq!(retry.max_delay, std::time::Duration::from_secs(1));
    assert_eq!(retry.jitter, opero::Jitter::None);
    assert_eq!(
        opero.cache_config().ttl,
        Some(std::time::Duration::from_secs(600))
    );
    assert_eq!(opero.cache_config().namespace, "settings");
    assert_eq!(every_setting(1).unwrap(), 1);
    assert_eq!(every_setting(1).unwrap(), 1);
    assert_eq!(opero.metrics().cache_hits, 1);
    // The first call took one permit (the hit took none); a burst of 3 leaves two, and the next
    // comes in 2 s.
    let limiter = opero.rate_limiter().expect("rate_limit builds a limiter");
    assert!(limiter.try_acquire() && limiter.try_acquire());
    assert!(!limiter.try_acquire());
}
