//! The one conformance suite (`opero_tests::conformance`) against the backends the facade picks
//! by name. Each backend crate runs the suite on its own backend from its own tests:
//! `the_memory_cache_passes_the_conformance_suite` (with moka), `the_disk_cache_…`,
//! `the_redis_cache_…` (a real redis-server).

use std::sync::Arc;

use opero::{AnyCache, BuildCache, CacheConfig};
use opero_tests::{conformance, RedisServer};

#[test]
fn moka_is_chosen_by_name() {
    let cache = AnyCache::build(&CacheConfig::enabled("moka")).unwrap();
    assert!(matches!(cache, AnyCache::Moka(_)));
    conformance::run_sync(Arc::new(cache));
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
