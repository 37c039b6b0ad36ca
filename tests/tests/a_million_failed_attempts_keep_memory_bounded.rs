//! A call that fails a million times keeps a bounded record of its attempts: the first
//! `KEPT_FIRST` and the last `KEPT_LAST` errors and a count, not every error (745 MB for five
//! million before). Live heap bytes are counted by a global allocator, so this is a plain
//! assertion on memory, not on time.
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use opero::{AllFailedError, Jitter, NoCache, Opero};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    if now > 0 {
        PEAK.fetch_max(now as usize, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged; the counters are atomics,
// which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grew(-(layout.size() as isize));
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The ceiling the README states for one call's record of failures.
const CEILING: usize = 64 * 1024;

#[test]
fn a_million_failed_attempts_stay_under_the_ceiling() {
    const ATTEMPTS: u32 = 1_000_000;
    let opero = Opero::<NoCache>::builder()
        .retries(ATTEMPTS - 1)
        .min_delay(Duration::ZERO)
        .max_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let base = LIVE.load(Ordering::Relaxed).max(0) as usize;
    PEAK.store(base, Ordering::Relaxed);
    let mut n = 0u32;
    let err = opero
        .run(|| {
            n += 1;
            // Each error owns a heap string, as real errors do.
            Err::<(), _>(format!("attempt {n} failed"))
        })
        .unwrap_err();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert!(
        peak < CEILING,
        "peak {peak} bytes above the {CEILING}-byte ceiling"
    );

    assert_eq!(err.len(), ATTEMPTS as usize);
    let kept = AllFailedError::<String>::KEPT_FIRST + AllFailedError::<String>::KEPT_LAST;
    assert_eq!(err.attempts().len(), kept);
    assert_eq!(err.elided(), ATTEMPTS as usize - kept);
    assert_eq!(err.attempts()[0].attempt, 1);
    assert_eq!(err.last().unwrap().attempt, ATTEMPTS);
    assert_eq!(err.last_error().unwrap(), "attempt 1000000 failed");
    let text = err.to_string();
    assert!(text.starts_with("all 1000000 attempts failed across 1 fallback value"));
    assert!(text.contains(&format!("... {} more ...", ATTEMPTS as usize - kept)));
}
