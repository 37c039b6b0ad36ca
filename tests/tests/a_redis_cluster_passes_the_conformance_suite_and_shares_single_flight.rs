//! A local three-primary Redis Cluster (started by the harness): the conformance suite passes on
//! it, clearing a namespace empties every primary, the keys of one entry's flight share its
//! slot, and single-flight across backends works on it, sync and async.

use std::sync::Arc;

use opero::{BuildCache, CacheBackend, CacheConfig, RedisCache, RedisOptions};
use opero_tests::{conformance, flight, RedisCluster};

fn cluster_cache(cluster: &RedisCluster) -> RedisCache {
    RedisCache::new(RedisOptions::cluster(cluster.urls())).unwrap()
}

/// The keys of `namespace` on the node at `port`.
fn keys_on(port: u16, namespace: &str) -> Vec<String> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(&mut conn)
        .unwrap()
}

#[test]
fn the_conformance_suite_passes_on_a_cluster_sync_and_async() {
    let cluster = RedisCluster::start();
    conformance::run_sync(Arc::new(cluster_cache(&cluster)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(conformance::run_async(Arc::new(cluster_cache(&cluster))));
}

#[test]
fn clearing_a_namespace_visits_every_primary() {
    let cluster = RedisCluster::start();
    let cache = cluster_cache(&cluster);
    let (ns, other) = (
        conformance::fresh_namespace(),
        conformance::fresh_namespace(),
    );
    for n in 0..300 {
        cache.set(&conformance::key(&ns, n), &n, None).unwrap();
        cache.set(&conformance::key(&other, n), &n, None).unwrap();
    }
    let spread: Vec<usize> = cluster
        .ports()
        .into_iter()
        .map(|p| keys_on(p, &ns).len())
        .collect();
    assert!(
        spread.iter().all(|&n| n > 0),
        "keys on every primary: {spread:?}"
    );
    assert_eq!(spread.iter().sum::<usize>(), 300);
    cache.clear(&ns).unwrap();
    for port in cluster.ports() {
        assert!(keys_on(port, &ns).is_empty());
    }
    assert_eq!(
        cache.get::<u128>(&conformance::key(&other, 7)).unwrap(),
        Some(7)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(cache.clear_async(&other)).unwrap();
    for port in cluster.ports() {
        assert!(keys_on(port, &other).is_empty());
    }
}

#[test]
fn the_cluster_option_and_several_urls_both_select_the_cluster_from_config() {
    let cluster = RedisCluster::start();
    let ns = conformance::fresh_namespace();
    let key = conformance::key(&ns, 1);
    let mut config = CacheConfig::enabled("redis");
    config
        .backend_options
        .insert("url".into(), cluster.urls().join(","));
    RedisCache::build(&config)
        .unwrap()
        .set(&key, &1u8, None)
        .unwrap();
    // One seed is enough once the option says it is a cluster: keys on other nodes are found.
    for seed in cluster.urls() {
        let mut config = CacheConfig::enabled("redis");
        config.backend_options.insert("url".into(), seed);
        config
            .backend_options
            .insert("cluster".into(), "true".into());
        assert_eq!(
            RedisCache::build(&config).unwrap().get::<u8>(&key).unwrap(),
            Some(1)
        );
    }
}

#[test]
fn the_flight_lock_sits_in_its_entry_s_slot() {
    let cluster = RedisCluster::start();
    let cache = cluster_cache(&cluster);
    let mut conn = redis::Client::open(cluster.urls()[0].as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut slot = |k: &str| -> i64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(k)
            .query(&mut conn)
            .unwrap()
    };
    let ns = conformance::fresh_namespace();
    for n in 0..20 {
        let key = conformance::key(&ns, n);
        let lock = cache.flight_lock_key(&key).unwrap();
        assert_eq!(slot(&lock), slot(&key.to_string()), "{lock}");
    }
}

#[test]
fn single_flight_spans_backends_on_a_cluster() {
    let cluster = RedisCluster::start();
    assert_eq!(
        flight::concurrent_pipelines_runs(|| cluster_cache(&cluster)),
        1
    );
    assert_eq!(
        flight::errors_are_not_shared(|| cluster_cache(&cluster)),
        flight::PIPELINES
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let runs = runtime.block_on(flight::concurrent_pipelines_runs_async(|| {
        cluster_cache(&cluster)
    }));
    assert_eq!(runs, 1);
}
