//! The blocking executors (threads, rayon, and `AnyExecutor` over each) say how many workers they
//! have, give every item exactly once to the work with its input index, and return outputs in
//! input order; the async executors say their workers and run a unit to its output.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opero_core::{AsyncExecutor, Executor};
use opero_parallel::{
    AnyAsyncExecutor, AnyExecutor, Mode, RayonExecutor, ThreadExecutor, TokioExecutor,
};

const WORKERS: usize = 3;
const ITEMS: usize = 200;

fn executors() -> Vec<(&'static str, AnyExecutor)> {
    vec![
        (
            "thread",
            AnyExecutor::Thread(ThreadExecutor::new(WORKERS).unwrap()),
        ),
        (
            "rayon",
            AnyExecutor::Rayon(RayonExecutor::new(WORKERS).unwrap()),
        ),
        (
            "any thread",
            AnyExecutor::new(Mode::Thread, WORKERS).unwrap(),
        ),
        ("any rayon", AnyExecutor::new(Mode::Rayon, WORKERS).unwrap()),
    ]
}

/// Checks one executor through its own type and through `AnyExecutor`.
fn check<X: Executor>(name: &str, executor: &X) {
    assert_eq!(executor.workers(), WORKERS, "{name}");

    let threads = Mutex::new(HashSet::new());
    let out = executor.map_ordered((0..ITEMS as u64).collect(), |index, x| {
        threads.lock().unwrap().insert(std::thread::current().id());
        (index, x * 2)
    });
    let expected: Vec<_> = (0..ITEMS).map(|i| (i, i as u64 * 2)).collect();
    assert_eq!(out, expected, "{name}: map_ordered");
    let used = threads.lock().unwrap().len();
    assert!((1..=WORKERS).contains(&used), "{name}: {used} threads");

    let items: Vec<u64> = (0..ITEMS as u64).collect();
    assert_eq!(
        executor.map_slice(&items, |x| x + 1),
        (1..=ITEMS as u64).collect::<Vec<_>>(),
        "{name}: map_slice"
    );

    let seen: Vec<AtomicUsize> = (0..ITEMS).map(|_| AtomicUsize::new(0)).collect();
    executor.for_each(0..ITEMS, |index, item| {
        assert_eq!(index, item);
        seen[index].fetch_add(1, Ordering::Relaxed);
    });
    assert!(
        seen.iter().all(|n| n.load(Ordering::Relaxed) == 1),
        "{name}: for_each gave an item twice or never"
    );

    assert!(executor.map_ordered(Vec::<u8>::new(), |_, x| x).is_empty());
}

#[test]
fn each_blocking_executor_maps_every_item_once_in_input_order() {
    check("thread", &ThreadExecutor::new(WORKERS).unwrap());
    check("rayon", &RayonExecutor::new(WORKERS).unwrap());
    for (name, executor) in executors() {
        check(name, &executor);
    }
}

#[test]
fn a_rayon_executor_on_a_given_pool_has_that_pool_s_threads() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let executor = RayonExecutor::with_pool(Arc::new(pool));
    assert_eq!(executor.workers(), 2);
    assert_eq!(
        executor.map_ordered(vec![1, 2, 3], |i, x| x * 10 + i),
        [10, 21, 32]
    );
}

#[tokio::test]
async fn the_async_executors_report_their_workers_and_run_units() {
    let tokio = TokioExecutor::new(7).unwrap();
    assert_eq!(tokio.workers(), 7);
    assert_eq!(tokio.spawn(async { 6 * 7 }).await.unwrap(), 42);
    let any = AnyAsyncExecutor::new(Mode::Async, 5).unwrap();
    assert_eq!(any.workers(), 5);
    assert_eq!(any.spawn(async { "done" }).await.unwrap(), "done");
}
