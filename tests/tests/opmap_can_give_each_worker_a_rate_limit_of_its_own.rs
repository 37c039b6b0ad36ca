//! `rate_limit_scope(PerWorker)` gives each worker of an opmap a token bucket of its own, in every
//! mode: `n` workers make about `n × rate` calls per second, where the default shared scope keeps
//! the whole map at about `rate`. A per-worker scope with nothing to split is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opero::{opmap, Mode, OpmapBuilder, OpmapConfig, RateLimitScope};
use opero_core::{NoCache, RateLimitConfig, TokenBucket};

opero::enable_process_test_support!();

fn same(x: &u32) -> Result<u32, String> {
    Ok(*x)
}

async fn same_async(x: u32) -> Result<u32, String> {
    Ok(x)
}

/// When each of `items` calls started, in ms from `start`, sorted.
async fn start_times(scope: RateLimitScope, workers: usize, items: u32) -> Vec<u64> {
    let start = tokio::time::Instant::now();
    let map = opmap()
        .workers(workers)
        .rate_limit(10.0)
        .rate_limit_scope(scope)
        .progress(false)
        .wrap_async(move |_: u32| async move {
            Ok::<_, String>((tokio::time::Instant::now() - start).as_millis() as u64)
        })
        .unwrap();
    let mut times: Vec<u64> = map
        .call(0..items)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    times.sort();
    times
}

#[tokio::test(start_paused = true)]
async fn async_workers_each_take_permits_on_the_exact_schedule_of_their_own_limiter() {
    // Four workers, four buckets of 10/s with a burst of 1: four calls at once every 100 ms.
    let per_worker = start_times(RateLimitScope::PerWorker, 4, 12).await;
    let expected: Vec<u64> = (0..12).map(|n| 100 * (n / 4)).collect();
    assert_eq!(per_worker, expected);

    // The same map with the default scope: one call every 100 ms.
    let shared = start_times(RateLimitScope::Shared, 4, 12).await;
    let expected: Vec<u64> = (0..12).map(|n| 100 * n).collect();
    assert_eq!(shared, expected);
}

/// How long `items` calls take through a blocking map of `workers` in `mode`, at 50/s.
fn blocking_elapsed(mode: Mode, scope: RateLimitScope, workers: usize, items: u32) -> Duration {
    let map = opmap()
        .mode(mode)
        .workers(workers)
        .rate_limit(50.0)
        .rate_limit_scope(scope)
        .progress(false)
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .unwrap();
    let start = Instant::now();
    assert_eq!(map.call(0..items).len(), items as usize);
    start.elapsed()
}

#[test]
fn blocking_workers_with_their_own_limiters_go_about_workers_times_faster() {
    for mode in [Mode::Thread, Mode::Rayon] {
        // 40 permits from 4 buckets of 50/s: the tenth of each bucket is due 9 / 50 = 180 ms in.
        // One shared bucket would need 39 / 50 = 780 ms.
        let per_worker = blocking_elapsed(mode, RateLimitScope::PerWorker, 4, 40);
        assert!(
            per_worker >= Duration::from_millis(170),
            "{mode}: {per_worker:?}"
        );
        assert!(
            per_worker < Duration::from_millis(700),
            "{mode}: {per_worker:?}"
        );

        let shared = blocking_elapsed(mode, RateLimitScope::Shared, 4, 40);
        assert!(shared >= Duration::from_millis(770), "{mode}: {shared:?}");
        assert!(shared < Duration::from_secs(5), "{mode}: {shared:?}");
    }
}

#[test]
fn process_workers_with_their_own_limiters_go_about_workers_times_faster() {
    let elapsed = |scope: RateLimitScope| {
        let map = opmap()
            .workers(2)
            .rate_limit(40.0)
            .rate_limit_scope(scope)
            .progress(false)
            .wrap_process(same)
            .unwrap();
        let start = Instant::now();
        assert_eq!(map.call(0..20u32).len(), 20);
        start.elapsed()
    };
    // 20 permits from 2 buckets of 40/s: 9 / 40 = 225 ms; shared: 19 / 40 = 475 ms.
    let per_worker = elapsed(RateLimitScope::PerWorker);
    assert!(per_worker >= Duration::from_millis(215), "{per_worker:?}");
    assert!(per_worker < Duration::from_millis(450), "{per_worker:?}");
    let shared = elapsed(RateLimitScope::Shared);
    assert!(shared >= Duration::from_millis(465), "{shared:?}");
}

#[test]
fn async_process_workers_with_their_own_limiters_go_about_workers_times_faster() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let elapsed = |scope: RateLimitScope| {
        let map = opmap()
            .workers(2)
            .in_flight_per_worker(2)
            .rate_limit(40.0)
            .rate_limit_scope(scope)
            .progress(false)
            .wrap_process_async(same_async)
            .unwrap();
        let start = Instant::now();
        assert_eq!(rt.block_on(map.call(0..20u32)).len(), 20);
        start.elapsed()
    };
    let per_worker = elapsed(RateLimitScope::PerWorker);
    assert!(per_worker >= Duration::from_millis(215), "{per_worker:?}");
    assert!(per_worker < Duration::from_millis(450), "{per_worker:?}");
    let shared = elapsed(RateLimitScope::Shared);
    assert!(shared >= Duration::from_millis(465), "{shared:?}");
}

#[tokio::test]
async fn a_per_worker_scope_with_no_rate_to_split_is_refused_in_every_mode() {
    let per_worker = || opmap().rate_limit_scope(RateLimitScope::PerWorker);
    let bucket = Arc::new(TokenBucket::new(&RateLimitConfig::per_second(5.0)).unwrap());
    let errors = [
        per_worker().wrap(same).unwrap_err(),
        per_worker().mode(Mode::Rayon).wrap(same).unwrap_err(),
        per_worker().wrap_async(same_async).unwrap_err(),
        per_worker().wrap_process(same).unwrap_err(),
        per_worker().wrap_process_async(same_async).unwrap_err(),
        per_worker()
            .rate_limiter(bucket.clone())
            .wrap(same)
            .unwrap_err(),
        per_worker()
            .rate_limiter(bucket)
            .wrap_async(same_async)
            .unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.field(), Some("rate_limit_scope"), "{err}");
        assert!(err.to_string().contains("per_worker"), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn opmap_config_reads_the_scope_by_name_and_refuses_a_bad_one() {
    let cfg = OpmapConfig::from_json(
        r#"{"workers": 2, "progress": false, "rate_limit": {"rate": 10},
            "rate_limit_scope": "per_worker"}"#,
    )
    .unwrap();
    assert_eq!(cfg.rate_limit_scope, RateLimitScope::PerWorker);
    assert_eq!(
        OpmapConfig::default().rate_limit_scope,
        RateLimitScope::Shared
    );

    // The scope read from the file takes effect: two workers, two permits every 100 ms.
    let start = tokio::time::Instant::now();
    let map = OpmapBuilder::<NoCache>::from_config(cfg)
        .wrap_async(move |_: u32| async move {
            Ok::<_, String>((tokio::time::Instant::now() - start).as_millis() as u64)
        })
        .unwrap();
    let mut times: Vec<u64> = map
        .call(0..6)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    times.sort();
    assert_eq!(times, [0, 0, 100, 100, 200, 200]);

    for (text, value) in [
        (r#"{"rate_limit_scope": "per_thread"}"#, "per_thread"),
        (r#"{"rate_limit_scope": 2}"#, "2"),
        (r#"{"rate_limit_scope": "per_worker"}"#, "per_worker"),
    ] {
        let err = OpmapConfig::from_json(text).unwrap_err();
        assert_eq!(err.field(), Some("rate_limit_scope"), "{text}: {err}");
        assert!(err.to_string().contains(value), "{text}: {err}");
    }
}
