//! The bulkhead: [`BulkheadConfig`] and [`Bulkhead`], which lets at most `max_concurrent` calls
//! run at once and at most `max_queue` more wait for a slot; past that a call is refused with
//! [`BulkheadFull`], which names both limits.
//!
//! Sync callers wait by blocking their thread, async callers by awaiting; both forms share one
//! count and one first-come, first-served queue, and neither needs an async runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

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
    /// Slots taken. An uncontended call takes and gives back its slot with one atomic operation
    /// each; waiters are woken only when the queue is not empty.
    in_flight: AtomicUsize,
    queued: AtomicUsize,
    /// Where sync callers wait; notified under its lock, so that a waiter that has just found
    /// every slot taken cannot miss the release that frees one.
    blocked: (Mutex<()>, Condvar),
    /// Where async callers wait.
    awaiting: Notify,
    config: BulkheadConfig,
}

impl std::fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulkhead")
            .field("config", &self.config)
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

impl Drop for BulkheadPermit<'_> {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

/// A place in the queue, given back when the wait ends or is cancelled.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    /// A bulkhead with every slot free; the config is validated.
    pub fn new(config: &BulkheadConfig) -> Result<Self, OperoError> {
        config.validate()?;
        Ok(Bulkhead {
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            blocked: (Mutex::new(()), Condvar::new()),
            awaiting: Notify::new(),
            config: *config,
        })
    }

    /// The limits.
    pub fn config(&self) -> BulkheadConfig {
        self.config
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn full(&self) -> BulkheadFull {
        BulkheadFull {
            max_concurrent: self.config.max_concurrent,
            max_queue: self.config.max_queue,
        }
    }

    /// A slot, if one is free.
    #[inline]
    fn try_slot(&self) -> Option<BulkheadPermit<'_>> {
        let max = self.config.max_concurrent;
        // SeqCst, with `release`: a waiter that counted itself queued and then finds no slot is
        // seen by the release that frees one (or sees that release's slot).
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| BulkheadPermit { bulkhead: self })
    }

    /// Gives a slot back and wakes a waiter of each kind, if any wait.
    #[inline]
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) != 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        // A woken waiter that loses the slot to another caller waits again; every release wakes
        // again, so a free slot never sits beside a waiter.
        self.awaiting.notify_one();
        let (lock, cond) = &self.blocked;
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        cond.notify_one();
    }

    /// A slot now, a place in the queue, or the refusal.
    fn try_enter(&self) -> Result<Result<BulkheadPermit<'_>, QueuePlace<'_>>, BulkheadFull> {
        if let Some(permit) = self.try_slot() {
            return Ok(Ok(permit));
        }
        let max = self.config.max_queue;
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < max).then_some(q + 1)
            })
            .map_err(|_| self.full())?;
        Ok(Err(QueuePlace(&self.queued)))
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
            let notified = self.awaiting.notified();
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
        let (lock, cond) = &self.blocked;
        let mut held = lock.lock().unwrap_or_else(|p| p.into_inner());
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
