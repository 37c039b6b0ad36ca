//! `RedisOptions::cluster` names a Redis Cluster by its seed URLs: the options keep every seed, in
//! order, and say they name a cluster, even with a single seed.

use opero_cache_redis::RedisOptions;

#[test]
fn cluster_options_keep_every_seed_in_order() {
    let options = RedisOptions::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]);
    assert_eq!(
        options.urls(),
        ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
    );
    assert!(options.cluster);
    assert!(options.is_cluster());
}

#[test]
fn one_seed_still_names_a_cluster() {
    let options = RedisOptions::cluster(["redis://127.0.0.1:7000"]);
    assert_eq!(options.urls(), ["redis://127.0.0.1:7000"]);
    assert!(options.is_cluster());
    // The same URL through `RedisOptions::url` names a single server.
    assert!(!RedisOptions::url("redis://127.0.0.1:7000").is_cluster());
}
