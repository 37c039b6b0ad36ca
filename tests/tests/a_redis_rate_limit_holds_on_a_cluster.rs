//! The Redis rate limiter on a local three-primary Redis Cluster started by the harness: one
//! bucket, reached through any seed, shared by limiters and pipelines naming it, in every form.

use std::time::{Duration, Instant};

use opero::{OperoConfig, RedisLimiterOptions, RedisRateLimiter};
use opero_core::RateLimitConfig;
use opero_tests::RedisCluster;

fn cluster_options(cluster: &RedisCluster, name: &str) -> RedisLimiterOptions {
    let mut options = RedisLimiterOptions::new(cluster.urls().join(","), name);
    options.cluster = true;
    options
}

#[test]
fn limiters_naming_one_limit_on_a_cluster_share_one_bucket() {
    let cluster = RedisCluster::start();
    let config = RateLimitConfig::per_second(1.0).with_burst(2);
    let a = RedisRateLimiter::new(&config, cluster_options(&cluster, "cluster-shared")).unwrap();
    let b = RedisRateLimiter::new(&config, cluster_options(&cluster, "cluster-shared")).unwrap();
    assert!(a.try_acquire_permit().unwrap());
    assert!(b.try_acquire_permit().unwrap(), "the burst holds two");
    assert!(
        !a.try_acquire_permit().unwrap(),
        "the burst is spent for both"
    );
    assert!(!b.try_acquire_permit().unwrap());
    let other = RedisRateLimiter::new(&config, cluster_options(&cluster, "cluster-other")).unwrap();
    assert!(
        other.try_acquire_permit().unwrap(),
        "another name, another bucket"
    );
    assert_eq!(a.stats().redis_errors, 0);
    assert_eq!(
        a.stats().local_permits,
        0,
        "every permit came from the cluster"
    );
}

#[test]
fn a_blocking_limit_on_a_cluster_spaces_its_permits() {
    let cluster = RedisCluster::start();
    let config = RateLimitConfig::per_second(20.0);
    let limiter =
        RedisRateLimiter::new(&config, cluster_options(&cluster, "cluster-rate")).unwrap();
    let start = Instant::now();
    for _ in 0..11 {
        limiter.acquire_blocking_permit().unwrap();
    }
    // Ten intervals of 50 ms after the first, free permit; bounds, not exact times.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_built_from_a_cluster_config_is_limited_async() {
    let cluster = RedisCluster::start();
    let json = format!(
        r#"{{"rate_limit": {{"rate": 10, "backend": "redis",
            "backend_options": {{"url": "{}", "cluster": "true", "name": "cluster-config"}}}}}}"#,
        cluster.urls().join(",")
    );
    let opero = opero::opero()
        .rate_limit_config(OperoConfig::from_json(&json).unwrap().rate_limit)
        .build()
        .unwrap();
    let start = Instant::now();
    for i in 0..6u32 {
        let got = opero.run_async(|| async move { Ok::<_, String>(i) }).await;
        assert_eq!(got.unwrap(), i);
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "five waits of 100 ms: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}
