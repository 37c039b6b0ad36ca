//! The one conformance suite (`opero_tests::conformance`) against memory, disk and a real Redis.

use std::sync::Arc;

use opero::{
    AnyCache, BuildCache, CacheBackend, CacheConfig, Codec, DiskCache, MemoryCache, MokaCache,
};
use opero::{RedisCache, RedisOptions};
use opero_tests::{conformance, RedisServer};

#[test]
fn memory_cache_sync() {
    conformance::run_sync(Arc::new(MemoryCache::default()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_async() {
    conformance::run_async(Arc::new(MemoryCache::default())).await;
}

#[test]
fn moka_cache_sync() {
    conformance::run_sync(Arc::new(MokaCache::default()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_cache_async() {
    conformance::run_async(Arc::new(MokaCache::default())).await;
}

#[test]
fn moka_is_chosen_by_name() {
    let cache = AnyCache::build(&CacheConfig::enabled("moka")).unwrap();
    assert!(matches!(cache, AnyCache::Moka(_)));
    conformance::run_sync(Arc::new(cache));
}

#[test]
fn disk_cache_sync() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_sync(Arc::new(DiskCache::new(dir.path())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cache_async() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_async(Arc::new(DiskCache::new(dir.path()))).await;
}

#[test]
fn disk_cache_with_the_json_codec() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(dir.path()).with_codec(Codec::Json);
    conformance::round_trip(&cache);
    conformance::another_type_is_a_miss(&cache);
    conformance::namespaces_are_isolated(&cache);
    // Entries written with one codec stay readable after the setting changes.
    let ns = conformance::fresh_namespace();
    cache
        .set(&conformance::key(&ns, 1), &"j".to_string(), None)
        .unwrap();
    let postcard = DiskCache::new(dir.path());
    assert_eq!(
        postcard
            .get::<String>(&conformance::key(&ns, 1))
            .unwrap()
            .as_deref(),
        Some("j")
    );
}

#[test]
fn redis_cache_sync() {
    let server = RedisServer::start();
    let cache = RedisCache::new(RedisOptions::url(server.url())).unwrap();
    conformance::run_sync(Arc::new(cache));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_async() {
    let server = RedisServer::start();
    let cache = RedisCache::new(RedisOptions::url(server.url())).unwrap();
    conformance::run_async(Arc::new(cache)).await;
}

#[test]
fn redis_cache_with_a_password_and_the_json_codec() {
    let server = RedisServer::start_with_password("s3cret");
    let cache = RedisCache::new(RedisOptions {
        codec: Codec::Json,
        ..RedisOptions::url(server.url())
    })
    .unwrap();
    conformance::round_trip(&cache);
    conformance::another_type_is_a_miss(&cache);
    conformance::ttl_expiry(&cache);

    let wrong = RedisCache::new(RedisOptions::url(format!(
        "redis://:wrong@127.0.0.1:{}/",
        server.port()
    )))
    .unwrap();
    let err = wrong.get::<u8>(&conformance::key("ns", 1)).unwrap_err();
    assert!(
        !err.to_string().contains("wrong"),
        "the password leaked: {err}"
    );
}

#[test]
fn any_cache_selects_disk_and_redis_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = CacheConfig::enabled("disk");
    disk.backend_options
        .insert("dir".into(), dir.path().display().to_string());
    let any = AnyCache::build(&disk).unwrap();
    assert!(matches!(any, AnyCache::Disk(_)));
    conformance::round_trip(&any);

    let server = RedisServer::start();
    let mut redis = CacheConfig::enabled("redis");
    redis.backend_options.insert("url".into(), server.url());
    let any = AnyCache::build(&redis).unwrap();
    assert!(matches!(any, AnyCache::Redis(_)));
    conformance::round_trip(&any);

    redis
        .backend_options
        .insert("response_timeout".into(), "-1s".into());
    assert_eq!(
        AnyCache::build(&redis).unwrap_err().field(),
        Some("response_timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opero_new_works_with_each_named_backend_sync_and_async() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start();
    for (backend, option, value) in [
        ("disk", "dir", dir.path().display().to_string()),
        ("redis", "url", server.url()),
    ] {
        let mut cache = CacheConfig::enabled(backend);
        cache.backend_options.insert(option.into(), value);
        let cfg = opero::OperoConfig {
            cache,
            ..Default::default()
        };
        let opero: opero::Opero = opero::Opero::new(cfg).unwrap();
        for _ in 0..2 {
            assert_eq!(
                opero
                    .call("abc", |s: &str| Ok::<_, String>(s.len()))
                    .unwrap(),
                3
            );
            let got = opero
                .call_async("abcd".to_string(), |s: String| async move {
                    Ok::<_, String>(s.len())
                })
                .await
                .unwrap();
            assert_eq!(got, 4);
        }
        assert_eq!(opero.metrics().cache_hits, 2, "{backend}");
    }
}
