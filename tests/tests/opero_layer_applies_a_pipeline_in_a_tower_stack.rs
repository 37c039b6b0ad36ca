//! `OperoLayer` in a `ServiceBuilder` stack: retries on tokio's paused clock follow the exact
//! backoff schedule, fallback values rewrite the request in order, the rate limit spaces attempts,
//! and a pipeline with its cache on is refused with an error naming the field.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opero::{Fallbacks, Jitter, MemoryCache, NoCache, Opero, OperoLayer};
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// A service failing its first `fail` calls, recording when each call came (since `start`) and
/// with what request.
fn flaky(
    fail: usize,
    start: Instant,
    log: Arc<Mutex<Vec<(Duration, String)>>>,
) -> impl Service<String, Response = String, Error = String, Future = impl Send> + Clone {
    service_fn(move |req: String| {
        let log = log.clone();
        async move {
            let mut log = log.lock().unwrap();
            log.push((start.elapsed(), req.clone()));
            if log.len() <= fail {
                Err(format!("fail {}", log.len()))
            } else {
                Ok(format!("ok {req}"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff_schedule_exactly() {
    let opero = Opero::<NoCache>::builder()
        .retries(3)
        .min_delay(Duration::from_millis(100))
        .backoff_factor(2.0)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut svc = ServiceBuilder::new()
        .layer(OperoLayer::new(opero).unwrap())
        .service(flaky(2, start, log.clone()));
    let got = svc.ready().await.unwrap().call("a".to_string()).await;
    assert_eq!(got.unwrap(), "ok a");
    let times: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(times, vec![0, 100, 300]);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_failing_returns_every_error() {
    let opero = Opero::<NoCache>::builder()
        .retries(1)
        .min_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut svc = ServiceBuilder::new()
        .layer(OperoLayer::new(opero).unwrap())
        .service(flaky(usize::MAX, Instant::now(), log));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call("a".into())
        .await
        .unwrap_err();
    assert_eq!(err.len(), 2);
    assert_eq!(err.last_error().unwrap(), "fail 2");
}

#[tokio::test(start_paused = true)]
async fn fallback_values_rewrite_the_request_in_order() {
    let opero = Opero::<NoCache>::builder()
        .retries(1)
        .min_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let mirrors = Fallbacks::new(vec!["m1", "m2"]).unwrap();
    let layer = OperoLayer::new(opero)
        .unwrap()
        .with_fallbacks(mirrors, |req: String, m: &&str| format!("{m}/{req}"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    // Fails 3 times: both attempts on m1 and the first on m2.
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(flaky(3, start, log.clone()));
    let got = svc.ready().await.unwrap().call("x".into()).await;
    assert_eq!(got.unwrap(), "ok m2/x");
    let log = log.lock().unwrap().clone();
    let seen: Vec<_> = log
        .iter()
        .map(|(t, r)| (t.as_millis(), r.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![(0, "m1/x"), (10, "m1/x"), (10, "m2/x"), (20, "m2/x")]
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_requests() {
    let opero = Opero::<NoCache>::builder()
        .retries(0)
        .rate_limit(10.0)
        .burst(1)
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut svc = ServiceBuilder::new()
        .layer(OperoLayer::new(opero).unwrap())
        .service(flaky(0, start, log.clone()));
    for i in 0..3 {
        svc.ready()
            .await
            .unwrap()
            .call(i.to_string())
            .await
            .unwrap();
    }
    let times: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(times, vec![0, 100, 200]);
}

#[test]
fn a_pipeline_with_its_cache_on_is_refused() {
    let opero = Opero::<MemoryCache>::builder().cache(true).build().unwrap();
    let err = OperoLayer::new(opero).unwrap_err();
    assert_eq!(err.field(), Some("cache.enabled"));
}
