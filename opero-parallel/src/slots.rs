//! Rate limiting per worker ([`RateLimitScope::PerWorker`](crate::RateLimitScope)): one token
//! bucket per worker slot, and how the code that takes a permit learns which slot it runs in.
//!
//! The pipeline takes its permit deep inside opero-core, which knows nothing of workers, so the
//! slot travels beside the call rather than through it: a thread-local for the modes whose
//! workers are threads (`thread`, and `process`, whose parent threads each serve one worker
//! process), rayon's own thread index for `rayon`, and a tokio task-local for the async modes,
//! whose items move between threads.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opero_core::{OperoError, RateLimitConfig, RateLimiter, TokenBucket};

use crate::config::Mode;
use crate::executor::lock;

thread_local! {
    /// The worker slot of the current thread, while it works for a thread-mode map.
    static THREAD_SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

tokio::task_local! {
    /// The worker slot of the current item of an async map.
    static TASK_SLOT: usize;
}

/// Marks the current thread as worker slot `slot` until dropped, then restores what it was (the
/// calling thread of a map is one of its workers, and may itself be a worker of an outer map).
pub(crate) struct ThreadSlot(Option<usize>);

impl ThreadSlot {
    pub(crate) fn enter(slot: usize) -> Self {
        ThreadSlot(THREAD_SLOT.with(|s| s.replace(Some(slot))))
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        THREAD_SLOT.with(|s| s.set(self.0));
    }
}

/// Runs `future` as worker slot `slot` of an async map.
pub(crate) async fn in_slot<F: std::future::Future>(slot: usize, future: F) -> F::Output {
    TASK_SLOT.scope(slot, future).await
}

/// Where a [`PerWorker`] limiter finds the slot of the caller.
#[derive(Clone, Copy, Debug)]
enum Source {
    Thread,
    Rayon,
    Task,
}

/// A token bucket per worker slot, each of the map's rate and burst. A rate limiter like any
/// other to the pipeline; it picks the bucket of the slot the caller runs in.
pub(crate) struct PerWorker {
    buckets: Vec<TokenBucket>,
    source: Source,
}

impl PerWorker {
    /// `workers` buckets of `config` for a map in `mode`.
    pub(crate) fn new(
        mode: Mode,
        workers: usize,
        config: &RateLimitConfig,
    ) -> Result<Self, OperoError> {
        let source = match mode {
            Mode::Rayon => Source::Rayon,
            Mode::Async | Mode::AsyncProcess => Source::Task,
            Mode::Thread | Mode::Process => Source::Thread,
        };
        let buckets = (0..workers.max(1))
            .map(|_| TokenBucket::new(config))
            .collect::<Result<_, _>>()?;
        Ok(PerWorker { buckets, source })
    }

    fn bucket(&self) -> &TokenBucket {
        let slot = match self.source {
            Source::Thread => THREAD_SLOT.with(Cell::get),
            Source::Rayon => rayon::current_thread_index(),
            Source::Task => TASK_SLOT.try_with(|s| *s).ok(),
        };
        // Every executor sets the slot of its workers; a permit taken elsewhere (through
        // `opero()` outside a map) counts against the first bucket.
        let slot = slot.unwrap_or(0);
        &self.buckets[slot % self.buckets.len()]
    }
}

impl RateLimiter for PerWorker {
    fn reserve(&self) -> Duration {
        self.bucket().reserve()
    }

    fn try_acquire(&self) -> bool {
        self.bucket().try_acquire()
    }
}

/// The slot numbers of an async map's items in flight: `workers` slots, each held by up to
/// `per_slot` items at once. An item takes the free slot it gets when it starts and gives it back
/// when it ends (or is dropped).
#[derive(Debug)]
pub(crate) struct Slots {
    free: Mutex<Vec<usize>>,
    /// Hands out slots round-robin when every one is taken: two calls of one map at once have
    /// more items in flight than the map has slots.
    overflow: AtomicUsize,
    workers: usize,
}

impl Slots {
    pub(crate) fn new(workers: usize, per_slot: usize) -> Arc<Self> {
        let workers = workers.max(1);
        // Slot 0 last, so that it is handed out first; each slot once per round.
        let free = (0..per_slot.max(1))
            .flat_map(|_| (0..workers).rev())
            .collect();
        Arc::new(Slots {
            free: Mutex::new(free),
            overflow: AtomicUsize::new(0),
            workers,
        })
    }

    pub(crate) fn take(self: &Arc<Self>) -> SlotTicket {
        let slot = lock(&self.free).pop();
        let (slot, owned) = match slot {
            Some(slot) => (slot, true),
            None => (
                self.overflow.fetch_add(1, Ordering::Relaxed) % self.workers,
                false,
            ),
        };
        SlotTicket {
            slots: Arc::clone(self),
            slot,
            owned,
        }
    }
}

/// One item's hold on a slot of [`Slots`].
#[derive(Debug)]
pub(crate) struct SlotTicket {
    slots: Arc<Slots>,
    slot: usize,
    owned: bool,
}

impl SlotTicket {
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }
}

impl Drop for SlotTicket {
    fn drop(&mut self) {
        if self.owned {
            lock(&self.slots.free).push(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_go_round_before_any_is_taken_twice() {
        let slots = Slots::new(3, 2);
        let first: Vec<SlotTicket> = (0..3).map(|_| slots.take()).collect();
        let numbers: Vec<usize> = first.iter().map(SlotTicket::slot).collect();
        assert_eq!(numbers, [0, 1, 2]);
        let second: Vec<usize> = (0..3).map(|_| slots.take().slot()).collect();
        // Each ticket of `second` was given back at once, so slot 0 came back every time.
        assert_eq!(second, [0, 0, 0]);
    }

    #[test]
    fn a_thread_slot_is_restored_when_left() {
        let outer = ThreadSlot::enter(2);
        {
            let _inner = ThreadSlot::enter(5);
            assert_eq!(THREAD_SLOT.with(Cell::get), Some(5));
        }
        assert_eq!(THREAD_SLOT.with(Cell::get), Some(2));
        drop(outer);
        assert_eq!(THREAD_SLOT.with(Cell::get), None);
    }
}
