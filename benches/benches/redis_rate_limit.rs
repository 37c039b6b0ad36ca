//! A permit of the shared Redis rate limiter vs a raw `EVALSHA` of the same script on the same
//! kind of connection (target ≤ 1.1×), blocking and async; and permits per second with a lease
//! of 100 vs none. The bench starts its own redis-server on a loopback port. The rate is high
//! (10⁶/s) so that the limiter's answer is measured, not its waits (no permit is waited for).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opero::{RedisLimiterOptions, RedisRateLimiter};
use opero_core::RateLimitConfig;
use opero_tests::RedisServer;

fn limiter(url: &str, name: &str, lease: u32) -> RedisRateLimiter {
    let mut o = RedisLimiterOptions::new(url, name);
    o.lease = lease;
    RedisRateLimiter::new(&RateLimitConfig::per_second(1e6).with_burst(100), o).unwrap()
}

fn raw_evalsha(sha: &str, key: &str, args: &[String; 4]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(1).arg(key);
    for a in args {
        cmd.arg(a);
    }
    cmd
}

fn permit_vs_evalsha(c: &mut Criterion) {
    let server = RedisServer::start();
    let url = server.url();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(opero::RedisRateLimiter::script())
        .query(&mut conn)
        .unwrap();
    let l = limiter(&url, "bench-permit", 1);
    let raw_key = "opero:limit:{bench-raw}";
    let args = l.script_args(1, false);

    let mut g = c.benchmark_group("redis_permit_sync");
    g.bench_function("opero_redis_reserve_permit", |b| {
        b.iter(|| black_box(l.reserve_permit().unwrap()))
    });
    g.bench_function("raw_evalsha", |b| {
        b.iter(|| {
            let reply: (u32, String, String) =
                raw_evalsha(&sha, raw_key, &args).query(&mut conn).unwrap();
            black_box(reply)
        })
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let manager = rt.block_on(client.get_connection_manager()).unwrap();
    // The limiter's own async connection, made before measuring.
    rt.block_on(l.reserve_permit_async()).unwrap();
    let mut g = c.benchmark_group("redis_permit_async");
    g.bench_function("opero_redis_reserve_permit_async", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(l.reserve_permit_async().await.unwrap()) })
    });
    g.bench_function("raw_evalsha_async", |b| {
        b.to_async(&rt).iter(|| {
            let cmd = raw_evalsha(&sha, raw_key, &args);
            let mut m = manager.clone();
            async move {
                let reply: (u32, String, String) = cmd.query_async(&mut m).await.unwrap();
                black_box(reply)
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("redis_permits_per_second");
    g.throughput(Throughput::Elements(1));
    let unleased = limiter(&url, "bench-unleased", 1);
    g.bench_function("unleased", |b| {
        b.iter(|| black_box(unleased.reserve_permit().unwrap()))
    });
    let leased = limiter(&url, "bench-leased", 100);
    g.bench_function("lease_100", |b| {
        b.iter(|| black_box(leased.reserve_permit().unwrap()))
    });
    g.finish();
}

criterion_group!(benches, permit_vs_evalsha);
criterion_main!(benches);
