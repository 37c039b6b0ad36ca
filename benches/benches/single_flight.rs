//! 100 concurrent misses of one key through opero (the work runs once, the others wait for it)
//! vs 100 independent runs of the same work, both as 100 tokio tasks on a 2-thread runtime.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use opero::{CacheConfig, MemoryCache, OperoConfig};

const CALLERS: usize = 100;

/// CPU-bound work of some tens of microseconds.
fn work(seed: u64) -> u64 {
    let mut x = seed;
    for i in 0..20_000u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    black_box(x)
}

fn single_flight(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opero = opero::Opero::<MemoryCache>::new(OperoConfig {
        cache: CacheConfig::enabled("memory"),
        ..Default::default()
    })
    .unwrap();
    // A fresh argument per iteration makes every iteration a miss.
    let next = Arc::new(AtomicU64::new(0));

    let mut g = c.benchmark_group("hundred_concurrent_misses");
    g.bench_function("opero_single_flight", |b| {
        b.to_async(&rt).iter(|| {
            let arg = next.fetch_add(1, Ordering::Relaxed);
            let opero = opero.clone();
            async move {
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|_| {
                        let opero = opero.clone();
                        tokio::spawn(async move {
                            opero
                                .call_async(arg, |a: u64| async move { Ok::<_, String>(work(a)) })
                                .await
                                .unwrap()
                        })
                    })
                    .collect();
                for t in tasks {
                    black_box(t.await.unwrap());
                }
            }
        })
    });
    g.bench_function("hundred_independent_runs", |b| {
        b.to_async(&rt).iter(|| {
            let arg = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|_| tokio::spawn(async move { work(arg) }))
                    .collect();
                for t in tasks {
                    black_box(t.await.unwrap());
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, single_flight);
criterion_main!(benches);
