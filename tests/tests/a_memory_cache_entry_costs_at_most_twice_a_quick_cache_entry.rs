//! Memory per cached entry, counted by a global allocator (bytes requested, so a plain assertion
//! on memory, not on time): a million `u64 → u64` entries in `MemoryCache` cost at most twice what
//! they cost in a bare quick_cache, the leanest bounded cache a user would pick instead. Before
//! the store moved off moka with a boxed value per entry, an entry cost 466 bytes.
//!
//! Run with `--nocapture` to see the figures the README quotes (on stderr).
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`
#![allow(clippy::print_stderr)] // the figures the README quotes

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

use opero::{
    CacheBackend, CacheKey, FunctionId, FunctionLabel, KeyFn, MemoryCache, MokaCache, StableKey,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to the system allocator unchanged; the counter is an atomic,
// which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tests in this file run one at a time: the counter is process-wide.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const ENTRIES: u64 = 1_000_000;

/// Live bytes per entry held by the store `fill` returns, over `ENTRIES` entries.
fn bytes_per_entry<S>(fill: impl FnOnce() -> S) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let store = fill();
    let after = LIVE.load(Ordering::Relaxed);
    drop(store);
    (after - before) as f64 / ENTRIES as f64
}

fn key(i: u64) -> CacheKey<'static> {
    CacheKey {
        namespace: "memory",
        function: FunctionLabel::Named("f"),
        hash: StableKey
            .hash("memory", &FunctionId::named("f"), &i)
            .unwrap(),
    }
}

fn fill_backend<C: CacheBackend>(cache: C) -> C {
    for i in 0..ENTRIES {
        cache.set(&key(i), &i.wrapping_mul(31), None).unwrap();
    }
    cache
}

#[test]
fn a_million_entries_cost_at_most_twice_quick_cache_s() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let peer = bytes_per_entry(|| {
        let cache = quick_cache::sync::Cache::<u64, u64>::new(ENTRIES as usize);
        for i in 0..ENTRIES {
            cache.insert(i, i.wrapping_mul(31));
        }
        cache
    });
    let ours = bytes_per_entry(|| fill_backend(MemoryCache::with_capacity(ENTRIES)));
    eprintln!("bytes per u64 → u64 entry: MemoryCache {ours:.0}, quick_cache {peer:.0}");
    assert!(
        ours <= 2.0 * peer,
        "MemoryCache {ours:.0} B/entry against quick_cache {peer:.0} B/entry"
    );
}

#[test]
fn every_entry_is_held_and_read_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let cache = fill_backend(MemoryCache::with_capacity(ENTRIES));
    assert!(
        cache.entry_count() >= ENTRIES * 9 / 10,
        "{}",
        cache.entry_count()
    );
    let held = (0..ENTRIES)
        .filter(|&i| cache.get::<u64>(&key(i)).unwrap() == Some(i.wrapping_mul(31)))
        .count() as u64;
    assert_eq!(held, cache.entry_count());
}

#[test]
fn moka_s_cost_is_reported_beside_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let moka = bytes_per_entry(|| {
        let cache = fill_backend(MokaCache::with_capacity(ENTRIES));
        cache.run_pending_tasks();
        cache
    });
    eprintln!("bytes per u64 → u64 entry: MokaCache {moka:.0}");
    assert!(moka > 0.0);
}
