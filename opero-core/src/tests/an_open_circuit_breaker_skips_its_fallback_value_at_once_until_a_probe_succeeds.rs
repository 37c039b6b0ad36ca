//! A circuit breaker per fallback value, on tokio's paused clock: consecutive failures open the
//! primary's breaker, which ends its retries without a delay; while open the primary is skipped
//! at once (an `AttemptError::BreakerOpen`, no call, no sleep) and the backup serves; after the
//! open duration one probe goes through: a failed probe re-opens for a full open duration, a
//! successful one closes. Every transition is counted and logged with the fallback index, never
//! the value.
//!
//! The twin, in opero-core, of the facade's test of the same name (the mutation run of
//! opero-core rebuilds only this crate).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{
    AttemptError, BreakerConfig, BreakerState, Fallbacks, Jitter, NoCache, Opero, OperoBuilder,
};
use tokio::time::{advance, Instant};

fn opero() -> OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
}

const OPEN: Duration = Duration::from_secs(10);

/// The tests of this file run one at a time: with breaker callsites first reached by a test on
/// another thread that has no subscriber, the log-capturing test missed its warnings (tracing
/// caches each callsite's interest process-wide).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Log lines written by the `tracing` subscriber installed for one test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test(start_paused = true)]
#[allow(clippy::await_holding_lock)] // each test has its own runtime; the lock only orders tests
async fn the_breaker_opens_skips_probes_reopens_and_closes_on_the_exact_schedule() {
    let _serial = one_at_a_time();
    let logs = Logs::default();
    let writer = logs.clone();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );

    let pipeline = opero()
        .retries(5)
        .min_delay(Duration::from_millis(100))
        .backoff_factor(1.0)
        .jitter(Jitter::None)
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(3),
            open_duration: OPEN,
            half_open_probes: 1,
            ..Default::default()
        })
        .build()
        .unwrap();
    let endpoints = Fallbacks::new(vec!["secret-primary-key", "secret-backup-key"]).unwrap();
    let primary_up = Arc::new(AtomicBool::new(false));
    let primary_calls = Arc::new(AtomicU32::new(0));
    let call = || {
        let up = Arc::clone(&primary_up);
        let calls = Arc::clone(&primary_calls);
        pipeline.run_fallback_async(&endpoints, move |key: &str| {
            let up = up.load(Ordering::SeqCst);
            let primary = key.ends_with("primary-key");
            if primary {
                calls.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                match (primary, up) {
                    (true, false) => Err("503"),
                    (true, true) => Ok("served by the primary"),
                    (false, _) => Ok("served by the backup"),
                }
            }
        })
    };
    let start = Instant::now();

    // Three failures 100 ms apart open the primary's breaker; its three remaining retries are
    // dropped without a delay and the backup serves at once.
    let t = Instant::now();
    assert_eq!(call().await.unwrap(), "served by the backup");
    assert_eq!(t.elapsed(), Duration::from_millis(200));
    assert_eq!(primary_calls.load(Ordering::SeqCst), 3);
    let breaker = pipeline.circuit_breaker(0).unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        pipeline.circuit_breaker(1).unwrap().state(),
        BreakerState::Closed
    );

    // Open: the primary is not called and nothing sleeps, up to the last nanosecond.
    let t = Instant::now();
    assert_eq!(call().await.unwrap(), "served by the backup");
    advance(OPEN - Duration::from_millis(1)).await;
    assert_eq!(call().await.unwrap(), "served by the backup");
    assert_eq!(t.elapsed(), OPEN - Duration::from_millis(1));
    assert_eq!(primary_calls.load(Ordering::SeqCst), 3);

    // At the open duration one probe goes through; it fails, and the breaker re-opens at once,
    // without a retry delay.
    advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let t = Instant::now();
    assert_eq!(call().await.unwrap(), "served by the backup");
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(primary_calls.load(Ordering::SeqCst), 4);
    assert_eq!(breaker.state(), BreakerState::Open);

    // A full open duration again, counted from the failed probe.
    primary_up.store(true, Ordering::SeqCst);
    advance(OPEN - Duration::from_millis(1)).await;
    assert_eq!(call().await.unwrap(), "served by the backup");
    assert_eq!(primary_calls.load(Ordering::SeqCst), 4);
    advance(Duration::from_millis(1)).await;
    assert_eq!(call().await.unwrap(), "served by the primary");
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(call().await.unwrap(), "served by the primary");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(200) + OPEN * 2 - Duration::from_millis(1) + Duration::from_millis(1)
    );

    let m = pipeline.metrics();
    assert_eq!(
        (
            m.breaker_opened,
            m.breaker_half_opened,
            m.breaker_closed,
            m.breaker_rejections
        ),
        (2, 2, 1, 3)
    );

    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("circuit breaker opened"),
        "{text}"
    );
    assert!(text.contains("circuit breaker half-open"), "{text}");
    assert!(text.contains("circuit breaker closed"), "{text}");
    assert!(text.contains("fallback_index=0"), "{text}");
    assert!(
        !text.contains("secret-"),
        "a fallback value was logged: {text}"
    );
}

#[tokio::test(start_paused = true)]
#[allow(clippy::await_holding_lock)] // each test has its own runtime; the lock only orders tests
async fn when_every_breaker_is_open_the_call_fails_at_once_with_one_breaker_open_per_value() {
    let _serial = one_at_a_time();
    let pipeline = opero()
        .retries(0)
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(1),
            open_duration: OPEN,
            ..Default::default()
        })
        .build()
        .unwrap();
    let values = Fallbacks::new(vec![1u8, 2, 3]).unwrap();
    let failed = pipeline
        .run_fallback_async(&values, |_| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!(failed.len(), 3);

    let t = Instant::now();
    let calls = AtomicU32::new(0);
    let refused = pipeline
        .run_fallback_async(&values, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, &str>(()) }
        })
        .await
        .unwrap_err();
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let seen: Vec<_> = refused
        .attempts()
        .iter()
        .map(|a| (a.fallback_index, a.attempt, a.error.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, 1, AttemptError::BreakerOpen),
            (1, 1, AttemptError::BreakerOpen),
            (2, 1, AttemptError::BreakerOpen),
        ]
    );
    assert!(
        refused.to_string().contains("circuit breaker open"),
        "{refused}"
    );
}

#[tokio::test(start_paused = true)]
#[allow(clippy::await_holding_lock)] // each test has its own runtime; the lock only orders tests
async fn the_ratio_trigger_opens_only_past_the_minimum_throughput_within_the_window() {
    let _serial = one_at_a_time();
    let pipeline = opero()
        .retries(0)
        .circuit_breaker(BreakerConfig {
            failure_threshold: None,
            failure_ratio: Some(0.5),
            window: Duration::from_secs(10),
            min_throughput: 4,
            open_duration: OPEN,
            half_open_probes: 1,
        })
        .build()
        .unwrap();
    let outcome = |ok: bool| {
        let p = &pipeline;
        async move {
            p.run_async(|| async move {
                if ok {
                    Ok(())
                } else {
                    Err("boom")
                }
            })
            .await
        }
    };
    let breaker = pipeline.circuit_breaker(0).unwrap();
    // Three failures are under the minimum throughput of four calls.
    for _ in 0..3 {
        assert!(outcome(false).await.is_err());
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    // Past the window they are forgotten: one success and one failure are 50 % of only 2 calls.
    advance(Duration::from_secs(11)).await;
    assert!(outcome(true).await.is_ok());
    assert!(outcome(false).await.is_err());
    assert!(outcome(true).await.is_ok());
    assert_eq!(breaker.state(), BreakerState::Closed);
    // The fourth call in the window makes 2 failures of 4.
    assert!(outcome(false).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = outcome(true).await.unwrap_err();
    assert_eq!(err.attempts()[0].error, AttemptError::BreakerOpen);
}

#[test]
fn a_sync_pipeline_opens_and_closes_its_breaker_with_no_runtime() {
    let _serial = one_at_a_time();
    let pipeline = opero()
        .retries(0)
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(2),
            open_duration: Duration::from_millis(50),
            ..Default::default()
        })
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(pipeline.run(|| Err::<(), _>("down")).is_err());
    }
    let mut called = false;
    let err = pipeline
        .run(|| {
            called = true;
            Ok::<_, &str>(())
        })
        .unwrap_err();
    assert!(!called);
    assert_eq!(err.attempts()[0].error, AttemptError::BreakerOpen);
    // Sync timings assert bounds: at least the open duration later, a probe closes it.
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(pipeline.run(|| Ok::<_, &str>(5)).unwrap(), 5);
    assert_eq!(
        pipeline.circuit_breaker(0).unwrap().state(),
        BreakerState::Closed
    );
}
