//! The callables an [`OpmapBuilder`](crate::OpmapBuilder) wraps a per-item function into:
//! [`Opmap`] for blocking functions, [`OpmapAsync`] for async ones.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::{self, Display};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use futures_util::future::Either;
use futures_util::{FutureExt, Stream, StreamExt};
use opero_core::{
    AllFailedError, AsyncExecutor, AttemptError, CacheFor, ErrorKind, Executor, Fallbacks,
    FunctionId, KeyFn, Opero, OperoError, RetryPolicy,
};

use crate::config::Mode;
use crate::executor::lock;
use crate::progress::{done, Progress};

/// What one item comes back as.
///
/// # Examples
///
/// ```
/// use opero_parallel::{opmap, ItemResult};
///
/// let halve = opmap().retries(0).progress(false)
///     .wrap(|x: &u32| if x % 2 == 0 { Ok(x / 2) } else { Err("odd") })
///     .unwrap();
/// let out: Vec<ItemResult<u32, &str>> = halve.call([4, 5]);
/// assert_eq!(out[0], Ok(2));
/// assert_eq!(out[1].as_ref().unwrap_err().last_error(), Some(&"odd"));
/// ```
pub type ItemResult<T, E> = Result<T, AllFailedError<E>>;

/// Everything a map needs, shared by the callable, its streams and its worker threads.
pub(crate) struct Inner<C, K, P, F, V, X> {
    pub(crate) opero: Opero<C, K, P>,
    pub(crate) function: FunctionId<'static>,
    pub(crate) fallbacks: Fallbacks<V>,
    pub(crate) f: F,
    pub(crate) executor: X,
    pub(crate) ordered: bool,
    pub(crate) progress: bool,
    pub(crate) mode: Mode,
    /// No cache and no rate limiter: a first attempt can run outside the pipeline.
    pub(crate) bare: bool,
    /// Async modes with a limiter per worker: the worker slot each item in flight runs in.
    pub(crate) slots: Option<Arc<crate::slots::Slots>>,
    /// Async mode: how long one attempt may run (blocking modes refuse a timeout when built).
    pub(crate) timeout: Option<std::time::Duration>,
}

/// The panic's message when its payload is text, as `panic!` and `unwrap` make it.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "panic with a payload that is not text".to_owned(),
        },
    }
}

/// A failure outside any attempt (the cache machinery panicked, a task was lost), as one attempt.
#[cold]
fn lost<E>(error: AttemptError<E>) -> AllFailedError<E> {
    tracing::warn!(target: "opero", "an opmap item failed outside its attempts");
    AllFailedError::single(0, 1, error)
}

fn log_start(mode: Mode, workers: usize, items: Option<usize>) {
    tracing::debug!(target: "opero", mode = %mode, workers, items, "opmap started");
}

// ===== impl Opmap =====

/// A blocking per-item function run over many items, each through the same pipeline, `workers` at
/// a time. Made by [`OpmapBuilder::wrap`](crate::OpmapBuilder::wrap); cloning is cheap and clones
/// share the pool, the cache, the rate limiter and the counters.
///
/// | form | gives | order |
/// |---|---|---|
/// | [`call`](Opmap::call) | `Vec<Result<T, AllFailedError<E>>>` | input order when `ordered`, else completion order |
/// | [`call_indexed`](Opmap::call_indexed) | `Vec<(index, Result)>` | the same |
/// | [`iter`](Opmap::iter) | an iterator of `(index, Result)`, memory bounded by `workers` | the same |
///
/// A panic in the function becomes that item's error ([`AttemptError::Panicked`], the panic's
/// message kept); every other item runs as usual.
///
/// # Examples
///
/// ```
/// use opero_parallel::opmap;
///
/// let lengths = opmap()
///     .workers(2)
///     .progress(false)
///     .wrap(|s: &String| if s.is_empty() { panic!("empty input") } else { Ok::<_, String>(s.len()) })
///     .unwrap();
/// let out = lengths.call(["ab".to_string(), String::new(), "abc".to_string()]);
/// assert_eq!(out[0], Ok(2));
/// assert!(out[1].as_ref().unwrap_err().to_string().contains("panicked: empty input"));
/// assert_eq!(out[2], Ok(3));
/// assert!(lengths.call(Vec::<String>::new()).is_empty());
/// ```
pub struct Opmap<C, K, P, F, V, X> {
    pub(crate) inner: Arc<Inner<C, K, P, F, V, X>>,
}

impl<C, K, P, F, V, X> Clone for Opmap<C, K, P, F, V, X> {
    fn clone(&self) -> Self {
        Opmap {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, K, P, F, V, X: Executor> fmt::Debug for Opmap<C, K, P, F, V, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opmap")
            .field("mode", &self.inner.mode)
            .field("workers", &self.inner.executor.workers())
            .field("ordered", &self.inner.ordered)
            .finish_non_exhaustive()
    }
}

impl<C, K, P, F, V, X> Inner<C, K, P, F, V, X>
where
    K: KeyFn,
{
    /// One item through the pipeline, its panics caught.
    #[inline(always)]
    fn run_item<I, T, E>(&self, item: &I) -> ItemResult<T, E>
    where
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        // Without a cache or a limiter the first attempt needs none of the pipeline: run it here,
        // small enough to inline into the executor's loop, and hand a failure to the pipeline.
        // Every other path comes back boxed, in a register: merged with the fast path through a
        // stack slot, it made rayon's loop store and reload each result (measured 3x slower on a
        // trivial function); the box costs one allocation on paths that hash, wait or retry.
        if let Some(value) = self.bare_value() {
            return self.run_item_bare(item, value);
        }
        *self.run_item_boxed(item, None)
    }

    /// The first fallback value, when the pipeline has neither cache nor limiter, so that a first
    /// attempt can run outside it.
    #[inline(always)]
    fn bare_value(&self) -> Option<&V> {
        if self.bare {
            self.fallbacks.as_slice().first()
        } else {
            None
        }
    }

    /// One item whose first attempt runs here, its failure handed to the pipeline.
    #[inline(always)]
    fn run_item_bare<I, T, E>(&self, item: &I, value: &V) -> ItemResult<T, E>
    where
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        match catch_unwind(AssertUnwindSafe(|| (self.f)(item, value))) {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => *self.run_item_boxed(item, Some(AttemptError::Failed(e))),
            Err(payload) => {
                *self.run_item_boxed(item, Some(AttemptError::Panicked(panic_message(payload))))
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn run_item_boxed<I, T, E>(
        &self,
        item: &I,
        first: Option<AttemptError<E>>,
    ) -> Box<ItemResult<T, E>>
    where
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        Box::new(self.run_item_in_pipeline(item, first))
    }

    /// The whole pipeline for one item. `first` is the failure of a first attempt already run
    /// outside it, which the pipeline books as its own first attempt (replayed, not run again).
    #[inline(never)]
    fn run_item_in_pipeline<I, T, E>(
        &self,
        item: &I,
        first: Option<AttemptError<E>>,
    ) -> ItemResult<T, E>
    where
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        let mut first = first;
        let attempt = |item: &I, value: &V| {
            if let Some(failure) = first.take() {
                return Err(failure);
            }
            match catch_unwind(AssertUnwindSafe(|| (self.f)(item, value))) {
                Ok(result) => result.map_err(AttemptError::Failed),
                Err(payload) => Err(AttemptError::Panicked(panic_message(payload))),
            }
        };
        let run = || {
            self.opero
                .call_attempts(self.function, item, self.fallbacks.as_slice(), attempt)
        };
        catch_unwind(AssertUnwindSafe(run))
            .unwrap_or_else(|payload| Err(lost(AttemptError::Panicked(panic_message(payload)))))
    }
}

impl<C, K, P, F, V, X> Opmap<C, K, P, F, V, X>
where
    K: KeyFn,
    P: Send + Sync,
    F: Send + Sync,
    V: Send + Sync,
    X: Executor,
{
    /// Runs every item and returns one result per item: in input order when `ordered` (the
    /// default), else in completion order (use [`call_indexed`](Self::call_indexed) to know which
    /// item each result belongs to).
    pub fn call<Items, I, T, E>(&self, items: Items) -> Vec<ItemResult<T, E>>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send,
        I: Send + Sync,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        if self.inner.ordered {
            self.call_ordered(items.into_iter().collect())
        } else {
            self.call_unordered(items.into_iter())
                .into_iter()
                .map(|(_, result)| result)
                .collect()
        }
    }

    /// As [`call`](Self::call), each result with the index of its item in the input.
    pub fn call_indexed<Items, I, T, E>(&self, items: Items) -> Vec<(usize, ItemResult<T, E>)>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send,
        I: Send + Sync,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        if self.inner.ordered {
            self.call_ordered(items.into_iter().collect())
                .into_iter()
                .enumerate()
                .collect()
        } else {
            self.call_unordered(items.into_iter())
        }
    }

    fn call_ordered<I, T, E>(&self, items: Vec<I>) -> Vec<ItemResult<T, E>>
    where
        I: Send + Sync,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        let inner = &*self.inner;
        log_start(inner.mode, inner.executor.workers(), Some(items.len()));
        match Progress::start(inner.progress, Some(items.len())) {
            // Without a bar the closure is the item alone, which keeps rayon's loop tight; with
            // no cache and no limiter the bare first attempt is chosen once, not per item.
            None => match inner.bare_value() {
                Some(value) => inner
                    .executor
                    .map_slice(&items, |item| inner.run_item_bare(item, value)),
                None => inner
                    .executor
                    .map_slice(&items, |item| inner.run_item(item)),
            },
            Some(progress) => inner.executor.map_slice(&items, |item| {
                let result = inner.run_item(item);
                progress.item_done(result.is_ok());
                result
            }),
        }
    }

    fn call_unordered<It, I, T, E>(&self, items: It) -> Vec<(usize, ItemResult<T, E>)>
    where
        It: Iterator<Item = I> + Send,
        I: Send,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send,
        F: Fn(&I, &V) -> Result<T, E>,
        P: RetryPolicy<E>,
    {
        let inner = &*self.inner;
        let len = exact_len(&items);
        log_start(inner.mode, inner.executor.workers(), len);
        let progress = Progress::start(inner.progress, len);
        let progress = progress.as_ref();
        let out = Mutex::new(Vec::with_capacity(items.size_hint().0));
        inner.executor.for_each(items, |index, item| {
            let result = inner.run_item(&item);
            done(progress, result.is_ok());
            lock(&out).push((index, result));
        });
        out.into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Streams the results as they come, pulling items from `items` only as workers free up, so
    /// that inputs too large to hold can be mapped: at most `2 × workers` items are started and
    /// not yet handed out at any time (in `thread` mode each worker may also hold a chunk taken
    /// from the input and not started, at most 1,024 items and one while items are slow). In input
    /// order when `ordered` (a slow item then holds the ones after it back), else in completion
    /// order.
    ///
    /// The map runs on a thread of its own; dropping the iterator stops it from taking new items
    /// (those already running finish in the background). An error only when that thread cannot
    /// start.
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_parallel::opmap;
    ///
    /// let square = opmap().workers(3).progress(false)
    ///     .wrap(|x: &u64| Ok::<_, String>(x * x)).unwrap();
    /// // An endless input: only what is consumed is computed.
    /// let first: Vec<u64> = square.iter(0u64..).unwrap().take(5).map(|(_, r)| r.unwrap()).collect();
    /// assert_eq!(first, [0, 1, 4, 9, 16]);
    /// ```
    pub fn iter<Items, I, T, E>(&self, items: Items) -> Result<OpmapIter<T, E>, OperoError>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send + 'static,
        I: Send + 'static,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send + 'static,
        F: Fn(&I, &V) -> Result<T, E> + 'static,
        P: RetryPolicy<E> + 'static,
        C: 'static,
        K: 'static,
        V: 'static,
        X: Clone + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let window = inner.executor.workers().saturating_mul(2);
        let gate = Arc::new(Gate::new(window));
        let items = Gated {
            items: items.into_iter(),
            gate: Arc::clone(&gate),
        };
        let turns = Arc::clone(&gate);
        let (sender, receiver) = mpsc::channel();
        let ordered = inner.ordered;
        std::thread::Builder::new()
            .name("opero-opmap-stream".to_owned())
            .spawn(move || {
                let len = exact_len(&items.items);
                log_start(inner.mode, inner.executor.workers(), len);
                let progress = Progress::start(inner.progress, len);
                let progress = progress.as_ref();
                inner.executor.for_each(items, |index, item| {
                    // Workers take items in chunks; the window is kept where an item starts.
                    if !turns.wait_turn(index) {
                        return;
                    }
                    let result = inner.run_item(&item);
                    done(progress, result.is_ok());
                    // The receiver is gone when the caller dropped the iterator; nothing to do.
                    let _ = sender.send((index, result));
                });
            })
            .map_err(|e| {
                OperoError::new(ErrorKind::Executor, "cannot start the opmap stream thread")
                    .with_source(e)
            })?;
        Ok(OpmapIter {
            receiver,
            gate,
            ordered,
            next_index: 0,
            pending: BTreeMap::new(),
        })
    }

    /// The pipeline every item goes through (its counters, cache and rate limiter).
    pub fn opero(&self) -> &Opero<C, K, P> {
        &self.inner.opero
    }
}

fn exact_len<It: Iterator>(items: &It) -> Option<usize> {
    match items.size_hint() {
        (lower, Some(upper)) if lower == upper => Some(lower),
        _ => None,
    }
}

// ===== the streaming iterator =====

/// Counts the results handed to the caller, so that no item starts while `window` items before
/// it are out: item `i` starts only once `i < handed_out + window`.
///
/// The window is kept where an item starts, not where it is taken from the input: executors take
/// items in chunks, and a worker blocked while taking would hold unstarted items the caller waits
/// for. Started this way, the lowest waiting item always has every item before it started, so it
/// is let through once the caller has taken those.
struct Gate {
    handed_out: Mutex<usize>,
    changed: Condvar,
    cancelled: AtomicBool,
    window: usize,
}

impl Gate {
    fn new(window: usize) -> Self {
        Gate {
            handed_out: Mutex::new(0),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
            window: window.max(1),
        }
    }

    fn handed_out(&self) {
        *lock(&self.handed_out) += 1;
        self.changed.notify_all();
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        // Taken between the store and the wake-up, so that no waiter checks the flag before the
        // store and sleeps after the wake-up.
        drop(lock(&self.handed_out));
        self.changed.notify_all();
    }

    /// Blocks until item `index` may start; false when the caller dropped the iterator.
    fn wait_turn(&self, index: usize) -> bool {
        let mut handed_out = lock(&self.handed_out);
        while !self.cancelled.load(Ordering::SeqCst)
            && index >= handed_out.saturating_add(self.window)
        {
            handed_out = self
                .changed
                .wait(handed_out)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !self.cancelled.load(Ordering::SeqCst)
    }
}

/// The input of a stream, which ends when the caller dropped the iterator.
struct Gated<It> {
    items: It,
    gate: Arc<Gate>,
}

impl<It: Iterator> Iterator for Gated<It> {
    type Item = It::Item;

    fn next(&mut self) -> Option<It::Item> {
        if self.gate.cancelled.load(Ordering::Relaxed) {
            return None;
        }
        self.items.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

/// The results of [`Opmap::iter`] as they come: `(index of the item in the input, its result)`.
///
/// # Examples
///
/// ```
/// use opero_parallel::opmap;
///
/// let square = opmap().workers(2).progress(false).wrap(|x: &u64| Ok::<_, String>(x * x)).unwrap();
/// let mut total = 0;
/// // Results as they finish, each with its input index; memory bounded by the workers.
/// for (index, result) in square.iter(1..=4).unwrap() {
///     assert!(index < 4);
///     total += result.unwrap();
/// }
/// assert_eq!(total, 1 + 4 + 9 + 16);
/// ```
pub struct OpmapIter<T, E> {
    receiver: mpsc::Receiver<(usize, ItemResult<T, E>)>,
    gate: Arc<Gate>,
    ordered: bool,
    next_index: usize,
    pending: BTreeMap<usize, ItemResult<T, E>>,
}

impl<T, E> Iterator for OpmapIter<T, E> {
    type Item = (usize, ItemResult<T, E>);

    fn next(&mut self) -> Option<Self::Item> {
        let out = if self.ordered {
            loop {
                if let Some(result) = self.pending.remove(&self.next_index) {
                    break Some((self.next_index, result));
                }
                match self.receiver.recv() {
                    Ok((index, result)) if index == self.next_index => break Some((index, result)),
                    Ok((index, result)) => {
                        self.pending.insert(index, result);
                    }
                    Err(_) => break None,
                }
            }
        } else {
            self.receiver.recv().ok()
        };
        if out.is_some() {
            self.next_index += 1;
            self.gate.handed_out();
        }
        out
    }
}

impl<T, E> Drop for OpmapIter<T, E> {
    fn drop(&mut self) {
        self.gate.cancel();
    }
}

impl<T, E> fmt::Debug for OpmapIter<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpmapIter")
            .field("ordered", &self.ordered)
            .field("handed_out", &self.next_index)
            .finish_non_exhaustive()
    }
}

// ===== impl OpmapAsync =====

/// An async per-item function run over many items as tokio tasks, `workers` in flight, each item
/// through the same pipeline. Made by [`OpmapBuilder::wrap_async`](crate::OpmapBuilder::wrap_async).
///
/// The forms mirror [`Opmap`]: [`call`](OpmapAsync::call), [`call_indexed`](OpmapAsync::call_indexed)
/// and [`stream`](OpmapAsync::stream).
///
/// # Examples
///
/// ```
/// use opero_parallel::opmap;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let fetch = opmap()
///     .workers(10)
///     .progress(false)
///     .wrap_async(|id: u32| async move {
///         tokio::time::sleep(Duration::from_millis(100)).await;
///         Ok::<_, String>(format!("page {id}"))
///     })
///     .unwrap();
/// let start = tokio::time::Instant::now();
/// let pages = fetch.call(0..20).await;
/// assert_eq!(pages[19], Ok("page 19".to_string()));
/// assert_eq!(start.elapsed(), Duration::from_millis(200)); // two rounds of 10
/// # }
/// ```
pub struct OpmapAsync<C, K, P, F, V, X> {
    pub(crate) inner: Arc<Inner<C, K, P, F, V, X>>,
}

impl<C, K, P, F, V, X> Clone for OpmapAsync<C, K, P, F, V, X> {
    fn clone(&self) -> Self {
        OpmapAsync {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, K, P, F, V, X: AsyncExecutor> fmt::Debug for OpmapAsync<C, K, P, F, V, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpmapAsync")
            .field("mode", &self.inner.mode)
            .field("workers", &self.inner.executor.workers())
            .field("ordered", &self.inner.ordered)
            .finish_non_exhaustive()
    }
}

impl<C, K, P, F, V, X> Inner<C, K, P, F, V, X>
where
    K: KeyFn,
    V: Clone,
{
    async fn run_item_async<I, T, E, Fut>(&self, item: I) -> ItemResult<T, E>
    where
        I: Clone,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display,
        F: Fn(I, V) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: RetryPolicy<E>,
    {
        let limit = self.timeout;
        let attempt = |item: &I, value: &V| {
            let started = catch_unwind(AssertUnwindSafe(|| (self.f)(item.clone(), value.clone())));
            async move {
                let outcome = match (started, limit) {
                    // Not tokio's own timeout: without a runtime the executor polls items in the
                    // caller's task (under `block_on`, say), where tokio's timer would panic.
                    // Dropping the late future abandons the attempt.
                    (Ok(fut), Some(limit)) => {
                        match opero_core::timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await
                        {
                            Ok(outcome) => outcome,
                            Err(_) => return Err(AttemptError::TimedOut(limit)),
                        }
                    }
                    (Ok(fut), None) => AssertUnwindSafe(fut).catch_unwind().await,
                    (Err(payload), _) => Err(payload),
                };
                match outcome {
                    Ok(result) => result.map_err(AttemptError::Failed),
                    Err(payload) => Err(AttemptError::Panicked(panic_message(payload))),
                }
            }
        };
        let run = self.opero.call_attempts_async(
            self.function,
            &item,
            self.fallbacks.as_slice(),
            attempt,
        );
        AssertUnwindSafe(run)
            .catch_unwind()
            .await
            .unwrap_or_else(|payload| Err(lost(AttemptError::Panicked(panic_message(payload)))))
    }
}

impl<C, K, P, F, V, X> OpmapAsync<C, K, P, F, V, X>
where
    C: Send + Sync + 'static,
    K: KeyFn + 'static,
    P: Send + Sync + 'static,
    F: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    X: AsyncExecutor + 'static,
{
    /// The units of one map: each item as a spawned task, yielding `(index, result)`.
    fn units<Items, I, T, E, Fut>(
        &self,
        items: Items,
        progress: Option<Arc<Progress>>,
    ) -> impl Stream<Item = impl Future<Output = (usize, ItemResult<T, E>)> + Send + 'static>
           + Send
           + 'static
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send + 'static,
        I: Clone + Send + Sync + 'static,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send + 'static,
        F: Fn(I, V) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        P: RetryPolicy<E>,
    {
        let inner = Arc::clone(&self.inner);
        futures_util::stream::iter(items.into_iter().enumerate()).map(move |(index, item)| {
            let unit_inner = Arc::clone(&inner);
            // Taken here, when the item starts, and given back when its unit ends.
            let ticket = inner.slots.as_ref().map(crate::slots::Slots::take);
            let unit = async move {
                match ticket {
                    Some(ticket) => {
                        let slot = ticket.slot();
                        let run = unit_inner.run_item_async(item);
                        let result = crate::slots::in_slot(slot, run).await;
                        drop(ticket);
                        result
                    }
                    None => unit_inner.run_item_async(item).await,
                }
            };
            let spawned = inner.executor.spawn(unit);
            let progress = progress.clone();
            async move {
                let result = spawned
                    .await
                    .unwrap_or_else(|e| Err(lost(AttemptError::Crashed(e.to_string()))));
                done(progress.as_deref(), result.is_ok());
                (index, result)
            }
        })
    }

    /// Runs every item and returns one result per item: in input order when `ordered` (the
    /// default), else in completion order. A slow item never keeps the next ones from starting.
    pub async fn call<Items, I, T, E, Fut>(&self, items: Items) -> Vec<ItemResult<T, E>>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send + 'static,
        I: Clone + Send + Sync + 'static,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send + 'static,
        F: Fn(I, V) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        P: RetryPolicy<E>,
    {
        let indexed = self.completed(items).await;
        if self.inner.ordered {
            into_input_order(indexed)
        } else {
            indexed.into_iter().map(|(_, result)| result).collect()
        }
    }

    /// As [`call`](Self::call), each result with the index of its item in the input.
    pub async fn call_indexed<Items, I, T, E, Fut>(
        &self,
        items: Items,
    ) -> Vec<(usize, ItemResult<T, E>)>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send + 'static,
        I: Clone + Send + Sync + 'static,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send + 'static,
        F: Fn(I, V) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        P: RetryPolicy<E>,
    {
        let indexed = self.completed(items).await;
        if self.inner.ordered {
            into_input_order(indexed).into_iter().enumerate().collect()
        } else {
            indexed
        }
    }

    /// Every result in completion order.
    async fn completed<Items, I, T, E, Fut>(&self, items: Items) -> Vec<(usize, ItemResult<T, E>)>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send + 'static,
        I: Clone + Send + Sync + 'static,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send + 'static,
        F: Fn(I, V) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        P: RetryPolicy<E>,
    {
        let items = items.into_iter();
        let len = exact_len(&items);
        let workers = self.inner.executor.workers();
        log_start(self.inner.mode, workers, len);
        let progress = Progress::start(self.inner.progress, len).map(Arc::new);
        let capacity = items.size_hint().0;
        self.units(items, progress)
            .buffer_unordered(workers)
            .fold(Vec::with_capacity(capacity), |mut out, done| {
                out.push(done);
                std::future::ready(out)
            })
            .await
    }

    /// Streams `(index, result)` as they come, starting an item only when one of the `workers`
    /// in flight has finished, so memory stays bounded by `workers` whatever the input's size. In
    /// input order when `ordered` (a slow item then holds back the start of later ones, as
    /// `buffered` does), else in completion order.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use opero_parallel::opmap;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let triple = opmap().workers(4).progress(false)
    ///     .wrap_async(|x: u64| async move { Ok::<_, String>(x * 3) }).unwrap();
    /// let firsts: Vec<_> = triple.stream(0u64..).take(3).collect().await;
    /// assert_eq!(firsts, [(0, Ok(0)), (1, Ok(3)), (2, Ok(6))]);
    /// # }
    /// ```
    pub fn stream<Items, I, T, E, Fut>(
        &self,
        items: Items,
    ) -> impl Stream<Item = (usize, ItemResult<T, E>)> + Send + 'static
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send + 'static,
        I: Clone + Send + Sync + 'static,
        T: Send + Sync + 'static,
        C: CacheFor<I, T>,
        E: Display + Send + 'static,
        F: Fn(I, V) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        P: RetryPolicy<E>,
    {
        let items = items.into_iter();
        let len = exact_len(&items);
        let workers = self.inner.executor.workers();
        log_start(self.inner.mode, workers, len);
        let progress = Progress::start(self.inner.progress, len).map(Arc::new);
        let units = self.units(items, progress);
        if self.inner.ordered {
            Either::Left(units.buffered(workers))
        } else {
            Either::Right(units.buffer_unordered(workers))
        }
    }

    /// The pipeline every item goes through (its counters, cache and rate limiter).
    pub fn opero(&self) -> &Opero<C, K, P> {
        &self.inner.opero
    }
}

/// Puts `(index, result)` pairs back in index order; indices are unique and dense.
fn into_input_order<R>(indexed: Vec<(usize, R)>) -> Vec<R> {
    let mut slots: Vec<Option<R>> = Vec::with_capacity(indexed.len());
    slots.resize_with(indexed.len(), || None);
    for (index, result) in indexed {
        if index >= slots.len() {
            slots.resize_with(index + 1, || None);
        }
        slots[index] = Some(result);
    }
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_survive() {
        let text = catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(text), "boom 7");
        let literal = catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(literal), "plain");
        let other = catch_unwind(|| std::panic::panic_any(5_u8)).unwrap_err();
        assert!(panic_message(other).contains("not text"));
    }

    #[test]
    fn results_go_back_to_input_order() {
        let out = into_input_order(vec![(2, 'c'), (0, 'a'), (1, 'b')]);
        assert_eq!(out, ['a', 'b', 'c']);
    }
}
