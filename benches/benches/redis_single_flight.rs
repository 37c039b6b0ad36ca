//! A cache miss on Redis with single-flight across processes vs the same miss without it: the
//! price of the lock (`SET NX PX` in a script, one more lookup, the release) on a miss that no
//! other process contends, sync and async; and four pipelines on backends of their own (as four
//! processes would be) missing one key at once, with work that takes 1 ms: with the flight the
//! work runs once. The bench starts its own redis-server on a loopback port.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use opero::{Opero, RedisCache, RedisOptions};
use opero_tests::{cached_in, conformance, RedisServer};

fn pipeline(url: &str, single_flight: bool, ns: &str) -> Opero<RedisCache> {
    let cache = RedisCache::new(RedisOptions {
        single_flight,
        ..RedisOptions::url(url)
    })
    .unwrap();
    cached_in(cache, ns).named("bench")
}

fn work(x: &u64) -> Result<u64, String> {
    Ok(black_box(*x) * 2)
}

fn redis_single_flight(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    // Every iteration misses: a key never asked before.
    let next = AtomicU64::new(0);
    let fresh = || next.fetch_add(1, Ordering::Relaxed);

    let mut g = c.benchmark_group("redis_miss_sync");
    for (name, on) in [("plain_miss", false), ("single_flight_miss", true)] {
        let opero = pipeline(&url, on, &conformance::fresh_namespace());
        g.bench_function(name, |b| {
            b.iter(|| black_box(opero.call(&fresh(), work).unwrap()))
        });
    }
    g.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("redis_miss_async");
    for (name, on) in [("plain_miss", false), ("single_flight_miss", true)] {
        let opero = pipeline(&url, on, &conformance::fresh_namespace());
        // Creates the cache's async connection before measuring.
        rt.block_on(opero.call_async(&u64::MAX, |x: &u64| {
            let x = *x;
            async move { work(&x) }
        }))
        .unwrap();
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let opero = &opero;
                let key = fresh();
                async move {
                    let v = opero
                        .call_async(&key, |x: &u64| {
                            let x = *x;
                            async move { work(&x) }
                        })
                        .await
                        .unwrap();
                    black_box(v)
                }
            })
        });
    }
    g.finish();

    const PIPELINES: usize = 4;
    let mut g = c.benchmark_group("redis_miss_four_contenders_1ms_work");
    for (name, on) in [("plain_miss", false), ("single_flight_miss", true)] {
        let ns = conformance::fresh_namespace();
        let pipelines: Vec<_> = (0..PIPELINES).map(|_| pipeline(&url, on, &ns)).collect();
        let runs = AtomicU64::new(0);
        let slow = |x: &u64| {
            runs.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
            work(x)
        };
        let mut iterations = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                iterations += 1;
                let key = fresh();
                let barrier = Barrier::new(PIPELINES);
                std::thread::scope(|s| {
                    for opero in &pipelines {
                        let (barrier, slow) = (&barrier, &slow);
                        s.spawn(move || {
                            barrier.wait();
                            black_box(opero.call(&key, slow).unwrap())
                        });
                    }
                });
            })
        });
        // Written to stderr beside criterion's figures: how often the work ran per miss.
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "{name}: the work ran {:.2} times per contended miss",
                runs.load(Ordering::Relaxed) as f64 / iterations.max(1) as f64
            );
        }
    }
    g.finish();
}

criterion_group!(benches, redis_single_flight);
criterion_main!(benches);
