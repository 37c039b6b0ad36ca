//! A third party's backend, written against `opero-core` alone: a map of encoded entries behind
//! a lock, with its own expiry. It plugs into `Opero<ItsType>` and passes the same conformance
//! suite as opero's own backends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opero_core::{
    BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, Codec, Decoded, Opero,
    OperoConfig, OperoError,
};

/// Entries by (namespace, key text), stored as bytes the way a remote store would hold them.
#[derive(Default)]
struct SharedMapCache {
    entries: Mutex<HashMap<(String, String), Vec<u8>>>,
    codec: Codec,
}

impl CacheBackend for SharedMapCache {
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        let id = (key.namespace.to_owned(), key.to_string());
        let Some(bytes) = self.entries.lock().unwrap().get(&id).cloned() else {
            return Ok(None);
        };
        match self.codec.decode::<V>(key, &bytes)? {
            Decoded::Value(v) => Ok(Some(v)),
            Decoded::Expired => {
                self.entries.lock().unwrap().remove(&id);
                Ok(None)
            }
            Decoded::Foreign => Ok(None),
        }
    }

    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        let bytes = self.codec.encode_with_ttl(key, value, ttl)?;
        let id = (key.namespace.to_owned(), key.to_string());
        self.entries.lock().unwrap().insert(id, bytes);
        Ok(())
    }

    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        let id = (key.namespace.to_owned(), key.to_string());
        self.entries.lock().unwrap().remove(&id);
        Ok(())
    }

    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        self.entries
            .lock()
            .unwrap()
            .retain(|(ns, _), _| ns != namespace);
        Ok(())
    }
}

impl BuildCache for SharedMapCache {
    fn build(config: &CacheConfig) -> Result<Self, OperoError> {
        Ok(SharedMapCache {
            codec: config.option("codec")?.unwrap_or_default(),
            ..Default::default()
        })
    }
}

#[test]
fn the_users_backend_passes_the_sync_suite() {
    opero_tests::conformance::run_sync(Arc::new(SharedMapCache::default()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_backend_passes_the_async_suite() {
    opero_tests::conformance::run_async(Arc::new(SharedMapCache::default())).await;
}

#[test]
fn opero_builds_the_users_backend_from_a_config() {
    let mut cache = CacheConfig::enabled("shared-map");
    cache.backend_options.insert("codec".into(), "json".into());
    let opero = Opero::<SharedMapCache>::new(OperoConfig {
        cache,
        ..Default::default()
    })
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            opero.call(&2u8, |x: &u8| Ok::<_, String>(x + 1)).unwrap(),
            3
        );
    }
    assert_eq!(opero.metrics().cache_hits, 2);
    assert_eq!(opero.cache().unwrap().codec, Codec::Json);
}
