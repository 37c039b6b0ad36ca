//! The bulkhead: [`BulkheadConfig`] and [`Bulkhead`], which lets at most `max_concurrent` calls
//! run at once and at most `max_queue` more wait for a slot; past that a call is refused with
//! [`BulkheadFull`], which names both limits.
//!
//! Sync callers wait by blocking their thread, async callers by awaiting; both forms share one
//! count and one first-come, first-served queue, and neither needs an async runtime.
//!
//! How a thread keeps its slot between calls is in [`Bulkhead`]'s docs.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use crate::error::{AttemptError, OperoError};
use crate::metrics::Counters;

/// Bulkhead settings.
///
/// # Default
///
/// 10 calls in flight, no queue (a call over the limit is refused at once).
///
/// # Examples
///
/// ```
/// use opero_core::BulkheadConfig;
///
/// let cfg: BulkheadConfig = serde_json::from_str(r#"{"max_concurrent": 4, "max_queue": 16}"#).unwrap();
/// assert_eq!((cfg.max_concurrent, cfg.max_queue), (4, 16));
/// let err = BulkheadConfig { max_concurrent: 0, max_queue: 0 }.validate().unwrap_err();
/// assert_eq!(err.field(), Some("bulkhead.max_concurrent"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls allowed in flight at once; at least 1.
    pub max_concurrent: usize,
    /// Calls allowed to wait for a slot; 0 refuses a call at once when every slot is taken.
    pub max_queue: usize,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            max_concurrent: 10,
            max_queue: 0,
        }
    }
}

impl BulkheadConfig {
    /// Checks every value; the error names the first field that is out of range.
    pub fn validate(&self) -> Result<(), OperoError> {
        if self.max_concurrent == 0 {
            return Err(OperoError::invalid_config(
                "bulkhead.max_concurrent",
                0,
                "must be at least 1",
            ));
        }
        if self.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(OperoError::invalid_config(
                "bulkhead.max_concurrent",
                self.max_concurrent,
                format!("must be at most {}", Semaphore::MAX_PERMITS),
            ));
        }
        Ok(())
    }
}

/// A call refused by a full [`Bulkhead`]: every slot was taken and the queue was full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkheadFull {
    /// Calls allowed in flight at once.
    pub max_concurrent: usize,
    /// Calls allowed to wait for a slot.
    pub max_queue: usize,
}

impl std::fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        AttemptError::<std::convert::Infallible>::from(*self).fmt(f)
    }
}

impl std::error::Error for BulkheadFull {}

impl<E> From<BulkheadFull> for AttemptError<E> {
    fn from(full: BulkheadFull) -> Self {
        AttemptError::BulkheadFull {
            max_concurrent: full.max_concurrent,
            max_queue: full.max_queue,
        }
    }
}

/// At most `max_concurrent` calls at once, `max_queue` more waiting; shared by reference (wrap it
/// in an `Arc` to share it; a pipeline does this for you).
///
/// # A thread keeps its slot between calls
///
/// Counting slots in one shared word costs two atomic read-modify-writes a call, about three
/// times a whole no-fault call. So while no call has found the pool empty, a thread that gives a
/// slot back keeps it (one per thread and bulkhead, in the last four bulkheads the thread used)
/// and takes it again on its next call with plain loads and stores of a word of its own. Kept
/// slots count as taken, so at most `max_concurrent` calls ever run at once, and
/// [`in_flight`](Self::in_flight) does not count them. A thread that ends, or moves on to a
/// fifth bulkhead, gives its kept slot back to the pool.
///
/// The first call that finds the pool empty ends this for good: it clears the bulkhead's
/// `biased` flag, forces a memory fence on every thread of the process (Linux's `membarrier`),
/// and takes every kept slot back into the pool. From then on every call counts in the shared
/// word, and waiters queue. A thread that took or kept its slot while the flag was being
/// cleared sees the flag cleared after its own store, and settles under the lock the revoke
/// holds: the slot is its own if the revoke did not collect it. Where `membarrier` is not
/// offered (another OS, a sandbox that refuses it) the bulkhead counts in the shared word from
/// the start.
///
/// # Examples
///
/// ```
/// use opero_core::{Bulkhead, BulkheadConfig};
///
/// let bulkhead = Bulkhead::new(&BulkheadConfig { max_concurrent: 1, max_queue: 0 }).unwrap();
/// let slot = bulkhead.enter_blocking().unwrap();
/// let full = bulkhead.enter_blocking().unwrap_err();
/// assert_eq!((full.max_concurrent, full.max_queue), (1, 0));
/// drop(slot);
/// assert!(bulkhead.enter_blocking().is_ok());
/// ```
pub struct Bulkhead {
    core: Arc<Core>,
}

/// The shared state; threads' local slots hold it weakly, to give a kept slot back when they
/// forget it.
struct Core {
    /// Names this bulkhead in threads' local slots; unique in the process, never reused.
    id: u64,
    config: BulkheadConfig,
    /// Slots out of the pool: in use, or kept by a thread.
    taken: AtomicUsize,
    /// Whether threads may keep a slot between calls; cleared once, for good ([`Bulkhead`]).
    biased: AtomicBool,
    /// Whether every slot is counted in the pool: never biased, or revoked with the kept slots
    /// back. A caller that finds the pool empty before this waits for the revoke under way.
    settled: AtomicBool,
    queued: AtomicUsize,
    /// The slots threads keep while biased. Its lock orders a thread that raced the revoke
    /// after the revoke.
    kept: Mutex<Vec<Arc<Kept>>>,
    /// Where sync callers wait; notified under its lock, so that a waiter that has just found
    /// every slot taken cannot miss the release that frees one.
    blocked: (Mutex<()>, Condvar),
    /// Where async callers wait.
    awaiting: Notify,
}

/// A thread's kept slot in one bulkhead.
#[derive(Default)]
struct Kept {
    /// 1 while the thread keeps a slot it is not using. Written only by its thread while the
    /// bulkhead is biased, and by the revoke (under the lock) after.
    held: AtomicUsize,
    /// Whether the revoke took this slot back into the pool.
    collected: AtomicBool,
}

impl std::fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulkhead")
            .field("config", &self.core.config)
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}

/// A slot in a [`Bulkhead`], given back when dropped.
#[derive(Debug)]
#[must_use = "the slot is given back when the permit is dropped"]
pub struct BulkheadPermit<'a> {
    bulkhead: &'a Bulkhead,
}

impl BulkheadPermit<'_> {
    /// Gives the slot back now: what dropping the permit does, but inline, where the drop
    /// glue of an optional permit is a call.
    #[inline(always)]
    pub(crate) fn release(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.bulkhead.core.release();
    }
}

impl Drop for BulkheadPermit<'_> {
    // The pipeline gives its slots back with `release`; a drop (a cancelled call, an unwind, a
    // user's permit) calls out, so that the drop glue of an optional permit, compiled into
    // every future that may hold one, stays a test and a call.
    #[inline]
    fn drop(&mut self) {
        self.bulkhead.core.release_out_of_line();
    }
}

/// A place in the queue, given back when the wait ends or is cancelled.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded data are counts that every holder leaves consistent; a panic elsewhere
    // does not make them wrong.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bulkhead {
    /// A bulkhead with every slot free; the config is validated.
    pub fn new(config: &BulkheadConfig) -> Result<Self, OperoError> {
        config.validate()?;
        static IDS: AtomicU64 = AtomicU64::new(1);
        let biased = crate::fence::available();
        Ok(Bulkhead {
            core: Arc::new(Core {
                id: IDS.fetch_add(1, Ordering::Relaxed),
                config: *config,
                taken: AtomicUsize::new(0),
                biased: AtomicBool::new(biased),
                settled: AtomicBool::new(!biased),
                queued: AtomicUsize::new(0),
                kept: Mutex::new(Vec::new()),
                blocked: (Mutex::new(()), Condvar::new()),
                awaiting: Notify::new(),
            }),
        })
    }

    /// The limits.
    pub fn config(&self) -> BulkheadConfig {
        self.core.config
    }

    /// Calls in flight now (slots threads keep between calls are free, not in flight).
    pub fn in_flight(&self) -> usize {
        let kept = lock(&self.core.kept);
        let idle: usize = kept.iter().map(|k| k.held.load(Ordering::SeqCst)).sum();
        self.core.taken.load(Ordering::SeqCst).saturating_sub(idle)
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.core.queued.load(Ordering::Acquire)
    }

    fn full(&self) -> BulkheadFull {
        BulkheadFull {
            max_concurrent: self.core.config.max_concurrent,
            max_queue: self.core.config.max_queue,
        }
    }

    /// A slot, if one is free.
    #[inline]
    pub(crate) fn try_slot(&self) -> Option<BulkheadPermit<'_>> {
        // Not `then_some`: a permit made for nothing would give back a slot when dropped.
        self.core
            .try_slot()
            .then(|| BulkheadPermit { bulkhead: self })
    }

    /// Takes a free slot, if one is, with no permit to hold it: the caller gives it back with
    /// [`release_slot`](Self::release_slot), or holds it in a permit from
    /// [`permit_for_slot`](Self::permit_for_slot). For a future that holds its slot as a flag
    /// rather than a permit (every caller moves the future, so its size is paid on every call).
    #[inline(always)]
    pub(crate) fn try_take_slot(&self) -> bool {
        self.core.try_slot()
    }

    /// Gives back a slot [`try_take_slot`](Self::try_take_slot) took.
    #[inline(always)]
    pub(crate) fn release_slot(&self) {
        self.core.release();
    }

    /// The permit of a slot [`try_take_slot`](Self::try_take_slot) took.
    pub(crate) fn permit_for_slot(&self) -> BulkheadPermit<'_> {
        BulkheadPermit { bulkhead: self }
    }

    /// A slot now, a place in the queue, or the refusal.
    fn try_enter(&self) -> Result<Result<BulkheadPermit<'_>, QueuePlace<'_>>, BulkheadFull> {
        if let Some(permit) = self.try_slot() {
            return Ok(Ok(permit));
        }
        let max = self.core.config.max_queue;
        self.core
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < max).then_some(q + 1)
            })
            .map_err(|_| self.full())?;
        Ok(Err(QueuePlace(&self.core.queued)))
    }

    /// A slot, waiting (without blocking a thread) in the queue when every slot is taken; the
    /// refusal when the queue is full too.
    pub async fn enter(&self) -> Result<BulkheadPermit<'_>, BulkheadFull> {
        let place = match self.try_enter()? {
            Ok(permit) => return Ok(permit),
            Err(place) => place,
        };
        loop {
            // Registered before the slot is looked for, so a release in between is not missed.
            let notified = self.core.awaiting.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(permit) = self.try_slot() {
                drop(place);
                return Ok(permit);
            }
            notified.await;
        }
    }

    /// A slot, blocking the thread in the queue when every slot is taken; the refusal when the
    /// queue is full too. Needs no async runtime.
    pub fn enter_blocking(&self) -> Result<BulkheadPermit<'_>, BulkheadFull> {
        let place = match self.try_enter()? {
            Ok(permit) => return Ok(permit),
            Err(place) => place,
        };
        let (lock_, cond) = &self.core.blocked;
        let mut held = lock(lock_);
        loop {
            if let Some(permit) = self.try_slot() {
                drop(held);
                drop(place);
                return Ok(permit);
            }
            held = cond.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// [`enter`](Self::enter), counting and logging a refusal.
    pub(crate) async fn enter_counted(
        &self,
        metrics: Option<Counters<'_>>,
    ) -> Result<BulkheadPermit<'_>, BulkheadFull> {
        self.enter()
            .await
            .inspect_err(|full| on_full(full, metrics))
    }

    /// [`enter_blocking`](Self::enter_blocking), counting and logging a refusal.
    pub(crate) fn enter_blocking_counted(
        &self,
        metrics: Option<Counters<'_>>,
    ) -> Result<BulkheadPermit<'_>, BulkheadFull> {
        self.enter_blocking()
            .inspect_err(|full| on_full(full, metrics))
    }
}

impl Core {
    /// A slot: the one this thread keeps, one from the pool, or, when the pool is empty while
    /// biased, one from the pool after the revoke took the kept ones back.
    #[inline(always)]
    fn try_slot(self: &Arc<Self>) -> bool {
        // No look at the flag first: once revoked, every word holds no slot (the revoke and the
        // settles leave each at 0), so the word answers alone.
        if local::take(self) {
            return true;
        }
        self.try_slot_shared()
    }

    /// [`try_slot`](Self::try_slot) once this thread keeps no slot: the pool, or the revoke.
    #[inline(never)]
    fn try_slot_shared(self: &Arc<Self>) -> bool {
        if self.try_pool() {
            return true;
        }
        if self.settled.load(Ordering::Acquire) {
            return false;
        }
        self.revoke();
        self.try_pool()
    }

    /// A slot from the pool.
    #[inline]
    fn try_pool(&self) -> bool {
        let max = self.config.max_concurrent;
        // SeqCst, with `give_back`: a waiter that counted itself queued and then finds no slot
        // is seen by the release that frees one (or sees that release's slot).
        self.taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back: kept by this thread while biased, else to the pool.
    #[inline(always)]
    fn release(self: &Arc<Self>) {
        if self.biased.load(Ordering::Relaxed) && local::keep(self) {
            return;
        }
        self.give_back(1);
    }

    #[inline(never)]
    fn release_out_of_line(self: &Arc<Self>) {
        self.release();
    }

    /// Slots back to the pool, waking a waiter of each kind if any wait.
    #[inline(never)]
    fn give_back(&self, n: usize) {
        self.taken.fetch_sub(n, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) != 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        // A woken waiter that loses the slot to another caller waits again; every release wakes
        // again, so a free slot never sits beside a waiter.
        self.awaiting.notify_one();
        let (lock_, cond) = &self.blocked;
        let _held = lock(lock_);
        cond.notify_one();
    }

    /// Ends the biased mode for good and takes every kept slot back into the pool, or waits for
    /// the revoke under way to do so; the caller then looks in the pool again. No caller waits
    /// in the queue before this: a caller queues only after it found the pool empty with the
    /// bulkhead settled, so there is nobody to wake.
    #[cold]
    #[inline(never)]
    fn revoke(&self) {
        let mut kept = lock(&self.kept);
        // Another caller may have revoked while this one waited for the lock.
        if !self.settled.load(Ordering::SeqCst) {
            self.collect(&mut kept);
        }
    }

    /// The revoke's work, under the lock of the kept slots: clears the flag, fences every
    /// thread, and takes the kept slots back into the pool; how many.
    fn collect(&self, kept: &mut Vec<Arc<Kept>>) -> usize {
        self.biased.store(false, Ordering::SeqCst);
        // Every thread now either sees the flag cleared at its next look, or has made its last
        // store to its slot visible, so each slot's word below is final.
        crate::fence::heavy();
        let mut back = 0;
        for k in kept.drain(..) {
            let held = k.held.swap(0, Ordering::SeqCst);
            k.collected.store(held != 0, Ordering::SeqCst);
            back += held;
        }
        // Counted under the lock: a thread that raced the revoke and finds its slot collected,
        // or that found the pool empty meanwhile, looks in the pool next and must find it there.
        self.taken.fetch_sub(back, Ordering::SeqCst);
        self.settled.store(true, Ordering::Release);
        back
    }

    /// A thread took its kept slot and then saw the revoke: the slot is its own unless the
    /// revoke took it first.
    #[cold]
    #[inline(never)]
    fn settle_take(&self, kept: &Kept) -> bool {
        let _revoked = lock(&self.kept);
        !kept.collected.load(Ordering::SeqCst)
    }

    /// A thread kept a slot and then saw the revoke: done if the revoke took it into the pool,
    /// else the caller gives it back (false).
    #[cold]
    #[inline(never)]
    fn settle_keep(&self, kept: &Kept) -> bool {
        let _revoked = lock(&self.kept);
        kept.held.swap(0, Ordering::SeqCst) == 0
    }

    /// A thread's first kept slot in this bulkhead, in its word `kept` (which no other
    /// bulkhead lists): listed for the revoke, holding the slot being given back. False when the
    /// bulkhead is revoked (the slot goes to the pool).
    #[cold]
    #[inline(never)]
    fn register(&self, kept: &Arc<Kept>) -> bool {
        let mut all = lock(&self.kept);
        if !self.biased.load(Ordering::SeqCst) {
            return false;
        }
        // The word may have served another bulkhead, whose revoke marked it.
        kept.collected.store(false, Ordering::SeqCst);
        kept.held.store(1, Ordering::SeqCst);
        all.push(Arc::clone(kept));
        true
    }

    /// Forgets a thread's kept slot (the thread forgets the bulkhead, or ends), giving the slot
    /// back to the pool if it still holds one.
    fn forget(&self, kept: &Arc<Kept>) {
        let held = {
            let mut all = lock(&self.kept);
            all.retain(|k| !Arc::ptr_eq(k, kept));
            kept.held.swap(0, Ordering::SeqCst)
        };
        if held != 0 {
            self.give_back(held);
        }
    }
}

/// Each thread's kept slots, in the few bulkheads it used last.
mod local {
    use super::{Core, Kept};
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{compiler_fence, Ordering};
    use std::sync::{Arc, Weak};

    /// Bulkheads a thread keeps a slot in at once; a thread that uses more forgets the oldest.
    const WAYS: usize = 4;

    /// One of a thread's kept slots: its word, made once per thread and bound to one bulkhead
    /// at a time, so that a call reads the word without a borrow of the thread's slots (a
    /// `RefCell`'s count, written twice a look, cost a no-fault call a third of its time).
    struct Way {
        /// The id of the bulkhead the word is bound to; 0 while unbound (ids start at 1).
        id: Cell<u64>,
        kept: Arc<Kept>,
        core: RefCell<Weak<Core>>,
    }

    impl Way {
        /// Unbinds the word, giving its slot back if it holds one; a bulkhead that is gone has no
        /// pool to give it back to.
        fn unbind(&self) {
            self.id.set(0);
            let core = std::mem::take(&mut *self.core.borrow_mut());
            if let Some(core) = core.upgrade() {
                core.forget(&self.kept);
            }
        }
    }

    struct Local {
        ways: [Way; WAYS],
        /// The way bound longest ago: the next to serve a new bulkhead.
        oldest: Cell<usize>,
    }

    impl Drop for Local {
        fn drop(&mut self) {
            for way in &self.ways {
                way.unbind();
            }
        }
    }

    thread_local! {
        static LOCAL: Local = Local {
            ways: std::array::from_fn(|_| Way {
                id: Cell::new(0),
                kept: Arc::new(Kept::default()),
                core: RefCell::new(Weak::new()),
            }),
            oldest: Cell::new(0),
        };
    }

    /// Runs `f` on the slot this thread keeps in `core`: `Ok(None)` when it keeps none there,
    /// `Err` when its slots cannot be reached (the thread is ending).
    #[inline(always)]
    fn with_kept<R>(core: &Core, f: impl FnOnce(&Kept) -> R) -> Result<Option<R>, ()> {
        LOCAL
            .try_with(|local| {
                local
                    .ways
                    .iter()
                    .find(|w| w.id.get() == core.id)
                    .map(|w| f(&w.kept))
            })
            .map_err(|_| ())
    }

    /// Takes the slot this thread keeps in `core`, if it keeps one.
    #[inline(always)]
    pub(super) fn take(core: &Arc<Core>) -> bool {
        let took = with_kept(core, |kept| {
            if kept.held.load(Ordering::Relaxed) == 0 {
                return false;
            }
            kept.held.store(0, Ordering::Relaxed);
            // The store before the look at the flag; the revoke's heavy fence orders them on
            // the processor (`Bulkhead`'s docs).
            compiler_fence(Ordering::SeqCst);
            core.biased.load(Ordering::Relaxed) || core.settle_take(kept)
        });
        took == Ok(Some(true))
    }

    /// Keeps a slot being given back, if this thread keeps none in `core` yet; false when it
    /// goes to the pool.
    #[inline(always)]
    pub(super) fn keep(core: &Arc<Core>) -> bool {
        let kept = with_kept(core, |kept| {
            if kept.held.load(Ordering::Relaxed) != 0 {
                return false;
            }
            kept.held.store(1, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            core.biased.load(Ordering::Relaxed) || core.settle_keep(kept)
        });
        match kept {
            Ok(Some(kept)) => kept,
            Ok(None) => first_keep(core),
            // The thread is ending: its slots go back to the pools.
            Err(()) => false,
        }
    }

    /// This thread's first slot kept in `core`: the way bound longest ago is unbound (its
    /// bulkhead forgotten) and bound to `core`. (A bulkhead revoked since the caller looked at
    /// its flag refuses the word, which is then left unbound.)
    #[cold]
    #[inline(never)]
    fn first_keep(core: &Arc<Core>) -> bool {
        LOCAL
            .try_with(|local| {
                let at = local.oldest.get();
                let way = &local.ways[at];
                way.unbind();
                if !core.register(&way.kept) {
                    return false;
                }
                way.id.set(core.id);
                *way.core.borrow_mut() = Arc::downgrade(core);
                local.oldest.set((at + 1) % WAYS);
                true
            })
            // The thread is ending: the slot goes back to the pool rather than being kept.
            .unwrap_or(false)
    }
}

#[cold]
fn on_full(full: &BulkheadFull, metrics: Option<Counters<'_>>) {
    if let Some(m) = metrics {
        m.bulkhead_rejection();
    }
    tracing::warn!(
        target: "opero",
        max_concurrent = full.max_concurrent,
        max_queue = full.max_queue,
        "bulkhead full; call refused"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn threads_and_tasks_together_never_exceed_the_slots_and_all_get_one() {
        // Sync and async callers queue on the same slots; a lost wake-up would hang this test.
        let b = bulkhead(2, 64);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let enter = |inside: &AtomicUsize, most: &AtomicUsize| {
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
        };
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (b, inside, most) = (Arc::clone(&b), Arc::clone(&inside), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let _slot = b.enter_blocking().unwrap();
                        enter(&inside, &most);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // Async callers on two runtimes of their own threads, two tasks each.
        let runtimes: Vec<_> = (0..2)
            .map(|_| {
                let (b, inside, most) = (Arc::clone(&b), Arc::clone(&inside), Arc::clone(&most));
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let tasks: Vec<_> = (0..2)
                            .map(|_| {
                                let (b, inside, most) =
                                    (Arc::clone(&b), Arc::clone(&inside), Arc::clone(&most));
                                tokio::spawn(async move {
                                    for _ in 0..500 {
                                        let _slot = b.enter().await.unwrap();
                                        enter(&inside, &most);
                                        tokio::task::yield_now().await;
                                        inside.fetch_sub(1, Ordering::SeqCst);
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                    });
                })
            })
            .collect();
        for t in threads.into_iter().chain(runtimes) {
            t.join().unwrap();
        }
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "{} in flight",
            most.load(Ordering::SeqCst)
        );
        assert_eq!((b.in_flight(), b.queued()), (0, 0));
    }

    fn bulkhead(max_concurrent: usize, max_queue: usize) -> Arc<Bulkhead> {
        Arc::new(
            Bulkhead::new(&BulkheadConfig {
                max_concurrent,
                max_queue,
            })
            .unwrap(),
        )
    }

    #[test]
    fn a_queue_of_zero_refuses_at_once_when_full() {
        let b = bulkhead(2, 0);
        let _a = b.enter_blocking().unwrap();
        let _b = b.enter_blocking().unwrap();
        assert_eq!(
            b.enter_blocking().unwrap_err(),
            BulkheadFull {
                max_concurrent: 2,
                max_queue: 0
            }
        );
        assert_eq!(b.in_flight(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_calls_wait_in_order_and_a_cancelled_wait_gives_its_place_back() {
        let b = bulkhead(1, 1);
        let held = b.enter().await.unwrap();
        let waiting = {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                let _slot = b.enter().await.unwrap();
                tokio::time::Instant::now()
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(b.queued(), 1);
        assert!(b.enter().await.is_err(), "the queue of one is full");
        // A wait that is dropped leaves the queue.
        let cancelled = tokio::time::timeout(Duration::from_millis(1), async {
            let _ = b.enter().await;
        })
        .await;
        assert!(cancelled.is_ok(), "refused at once, not queued");
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert_eq!(
            waiting.await.unwrap() - start,
            Duration::from_millis(50),
            "the queued call starts when the slot is freed"
        );
        assert_eq!((b.in_flight(), b.queued()), (0, 0));
    }

    #[test]
    fn sync_callers_block_in_the_queue_until_a_slot_frees() {
        let b = bulkhead(1, 4);
        let held = b.enter_blocking().unwrap();
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                let _slot = b.enter_blocking().unwrap();
            })
        };
        while b.queued() == 0 {
            std::thread::yield_now();
        }
        drop(held);
        waiter.join().unwrap();
        assert_eq!((b.in_flight(), b.queued()), (0, 0));
    }

    /// Slots out of the pool, kept ones included.
    fn taken(b: &Bulkhead) -> usize {
        b.core.taken.load(Ordering::SeqCst)
    }

    fn biased(b: &Bulkhead) -> bool {
        b.core.biased.load(Ordering::SeqCst)
    }

    /// Enters and leaves on a thread of its own, which keeps the slot while biased.
    fn call_on_a_thread_that_stays(b: &Arc<Bulkhead>) -> std::sync::mpsc::SyncSender<()> {
        let (entered, wait) = std::sync::mpsc::sync_channel(0);
        let (end, ended) = std::sync::mpsc::sync_channel::<()>(0);
        let b = Arc::clone(b);
        std::thread::spawn(move || {
            drop(b.enter_blocking().unwrap());
            entered.send(()).unwrap();
            let _ = ended.recv();
        });
        wait.recv().unwrap();
        end
    }

    #[test]
    fn a_thread_keeps_its_slot_between_calls_and_a_full_pool_takes_it_back() {
        let b = bulkhead(2, 0);
        if !biased(&b) {
            return; // no heavy fence here: every call counts in the pool, as the tests above show
        }
        let end = call_on_a_thread_that_stays(&b);
        // The other thread keeps its slot: taken, yet not in flight.
        assert_eq!((taken(&b), b.in_flight()), (1, 0));
        let first = b.enter_blocking().unwrap();
        assert!(biased(&b), "the pool still had a slot");
        // The pool is empty now; the kept slot is taken back instead of refusing this call.
        let second = b.enter_blocking().unwrap();
        assert!(!biased(&b), "revoked for good");
        assert_eq!((taken(&b), b.in_flight()), (2, 2));
        assert_eq!(b.enter_blocking().unwrap_err().max_concurrent, 2);
        drop((first, second));
        assert_eq!(
            (taken(&b), b.in_flight()),
            (0, 0),
            "revoked: slots go to the pool"
        );
        end.send(()).unwrap();
    }

    #[test]
    fn a_call_that_finds_the_pool_empty_during_a_revoke_waits_for_the_kept_slots() {
        let b = bulkhead(2, 0);
        if !biased(&b) {
            return; // no heavy fence here: nothing is ever kept
        }
        let end = call_on_a_thread_that_stays(&b);
        let _mine = b.enter_blocking().unwrap();
        // A revoke under way: the flag is cleared, the kept slot not yet back.
        let mut kept = lock(&b.core.kept);
        b.core.biased.store(false, Ordering::SeqCst);
        let caller = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.enter_blocking().is_ok())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!caller.is_finished(), "neither refused nor admitted yet");
        assert_eq!(b.core.collect(&mut kept), 1);
        drop(kept);
        assert!(caller.join().unwrap(), "the kept slot, not a refusal");
        end.send(()).unwrap();
    }

    #[test]
    fn a_thread_that_forgets_a_bulkhead_leaves_the_other_threads_kept_slots_to_the_revoke() {
        let b = bulkhead(2, 0);
        let end = call_on_a_thread_that_stays(&b);
        drop(b.enter_blocking().unwrap());
        // Four more bulkheads: this thread forgets `b` and gives its own kept slot back.
        let others: Vec<_> = (0..4).map(|_| bulkhead(1, 0)).collect();
        for o in &others {
            drop(o.enter_blocking().unwrap());
        }
        let kept = usize::from(biased(&b));
        assert_eq!(taken(&b), kept, "only the other thread's slot is kept");
        // Both slots for this thread: the second is the other thread's, taken back.
        let first = b.enter_blocking().unwrap();
        let second = b.enter_blocking().unwrap();
        assert_eq!(b.in_flight(), 2);
        drop((first, second));
        end.send(()).unwrap();
    }

    #[test]
    fn a_thread_that_ends_gives_its_kept_slot_back() {
        let b = bulkhead(1, 0);
        let end = call_on_a_thread_that_stays(&b);
        let kept = if biased(&b) { 1 } else { 0 };
        assert_eq!(taken(&b), kept);
        drop(end);
        // The thread ends once its channel closes; its local slots are dropped as it ends.
        for _ in 0..10_000 {
            if taken(&b) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(taken(&b), 0);
        // Given back to the pool, not taken back by a revoke.
        let _slot = b.enter_blocking().unwrap();
        assert_eq!(biased(&b), crate::fence::available());
    }

    #[test]
    fn a_thread_keeps_slots_in_its_last_four_bulkheads_and_gives_the_oldest_back() {
        let all: Vec<_> = (0..5).map(|_| bulkhead(1, 0)).collect();
        let keeps = crate::fence::available();
        for (i, b) in all.iter().enumerate() {
            drop(b.enter_blocking().unwrap());
            assert_eq!(taken(b), usize::from(keeps), "bulkhead {i} keeps its slot");
        }
        // The fifth made the thread forget the first, whose slot is back in its pool.
        let counts: Vec<_> = all.iter().map(|b| taken(b)).collect();
        let k = usize::from(keeps);
        assert_eq!(counts, [0, k, k, k, k]);
        // Each kept slot is this thread's again on its next call, and only one is kept.
        for b in &all[1..] {
            let slot = b.enter_blocking().unwrap();
            assert_eq!((taken(b), b.in_flight()), (1, 1));
            drop(slot);
        }
        assert!(all.iter().all(|b| biased(b) == keeps));
    }

    #[test]
    fn a_revoked_bulkhead_takes_no_kept_slot_from_the_others() {
        // Run on a thread of its own: the test thread's ways may hold other tests' bulkheads.
        std::thread::spawn(|| {
            let kept: Vec<_> = (0..4).map(|_| bulkhead(1, 0)).collect();
            for b in &kept {
                drop(b.enter_blocking().unwrap());
            }
            let revoked = bulkhead(1, 0);
            let slot = revoked.enter_blocking().unwrap();
            assert!(revoked.enter_blocking().is_err(), "full: the revoke runs");
            assert!(!biased(&revoked));
            // Given back to its pool, not kept: no way is taken for it.
            drop(slot);
            assert_eq!(taken(&revoked), 0);
            let k = usize::from(crate::fence::available());
            let counts: Vec<_> = kept.iter().map(|b| taken(b)).collect();
            assert_eq!(counts, [k; 4], "the four kept slots stay kept");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_nested_call_takes_a_second_slot_and_only_one_is_kept() {
        let b = bulkhead(2, 0);
        let outer = b.enter_blocking().unwrap();
        let inner = b.enter_blocking().unwrap();
        assert_eq!(b.in_flight(), 2);
        drop(inner);
        drop(outer);
        let kept = usize::from(biased(&b));
        assert_eq!((taken(&b), b.in_flight()), (kept, 0));
    }

    #[test]
    fn threads_racing_the_revoke_never_exceed_the_slots() {
        // Many rounds of new bulkheads, so that threads keep slots and then race the revoke
        // while they take and keep them.
        for _ in 0..50 {
            let b = bulkhead(3, 16);
            let inside = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..6)
                .map(|_| {
                    let (b, inside, most) =
                        (Arc::clone(&b), Arc::clone(&inside), Arc::clone(&most));
                    std::thread::spawn(move || {
                        for _ in 0..200 {
                            let Ok(_slot) = b.enter_blocking() else {
                                continue;
                            };
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert!(most.load(Ordering::SeqCst) <= 3);
            // Every thread ended, so no slot is kept or in use.
            assert_eq!((taken(&b), b.in_flight(), b.queued()), (0, 0, 0));
        }
    }

    #[test]
    fn an_empty_bulkhead_is_refused_by_name() {
        let err = Bulkhead::new(&BulkheadConfig {
            max_concurrent: 0,
            max_queue: 3,
        })
        .unwrap_err();
        assert_eq!(err.field(), Some("bulkhead.max_concurrent"));
    }
}
