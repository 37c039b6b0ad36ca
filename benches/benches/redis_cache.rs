//! A Redis-cache hit vs a raw GET of the same bytes on the same kind of connection: a blocking
//! `redis::Connection` for the sync form, a `ConnectionManager` for the async one. The bench
//! starts its own redis-server on a loopback port. Target: ≤ 1.1× raw GET.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opero::{CacheBackend, CacheKey, FunctionLabel, RedisCache, RedisOptions};
use opero_tests::RedisServer;

fn value() -> Vec<String> {
    (0..16).map(|i| format!("item number {i}")).collect()
}

fn redis_hit(c: &mut Criterion) {
    let server = RedisServer::start();
    let cache = RedisCache::new(RedisOptions::url(server.url())).unwrap();
    let key = CacheKey {
        namespace: "bench",
        function: FunctionLabel::Named("f"),
        hash: 0x1234_5678_9abc_def0,
    };
    cache.set(&key, &value(), None).unwrap();
    let name = key.to_string();
    let client = redis::Client::open(server.url()).unwrap();

    let mut g = c.benchmark_group("redis_hit_sync");
    g.bench_function("opero_redis_cache_get", |b| {
        b.iter(|| black_box(cache.get::<Vec<String>>(black_box(&key)).unwrap().unwrap()))
    });
    let mut conn = client.get_connection().unwrap();
    g.bench_function("raw_redis_get", |b| {
        b.iter(|| {
            let bytes: Vec<u8> = redis::cmd("GET")
                .arg(black_box(&name))
                .query(&mut conn)
                .unwrap();
            black_box(bytes)
        })
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let manager = rt.block_on(client.get_connection_manager()).unwrap();
    // Creates the cache's own async connection before measuring.
    rt.block_on(cache.get_async::<Vec<String>>(&key)).unwrap();
    let mut g = c.benchmark_group("redis_hit_async");
    g.bench_function("opero_redis_cache_get_async", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cache
                    .get_async::<Vec<String>>(black_box(&key))
                    .await
                    .unwrap()
                    .unwrap(),
            )
        })
    });
    g.bench_function("raw_connection_manager_get", |b| {
        b.to_async(&rt).iter(|| {
            let mut m = manager.clone();
            let name = &name;
            async move {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(black_box(name))
                    .query_async(&mut m)
                    .await
                    .unwrap();
                black_box(bytes)
            }
        })
    });
    g.finish();
}

criterion_group!(benches, redis_hit);
criterion_main!(benches);
