//! A value of at most two words (a number, a pair, a `String`'s header) is kept inside the entry:
//! storing or overwriting one allocates nothing, counted by a global allocator on this thread (a
//! count of allocations, not a timing). A larger value costs one allocation for its shared copy.
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use opero_cache_memory::MemoryCache;
use opero_core::{CacheBackend, CacheKey, FunctionLabel};

struct Counting;

thread_local! {
    // Per thread, so that other tests' threads do not count.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator unchanged; the counter is a const
// thread-local `Cell`, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn key(hash: u128) -> CacheKey<'static> {
    CacheKey {
        namespace: "inline",
        function: FunctionLabel::Named("f"),
        hash,
    }
}

#[test]
fn overwriting_a_small_value_allocates_nothing() {
    let cache = MemoryCache::with_capacity(64);
    // The first write registers the namespace and may grow the table.
    cache.set(&key(1), &1u64, None).unwrap();
    cache.set(&key(2), &(1u64, 2u64), None).unwrap();
    let n = allocations_in(|| {
        for i in 0..100u64 {
            cache.set(&key(1), &i, None).unwrap();
            cache.set(&key(2), &(i, i + 1), None).unwrap();
        }
    });
    assert_eq!(n, 0, "allocations while storing small values");
    assert_eq!(cache.get::<u64>(&key(1)).unwrap(), Some(99));
    assert_eq!(cache.get::<(u64, u64)>(&key(2)).unwrap(), Some((99, 100)));
}

#[test]
fn reading_a_small_value_allocates_nothing() {
    let cache = MemoryCache::with_capacity(64);
    cache.set(&key(1), &7u64, None).unwrap();
    let n = allocations_in(|| {
        for _ in 0..100 {
            assert_eq!(cache.get::<u64>(&key(1)).unwrap(), Some(7));
        }
    });
    assert_eq!(n, 0, "allocations while reading a small value");
}

#[test]
fn a_value_larger_than_two_words_is_stored_with_one_allocation() {
    let cache = MemoryCache::with_capacity(64);
    cache.set(&key(1), &[0u64; 3], None).unwrap();
    let n = allocations_in(|| cache.set(&key(1), &[1u64; 3], None).unwrap());
    assert_eq!(n, 1, "allocations while storing a three-word value");
    assert_eq!(cache.get::<[u64; 3]>(&key(1)).unwrap(), Some([1u64; 3]));
}
