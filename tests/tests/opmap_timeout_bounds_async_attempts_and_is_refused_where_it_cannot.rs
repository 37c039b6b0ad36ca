//! `timeout` on an opmap takes effect or is refused, never ignored: in mode `async` each attempt
//! of an item is bounded (a late one fails with `AttemptError::TimedOut` and is retried on the
//! backoff schedule), while a blocking function in mode `thread` or `rayon`, which cannot be
//! stopped midway, is refused when the map is built, from the builder and from a config alike.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opero::{opmap, AttemptError, ErrorKind, Fallbacks, Jitter, Mode, OpmapBuilder, OpmapConfig};

const TIMEOUT: Duration = Duration::from_millis(100);

/// The errors of every attempt of a failed item, in order.
fn errors<E: Clone>(failed: &opero::AllFailedError<E>) -> Vec<AttemptError<E>> {
    failed.attempts().iter().map(|a| a.error.clone()).collect()
}

/// An async map with timeout 100 ms, 2 retries, delays 50 ms then 100 ms (no jitter), whose item
/// `ms` sleeps the milliseconds `ms(attempt)` says for each 1-based attempt and then succeeds.
/// Counts the attempts that started.
fn map_sleeping(
    ms: impl Fn(u32) -> u64 + Send + Sync + 'static,
    calls: Arc<AtomicU32>,
) -> impl std::future::Future<Output = Vec<Result<u64, opero::AllFailedError<String>>>> {
    let map = opmap()
        .mode(Mode::Async)
        .timeout(TIMEOUT)
        .retries(2)
        .min_delay(Duration::from_millis(50))
        .backoff_factor(2.0)
        .jitter(Jitter::None)
        .progress(false)
        .wrap_async(move |item: u64| {
            let attempt = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let wait = ms(attempt);
            async move {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                Ok::<_, String>(item)
            }
        })
        .unwrap();
    async move { map.call([7]).await }
}

#[tokio::test(start_paused = true)]
async fn an_item_whose_every_attempt_is_late_fails_with_three_timeouts_on_the_exact_schedule() {
    let calls = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    let out = map_sleeping(|_| 300, Arc::clone(&calls)).await;
    let failed = out[0].as_ref().unwrap_err();
    assert_eq!(errors(failed), vec![AttemptError::TimedOut(TIMEOUT); 3]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // 100 (timed out) + 50 (d1) + 100 (timed out) + 100 (d2 = 50 × 2) + 100 (timed out).
    assert_eq!(start.elapsed(), Duration::from_millis(450));
}

#[tokio::test(start_paused = true)]
async fn a_fast_item_succeeds_in_its_own_time() {
    let calls = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    let out = map_sleeping(|_| 40, Arc::clone(&calls)).await;
    assert_eq!(out, [Ok(7)]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn an_item_slow_only_on_its_first_attempt_succeeds_on_the_retry() {
    let calls = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    let out = map_sleeping(
        |attempt| if attempt == 1 { 300 } else { 40 },
        Arc::clone(&calls),
    )
    .await;
    assert_eq!(out, [Ok(7)]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // 100 (timed out) + 50 (d1) + 40 (the retry's own time).
    assert_eq!(start.elapsed(), Duration::from_millis(190));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_bounds_each_attempt_not_the_whole_item() {
    // Every attempt fails by itself after 80 ms: under the 100 ms timeout each time, though the
    // item as a whole runs far longer.
    let map = opmap()
        .timeout(TIMEOUT) // the default mode `thread` means `async` for an async function
        .retries(2)
        .min_delay(Duration::from_millis(50))
        .backoff_factor(2.0)
        .jitter(Jitter::None)
        .progress(false)
        .wrap_async(|_: u8| async {
            tokio::time::sleep(Duration::from_millis(80)).await;
            Err::<u8, _>("refused")
        })
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = map.call([1]).await;
    let failed = out[0].as_ref().unwrap_err();
    assert_eq!(errors(failed), vec![AttemptError::Failed("refused"); 3]);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(80 + 50 + 80 + 100 + 80)
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_item_does_not_hold_back_the_others() {
    let map = opmap()
        .mode(Mode::Async)
        .workers(3)
        .timeout(TIMEOUT)
        .retries(0)
        .progress(false)
        .wrap_async(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(ms)
        })
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = map.call([10, 1_000_000, 30]).await;
    assert_eq!(out[0], Ok(10));
    assert_eq!(
        errors(out[1].as_ref().unwrap_err()),
        [AttemptError::TimedOut(TIMEOUT)]
    );
    assert_eq!(out[2], Ok(30));
    assert_eq!(start.elapsed(), TIMEOUT);
}

#[test]
fn the_timeout_fires_under_an_executor_that_is_not_tokio() {
    // Outside tokio the items are polled in the caller's task; the deadline then comes from a
    // timer thread, so a wall-clock bound is all that can be asserted.
    let map = opmap()
        .mode(Mode::Async)
        .timeout(Duration::from_millis(20))
        .retries(0)
        .progress(false)
        .wrap_async(|_: u8| std::future::pending::<Result<u8, String>>())
        .unwrap();
    let start = std::time::Instant::now();
    let out = futures::executor::block_on(map.call([1]));
    assert_eq!(
        errors(out[0].as_ref().unwrap_err()),
        [AttemptError::TimedOut(Duration::from_millis(20))]
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
}

/// The refusal of a timeout in a blocking mode: typed, naming `timeout`, the mode and `process`.
fn assert_refused(err: &opero::OperoError, mode: Mode) {
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert_eq!(err.field(), Some("timeout"), "{err}");
    assert_eq!(err.value(), Some("10ms"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("mode \"{}\"", mode.name())),
        "{text}"
    );
    assert!(text.contains("\"process\""), "{text}");
}

#[test]
fn thread_and_rayon_refuse_a_timeout_set_on_the_builder() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let err = opmap()
            .mode(mode)
            .timeout(Duration::from_millis(10))
            .wrap(|x: &u8| Ok::<_, String>(*x))
            .unwrap_err();
        assert_refused(&err, mode);
        let err = opmap()
            .mode(mode)
            .timeout(Duration::from_millis(10))
            .wrap_fallback(Fallbacks::new(vec![1u8, 2]).unwrap(), |x: &u8, k: &u8| {
                Ok::<_, String>(x + k)
            })
            .unwrap_err();
        assert_refused(&err, mode);
    }
}

#[test]
fn thread_and_rayon_refuse_a_timeout_read_from_a_config() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let cfg = OpmapConfig::from_json(&format!(
            r#"{{"mode": "{}", "timeout": "10ms", "progress": false}}"#,
            mode.name()
        ))
        .unwrap();
        let err = OpmapBuilder::<opero::AnyCache>::from_config(cfg)
            .wrap(|x: &u8| Ok::<_, String>(*x))
            .unwrap_err();
        assert_refused(&err, mode);
    }
}

#[tokio::test(start_paused = true)]
async fn async_mode_accepts_a_timeout_read_from_a_config() {
    let cfg = OpmapConfig::from_json(
        r#"{"mode": "async", "timeout": "100ms", "progress": false, "retry": {"retries": 0}}"#,
    )
    .unwrap();
    let map = OpmapBuilder::<opero::AnyCache>::from_config(cfg)
        .wrap_async(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(ms)
        })
        .unwrap();
    let out = map.call([50, 300]).await;
    assert_eq!(out[0], Ok(50));
    assert_eq!(
        errors(out[1].as_ref().unwrap_err()),
        [AttemptError::TimedOut(TIMEOUT)]
    );
}

#[test]
fn a_zero_timeout_is_refused_in_async_mode() {
    let err = opmap()
        .mode(Mode::Async)
        .timeout(Duration::ZERO)
        .wrap_async(|x: u8| async move { Ok::<_, String>(x) })
        .unwrap_err();
    assert_eq!(err.field(), Some("timeout"));
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}
