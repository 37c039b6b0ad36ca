//! The backend conformance suite, written once and run against every backend (memory, disk,
//! Redis, and a user's own): pass a backend to [`run_sync`] or [`run_async`], or call one check.
//! Also a real [`RedisServer`] to run it against, and [`no_delay`] retry settings.
//!
//! Every check works in a fresh random namespace, so checks may share one store, and several
//! test processes may share one server.
//!
//! This crate depends on opero-core alone, so that each backend crate runs the suite from its own
//! tests (and a change to a backend rebuilds that backend and its tests, not this crate);
//! `opero-tests` re-exports it as `opero_tests::conformance`.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! let cache = Arc::new(opero_cache_memory::MemoryCache::default());
//! opero_conformance::round_trip(&*cache);
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use opero_core::{
    CacheBackend, CacheConfig, CacheKey, FunctionId, FunctionLabel, KeyFn, OperoConfig, StableKey,
};
use serde::{Deserialize, Serialize};

mod redis_server;

pub use redis_server::RedisServer;

/// Retry settings without waiting, for tests that count attempts rather than time them.
pub fn no_delay() -> opero_core::RetryConfig {
    opero_core::RetryConfig {
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        jitter: opero_core::Jitter::None,
        ..Default::default()
    }
}

/// A value with some structure, so that a decoding slip shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// A name.
    pub name: String,
    /// Some numbers.
    pub numbers: Vec<i64>,
    /// A nested option.
    pub note: Option<String>,
}

fn sample(i: i64) -> Sample {
    Sample {
        name: format!("sample-{i}"),
        numbers: (0..8).map(|n| n * i).collect(),
        note: (i % 2 == 0).then(|| "even".to_owned()),
    }
}

/// A fresh namespace: letters, digits and `-` only, valid for every backend.
pub fn fresh_namespace() -> String {
    format!("conformance-{:016x}", fastrand::u64(..))
}

/// The key of entry `n` of namespace `ns`. Its hash covers the namespace, as the pipeline's keys
/// do (`CacheKey` lets a backend key on the hash alone).
pub fn key(ns: &str, n: u128) -> CacheKey<'_> {
    let hash = StableKey
        .hash(ns, &FunctionId::named("conformance"), &n)
        .expect("a u128 hashes");
    CacheKey {
        namespace: ns,
        function: FunctionLabel::Named("conformance"),
        hash,
    }
}

fn config(ns: &str) -> OperoConfig {
    OperoConfig {
        retry: opero_core::RetryConfig {
            retries: 0,
            ..no_delay()
        },
        cache: CacheConfig {
            namespace: ns.to_owned(),
            ..CacheConfig::enabled("conformance")
        },
        ..Default::default()
    }
}

/// TTL of the entries that must expire during a check.
const SHORT_TTL: Duration = Duration::from_millis(150);
/// Long enough after [`SHORT_TTL`] for any backend's clock to agree it passed.
const AFTER_SHORT_TTL: Duration = Duration::from_millis(400);
/// The size of the large value.
pub const LARGE: usize = 10 * 1024 * 1024;
const MANY: u128 = 1_000;

fn large_value() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

// ===== sync checks =====

/// Runs every sync check.
pub fn run_sync<C: CacheBackend + 'static>(cache: Arc<C>) {
    round_trip(&*cache);
    ttl_expiry(&*cache);
    namespaces_are_isolated(&*cache);
    delete(&*cache);
    large_value_round_trips(&*cache);
    many_keys(&*cache);
    concurrent_writers(&*cache);
    another_type_is_a_miss(&*cache);
    errors_are_not_cached(Arc::clone(&cache));
    concurrent_misses_run_once(cache);
}

/// A miss, then the stored value, then an overwrite.
pub fn round_trip<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    assert_eq!(cache.get::<Sample>(&key(&ns, 1)).unwrap(), None);
    cache.set(&key(&ns, 1), &sample(1), None).unwrap();
    assert_eq!(cache.get::<Sample>(&key(&ns, 1)).unwrap(), Some(sample(1)));
    cache.set(&key(&ns, 1), &sample(2), None).unwrap();
    assert_eq!(cache.get::<Sample>(&key(&ns, 1)).unwrap(), Some(sample(2)));
}

/// An entry with a short TTL expires; others stay.
pub fn ttl_expiry<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    cache.set(&key(&ns, 1), &1u32, Some(SHORT_TTL)).unwrap();
    cache
        .set(&key(&ns, 2), &2u32, Some(Duration::from_secs(60)))
        .unwrap();
    cache.set(&key(&ns, 3), &3u32, None).unwrap();
    std::thread::sleep(AFTER_SHORT_TTL);
    assert_eq!(cache.get::<u32>(&key(&ns, 1)).unwrap(), None, "expired");
    assert_eq!(cache.get::<u32>(&key(&ns, 2)).unwrap(), Some(2));
    assert_eq!(cache.get::<u32>(&key(&ns, 3)).unwrap(), Some(3));
}

/// The same hash in two namespaces is two entries; clearing one leaves the other.
pub fn namespaces_are_isolated<C: CacheBackend>(cache: &C) {
    let (a, b) = (fresh_namespace(), fresh_namespace());
    cache.set(&key(&a, 1), &"a".to_owned(), None).unwrap();
    cache.set(&key(&b, 1), &"b".to_owned(), None).unwrap();
    cache.set(&key(&a, 2), &"a2".to_owned(), None).unwrap();
    assert_eq!(
        cache.get::<String>(&key(&a, 1)).unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(
        cache.get::<String>(&key(&b, 1)).unwrap().as_deref(),
        Some("b")
    );
    cache.clear(&a).unwrap();
    assert_eq!(cache.get::<String>(&key(&a, 1)).unwrap(), None);
    assert_eq!(cache.get::<String>(&key(&a, 2)).unwrap(), None);
    assert_eq!(
        cache.get::<String>(&key(&b, 1)).unwrap().as_deref(),
        Some("b")
    );
    cache.clear(&fresh_namespace()).unwrap();
}

/// Delete removes one entry; deleting a missing one is fine.
pub fn delete<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    cache.set(&key(&ns, 1), &1u8, None).unwrap();
    cache.set(&key(&ns, 2), &2u8, None).unwrap();
    cache.delete(&key(&ns, 1)).unwrap();
    cache.delete(&key(&ns, 9)).unwrap();
    assert_eq!(cache.get::<u8>(&key(&ns, 1)).unwrap(), None);
    assert_eq!(cache.get::<u8>(&key(&ns, 2)).unwrap(), Some(2));
}

/// A 10 MiB value comes back whole.
pub fn large_value_round_trips<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    let value = large_value();
    cache.set(&key(&ns, 1), &value, None).unwrap();
    let back = cache.get::<Vec<u8>>(&key(&ns, 1)).unwrap().expect("stored");
    assert!(back == value, "the large value changed");
    cache.clear(&ns).unwrap();
}

/// A thousand keys, each with its own value.
pub fn many_keys<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    for i in 0..MANY {
        cache.set(&key(&ns, i), &(i as u64), None).unwrap();
    }
    for i in 0..MANY {
        assert_eq!(cache.get::<u64>(&key(&ns, i)).unwrap(), Some(i as u64));
    }
    cache.clear(&ns).unwrap();
    assert_eq!(cache.get::<u64>(&key(&ns, 7)).unwrap(), None);
}

/// Writers on several threads lose no entry, and a key they all write holds one writer's whole
/// value, never a mix.
pub fn concurrent_writers<C: CacheBackend>(cache: &C) {
    const THREADS: u64 = 8;
    const EACH: u64 = 50;
    let ns = fresh_namespace();
    let shared = key(&ns, u128::MAX);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let ns = &ns;
            s.spawn(move || {
                for i in 0..EACH {
                    let own = key(ns, u128::from(t * EACH + i));
                    cache.set(&own, &(t, i), None).unwrap();
                    cache.set(&shared, &vec![t; 512], None).unwrap();
                }
            });
        }
    });
    for t in 0..THREADS {
        for i in 0..EACH {
            let own = key(&ns, u128::from(t * EACH + i));
            assert_eq!(cache.get::<(u64, u64)>(&own).unwrap(), Some((t, i)));
        }
    }
    let last = cache.get::<Vec<u64>>(&shared).unwrap().expect("written");
    assert_eq!(last.len(), 512);
    assert!(last.iter().all(|&x| x == last[0]), "a torn value");
}

/// An entry read as another type is a miss, never a wrong value.
pub fn another_type_is_a_miss<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    cache.set(&key(&ns, 1), &7u64, None).unwrap();
    assert_eq!(cache.get::<String>(&key(&ns, 1)).unwrap(), None);
    assert_eq!(cache.get::<i64>(&key(&ns, 1)).unwrap(), None);
    assert_eq!(cache.get::<Sample>(&key(&ns, 1)).unwrap(), None);
    assert_eq!(cache.get::<u64>(&key(&ns, 1)).unwrap(), Some(7));
}

/// Through the pipeline: a failed call stores nothing, the next one runs, the one after hits.
pub fn errors_are_not_cached<C: CacheBackend + 'static>(cache: Arc<C>) {
    let ns = fresh_namespace();
    let opero = opero_core::Opero::with_cache(config(&ns), cache)
        .unwrap()
        // The work below captures a counter, so it does not identify itself: it is named.
        .named("conformance");
    let mut runs = 0;
    let mut results = Vec::new();
    for _ in 0..3 {
        results.push(opero.call(&5u32, |x: &u32| {
            runs += 1;
            if runs == 1 {
                Err("first run fails".to_owned())
            } else {
                Ok(x * 2)
            }
        }));
    }
    assert!(results[0].is_err());
    assert_eq!(results[1].as_ref().ok(), Some(&10));
    assert_eq!(results[2].as_ref().ok(), Some(&10));
    assert_eq!(runs, 2, "the error was not cached and the success was");
    assert_eq!(opero.metrics().cache_errors, 0);
}

/// Through the pipeline: 16 threads miss one key at once; the work runs once and all get its
/// value.
pub fn concurrent_misses_run_once<C: CacheBackend + 'static>(cache: Arc<C>) {
    const THREADS: usize = 16;
    let ns = fresh_namespace();
    let opero = opero_core::Opero::with_cache(config(&ns), cache)
        .unwrap()
        // The work below captures a counter, so it does not identify itself: it is named.
        .named("conformance");
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    let work = |x: &u32| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        Ok::<_, String>(sample(i64::from(*x)))
    };
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                barrier.wait();
                let wrapped = &work;
                assert_eq!(opero.call(&3u32, wrapped).unwrap(), sample(3));
            });
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let m = opero.metrics();
    assert_eq!(
        m.cache_coalesced + m.cache_hits,
        THREADS as u64 - 1,
        "{m:?}"
    );
}

// ===== async checks =====

/// Runs every async check.
pub async fn run_async<C: CacheBackend + 'static>(cache: Arc<C>) {
    round_trip_async(&*cache).await;
    ttl_expiry_async(&*cache).await;
    namespaces_are_isolated_async(&*cache).await;
    delete_async(&*cache).await;
    large_value_round_trips_async(&*cache).await;
    many_keys_async(&*cache).await;
    concurrent_writers_async(Arc::clone(&cache)).await;
    another_type_is_a_miss_async(&*cache).await;
    errors_are_not_cached_async(Arc::clone(&cache)).await;
    concurrent_misses_run_once_async(cache).await;
}

/// [`round_trip`], async.
pub async fn round_trip_async<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    assert_eq!(cache.get_async::<Sample>(&key(&ns, 1)).await.unwrap(), None);
    cache
        .set_async(&key(&ns, 1), &sample(1), None)
        .await
        .unwrap();
    assert_eq!(
        cache.get_async::<Sample>(&key(&ns, 1)).await.unwrap(),
        Some(sample(1))
    );
    cache
        .set_async(&key(&ns, 1), &sample(2), None)
        .await
        .unwrap();
    assert_eq!(
        cache.get_async::<Sample>(&key(&ns, 1)).await.unwrap(),
        Some(sample(2))
    );
}

/// [`ttl_expiry`], async.
pub async fn ttl_expiry_async<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    cache
        .set_async(&key(&ns, 1), &1u32, Some(SHORT_TTL))
        .await
        .unwrap();
    cache
        .set_async(&key(&ns, 2), &2u32, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    tokio::time::sleep(AFTER_SHORT_TTL).await;
    assert_eq!(
        cache.get_async::<u32>(&key(&ns, 1)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(cache.get_async::<u32>(&key(&ns, 2)).await.unwrap(), Some(2));
}

/// [`namespaces_are_isolated`], async.
pub async fn namespaces_are_isolated_async<C: CacheBackend>(cache: &C) {
    let (a, b) = (fresh_namespace(), fresh_namespace());
    cache
        .set_async(&key(&a, 1), &"a".to_owned(), None)
        .await
        .unwrap();
    cache
        .set_async(&key(&b, 1), &"b".to_owned(), None)
        .await
        .unwrap();
    cache.clear_async(&a).await.unwrap();
    assert_eq!(cache.get_async::<String>(&key(&a, 1)).await.unwrap(), None);
    assert_eq!(
        cache
            .get_async::<String>(&key(&b, 1))
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
}

/// [`delete`], async.
pub async fn delete_async<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    cache.set_async(&key(&ns, 1), &1u8, None).await.unwrap();
    cache.delete_async(&key(&ns, 1)).await.unwrap();
    cache.delete_async(&key(&ns, 9)).await.unwrap();
    assert_eq!(cache.get_async::<u8>(&key(&ns, 1)).await.unwrap(), None);
}

/// [`large_value_round_trips`], async.
pub async fn large_value_round_trips_async<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    let value = large_value();
    cache.set_async(&key(&ns, 1), &value, None).await.unwrap();
    let back = cache
        .get_async::<Vec<u8>>(&key(&ns, 1))
        .await
        .unwrap()
        .expect("stored");
    assert!(back == value, "the large value changed");
    cache.clear_async(&ns).await.unwrap();
}

/// [`many_keys`], async.
pub async fn many_keys_async<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    for i in 0..MANY {
        cache
            .set_async(&key(&ns, i), &(i as u64), None)
            .await
            .unwrap();
    }
    for i in 0..MANY {
        assert_eq!(
            cache.get_async::<u64>(&key(&ns, i)).await.unwrap(),
            Some(i as u64)
        );
    }
    cache.clear_async(&ns).await.unwrap();
}

/// [`concurrent_writers`], from tokio tasks.
pub async fn concurrent_writers_async<C: CacheBackend + 'static>(cache: Arc<C>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 50;
    let ns: Arc<str> = fresh_namespace().into();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, ns) = (Arc::clone(&cache), Arc::clone(&ns));
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let own = key(&ns, u128::from(t * EACH + i));
                cache.set_async(&own, &(t, i), None).await.unwrap();
                cache
                    .set_async(&key(&ns, u128::MAX), &vec![t; 512], None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for t in 0..TASKS {
        for i in 0..EACH {
            let own = key(&ns, u128::from(t * EACH + i));
            assert_eq!(
                cache.get_async::<(u64, u64)>(&own).await.unwrap(),
                Some((t, i))
            );
        }
    }
    let last = cache
        .get_async::<Vec<u64>>(&key(&ns, u128::MAX))
        .await
        .unwrap()
        .expect("written");
    assert!(
        last.len() == 512 && last.iter().all(|&x| x == last[0]),
        "a torn value"
    );
}

/// [`another_type_is_a_miss`], async.
pub async fn another_type_is_a_miss_async<C: CacheBackend>(cache: &C) {
    let ns = fresh_namespace();
    cache.set_async(&key(&ns, 1), &7u64, None).await.unwrap();
    assert_eq!(cache.get_async::<String>(&key(&ns, 1)).await.unwrap(), None);
    assert_eq!(cache.get_async::<i64>(&key(&ns, 1)).await.unwrap(), None);
    assert_eq!(cache.get_async::<u64>(&key(&ns, 1)).await.unwrap(), Some(7));
}

/// [`errors_are_not_cached`], async.
pub async fn errors_are_not_cached_async<C: CacheBackend + 'static>(cache: Arc<C>) {
    let ns = fresh_namespace();
    let opero = opero_core::Opero::with_cache(config(&ns), cache)
        .unwrap()
        // The work below captures a counter, so it does not identify itself: it is named.
        .named("conformance");
    let runs = Arc::new(AtomicUsize::new(0));
    let mut results = Vec::new();
    for _ in 0..3 {
        let runs = Arc::clone(&runs);
        results.push(
            opero
                .call_async(5u32, move |x: u32| {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        if n == 1 {
                            Err("first run fails".to_owned())
                        } else {
                            Ok(x * 2)
                        }
                    }
                })
                .await,
        );
    }
    assert!(results[0].is_err());
    assert_eq!(results[1].as_ref().ok(), Some(&10));
    assert_eq!(results[2].as_ref().ok(), Some(&10));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// [`concurrent_misses_run_once`], from tokio tasks.
pub async fn concurrent_misses_run_once_async<C: CacheBackend + 'static>(cache: Arc<C>) {
    const TASKS: usize = 16;
    let ns = fresh_namespace();
    let opero = opero_core::Opero::with_cache(config(&ns), cache)
        .unwrap()
        // The work below captures a counter, so it does not identify itself: it is named.
        .named("conformance");
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (opero, runs, barrier) = (opero.clone(), Arc::clone(&runs), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            call_slow(&opero, runs).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), sample(3));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let m = opero.metrics();
    assert_eq!(m.cache_coalesced + m.cache_hits, TASKS as u64 - 1, "{m:?}");
}

/// One call site, so every task's call has the same function identity and so the same key.
async fn call_slow<C: CacheBackend>(
    opero: &opero_core::Opero<C>,
    runs: Arc<AtomicUsize>,
) -> Sample {
    opero
        .call_async(3u32, move |x: u32| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, String>(sample(i64::from(x)))
            }
        })
        .await
        .unwrap()
}
