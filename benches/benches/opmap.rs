//! opmap beside the peer each mode is measured against:
//!
//! - `rayon` mode over 1,000,000 trivial items vs raw `par_iter().map().collect()` on a rayon
//!   pool of the same size (target: at most 1.3x);
//! - `async` mode over 10,000 items that sleep 10 ms, 100 in flight, vs
//!   `futures::stream::iter(..).buffered(100)` (target: at most 1.05x) and the ideal 1.0 s;
//! - `thread` mode vs a plain pool of scoped threads pulling indices from an atomic counter.
//!
//! Both sides map the same fallible function and produce the same `Result` per item; outputs are
//! dropped outside the timed part on both sides.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures::StreamExt;
use opero::{opmap, Mode};
use rayon::prelude::*;

fn trivial(x: &u64) -> Result<u64, String> {
    Ok(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 7)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn rayon_mode(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let items: Vec<u64> = (0..N).collect();
    let workers = cores();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .unwrap();
    let map = opmap()
        .mode(Mode::Rayon)
        .workers(workers)
        .progress(false)
        .wrap(trivial)
        .unwrap();

    let mut group = c.benchmark_group("opmap_rayon_1m_trivial");
    group.bench_function("raw_rayon_par_iter", |b| {
        b.iter_batched(
            || (),
            |()| pool.install(|| items.par_iter().map(trivial).collect::<Vec<_>>()),
            BatchSize::LargeInput,
        )
    });
    // opmap takes its items by value; this peer does too, from the same untimed clone.
    group.bench_function("raw_rayon_into_par_iter", |b| {
        b.iter_batched(
            || items.clone(),
            |v| pool.install(|| v.into_par_iter().map(|x| trivial(&x)).collect::<Vec<_>>()),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("opero_opmap_rayon", |b| {
        b.iter_batched(|| items.clone(), |v| map.call(v), BatchSize::LargeInput)
    });
    group.finish();
}

fn async_mode(c: &mut Criterion) {
    const N: u64 = 10_000;
    const IN_FLIGHT: usize = 100;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sleeper = |x: u64| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, String>(x)
    };
    let map = opmap()
        .workers(IN_FLIGHT)
        .progress(false)
        .wrap_async(sleeper)
        .unwrap();

    let mut group = c.benchmark_group("opmap_async_10k_sleep_10ms");
    group.sample_size(10);
    group.bench_function("futures_buffered_100", |b| {
        b.to_async(&rt).iter(|| async {
            futures::stream::iter(0..N)
                .map(sleeper)
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        })
    });
    group.bench_function("opero_opmap_async_100", |b| {
        b.to_async(&rt).iter(|| map.call(0..N))
    });
    group.finish();
}

/// A plain pool: scoped threads that pull the next index from an atomic counter.
fn plain_pool<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let parts = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    local.push((i, f(item)));
                }
                parts.lock().unwrap().extend(local);
            });
        }
    });
    let mut parts = parts.into_inner().unwrap();
    parts.sort_unstable_by_key(|(i, _)| *i);
    parts.into_iter().map(|(_, r)| r).collect()
}

fn thread_mode(c: &mut Criterion) {
    const WORKERS: usize = 4;
    let map = opmap()
        .mode(Mode::Thread)
        .workers(WORKERS)
        .progress(false)
        .wrap(trivial)
        .unwrap();
    let items: Vec<u64> = (0..100_000).collect();
    let mut group = c.benchmark_group("opmap_thread_100k_trivial");
    group.bench_function("plain_thread_pool", |b| {
        b.iter_batched(
            || (),
            |()| plain_pool(&items, WORKERS, trivial),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("opero_opmap_thread", |b| {
        b.iter_batched(|| items.clone(), |v| map.call(v), BatchSize::LargeInput)
    });
    group.finish();

    let blocking = |x: &u64| {
        std::thread::sleep(Duration::from_millis(1));
        Ok::<_, String>(*x)
    };
    let map = opmap()
        .mode(Mode::Thread)
        .workers(8)
        .progress(false)
        .wrap(blocking)
        .unwrap();
    let items: Vec<u64> = (0..200).collect();
    let mut group = c.benchmark_group("opmap_thread_200_sleep_1ms");
    group.sample_size(20);
    group.bench_function("plain_thread_pool_8", |b| {
        b.iter_batched(
            || (),
            |()| plain_pool(&items, 8, blocking),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("opero_opmap_thread_8", |b| {
        b.iter_batched(|| items.clone(), |v| map.call(v), BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, rayon_mode, async_mode, thread_mode);
criterion_main!(benches);
