//! A cache given a capacity holds about that many entries, whatever keys the pipeline hashes, and
//! `entry_count` says how many it holds: every counted entry reads back.

use opero_cache_memory::MemoryCache;
#[cfg(feature = "moka")]
use opero_cache_memory::MokaCache;
use opero_core::{CacheBackend, CacheKey, FunctionId, FunctionLabel, KeyFn, StableKey};

const CAPACITY: u64 = 4_096;

/// Keys as the pipeline makes them: 128-bit hashes of the arguments.
fn key(i: u64) -> CacheKey<'static> {
    CacheKey {
        namespace: "capacity",
        function: FunctionLabel::Named("f"),
        hash: StableKey
            .hash("capacity", &FunctionId::named("f"), &i)
            .unwrap(),
    }
}

fn held<C: CacheBackend>(cache: &C) -> u64 {
    (0..CAPACITY)
        .filter(|&i| cache.get::<u64>(&key(i)).unwrap() == Some(i * 7))
        .count() as u64
}

#[test]
fn a_memory_cache_filled_to_its_capacity_holds_nearly_every_entry() {
    let cache = MemoryCache::with_capacity(CAPACITY);
    for i in 0..CAPACITY {
        cache.set(&key(i), &(i * 7), None).unwrap();
    }
    // The store evicts per shard: entries crowded into a few shards by a poor spread of the key
    // hashes would be evicted long before the cache is full.
    let held = held(&cache);
    assert!(held >= CAPACITY * 9 / 10, "{held} of {CAPACITY} held");
    assert_eq!(cache.entry_count(), held);
}

#[test]
fn entry_count_counts_each_entry_once() {
    let cache = MemoryCache::with_capacity(CAPACITY);
    assert_eq!(cache.entry_count(), 0);
    for i in 0..5 {
        cache.set(&key(i), &(i * 7), None).unwrap();
    }
    cache.set(&key(0), &0u64, None).unwrap();
    assert_eq!(cache.entry_count(), 5);
    cache.delete(&key(1)).unwrap();
    assert_eq!(cache.entry_count(), 4);
}

#[cfg(feature = "moka")]
#[test]
fn a_moka_cache_filled_to_its_capacity_holds_nearly_every_entry() {
    let cache = MokaCache::with_capacity(CAPACITY);
    for i in 0..CAPACITY {
        cache.set(&key(i), &(i * 7), None).unwrap();
    }
    cache.run_pending_tasks();
    let held = held(&cache);
    assert!(held >= CAPACITY * 9 / 10, "{held} of {CAPACITY} held");
    assert_eq!(cache.entry_count(), held);
}

#[cfg(feature = "moka")]
#[test]
fn a_moka_cache_counts_its_entries_once_its_pending_tasks_have_run() {
    let cache = MokaCache::with_capacity(CAPACITY);
    for i in 0..5 {
        cache.set(&key(i), &(i * 7), None).unwrap();
    }
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 5);
    cache.delete(&key(1)).unwrap();
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 4);
}
