//! Checks of single-flight across processes for a shared backend (Redis): each "process" is a
//! pipeline of its own on a backend instance of its own, so only the backend's flight can
//! coalesce their misses. `make` builds one such instance; the real multi-process test re-runs
//! the test binary instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use opero::{CacheBackend, CacheConfig, Opero, OperoConfig};

use crate::conformance::fresh_namespace;

/// How many independent pipelines miss one key at once.
pub const PIPELINES: usize = 4;

fn pipeline<C: CacheBackend>(cache: C, ns: &str) -> Opero<C> {
    let config = OperoConfig {
        retry: opero::RetryConfig {
            retries: 0,
            ..crate::no_delay()
        },
        cache: CacheConfig {
            namespace: ns.to_owned(),
            ..CacheConfig::enabled("flight")
        },
        ..Default::default()
    };
    Opero::with_cache(config, cache).unwrap().named("flight")
}

/// [`PIPELINES`] pipelines, each on its own backend from `make`, miss one key at once; returns
/// how many times the work ran (1 with the backend's flight on, [`PIPELINES`] with it off).
pub fn concurrent_pipelines_runs<C: CacheBackend>(make: impl Fn() -> C) -> usize {
    let ns = fresh_namespace();
    let pipelines: Vec<Opero<C>> = (0..PIPELINES).map(|_| pipeline(make(), &ns)).collect();
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(PIPELINES);
    let work = |x: &u32| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        Ok::<_, String>(format!("value-{x}"))
    };
    std::thread::scope(|s| {
        for opero in &pipelines {
            let (barrier, work) = (&barrier, &work);
            s.spawn(move || {
                barrier.wait();
                assert_eq!(opero.call(&7u32, work).unwrap(), "value-7");
            });
        }
    });
    runs.load(Ordering::SeqCst)
}

/// The async twin of [`concurrent_pipelines_runs`].
pub async fn concurrent_pipelines_runs_async<C: CacheBackend + 'static>(
    make: impl Fn() -> C,
) -> usize {
    let ns = fresh_namespace();
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(PIPELINES));
    let mut tasks = Vec::new();
    for _ in 0..PIPELINES {
        let opero = pipeline(make(), &ns);
        let (runs, barrier) = (Arc::clone(&runs), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let work = |x: &u32| {
                let runs = Arc::clone(&runs);
                let x = *x;
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(format!("value-{x}"))
                }
            };
            assert_eq!(opero.call_async(&7u32, work).await.unwrap(), "value-7");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    runs.load(Ordering::SeqCst)
}

/// A leader that fails shares no error: every waiter runs its own call and gets its own
/// result. Returns the number of runs, [`PIPELINES`] when every call failed.
pub fn errors_are_not_shared<C: CacheBackend>(make: impl Fn() -> C) -> usize {
    let ns = fresh_namespace();
    let pipelines: Vec<Opero<C>> = (0..PIPELINES).map(|_| pipeline(make(), &ns)).collect();
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(PIPELINES);
    let work = |_: &u32| {
        let n = runs.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        Err::<String, _>(format!("failure {n}"))
    };
    std::thread::scope(|s| {
        for opero in &pipelines {
            let (barrier, work) = (&barrier, &work);
            s.spawn(move || {
                barrier.wait();
                assert!(opero.call(&9u32, work).is_err());
            });
        }
    });
    runs.load(Ordering::SeqCst)
}
