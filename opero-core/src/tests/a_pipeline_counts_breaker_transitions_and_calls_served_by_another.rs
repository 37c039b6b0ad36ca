//! `Opero::metrics` counts what a dashboard needs without the `metrics` feature: each circuit
//! breaker transition (open, half-open, closed) and each attempt an open breaker refused, and each
//! call served by a concurrent identical call instead of running.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::a_pipeline_caches_falls_back_retries_and_limits_on_an_exact_schedule::MapCache;
use crate::{BreakerConfig, NoCache, Opero};

#[test]
fn each_breaker_transition_and_refusal_is_counted() {
    let opero = Opero::<NoCache>::builder()
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(1),
            open_duration: Duration::from_millis(1),
            ..Default::default()
        })
        .retries(0)
        .build()
        .unwrap();
    assert!(opero.run(|| Err::<(), _>("down")).is_err());
    let m = opero.metrics();
    assert_eq!((m.breaker_opened, m.breaker_rejections), (1, 0));
    // Open: refused without a call.
    assert!(opero.run(|| Ok::<_, &str>(())).is_err());
    assert_eq!(opero.metrics().breaker_rejections, 1);
    // Past the open duration a probe goes through, succeeds and closes the breaker.
    std::thread::sleep(Duration::from_millis(5));
    assert!(opero.run(|| Ok::<_, &str>(())).is_ok());
    let m = opero.metrics();
    assert_eq!(
        (
            m.breaker_opened,
            m.breaker_half_opened,
            m.breaker_closed,
            m.breaker_rejections
        ),
        (1, 1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_served_by_a_concurrent_identical_call_is_counted() {
    let opero = Opero::<MapCache>::builder()
        .cache_backend(MapCache::default())
        .retries(0)
        .build_with_given_cache()
        .unwrap()
        .named("slow");
    let runs = AtomicU32::new(0);
    let slow = |x: u32| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(x + 1)
        }
    };
    let (a, b) = tokio::join!(opero.call_async(1u32, slow), opero.call_async(1u32, slow));
    assert_eq!((a.unwrap(), b.unwrap()), (2, 2));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let m = opero.metrics();
    assert_eq!((m.cache_misses, m.cache_coalesced), (2, 1));
}
