//! A disk-cache hit through `DiskCache::get` vs a raw `cacache::read_sync` of the same bytes.
//! Target: ≤ 1.2× raw cacache.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opero::{CacheBackend, CacheKey, DiskCache, FunctionLabel};

fn value() -> Vec<String> {
    (0..16).map(|i| format!("item number {i}")).collect()
}

fn disk_hit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(dir.path());
    let key = CacheKey {
        namespace: "bench",
        function: FunctionLabel::Named("f"),
        hash: 0x1234_5678_9abc_def0,
    };
    cache.set(&key, &value(), None).unwrap();
    let name = key.to_string();
    // The peer reads the very bytes our hit reads (header and all), under the same key.
    let raw = cacache::read_sync(dir.path(), &name).unwrap();
    assert!(raw.len() > 100);

    let mut g = c.benchmark_group("disk_hit");
    g.bench_function("opero_disk_cache_get", |b| {
        b.iter(|| black_box(cache.get::<Vec<String>>(black_box(&key)).unwrap().unwrap()))
    });
    g.bench_function("raw_cacache_read_sync", |b| {
        b.iter(|| black_box(cacache::read_sync(dir.path(), black_box(&name)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, disk_hit);
criterion_main!(benches);
