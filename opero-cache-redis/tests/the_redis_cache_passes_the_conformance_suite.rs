//! The conformance suite (`opero-conformance`) against `RedisCache` and a real redis-server.

use std::sync::Arc;

use opero_cache_redis::{RedisCache, RedisOptions};
use opero_conformance::{self as conformance, RedisServer};
use opero_core::{CacheBackend, Codec};

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
