//! The executors: [`ThreadExecutor`], [`RayonExecutor`], [`TokioExecutor`], and the enums that
//! pick one by [`Mode`] at run time.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use opero_core::{AsyncExecutor, ErrorKind, Executor, OperoError, UnitHandle, UnitLost};
use rayon::prelude::*;

use crate::claims::{self, Pace};
use crate::config::{check_workers, Mode};
use crate::slots::ThreadSlot;

// ===== impl ThreadExecutor =====

/// Blocking work on `workers` OS threads that live for one map. The calling thread is one of the
/// workers.
///
/// Workers claim items in chunks, with one atomic add (or, from an iterator, one lock) per chunk,
/// and write each output straight into its place: no lock per item. A chunk is large while items
/// run fast and one item once they take long (over about 80 µs a chunk), so a slow item holds back
/// at most a few tens of microseconds of the items claimed with it, and a chunk is never more than
/// a share of what is left, so the last items still spread over every worker.
///
/// # Examples
///
/// ```
/// use opero_core::Executor;
/// use opero_parallel::ThreadExecutor;
///
/// let pool = ThreadExecutor::new(3).unwrap();
/// let squares = pool.map_ordered((0..10).collect(), |_, x: u64| x * x);
/// assert_eq!(squares[9], 81);
/// assert_eq!(ThreadExecutor::new(0).unwrap_err().field(), Some("workers"));
/// ```
#[derive(Clone, Debug)]
pub struct ThreadExecutor {
    workers: usize,
}

impl ThreadExecutor {
    /// A pool of `workers` threads; zero is an error naming `workers`.
    pub fn new(workers: usize) -> Result<Self, OperoError> {
        check_workers(workers)?;
        Ok(ThreadExecutor { workers })
    }
}

impl ThreadExecutor {
    /// Runs `body` on `threads` workers (at least the calling thread, which is slot 0) and
    /// returns when every one has returned. Each thread is a worker slot, for the per-worker rate
    /// limiters (`slots`).
    fn run_workers(&self, threads: usize, body: &(dyn Fn() + Sync)) {
        std::thread::scope(|scope| {
            for n in 1..threads {
                let spawned = std::thread::Builder::new()
                    .name(format!("opero-opmap-{n}"))
                    .spawn_scoped(scope, move || {
                        let _slot = ThreadSlot::enter(n);
                        body();
                    });
                if let Err(e) = spawned {
                    // Fewer threads is slower but still correct: the calling thread always works.
                    tracing::warn!(target: "opero", error = %e, threads = n, "could not start every opmap thread");
                    break;
                }
            }
            let _slot = ThreadSlot::enter(0);
            body();
        });
    }

    /// How many threads `len` items need: no more than there are items.
    fn threads_for(&self, len: usize) -> usize {
        len.min(self.workers)
    }
}

impl Executor for ThreadExecutor {
    fn workers(&self) -> usize {
        self.workers
    }

    fn for_each<I, W>(&self, items: I, work: W)
    where
        I: Iterator + Send,
        I::Item: Send,
        W: Fn(usize, I::Item) + Sync,
    {
        let threads = match items.size_hint() {
            (_, Some(0)) => return,
            (_, Some(upper)) => self.threads_for(upper),
            (_, None) => self.workers,
        };
        let source = Mutex::new(items.enumerate());
        // One lock per chunk, not per item: the chunk is taken from the iterator under the lock
        // and run outside it.
        let pull = || {
            let mut pace = Pace::new();
            let mut chunk = Vec::new();
            loop {
                match source.lock() {
                    Ok(mut items) => {
                        let remaining = items.size_hint().1.unwrap_or(usize::MAX);
                        let size = pace.next(remaining, threads);
                        chunk.extend(items.by_ref().take(size));
                    }
                    // A poisoned lock means the caller's iterator panicked in another worker;
                    // that worker re-raises it when the scope ends, so the others just stop.
                    Err(_) => break,
                }
                if chunk.is_empty() {
                    break;
                }
                for (index, item) in chunk.drain(..) {
                    work(index, item);
                }
                pace.ran();
            }
        };
        self.run_workers(threads, &pull);
    }

    fn map_ordered<T, O, W>(&self, items: Vec<T>, work: W) -> Vec<O>
    where
        T: Send,
        O: Send,
        W: Fn(usize, T) -> O + Sync,
    {
        if items.is_empty() {
            return Vec::new();
        }
        let threads = self.threads_for(items.len());
        claims::map_owned(items, threads, |body| self.run_workers(threads, body), work)
    }

    fn map_slice<T, O, W>(&self, items: &[T], work: W) -> Vec<O>
    where
        T: Sync,
        O: Send,
        W: Fn(&T) -> O + Sync,
    {
        if items.is_empty() {
            return Vec::new();
        }
        let threads = self.threads_for(items.len());
        claims::collect_indexed(
            items.len(),
            threads,
            |body| self.run_workers(threads, body),
            |i| work(&items[i]),
        )
    }
}

// ===== impl RayonExecutor =====

/// CPU-bound work on a rayon pool of `workers` threads of its own (not rayon's global pool), with
/// rayon's work stealing. Clones share the pool.
///
/// # Examples
///
/// ```
/// use opero_core::Executor;
/// use opero_parallel::RayonExecutor;
///
/// let pool = RayonExecutor::new(2).unwrap();
/// let sums = pool.map_ordered(vec![vec![1, 2], vec![3, 4]], |_, v: Vec<u32>| v.iter().sum::<u32>());
/// assert_eq!(sums, [3, 7]);
/// ```
#[derive(Clone)]
pub struct RayonExecutor {
    pool: Arc<rayon::ThreadPool>,
}

impl RayonExecutor {
    /// A new pool of `workers` threads; zero is an error naming `workers`.
    pub fn new(workers: usize) -> Result<Self, OperoError> {
        check_workers(workers)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|n| format!("opero-rayon-{n}"))
            .build()
            .map_err(|e| {
                OperoError::new(ErrorKind::Executor, "cannot start the rayon pool").with_source(e)
            })?;
        Ok(RayonExecutor {
            pool: Arc::new(pool),
        })
    }

    /// Runs on a pool the caller built (and may share with other work).
    pub fn with_pool(pool: Arc<rayon::ThreadPool>) -> Self {
        RayonExecutor { pool }
    }
}

impl fmt::Debug for RayonExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RayonExecutor")
            .field("workers", &self.pool.current_num_threads())
            .finish()
    }
}

impl Executor for RayonExecutor {
    fn workers(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn for_each<I, W>(&self, items: I, work: W)
    where
        I: Iterator + Send,
        I::Item: Send,
        W: Fn(usize, I::Item) + Sync,
    {
        self.pool.install(|| {
            items
                .enumerate()
                .par_bridge()
                .for_each(|(index, item)| work(index, item))
        });
    }

    fn map_ordered<T, O, W>(&self, items: Vec<T>, work: W) -> Vec<O>
    where
        T: Send,
        O: Send,
        W: Fn(usize, T) -> O + Sync,
    {
        // rayon's indexed collect writes each output straight into its place: no slot, no lock.
        self.pool.install(|| {
            items
                .into_par_iter()
                .enumerate()
                .map(|(index, item)| work(index, item))
                .collect()
        })
    }

    fn map_slice<T, O, W>(&self, items: &[T], work: W) -> Vec<O>
    where
        T: Sync,
        O: Send,
        W: Fn(&T) -> O + Sync,
    {
        self.pool.install(|| items.par_iter().map(&work).collect())
    }
}

// ===== impl TokioExecutor =====

/// Async work as tokio tasks on the runtime of the caller, so that the items of one map run on
/// every thread of a multi-thread runtime. Outside a tokio runtime the units are polled in the
/// caller's task instead (retry delays and rate-limit waits still need tokio's timer).
///
/// # Examples
///
/// ```
/// use opero_core::AsyncExecutor;
/// use opero_parallel::TokioExecutor;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let tasks = TokioExecutor::new(100).unwrap();
/// assert_eq!(tasks.spawn(async { 6 * 7 }).await.unwrap(), 42);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct TokioExecutor {
    workers: usize,
}

impl TokioExecutor {
    /// `workers` tasks in flight; zero is an error naming `workers`.
    pub fn new(workers: usize) -> Result<Self, OperoError> {
        check_workers(workers)?;
        Ok(TokioExecutor { workers })
    }
}

impl AsyncExecutor for TokioExecutor {
    fn workers(&self) -> usize {
        self.workers
    }

    fn spawn<F>(&self, unit: F) -> UnitHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(unit);
                Box::pin(async move { task.await.map_err(|e| UnitLost(e.to_string())) })
            }
            Err(_) => Box::pin(async move { Ok(unit.await) }),
        }
    }
}

// ===== the enums that pick an executor by mode =====

/// The blocking executor of a [`Mode`]: thread or rayon (and, later, process).
///
/// # Examples
///
/// ```
/// use opero_core::Executor;
/// use opero_parallel::{AnyExecutor, Mode};
///
/// let executor = AnyExecutor::new(Mode::Rayon, 2).unwrap();
/// assert_eq!(executor.workers(), 2);
/// assert_eq!(AnyExecutor::new(Mode::Async, 2).unwrap_err().field(), Some("mode"));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyExecutor {
    /// [`ThreadExecutor`].
    Thread(ThreadExecutor),
    /// [`RayonExecutor`].
    Rayon(RayonExecutor),
}

impl AnyExecutor {
    /// The executor of `mode` with `workers`; an async mode, a mode not available yet or zero
    /// workers is an error naming `mode` or `workers`.
    pub fn new(mode: Mode, workers: usize) -> Result<Self, OperoError> {
        check_workers(workers)?;
        mode.check_available()?;
        match mode {
            Mode::Thread => Ok(AnyExecutor::Thread(ThreadExecutor::new(workers)?)),
            Mode::Rayon => Ok(AnyExecutor::Rayon(RayonExecutor::new(workers)?)),
            Mode::Process | Mode::AsyncProcess => Err(OperoError::invalid_config(
                "mode",
                mode,
                "worker processes run a named function: build with `wrap_process` or `wrap_process_async`",
            )),
            _ => Err(OperoError::invalid_config(
                "mode",
                mode,
                "runs async functions; wrap them with `wrap_async`, or pick \"thread\" or \"rayon\" for blocking ones",
            )),
        }
    }
}

impl Executor for AnyExecutor {
    fn workers(&self) -> usize {
        match self {
            AnyExecutor::Thread(x) => x.workers(),
            AnyExecutor::Rayon(x) => x.workers(),
        }
    }

    fn for_each<I, W>(&self, items: I, work: W)
    where
        I: Iterator + Send,
        I::Item: Send,
        W: Fn(usize, I::Item) + Sync,
    {
        match self {
            AnyExecutor::Thread(x) => x.for_each(items, work),
            AnyExecutor::Rayon(x) => x.for_each(items, work),
        }
    }

    fn map_ordered<T, O, W>(&self, items: Vec<T>, work: W) -> Vec<O>
    where
        T: Send,
        O: Send,
        W: Fn(usize, T) -> O + Sync,
    {
        match self {
            AnyExecutor::Thread(x) => x.map_ordered(items, work),
            AnyExecutor::Rayon(x) => x.map_ordered(items, work),
        }
    }

    fn map_slice<T, O, W>(&self, items: &[T], work: W) -> Vec<O>
    where
        T: Sync,
        O: Send,
        W: Fn(&T) -> O + Sync,
    {
        match self {
            AnyExecutor::Thread(x) => x.map_slice(items, work),
            AnyExecutor::Rayon(x) => x.map_slice(items, work),
        }
    }
}

/// The async executor of a [`Mode`]: tokio tasks (and, later, worker processes).
///
/// # Examples
///
/// ```
/// use opero_core::AsyncExecutor;
/// use opero_parallel::{AnyAsyncExecutor, Mode};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let executor = AnyAsyncExecutor::new(Mode::Async, 16).unwrap();
/// assert_eq!(executor.workers(), 16);
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyAsyncExecutor {
    /// [`TokioExecutor`].
    Tokio(TokioExecutor),
}

impl AnyAsyncExecutor {
    /// The executor of `mode` with `workers`; a blocking mode, a mode not available yet or zero
    /// workers is an error naming `mode` or `workers`.
    pub fn new(mode: Mode, workers: usize) -> Result<Self, OperoError> {
        check_workers(workers)?;
        mode.check_available()?;
        match mode {
            Mode::Async => Ok(AnyAsyncExecutor::Tokio(TokioExecutor::new(workers)?)),
            Mode::Process | Mode::AsyncProcess => Err(OperoError::invalid_config(
                "mode",
                mode,
                "worker processes run a named function: build with `wrap_process` or `wrap_process_async`",
            )),
            _ => Err(OperoError::invalid_config(
                "mode",
                mode,
                "runs blocking functions; wrap them with `wrap`, or pick \"async\" for async ones",
            )),
        }
    }
}

impl AsyncExecutor for AnyAsyncExecutor {
    fn workers(&self) -> usize {
        match self {
            AnyAsyncExecutor::Tokio(x) => x.workers(),
        }
    }

    fn spawn<F>(&self, unit: F) -> UnitHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            AnyAsyncExecutor::Tokio(x) => x.spawn(unit),
        }
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn thread_pool_never_runs_more_than_its_workers() {
        let pool = ThreadExecutor::new(3).unwrap();
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        pool.for_each(0..30, |_, _| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn every_executor_maps_in_order() {
        let items: Vec<u32> = (0..1000).collect();
        for exec in [
            AnyExecutor::new(Mode::Thread, 4),
            AnyExecutor::new(Mode::Rayon, 4),
        ] {
            let exec = exec.unwrap();
            let out = exec.map_ordered(items.clone(), |i, x| (i as u32, x + 1));
            assert!(out
                .iter()
                .enumerate()
                .all(|(i, &(j, x))| i as u32 == j && x == j + 1));
            let seen = Mutex::new(Vec::new());
            exec.for_each(items.clone().into_iter(), |i, _| lock(&seen).push(i));
            let mut seen = seen.into_inner().unwrap();
            seen.sort_unstable();
            assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn modes_are_checked() {
        assert_eq!(
            AnyExecutor::new(Mode::Async, 2).unwrap_err().field(),
            Some("mode")
        );
        assert_eq!(
            AnyAsyncExecutor::new(Mode::Rayon, 2).unwrap_err().field(),
            Some("mode")
        );
        let err = AnyExecutor::new(Mode::Process, 2).unwrap_err();
        assert_eq!(err.field(), Some("mode"));
        assert_eq!(
            AnyExecutor::new(Mode::Thread, 0).unwrap_err().field(),
            Some("workers")
        );
    }
}
