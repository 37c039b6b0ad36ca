//! A backend instance given to the builder is the one the pipeline caches in, whatever cache
//! settings follow it (`cache(true)`, a whole `cache_config`, a TTL); `cache(false)` turns the
//! cache off.

use std::time::Duration;

use super::a_pipeline_caches_falls_back_retries_and_limits_on_an_exact_schedule::MapCache;
use crate::{CacheBackend, CacheConfig, CacheKey, FunctionLabel, Opero};

/// A backend holding one entry already, to tell this instance from a fresh one.
fn primed() -> MapCache {
    let cache = MapCache::default();
    let key = CacheKey {
        namespace: "primed",
        function: FunctionLabel::Named("marker"),
        hash: 1,
    };
    cache.set(&key, &1u8, None).unwrap();
    cache
}

#[test]
fn the_instance_survives_cache_true_a_cache_config_and_a_ttl() {
    let opero = Opero::<MapCache>::builder()
        .cache_backend(primed())
        .cache(true)
        .cache_ttl(Duration::from_secs(60))
        .build_with_given_cache()
        .unwrap();
    assert_eq!(opero.cache().unwrap().len(), 1, "the primed instance");
    let config = CacheConfig {
        namespace: "mine".into(),
        ..CacheConfig::enabled("map")
    };
    let opero = Opero::<MapCache>::builder()
        .cache_backend(primed())
        .cache_config(config)
        .build_with_given_cache()
        .unwrap();
    assert_eq!(opero.cache_config().namespace, "mine");
    assert_eq!(opero.cache().unwrap().len(), 1);
    assert_eq!(
        opero
            .named("f")
            .call(&2u8, |x: &u8| Ok::<_, String>(*x))
            .unwrap(),
        2
    );
    assert!(opero.cache().unwrap().entry("mine:").is_some());
}

#[test]
fn cache_false_after_an_instance_turns_the_cache_off() {
    let opero = Opero::<MapCache>::builder()
        .cache_backend(primed())
        .cache(false)
        .build_with_given_cache()
        .unwrap();
    assert!(opero.cache().is_none());
}
