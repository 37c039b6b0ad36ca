//! However many memory caches a thread reads, each answers a key with its own value: a thread's
//! front of remembered hits, shared by every cache the thread reads, never hands one cache's value
//! to another, even when they share the key and have seen as many changes.

use opero_cache_memory::MemoryCache;
use opero_core::{CacheBackend, CacheKey, FunctionLabel};

fn key(hash: u128) -> CacheKey<'static> {
    CacheKey {
        namespace: "many",
        function: FunctionLabel::Named("f"),
        hash,
    }
}

#[test]
fn forty_caches_read_in_turn_each_answer_their_own_value() {
    // More caches than a front has slots, so that some share a slot for this key.
    let caches: Vec<MemoryCache> = (0..40).map(|_| MemoryCache::default()).collect();
    for (i, cache) in caches.iter().enumerate() {
        cache.set(&key(5), &(i as u64), None).unwrap();
    }
    for round in 0..3 {
        for (i, cache) in caches.iter().enumerate() {
            assert_eq!(
                cache.get::<u64>(&key(5)).unwrap(),
                Some(i as u64),
                "cache {i}, round {round}"
            );
        }
    }
}
