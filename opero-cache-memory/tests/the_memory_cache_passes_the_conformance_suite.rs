//! The conformance suite (`opero-conformance`) against `MemoryCache` and `MokaCache`.

use std::sync::Arc;

use opero_cache_memory::MemoryCache;
#[cfg(feature = "moka")]
use opero_cache_memory::MokaCache;

#[test]
fn memory_cache_sync() {
    opero_conformance::run_sync(Arc::new(MemoryCache::default()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_async() {
    opero_conformance::run_async(Arc::new(MemoryCache::default())).await;
}

#[cfg(feature = "moka")]
#[test]
fn moka_cache_sync() {
    opero_conformance::run_sync(Arc::new(MokaCache::default()));
}

#[cfg(feature = "moka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_cache_async() {
    opero_conformance::run_async(Arc::new(MokaCache::default())).await;
}
