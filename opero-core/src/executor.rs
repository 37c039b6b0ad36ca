//! Executors: how many units of work run at once, how they are run, and how results come back.
//!
//! The traits are static (generic methods, not object safe) so that an executor over a rayon pool
//! can hand its indexed, allocation-free collect to the caller: a `dyn` unit of work per item would
//! cost more than the trivial items it runs. Executors are picked at run time by an enum that
//! dispatches to each (as `AnyCache` does for caches), so a mode read from a config file needs no
//! trait object. Both traits are implemented in `opero-parallel`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

/// Runs blocking units of work, at most [`workers`](Executor::workers) at once.
///
/// A unit is `work(index, item)`; its result comes back through `work` itself, which owns the sink
/// (a slot per index, a channel, a list in completion order). [`for_each`](Executor::for_each)
/// borrows `work` and returns only when every unit has run, so `work` may borrow from the caller.
///
/// `work` must not unwind: callers catch the user's panics inside it and turn them into that
/// item's error, so one item never takes its neighbours down.
///
/// # Examples
///
/// A sequential executor, the smallest one there is:
///
/// ```
/// use opero_core::Executor;
/// use std::sync::Mutex;
///
/// struct InPlace;
///
/// impl Executor for InPlace {
///     fn workers(&self) -> usize { 1 }
///     fn for_each<I, W>(&self, items: I, work: W)
///     where I: Iterator + Send, I::Item: Send, W: Fn(usize, I::Item) + Sync {
///         items.enumerate().for_each(|(i, item)| work(i, item));
///     }
/// }
///
/// let seen = Mutex::new(Vec::new());
/// InPlace.for_each(["a", "b"].into_iter(), |i, s| seen.lock().unwrap().push((i, s)));
/// assert_eq!(seen.into_inner().unwrap(), [(0, "a"), (1, "b")]);
///
/// // The ordered map comes for free from `for_each`.
/// let doubled = InPlace.map_ordered(vec![1, 2, 3], |_, x| x * 2);
/// assert_eq!(doubled, [2, 4, 6]);
/// ```
pub trait Executor: Send + Sync {
    /// How many units run at once.
    fn workers(&self) -> usize;

    /// Runs `work(index, item)` for every item, `index` counting from 0 in input order, at most
    /// [`workers`](Executor::workers) at once, pulling items from `items` only as workers free up.
    /// Returns when every unit has run.
    fn for_each<I, W>(&self, items: I, work: W)
    where
        I: Iterator + Send,
        I::Item: Send,
        W: Fn(usize, I::Item) + Sync;

    /// Maps every item, returning the outputs in input order.
    ///
    /// The default body runs [`for_each`](Executor::for_each) into one slot per item; an executor
    /// with a cheaper indexed collect (rayon) overrides it.
    fn map_ordered<T, O, W>(&self, items: Vec<T>, work: W) -> Vec<O>
    where
        T: Send,
        O: Send,
        W: Fn(usize, T) -> O + Sync,
    {
        let slots: Vec<Mutex<Option<O>>> = items.iter().map(|_| Mutex::new(None)).collect();
        self.for_each(items.into_iter(), |i, item| {
            let out = work(i, item);
            *slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(out);
        });
        slots
            .into_iter()
            .filter_map(|slot| slot.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Maps every item of a slice by reference, returning the outputs in input order.
    ///
    /// Borrowing spares moving each item into its unit of work, and no index is handed out: on
    /// trivial items either costs as much as the work (measured on rayon with callgrind). The
    /// default body maps the indices with [`map_ordered`](Executor::map_ordered); rayon
    /// overrides it.
    fn map_slice<T, O, W>(&self, items: &[T], work: W) -> Vec<O>
    where
        T: Sync,
        O: Send,
        W: Fn(&T) -> O + Sync,
    {
        self.map_ordered((0..items.len()).collect(), |i, _: usize| work(&items[i]))
    }
}

/// Runs async units of work. How many are in flight at once ([`workers`](AsyncExecutor::workers))
/// is kept by the caller, which starts a unit only when one has finished; the executor says where a
/// unit runs (a tokio task, a worker process) and hands its output back through the returned future.
///
/// # Examples
///
/// An executor that polls every unit in the caller's own task:
///
/// ```
/// use opero_core::{AsyncExecutor, UnitHandle};
/// use std::future::Future;
///
/// struct InTask;
///
/// impl AsyncExecutor for InTask {
///     fn workers(&self) -> usize { 8 }
///     fn spawn<F>(&self, unit: F) -> UnitHandle<F::Output>
///     where F: Future + Send + 'static, F::Output: Send + 'static {
///         Box::pin(async move { Ok(unit.await) })
///     }
/// }
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let out = rt.block_on(InTask.spawn(async { 6 * 7 }));
/// assert_eq!(out.unwrap(), 42);
/// ```
pub trait AsyncExecutor: Send + Sync {
    /// How many units are in flight at once.
    fn workers(&self) -> usize;

    /// Starts `unit` and returns a future of its output, or of [`UnitLost`] when the unit never
    /// finished (its task was cancelled, its runtime shut down).
    fn spawn<F>(&self, unit: F) -> UnitHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
}

/// The output of a unit started by [`AsyncExecutor::spawn`], to await.
///
/// A boxed future rather than an `impl Future` so that it borrows nothing from the executor: the
/// caller keeps it past the borrow. One small allocation per unit, beside the task's own.
///
/// # Examples
///
/// ```
/// use opero_core::{UnitHandle, UnitLost};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let handle: UnitHandle<u32> = Box::pin(async { Ok::<_, UnitLost>(7) });
/// assert_eq!(handle.await, Ok(7));
/// # }
/// ```
pub type UnitHandle<O> = Pin<Box<dyn Future<Output = Result<O, UnitLost>> + Send + 'static>>;

/// A unit of work that an executor lost before it finished: its task was cancelled or panicked
/// outside the user's code, or its runtime shut down.
///
/// # Examples
///
/// ```
/// use opero_core::UnitLost;
///
/// let lost = UnitLost("the runtime shut down".into());
/// assert_eq!(lost.to_string(), "unit of work lost: the runtime shut down");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitLost(pub String);

impl std::fmt::Display for UnitLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unit of work lost: {}", self.0)
    }
}

impl std::error::Error for UnitLost {}

macro_rules! forward_executor {
    ($($ty:ty),*) => {$(
        impl<X: Executor + ?Sized> Executor for $ty {
            fn workers(&self) -> usize {
                (**self).workers()
            }
            fn for_each<I, W>(&self, items: I, work: W)
            where
                I: Iterator + Send,
                I::Item: Send,
                W: Fn(usize, I::Item) + Sync,
            {
                (**self).for_each(items, work)
            }
            fn map_ordered<T, O, W>(&self, items: Vec<T>, work: W) -> Vec<O>
            where
                T: Send,
                O: Send,
                W: Fn(usize, T) -> O + Sync,
            {
                (**self).map_ordered(items, work)
            }
            fn map_slice<T, O, W>(&self, items: &[T], work: W) -> Vec<O>
            where
                T: Sync,
                O: Send,
                W: Fn(&T) -> O + Sync,
            {
                (**self).map_slice(items, work)
            }
        }

        impl<X: AsyncExecutor + ?Sized> AsyncExecutor for $ty {
            fn workers(&self) -> usize {
                (**self).workers()
            }
            fn spawn<F>(&self, unit: F) -> UnitHandle<F::Output>
            where
                F: Future + Send + 'static,
                F::Output: Send + 'static,
            {
                (**self).spawn(unit)
            }
        }
    )*};
}

forward_executor!(&X, Box<X>, std::sync::Arc<X>);
