//! A user's executor implements only `for_each`; the provided `map_ordered` and `map_slice` give
//! back one output per item in input order however the units finish, and an executor behind a
//! reference, a `Box` or an `Arc` is the same executor. A lost unit says why.

use std::future::Future;
use std::sync::Arc;

use crate::{AsyncExecutor, Executor, UnitHandle, UnitLost};

/// Runs the units on threads of its own, the last item first, so that outputs finish in
/// reverse order.
struct Backwards {
    workers: usize,
}

impl Executor for Backwards {
    fn workers(&self) -> usize {
        self.workers
    }

    fn for_each<I, W>(&self, items: I, work: W)
    where
        I: Iterator + Send,
        I::Item: Send,
        W: Fn(usize, I::Item) + Sync,
    {
        let mut units: Vec<(usize, I::Item)> = items.enumerate().collect();
        units.reverse();
        let work = &work;
        std::thread::scope(|s| {
            for (i, item) in units {
                s.spawn(move || work(i, item)).join().unwrap();
            }
        });
    }
}

/// Polls each unit in the caller's task.
struct InTask;

impl AsyncExecutor for InTask {
    fn workers(&self) -> usize {
        3
    }

    fn spawn<F>(&self, unit: F) -> UnitHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Box::pin(async move { Ok(unit.await) })
    }
}

fn check<X: Executor>(executor: X, workers: usize) {
    assert_eq!(executor.workers(), workers);
    let words = vec!["a", "bb", "ccc", "dddd"];
    let lens = executor.map_ordered(words.clone(), |i, w| (i, w.len()));
    assert_eq!(lens, [(0, 1), (1, 2), (2, 3), (3, 4)]);
    let upper = executor.map_slice(&words, |w| w.to_uppercase());
    assert_eq!(upper, ["A", "BB", "CCC", "DDDD"]);
    assert!(executor.map_slice(&[] as &[u8], |b| *b).is_empty());
    let seen = std::sync::Mutex::new(Vec::new());
    executor.for_each(words.into_iter(), |i, w| seen.lock().unwrap().push((i, w)));
    assert_eq!(
        seen.into_inner().unwrap(),
        [(3, "dddd"), (2, "ccc"), (1, "bb"), (0, "a")],
        "the executor's own order"
    );
}

#[test]
fn the_provided_maps_keep_input_order_when_units_finish_in_reverse() {
    check(Backwards { workers: 2 }, 2);
}

#[test]
fn an_executor_behind_a_reference_a_box_or_an_arc_is_the_same_executor() {
    let executor = Backwards { workers: 5 };
    check(&executor, 5);
    check(Box::new(Backwards { workers: 6 }), 6);
    check(Arc::new(Backwards { workers: 7 }), 7);
}

async fn spawn_on<X: AsyncExecutor>(executor: X) {
    assert_eq!(executor.workers(), 3);
    assert_eq!(executor.spawn(async { 6 * 7 }).await, Ok(42));
}

#[tokio::test]
async fn an_async_executor_behind_any_pointer_runs_its_units() {
    spawn_on(InTask).await;
    spawn_on(&InTask).await;
    spawn_on(Box::new(InTask)).await;
    spawn_on(Arc::new(InTask)).await;
}

#[test]
fn a_lost_unit_says_why() {
    let lost = UnitLost("the runtime shut down".into());
    assert_eq!(lost.to_string(), "unit of work lost: the runtime shut down");
}
