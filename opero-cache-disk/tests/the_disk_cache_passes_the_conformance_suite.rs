//! The conformance suite (`opero-conformance`) against `DiskCache` in a real temporary directory.

use std::sync::Arc;

use opero_cache_disk::DiskCache;
use opero_conformance as conformance;
use opero_core::{CacheBackend, Codec};

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
