//! Redis going away never fails a call: the server is killed in the middle of a run of calls and
//! started again; every call returns the right value throughout, the failures are counted, and
//! caching resumes once the server is back.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opero_cache_redis::{RedisCache, RedisOptions};
use opero_conformance::{no_delay, RedisServer};
use opero_core::{CacheConfig, OperoConfig};

type Opero = opero_core::Opero<RedisCache>;

fn options(url: String) -> RedisOptions {
    RedisOptions {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        down_min_wait: Duration::from_millis(50),
        down_max_wait: Duration::from_millis(200),
        ..RedisOptions::url(url)
    }
}

fn pipeline(cache: RedisCache) -> Opero {
    let cfg = OperoConfig {
        retry: opero_core::RetryConfig {
            retries: 0,
            ..no_delay()
        },
        cache: CacheConfig {
            namespace: opero_conformance::fresh_namespace(),
            ..CacheConfig::enabled("redis")
        },
        ..Default::default()
    };
    Opero::with_cache(cfg, cache).unwrap()
}

/// The one call site, so every call of `x` has the same key.
fn square(opero: &Opero, x: u64, runs: &AtomicU64) -> u64 {
    opero
        .named("square")
        .call(&x, |x: &u64| {
            runs.fetch_add(1, Ordering::Relaxed);
            Ok::<_, String>(x * x)
        })
        .unwrap()
}

async fn square_async(opero: &Opero, x: u64, runs: Arc<AtomicU64>) -> u64 {
    opero
        .named("square")
        .call_async(x, move |x: u64| {
            runs.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, String>(x * x) }
        })
        .await
        .unwrap()
}

/// Waits, boundedly, until a call of a fresh argument is stored and then served from the cache.
fn wait_until_caching_resumes(opero: &Opero, runs: &AtomicU64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut x = 1_000;
    loop {
        x += 1;
        assert_eq!(square(opero, x, runs), x * x);
        let before = opero.metrics().cache_hits;
        assert_eq!(square(opero, x, runs), x * x);
        if opero.metrics().cache_hits > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume: {:?}",
            opero.metrics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sync_calls_stay_right_while_the_server_dies_and_comes_back() {
    let mut server = RedisServer::start();
    let opero = pipeline(RedisCache::new(options(server.url())).unwrap());
    let runs = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let x = i % 16;
                    let started = Instant::now();
                    assert_eq!(square(&opero, x, &runs), x * x);
                    // Connect + response timeouts, once for the lookup; the store then fails fast.
                    assert!(
                        started.elapsed() < Duration::from_secs(3),
                        "{:?}",
                        started.elapsed()
                    );
                    calls.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let hits_before_kill = opero.metrics().cache_hits;
        assert!(hits_before_kill > 0);
        server.stop();
        std::thread::sleep(Duration::from_millis(500));
        assert!(opero.metrics().cache_errors > 0, "{:?}", opero.metrics());
        server.restart();
        wait_until_caching_resumes(&opero, &runs);
        stop.store(true, Ordering::Relaxed);
    });
    assert!(calls.load(Ordering::Relaxed) > 0);
    let m = opero.metrics();
    assert!(m.cache_errors > 0 && m.cache_hits > 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_stay_right_while_the_server_dies_and_comes_back() {
    let mut server = RedisServer::start();
    let opero = pipeline(RedisCache::new(options(server.url())).unwrap());
    let runs = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (opero, runs, stop) = (opero.clone(), Arc::clone(&runs), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let x = i % 16;
                assert_eq!(square_async(&opero, x, Arc::clone(&runs)).await, x * x);
                i += 1;
                tokio::task::yield_now().await;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(opero.metrics().cache_hits > 0);
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(opero.metrics().cache_errors > 0, "{:?}", opero.metrics());
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut x = 1_000;
    loop {
        x += 1;
        assert_eq!(square_async(&opero, x, Arc::clone(&runs)).await, x * x);
        let before = opero.metrics().cache_hits;
        assert_eq!(square_async(&opero, x, Arc::clone(&runs)).await, x * x);
        if opero.metrics().cache_hits > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume: {:?}",
            opero.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(worker.await.unwrap() > 0);
}

#[test]
fn a_server_that_never_answers_delays_a_call_by_the_timeout_then_none_at_all() {
    // Accepts connections (the kernel does) and never replies.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("redis://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    let opero = pipeline(
        RedisCache::new(RedisOptions {
            down_min_wait: Duration::from_secs(30),
            down_max_wait: Duration::from_secs(30),
            ..options(url)
        })
        .unwrap(),
    );
    let runs = AtomicU64::new(0);
    let started = Instant::now();
    assert_eq!(square(&opero, 3, &runs), 9);
    let first = started.elapsed();
    assert!(first < Duration::from_secs(2), "{first:?}");
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(square(&opero, 3, &runs), 9);
    }
    // Marked down: no more timeouts paid.
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(runs.load(Ordering::Relaxed), 11);
    assert!(opero.cache().unwrap().is_marked_down());
    assert!(opero.metrics().cache_errors >= 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_call_to_a_silent_server_is_bounded_too() {
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("redis://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    let opero = pipeline(RedisCache::new(options(url)).unwrap());
    let runs = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    assert_eq!(square_async(&opero, 4, Arc::clone(&runs)).await, 16);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(opero.metrics().cache_errors >= 1);
}
