//! A memory-cache hit through the whole opero pipeline (key hashing, lookup, clone out) beside a
//! raw moka `get` of the same value.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opero::{MemoryCache, Opero};

fn hit(c: &mut Criterion) {
    let opero = Opero::<MemoryCache>::builder()
        .cache(true)
        .retries(3)
        .build()
        .unwrap();
    let f = |x: &u64| Ok::<_, String>(x.wrapping_mul(31));
    opero.call(&42u64, f).unwrap();

    let raw: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(10_000);
    raw.insert(42, 42u64.wrapping_mul(31));

    let mut g = c.benchmark_group("memory_hit");
    g.bench_function("moka_get", |b| b.iter(|| raw.get(black_box(&42u64))));
    g.bench_function("opero", |b| {
        b.iter(|| opero.call(black_box(&42u64), f).unwrap())
    });
    g.finish();
}

criterion_group!(benches, hit);
criterion_main!(benches);
