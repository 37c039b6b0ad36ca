//! How the workers of a [`ThreadExecutor`](crate::ThreadExecutor) share out a map's items without
//! a lock per item: each claims a chunk of indices with one atomic add and writes its outputs
//! straight into their places in one pre-sized `Vec`, a region no other worker touches.
//!
//! A chunk is sized by [`Pace`]: large while items run fast, so that trivial items cost one
//! claim per many items, one item at a time once items take long, so that a slow item holds
//! back only about [`TARGET`] of the items claimed with it, and never more than a share of what
//! is left, so that the last items still spread over every worker.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most items one claim takes: a claim then costs well under a nanosecond per item.
pub(crate) const MAX_CHUNK: usize = 1024;

/// How long a chunk should run. Items claimed together wait for each other, so this bounds what
/// a slow item holds back; it is far above the cost of a claim (tens of nanoseconds).
const TARGET: Duration = Duration::from_micros(20);

/// One worker's chunk size: doubled after a chunk that ran under [`TARGET`], back to one item
/// after a chunk that ran over four times it.
#[derive(Debug)]
pub(crate) struct Pace {
    size: usize,
    started: Instant,
}

impl Pace {
    pub(crate) fn new() -> Self {
        Pace {
            size: 1,
            started: Instant::now(),
        }
    }

    /// The size of the next chunk, out of `remaining` items left for `workers` (at least 1).
    pub(crate) fn next(&mut self, remaining: usize, workers: usize) -> usize {
        // Guided: at most half of an even share of what is left, so the tail spreads.
        let share = (remaining / workers.max(1) / 2).max(1);
        self.started = Instant::now();
        self.size.min(share)
    }

    /// Books the end of the chunk handed out by the last [`next`](Self::next).
    pub(crate) fn ran(&mut self) {
        let took = self.started.elapsed();
        if took < TARGET {
            self.size = (self.size * 2).min(MAX_CHUNK);
        } else if took > TARGET * 4 {
            self.size = 1;
        }
    }
}

/// Hands out the indices `0..len` in disjoint chunks, in order, by one atomic add per chunk.
#[derive(Debug)]
struct Claims {
    next: AtomicUsize,
    len: usize,
    workers: usize,
}

impl Claims {
    fn claim(&self, pace: &mut Pace) -> Option<Range<usize>> {
        let seen = self.next.load(Ordering::Relaxed);
        if seen >= self.len {
            return None;
        }
        let size = pace.next(self.len - seen, self.workers);
        // Overshoots `len` by at most one chunk per worker: no overflow.
        let start = self.next.fetch_add(size, Ordering::Relaxed);
        (start < self.len).then(|| start..(start + size).min(self.len))
    }
}

/// The spare capacity of a `Vec`, written by many threads at disjoint indices.
struct Sink<O> {
    ptr: *mut O,
}

// SAFETY: the sink only moves `O` values into the buffer (from whichever thread computed them);
// `collect_indexed` keeps every index written by one thread at most once.
#[allow(unsafe_code)]
unsafe impl<O: Send> Sync for Sink<O> {}

/// The items of a `Vec` moved out one by one, by many threads at disjoint indices.
struct Source<T> {
    ptr: *const T,
}

// SAFETY: each item is read (moved out) by one thread exactly once, so sharing the pointer only
// sends `T` values between threads.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for Source<T> {}

/// Computes `work(i)` for every `i` in `0..len` on the workers `run` starts, and returns the
/// outputs in index order.
///
/// `run` must call the body it is given on each of its workers (at least once in all) and return
/// when every call has returned. When any call unwinds the outputs written so far are leaked,
/// never dropped twice or read uninitialised.
pub(crate) fn collect_indexed<O, W>(
    len: usize,
    workers: usize,
    run: impl FnOnce(&(dyn Fn() + Sync)),
    work: W,
) -> Vec<O>
where
    O: Send,
    W: Fn(usize) -> O + Sync,
{
    let mut out: Vec<O> = Vec::with_capacity(len);
    let sink = Sink {
        ptr: out.as_mut_ptr(),
    };
    let claims = Claims {
        next: AtomicUsize::new(0),
        len,
        workers,
    };
    let written = AtomicUsize::new(0);
    let body = || {
        let sink = &sink;
        let mut pace = Pace::new();
        while let Some(range) = claims.claim(&mut pace) {
            let count = range.len();
            for i in range {
                let value = work(i);
                // SAFETY: `i < len <= capacity`, and `claims` hands out each index once.
                #[allow(unsafe_code)]
                unsafe {
                    sink.ptr.add(i).write(value);
                }
            }
            written.fetch_add(count, Ordering::Release);
            pace.ran();
        }
    };
    run(&body);
    // Every chunk counted was written in full; `run` returned after every body did.
    if written.load(Ordering::Acquire) == len {
        // SAFETY: the indices `0..len` were each written once (counted above).
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(len);
        }
    } else {
        // Only when `run` broke its promise; leaking beats reading unwritten outputs.
        tracing::error!(target: "opero", "an opmap worker stopped before its chunk ended; outputs leaked");
        std::mem::forget(out);
        panic!("opmap workers stopped before every item ran");
    }
    out
}

/// As [`collect_indexed`], each index's item moved out of `items` and handed to `work`.
pub(crate) fn map_owned<T, O, W>(
    items: Vec<T>,
    workers: usize,
    run: impl FnOnce(&(dyn Fn() + Sync)),
    work: W,
) -> Vec<O>
where
    T: Send,
    O: Send,
    W: Fn(usize, T) -> O + Sync,
{
    let len = items.len();
    let mut items = items;
    let source = Source {
        ptr: items.as_ptr(),
    };
    // From here `items` owns only its buffer: the items are moved out by the workers, and those
    // left unread when a worker unwinds are leaked, not dropped.
    // SAFETY: shrinking the length never exposes uninitialised items.
    #[allow(unsafe_code)]
    unsafe {
        items.set_len(0);
    }
    let out = collect_indexed(len, workers, run, |i| {
        let source = &source;
        // SAFETY: `i < len`, the item is initialised, and `collect_indexed` asks for each index
        // once, so each item is moved out once.
        #[allow(unsafe_code)]
        let item = unsafe { source.ptr.add(i).read() };
        work(i, item)
    });
    drop(items);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn threads(n: usize) -> impl FnOnce(&(dyn Fn() + Sync)) {
        move |body| {
            std::thread::scope(|s| {
                for _ in 1..n {
                    s.spawn(body);
                }
                body();
            })
        }
    }

    #[test]
    fn every_index_is_mapped_once_in_order() {
        for len in [0, 1, 2, 3, 7, 63, 64, 65, 1023, 1024, 1025, 4097, 100_001] {
            for workers in [1, 2, 3, 8] {
                let out = collect_indexed(len, workers, threads(workers), |i| i * 2);
                assert_eq!(out.len(), len);
                assert!(out.iter().enumerate().all(|(i, &x)| x == i * 2), "{len}");
            }
        }
    }

    #[test]
    fn owned_items_are_moved_once_and_dropped_once() {
        let items: Vec<Arc<usize>> = (0..5000).map(Arc::new).collect();
        let witness = items.clone();
        let out = map_owned(items, 3, threads(3), |i, item: Arc<usize>| {
            assert_eq!(*item, i);
            item
        });
        assert!(out.iter().enumerate().all(|(i, x)| **x == i));
        drop(out);
        // Only `witness` holds each item now: none leaked, none dropped twice.
        assert!(witness.iter().all(|x| Arc::strong_count(x) == 1));
    }

    #[test]
    fn a_panicking_worker_leaks_rather_than_drops_twice() {
        let items: Vec<Arc<usize>> = (0..100).map(Arc::new).collect();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            map_owned(items, 2, threads(2), |i, item: Arc<usize>| {
                assert!(i != 50, "boom");
                item
            })
        }));
        assert!(caught.is_err());
    }

    #[test]
    fn chunks_grow_on_fast_items_and_shrink_on_slow_ones() {
        let mut pace = Pace::new();
        assert_eq!(pace.next(1_000_000, 2), 1);
        for _ in 0..20 {
            pace.next(1_000_000, 2);
            pace.ran();
        }
        assert_eq!(pace.next(1_000_000, 2), MAX_CHUNK);
        // A share of what is left bounds it, so a small input still spreads.
        assert_eq!(pace.next(10, 2), 2);
        assert_eq!(pace.next(3, 2), 1);
        pace.next(1_000_000, 2);
        std::thread::sleep(TARGET * 5);
        pace.ran();
        assert_eq!(pace.next(1_000_000, 2), 1);
    }
}
