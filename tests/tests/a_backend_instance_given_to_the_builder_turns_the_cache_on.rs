//! `cache_backend(instance)` does what its documentation says: it turns the cache on. Before,
//! the instance was ignored unless `.cache(true)` came too, and nothing was cached.

use std::sync::atomic::{AtomicU32, Ordering};

use opero::{CacheBackend, MemoryCache, Opero, OperoConfig};

fn count_runs<C: CacheBackend>(opero: &Opero<C>) -> u32 {
    let runs = AtomicU32::new(0);
    for _ in 0..3 {
        let v = opero
            .named("square")
            .call(&4u32, |x: &u32| {
                runs.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(x * x)
            })
            .unwrap();
        assert_eq!(v, 16);
    }
    runs.load(Ordering::Relaxed)
}

#[test]
fn the_builders_cache_backend_turns_the_cache_on() {
    let opero = Opero::<MemoryCache>::builder()
        .cache_backend(MemoryCache::default())
        .build_with_given_cache()
        .unwrap();
    assert!(opero.cache().is_some());
    assert_eq!(count_runs(&opero), 1);
    // `build` (which could build a backend from the config) takes the instance as well.
    let opero = Opero::<MemoryCache>::builder()
        .cache_backend(MemoryCache::default())
        .build()
        .unwrap();
    assert_eq!(count_runs(&opero), 1);
}

#[test]
fn with_cache_turns_the_cache_on_whatever_the_config_says() {
    let config = OperoConfig::default();
    assert!(!config.cache.enabled);
    let opero = Opero::with_cache(config, MemoryCache::default()).unwrap();
    assert_eq!(count_runs(&opero), 1);
}

#[test]
fn a_later_cache_false_turns_it_off_again() {
    let opero = Opero::<MemoryCache>::builder()
        .cache_backend(MemoryCache::default())
        .cache(false)
        .build()
        .unwrap();
    assert!(opero.cache().is_none());
    assert_eq!(count_runs(&opero), 3);
}

#[test]
fn opmaps_cache_backend_turns_the_cache_on() {
    let map = opero::opmap()
        .cache_backend(opero::AnyCache::Memory(MemoryCache::default()))
        .progress(false)
        .wrap(|x: &u32| Ok::<_, String>(x + 1))
        .unwrap();
    map.call([1, 2]);
    map.call([1, 2]);
    assert_eq!(map.opero().metrics().cache_hits, 2);
}
