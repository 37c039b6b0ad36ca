//! A call that succeeds first time, through a pipeline with retries configured (and a rate limit
//! with tokens available), makes zero heap allocations. Allocation counts are deterministic, so
//! this is a plain assertion.
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use opero::{NoCache, Opero};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator unchanged; the counter is a thread-local
// `Cell` of a `Copy` type, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn a_successful_first_attempt_allocates_nothing() {
    let opero = Opero::<NoCache>::builder().retries(3).build().unwrap();
    let mut sum = 0u64;
    // Warm up once so lazily initialised statics (tracing's callsite registry) are excluded.
    sum += opero.run(|| Ok::<_, String>(1)).unwrap();
    let n = allocations_during(|| {
        for i in 0..10_000u64 {
            sum += opero.run(|| Ok::<_, String>(i)).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations on the no-fault path");
    assert!(sum > 0);
}

#[test]
fn a_rate_limited_call_with_tokens_available_allocates_nothing() {
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .rate_limit(1e9)
        .burst(1_000_000)
        .build()
        .unwrap();
    let _ = opero.run(|| Ok::<_, String>(0));
    let n = allocations_during(|| {
        for i in 0..10_000u64 {
            opero.run(|| Ok::<_, String>(i)).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations with a rate limit");
}

#[test]
fn a_failing_attempt_does_allocate_to_record_its_error() {
    // The counter works: the fault path records the error in a Vec.
    let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
    let n = allocations_during(|| {
        let _ = opero.run(|| Err::<(), _>("x"));
    });
    assert!(n >= 1);
}
