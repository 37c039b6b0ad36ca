//! `run(f)` honours the cache as the original's `@opero(cache=True)` does for a function of no
//! arguments, and a pipeline without a cache type asks nothing of values and arguments: no
//! serde, no `Clone`, borrowed values welcome.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opero::{
    opero, CacheBackend, CacheConfig, DiskCache, MemoryCache, NoCache, Opero, OperoConfig,
    RedisCache, RedisOptions,
};
use opero_tests::{cached, RedisServer};

thread_local! {
    // Per test thread: the tests of this file run in parallel, each calling on its own thread.
    static RUNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn fetch_config() -> Result<String, String> {
    RUNS.set(RUNS.get() + 1);
    Ok("config v1".to_owned())
}

fn run_is_cached<C: CacheBackend>(opero: Opero<C>) {
    let before = RUNS.get();
    for _ in 0..3 {
        assert_eq!(opero.run(fetch_config).unwrap(), "config v1");
    }
    assert_eq!(RUNS.get() - before, 1, "a fn item is cached by run");
    let m = opero.metrics();
    assert_eq!((m.cache_hits, m.cache_misses), (2, 1));

    // A closure that captures state runs uncached, counted; named, it is cached.
    let runs = AtomicU32::new(0);
    let counted = || {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(7u32)
    };
    for _ in 0..2 {
        assert_eq!(opero.run(counted).unwrap(), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(opero.metrics().cache_unidentified, 2);
    for _ in 0..2 {
        assert_eq!(opero.named("seven").run(counted).unwrap(), 7);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "named, the second run was a hit"
    );
}

#[test]
fn run_is_cached_on_memory() {
    run_is_cached(cached(MemoryCache::default()));
}

#[test]
fn run_is_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    run_is_cached(cached(DiskCache::new(dir.path())));
}

#[test]
fn run_is_cached_on_redis() {
    let server = RedisServer::start();
    run_is_cached(cached(Arc::new(
        RedisCache::new(RedisOptions::url(server.url())).unwrap(),
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_async_is_cached_and_may_borrow() {
    let opero = cached(MemoryCache::default());
    let greeting = String::from("hello");
    let runs = AtomicU32::new(0);
    for _ in 0..3 {
        // Borrows `greeting` and `runs` from this scope: no 'static needed.
        let got = opero
            .named("greet")
            .run_async(|| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(greeting.len())
            })
            .await
            .unwrap();
        assert_eq!(got, 5);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A client a user already has: not 'static, not serde, not Clone.
struct Client {
    base: String,
}

impl Client {
    async fn get(&self, id: u32) -> Result<String, String> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(format!("{}/{id}", self.base))
    }
}

#[tokio::test]
async fn an_async_closure_may_borrow_a_local() {
    let client = Client {
        base: "https://example.test".to_owned(),
    };
    let opero = Opero::<NoCache>::builder().retries(1).build().unwrap();
    let got = opero.call_async(7, |id| client.get(id)).await.unwrap();
    assert_eq!(got, "https://example.test/7");
    let got = opero.run_async(|| client.get(8)).await.unwrap();
    assert_eq!(got, "https://example.test/8");
}

/// Neither serde nor Clone.
struct Connection {
    id: u32,
}

/// Not serde either.
struct Request<'a> {
    path: &'a str,
}

#[test]
fn without_a_cache_values_and_arguments_need_no_serde_and_no_clone() {
    // A function returning a borrowed `&'static str`, with the cache never turned on.
    fn label(x: &u32) -> Result<&'static str, String> {
        Ok(if *x & 1 == 0 { "even" } else { "odd" })
    }
    let labelled = opero().retries(2).wrap(label).unwrap();
    assert_eq!(labelled.call(&3).unwrap(), "odd");

    let opero = opero().retries(0).build().unwrap();
    let conn = opero.run(|| Ok::<_, String>(Connection { id: 9 })).unwrap();
    assert_eq!(conn.id, 9);
    let req = Request { path: "/a" };
    let len = opero
        .call(&req, |r: &Request<'_>| Ok::<_, String>(r.path.len()))
        .unwrap();
    assert_eq!(len, 2);

    let map = opero::opmap()
        .progress(false)
        .wrap(|x: &u32| Ok::<_, String>(Connection { id: *x }))
        .unwrap();
    let ids: Vec<u32> = map
        .call([1, 2])
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn a_no_cache_pipeline_refuses_a_config_that_turns_caching_on() {
    let config = OperoConfig {
        cache: CacheConfig::enabled("memory"),
        ..OperoConfig::default()
    };
    let err = Opero::<NoCache>::new(config).unwrap_err();
    assert_eq!(err.field(), Some("cache.enabled"));
    // The facade's builder turns into a caching one with `.cache(true)`.
    let cached = opero().cache(true).build().unwrap();
    assert!(cached.cache().is_some());
}
