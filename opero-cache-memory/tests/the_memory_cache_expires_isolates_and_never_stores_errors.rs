//! The memory cache behind the pipeline: entries expire after their TTL, namespaces isolate,
//! errors are never cached, and two functions with equal arguments never share an entry.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use opero_cache_memory::MemoryCache;
use opero_core::{CacheBackend, Opero};

fn cached(namespace: &str, cache: &MemoryCache) -> Opero<MemoryCache> {
    Opero::<MemoryCache>::builder()
        .cache(true)
        .cache_namespace(namespace)
        .cache_backend(cache.clone())
        .cache_ttl(Duration::from_millis(150))
        .retries(0)
        .build_with_given_cache()
        .unwrap()
}

fn square(opero: &Opero<MemoryCache>, calls: &AtomicU32, x: u64) -> u64 {
    opero
        .named("square")
        .call(&x, |x: &u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(x * x)
        })
        .unwrap()
}

#[test]
fn entries_expire_after_their_ttl() {
    let cache = MemoryCache::default();
    let opero = cached("ttl", &cache);
    let calls = AtomicU32::new(0);
    assert_eq!(square(&opero, &calls, 3), 9);
    assert_eq!(square(&opero, &calls, 3), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(square(&opero, &calls, 3), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn namespaces_isolate_entries_in_one_store() {
    let cache = MemoryCache::default();
    let (a, b) = (cached("tenant-a", &cache), cached("tenant-b", &cache));
    let calls = AtomicU32::new(0);
    square(&a, &calls, 5);
    square(&b, &calls, 5);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    square(&a, &calls, 5);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Clearing one namespace leaves the other alone.
    cache.clear("tenant-a").unwrap();
    square(&b, &calls, 5);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    square(&a, &calls, 5);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn errors_are_never_cached() {
    let opero = cached("errors", &MemoryCache::default());
    let mut calls = 0;
    for round in 0..3 {
        let out = opero.named("not_yet").call(&"key", |_: &&str| {
            calls += 1;
            if round < 2 {
                Err("not yet")
            } else {
                Ok(round)
            }
        });
        assert_eq!(out.is_ok(), round == 2);
    }
    assert_eq!(calls, 3);
    assert_eq!(opero.metrics().cache_misses, 3);
}

fn double(x: &u64) -> Result<u64, String> {
    Ok(x * 2)
}

fn triple(x: &u64) -> Result<u64, String> {
    Ok(x * 3)
}

#[test]
fn two_functions_with_equal_arguments_never_share_an_entry() {
    let opero = cached("functions", &MemoryCache::default());
    assert_eq!(opero.call(&7, double).unwrap(), 14);
    assert_eq!(opero.call(&7, triple).unwrap(), 21);
    // Closures in one scope share a type name; their call sites keep them apart.
    let plus_one = opero.call(&7, |x: &u64| Ok::<_, String>(x + 1)).unwrap();
    let minus_one = opero.call(&7, |x: &u64| Ok::<_, String>(x - 1)).unwrap();
    assert_eq!((plus_one, minus_one), (8, 6));
    // A named function shares its entry across call sites.
    assert_eq!(opero.call(&7, double).unwrap(), 14);
    assert_eq!(opero.metrics().cache_hits, 1);
}

#[tokio::test]
async fn the_async_forms_use_the_same_cache() {
    let opero = cached("async", &MemoryCache::default());
    let wrapped = opero
        .wrap_async(|x: u64| async move { Ok::<_, String>(x + 100) })
        .unwrap();
    assert_eq!(wrapped.call(1).await.unwrap(), 101);
    assert_eq!(wrapped.call(1).await.unwrap(), 101);
    assert_eq!(opero.metrics().cache_hits, 1);
}
