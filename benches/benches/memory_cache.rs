//! A memory-cache hit through the whole opero pipeline (`Opero::<MemoryCache>::call`: identity,
//! key hashing, lookup, clone out) beside what a user would pick instead: a `#[cached]` function
//! (the `cached` crate), and the bare stores (quick_cache, which `MemoryCache` is built on, and
//! moka, which `MokaCache` is). `opero` and `cached` hit a `u64`, which a thread reading it again
//! is answered from its own front; `opero_string` and `cached_string` hit a `String`, which comes
//! from the shared store each time. The growth group reads a hit from caches of 10³ to 10⁶ entries,
//! whose cost should stay flat, beside the bare quick_cache read with the same stride.
//!
//! Memory per entry is not a timing: `a_memory_cache_entry_costs_at_most_twice_a_quick_cache_entry`
//! in the tests counts it with an allocator and asserts the bound.

use std::hint::black_box;

use cached::proc_macro::cached;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use opero::{MemoryCache, MokaCache, Opero};

#[cached]
fn cached_hit(x: u64) -> u64 {
    x.wrapping_mul(31)
}

fn square(x: &u64) -> Result<u64, String> {
    Ok(x.wrapping_mul(31))
}

/// A value that owns memory: served from the shared store on every hit (a per-thread front
/// answers only small plain values), and cloned out, as `#[cached]` clones it.
#[cached]
fn cached_text(x: u64) -> String {
    format!("value {x}")
}

fn text(x: &u64) -> Result<String, String> {
    Ok(format!("value {x}"))
}

fn hit(c: &mut Criterion) {
    let opero = Opero::<MemoryCache>::builder()
        .cache(true)
        .retries(3)
        .build()
        .unwrap();
    opero.call(&42u64, square).unwrap();
    opero.call(&42u64, text).unwrap();
    let moka_pipeline = Opero::with_cache(
        opero::OperoConfig {
            cache: opero::CacheConfig::enabled("moka"),
            ..Default::default()
        },
        MokaCache::default(),
    )
    .unwrap();
    moka_pipeline.call(&42u64, square).unwrap();
    cached_hit(42);
    cached_text(42);

    let quick: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(10_000);
    quick.insert(42, 42u64.wrapping_mul(31));
    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(10_000);
    moka.insert(42, 42u64.wrapping_mul(31));

    let mut g = c.benchmark_group("memory_hit");
    g.bench_function("cached", |b| b.iter(|| cached_hit(black_box(42))));
    g.bench_function("opero", |b| {
        b.iter(|| opero.call(black_box(&42u64), square).unwrap())
    });
    g.bench_function("quick_cache_get", |b| {
        b.iter(|| quick.get(black_box(&42u64)))
    });
    g.bench_function("opero_moka", |b| {
        b.iter(|| moka_pipeline.call(black_box(&42u64), square).unwrap())
    });
    g.bench_function("moka_get", |b| b.iter(|| moka.get(black_box(&42u64))));
    g.bench_function("cached_string", |b| b.iter(|| cached_text(black_box(42))));
    g.bench_function("opero_string", |b| {
        b.iter(|| opero.call(black_box(&42u64), text).unwrap())
    });
    g.finish();
}

fn growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory_hit_growth");
    for entries in [1_000u64, 10_000, 100_000, 1_000_000] {
        let opero = Opero::with_cache(
            opero::OperoConfig {
                cache: opero::CacheConfig::enabled("memory"),
                ..Default::default()
            },
            MemoryCache::with_capacity(entries),
        )
        .unwrap();
        for i in 0..entries {
            opero.call(&i, square).unwrap();
        }
        let mut i = 0u64;
        g.bench_with_input(BenchmarkId::new("opero", entries), &entries, |b, &n| {
            b.iter(|| {
                // A stride through the keys, so that the reads do not all sit in one cache line.
                i = (i + 7919) % n;
                opero.call(black_box(&i), square).unwrap()
            })
        });
        drop(opero);
        // The bare store, read with the same stride: how much of the growth is memory latency.
        let quick: quick_cache::sync::Cache<u64, u64> =
            quick_cache::sync::Cache::new(entries as usize);
        for i in 0..entries {
            quick.insert(i, i.wrapping_mul(31));
        }
        let mut i = 0u64;
        g.bench_with_input(
            BenchmarkId::new("quick_cache_get", entries),
            &entries,
            |b, &n| {
                b.iter(|| {
                    i = (i + 7919) % n;
                    quick.get(black_box(&i))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, hit, growth);
criterion_main!(benches);
