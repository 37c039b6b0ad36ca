//! The callables of the worker-process modes: [`OpmapProcess`] (mode `process`) and
//! [`OpmapProcessAsync`] (mode `async_process`).

use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use futures_util::{FutureExt, StreamExt};
use opero_core::{
    AllFailedError, AttemptError, CacheFor, CacheValue, Executor, FunctionId, KeyFn, Opero,
    RetryPolicy,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::executor::{lock, ThreadExecutor};
use crate::opmap::ItemResult;
use crate::process::{decode_reply, encode_item, Batches, Reply, Workers};
use crate::progress::{done, Progress};

/// The only fallback value of a process map: the function takes the item alone.
const NO_FALLBACK: &[()] = &[()];

fn lost<E>(error: AttemptError<E>) -> AllFailedError<E> {
    tracing::warn!(target: "opero", "an opmap item failed outside its attempts");
    AllFailedError::single(0, 1, error)
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "panic with a payload that is not text".to_owned(),
        },
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

// ===== impl OpmapProcess =====

pub(crate) struct ProcessInner<C, K, P, I, T, E> {
    pub(crate) opero: Opero<C, K, P>,
    pub(crate) function: FunctionId<'static>,
    pub(crate) workers: Workers<Vec<u8>, Reply>,
    pub(crate) threads: ThreadExecutor,
    pub(crate) ordered: bool,
    pub(crate) progress: bool,
    pub(crate) types: PhantomData<fn(I) -> (T, E)>,
}

/// A named per-item function run in `workers` worker processes (mode `process`), each item
/// through the same pipeline in the parent. Made by
/// [`OpmapBuilder::wrap_process`](crate::OpmapBuilder::wrap_process).
///
/// Each attempt of an item is one call into a free worker; the workers are reused across items
/// and calls and live as long as this value and its clones: dropping the last one kills them.
///
/// | what happens in the worker | that item's attempt | retried? |
/// |---|---|---|
/// | the function returns `Err(e)` | [`AttemptError::Failed`]`(e)` | per `retries` and `retry_on` |
/// | the function panics | [`AttemptError::Panicked`] (the worker lives on) | never |
/// | the worker dies (abort, signal, `exit`) | [`AttemptError::Crashed`], naming the signal or exit status where recorded; a fresh worker replaces it | per `retries` (same backoff) |
/// | the attempt outlives [`timeout`](crate::OpmapBuilder::timeout) | [`AttemptError::TimedOut`]; the worker is killed and replaced | per `retries` |
/// | the item or result fails to (de)serialize | [`AttemptError::Codec`] | never |
///
/// # Examples
///
/// ```no_run
/// use opero_parallel::{init_workers, opmap};
///
/// // A named function: it reaches the workers by its type, not as a value.
/// fn parse(line: &String) -> Result<u32, String> {
///     line.trim().parse().map_err(|e| format!("{line:?}: {e}"))
/// }
///
/// fn main() {
///     init_workers();
///     let parse_all = opmap().workers(4).retries(1).progress(false).wrap_process(parse).unwrap();
///     let out = parse_all.call(["1".to_string(), "x".to_string()]);
///     assert_eq!(out[0], Ok(1));
///     assert!(out[1].is_err());
/// }
/// ```
pub struct OpmapProcess<C, K, P, I, T, E> {
    pub(crate) inner: Arc<ProcessInner<C, K, P, I, T, E>>,
}

impl<C, K, P, I, T, E> Clone for OpmapProcess<C, K, P, I, T, E> {
    fn clone(&self) -> Self {
        OpmapProcess {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, K, P, I, T, E> fmt::Debug for OpmapProcess<C, K, P, I, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpmapProcess")
            .field("workers", &self.inner.workers.workers())
            .field("ordered", &self.inner.ordered)
            .finish_non_exhaustive()
    }
}

impl<C, K, P, I, T, E> ProcessInner<C, K, P, I, T, E>
where
    C: CacheFor<I, T>,
    K: KeyFn,
    P: RetryPolicy<E>,
    I: Serialize,
    T: CacheValue,
    E: Display + DeserializeOwned,
{
    fn run_item(&self, item: &I) -> ItemResult<T, E> {
        let attempt = |item: &I, _: &()| {
            let request = encode_item(item)?;
            match self.workers.call(request) {
                Ok(reply) => decode_reply(reply),
                Err(fault) => Err(fault.into_attempt()),
            }
        };
        let run = || {
            self.opero
                .call_attempts(self.function, item, NO_FALLBACK, attempt)
        };
        catch_unwind(AssertUnwindSafe(run))
            .unwrap_or_else(|payload| Err(lost(AttemptError::Panicked(panic_text(payload)))))
    }
}

impl<C, K, P, I, T, E> OpmapProcess<C, K, P, I, T, E>
where
    C: CacheFor<I, T>,
    K: KeyFn,
    P: RetryPolicy<E> + Send + Sync,
    I: Serialize + Send,
    T: CacheValue,
    E: Display + DeserializeOwned + Send,
{
    /// Runs every item and returns one result per item: in input order when `ordered` (the
    /// default), else in completion order.
    pub fn call<Items>(&self, items: Items) -> Vec<ItemResult<T, E>>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send,
    {
        let indexed = self.completed(items);
        if self.inner.ordered {
            into_input_order(indexed)
        } else {
            indexed.into_iter().map(|(_, result)| result).collect()
        }
    }

    /// As [`call`](Self::call), each result with the index of its item in the input.
    pub fn call_indexed<Items>(&self, items: Items) -> Vec<(usize, ItemResult<T, E>)>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send,
    {
        let indexed = self.completed(items);
        if self.inner.ordered {
            into_input_order(indexed).into_iter().enumerate().collect()
        } else {
            indexed
        }
    }

    /// Every result in completion order: one parent thread per worker process, each handing
    /// its items to the pool one at a time.
    fn completed<Items>(&self, items: Items) -> Vec<(usize, ItemResult<T, E>)>
    where
        Items: IntoIterator<Item = I>,
        Items::IntoIter: Send,
    {
        let inner = &*self.inner;
        let items = items.into_iter();
        let len = match items.size_hint() {
            (lower, Some(upper)) if lower == upper => Some(lower),
            _ => None,
        };
        tracing::debug!(target: "opero", mode = "process", workers = inner.workers.workers(), items = len, "opmap started");
        let progress = Progress::start(inner.progress, len);
        let progress = progress.as_ref();
        let out = Mutex::new(Vec::with_capacity(items.size_hint().0));
        inner.threads.for_each(items, |index, item| {
            let result = inner.run_item(&item);
            done(progress, result.is_ok());
            lock(&out).push((index, result));
        });
        out.into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pipeline every item goes through (its counters, cache and rate limiter).
    pub fn opero(&self) -> &Opero<C, K, P> {
        &self.inner.opero
    }
}

// ===== impl OpmapProcessAsync =====

pub(crate) struct AsyncProcessInner<C, K, P, I, T, E> {
    pub(crate) opero: Opero<C, K, P>,
    pub(crate) function: FunctionId<'static>,
    pub(crate) batches: Batches,
    /// With a limiter per worker: the worker slot each item in flight belongs to.
    pub(crate) slots: Option<Arc<crate::slots::Slots>>,
    pub(crate) ordered: bool,
    pub(crate) progress: bool,
    pub(crate) types: PhantomData<fn(I) -> (T, E)>,
}

/// A named async per-item function run in `workers` worker processes (mode `async_process`),
/// several items in flight in each, every item through the same pipeline in the parent. Made by
/// [`OpmapBuilder::wrap_process_async`](crate::OpmapBuilder::wrap_process_async).
///
/// Each worker runs a tokio runtime (current-thread, every driver the build has) and takes its
/// items in batches of up to [`in_flight_per_worker`](crate::OpmapBuilder::in_flight_per_worker),
/// run at once; a batch comes back when its slowest item is done. If the worker dies, **every
/// item of its batch** gets an [`AttemptError::Crashed`] attempt and is retried on its own (on a
/// fresh worker); the [`timeout`](crate::OpmapBuilder::timeout) applies to the whole batch in
/// the same way. Failures, panics and codec errors are per item, as in [`OpmapProcess`].
///
/// The parent runs the pipeline (retry delays, rate-limit waits) on the caller's tokio runtime.
///
/// # Examples
///
/// ```no_run
/// use opero_parallel::{init_workers, opmap};
/// use std::time::Duration;
///
/// async fn fetch(id: u32) -> Result<String, String> {
///     tokio::time::sleep(Duration::from_millis(10)).await;
///     Ok(format!("page {id}"))
/// }
///
/// fn main() {
///     init_workers();
///     let rt = tokio::runtime::Runtime::new().unwrap();
///     let fetch_all = opmap().workers(2).progress(false).wrap_process_async(fetch).unwrap();
///     let pages = rt.block_on(fetch_all.call(0..20));
///     assert_eq!(pages[19], Ok("page 19".to_string()));
/// }
/// ```
pub struct OpmapProcessAsync<C, K, P, I, T, E> {
    pub(crate) inner: Arc<AsyncProcessInner<C, K, P, I, T, E>>,
}

impl<C, K, P, I, T, E> Clone for OpmapProcessAsync<C, K, P, I, T, E> {
    fn clone(&self) -> Self {
        OpmapProcessAsync {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, K, P, I, T, E> fmt::Debug for OpmapProcessAsync<C, K, P, I, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpmapProcessAsync")
            .field("workers", &self.inner.batches.workers())
            .field("in_flight", &self.inner.batches.in_flight())
            .field("ordered", &self.inner.ordered)
            .finish_non_exhaustive()
    }
}

impl<C, K, P, I, T, E> AsyncProcessInner<C, K, P, I, T, E>
where
    C: CacheFor<I, T>,
    K: KeyFn,
    P: RetryPolicy<E>,
    I: Serialize,
    T: CacheValue,
    E: Display + DeserializeOwned,
{
    async fn run_item(&self, item: I) -> ItemResult<T, E> {
        let attempt = |item: &I, _: &()| {
            let submitted = encode_item(item).map(|request| self.batches.submit(request));
            async move {
                match submitted?.await {
                    Ok(Ok(reply)) => decode_reply(reply),
                    Ok(Err(fault)) => Err(fault.into_attempt()),
                    Err(_) => Err(AttemptError::Crashed(
                        "the batch thread stopped before replying".to_owned(),
                    )),
                }
            }
        };
        let run = self
            .opero
            .call_attempts_async(self.function, &item, NO_FALLBACK, attempt);
        AssertUnwindSafe(run)
            .catch_unwind()
            .await
            .unwrap_or_else(|payload| Err(lost(AttemptError::Panicked(panic_text(payload)))))
    }
}

impl<C, K, P, I, T, E> OpmapProcessAsync<C, K, P, I, T, E>
where
    C: CacheFor<I, T>,
    K: KeyFn,
    P: RetryPolicy<E>,
    I: Serialize,
    T: CacheValue,
    E: Display + DeserializeOwned,
{
    /// Runs every item and returns one result per item: in input order when `ordered` (the
    /// default), else in completion order. Up to `workers × in_flight_per_worker` items are in
    /// flight at once.
    pub async fn call<Items>(&self, items: Items) -> Vec<ItemResult<T, E>>
    where
        Items: IntoIterator<Item = I>,
    {
        let indexed = self.completed(items).await;
        if self.inner.ordered {
            into_input_order(indexed)
        } else {
            indexed.into_iter().map(|(_, result)| result).collect()
        }
    }

    /// As [`call`](Self::call), each result with the index of its item in the input.
    pub async fn call_indexed<Items>(&self, items: Items) -> Vec<(usize, ItemResult<T, E>)>
    where
        Items: IntoIterator<Item = I>,
    {
        let indexed = self.completed(items).await;
        if self.inner.ordered {
            into_input_order(indexed).into_iter().enumerate().collect()
        } else {
            indexed
        }
    }

    async fn completed<Items>(&self, items: Items) -> Vec<(usize, ItemResult<T, E>)>
    where
        Items: IntoIterator<Item = I>,
    {
        let inner = &*self.inner;
        let items = items.into_iter();
        let len = match items.size_hint() {
            (lower, Some(upper)) if lower == upper => Some(lower),
            _ => None,
        };
        let in_flight = inner.batches.in_flight();
        tracing::debug!(target: "opero", mode = "async_process", workers = inner.batches.workers(), in_flight, items = len, "opmap started");
        let progress = Progress::start(inner.progress, len);
        let progress = progress.as_ref();
        futures_util::stream::iter(items.enumerate())
            .map(|(index, item)| async move {
                let result = match inner.slots.as_ref().map(crate::slots::Slots::take) {
                    Some(ticket) => {
                        crate::slots::in_slot(ticket.slot(), inner.run_item(item)).await
                    }
                    None => inner.run_item(item).await,
                };
                done(progress, result.is_ok());
                (index, result)
            })
            .buffer_unordered(in_flight)
            .collect()
            .await
    }

    /// The pipeline every item goes through (its counters, cache and rate limiter).
    pub fn opero(&self) -> &Opero<C, K, P> {
        &self.inner.opero
    }
}
