//! A guarded call that succeeds first time makes zero heap allocations, sync and async: its
//! bulkhead slot, its closed breaker and (async) its hedging pass inline, and the attempt loop,
//! the race and their boxes are made only once the first attempt fails or waits. Allocation
//! counts are deterministic, so this is a plain assertion.
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use opero_core::{BreakerConfig, NoCache, Opero};

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

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn guarded() -> opero_core::OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
        .retries(3)
        .deadline(Duration::from_secs(10))
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(5),
            ..Default::default()
        })
        .bulkhead(64, 64)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Allocations made by 10⁴ async calls that succeed at once, after one to warm up.
fn async_no_fault_allocations(opero: &Opero<NoCache>) -> u64 {
    runtime().block_on(async {
        let _ = opero.run_async(|| async { Ok::<_, String>(1u64) }).await;
        let before = allocations();
        for i in 0..10_000u64 {
            opero
                .run_async(|| async move { Ok::<_, String>(i) })
                .await
                .unwrap();
        }
        allocations() - before
    })
}

#[test]
fn a_guarded_sync_call_that_succeeds_at_once_allocates_nothing() {
    let opero = guarded().build().unwrap();
    // Warm up: lazily made statics (tracing's callsites, the thread's bulkhead words).
    let mut sum = opero.run(|| Ok::<_, String>(1)).unwrap();
    let before = allocations();
    for i in 0..10_000u64 {
        sum += opero.run(|| Ok::<_, String>(i)).unwrap();
    }
    let n = allocations() - before;
    assert_eq!(n, 0, "{n} allocations on the guarded no-fault path");
    assert!(sum > 0);
}

#[test]
fn a_guarded_async_call_that_succeeds_at_once_allocates_nothing() {
    let opero = guarded()
        .attempt_timeout(Duration::from_secs(1))
        .hedge(Duration::from_secs(1), 1)
        .build()
        .unwrap();
    let n = async_no_fault_allocations(&opero);
    assert_eq!(n, 0, "{n} allocations on the guarded async no-fault path");
}

#[test]
fn an_unguarded_async_call_that_succeeds_at_once_allocates_nothing() {
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .deadline(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let n = async_no_fault_allocations(&opero);
    assert_eq!(n, 0, "{n} allocations on the async no-fault path");
}

#[test]
fn a_guarded_async_call_whose_first_attempt_fails_or_waits_goes_on_in_a_box() {
    // The counter works, and the loop and the race are made when needed.
    let hedged = guarded()
        .hedge(Duration::from_secs(1), 1)
        .min_delay(Duration::ZERO)
        .build()
        .unwrap();
    let plain = guarded().min_delay(Duration::ZERO).build().unwrap();
    let rt = runtime();
    for opero in [&plain, &hedged] {
        let n = rt.block_on(async {
            let before = allocations();
            let mut runs = 0;
            let got = opero
                .run_async(|| {
                    runs += 1;
                    let fail = runs == 1;
                    async move {
                        if fail {
                            Err("busy".to_string())
                        } else {
                            Ok(runs)
                        }
                    }
                })
                .await;
            assert_eq!(got.unwrap(), 2);
            allocations() - before
        });
        assert!(n >= 1, "a failed first attempt goes on in a boxed loop");
    }
    let n = rt.block_on(async {
        let before = allocations();
        let got = hedged
            .run_async(|| async {
                tokio::task::yield_now().await;
                Ok::<_, String>(3)
            })
            .await;
        assert_eq!(got.unwrap(), 3);
        allocations() - before
    });
    assert!(
        n >= 1,
        "a hedged first attempt that waits is handed to a boxed race"
    );
}
