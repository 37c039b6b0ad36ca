//! `#[opero(..)]` and `#[opmap(..)]` take the strategy settings as plain values, each reaching the
//! pipeline: `attempt_timeout`, the circuit breaker (`breaker`, `breaker_failure_threshold`,
//! `breaker_failure_ratio`, `breaker_window`, `breaker_min_throughput`, `breaker_open_duration`,
//! `breaker_half_open_probes`), the bulkhead (`bulkhead_max_concurrent`, `bulkhead_max_queue`) and
//! hedging (`hedge_delay`, `max_hedges`). Each test shows its setting changing what a call does, on
//! tokio's paused clock. Bad values are compile errors (tests/ui/bad_values.rs), and so are the
//! settings a blocking function cannot honour (tests/ui/bad_functions.rs).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use opero::{opero, opmap, AttemptError, BreakerState, BulkheadConfig};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

static HANGS: AtomicU32 = AtomicU32::new(0);

/// The first call hangs; the retry answers.
#[opero(retries = 1, min_delay = 0, attempt_timeout = "50ms")]
async fn hangs_once() -> Result<u32, String> {
    if HANGS.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(2)
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_cuts_a_late_attempt() {
    let start = Instant::now();
    assert_eq!(hangs_once().await.unwrap(), 2);
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(hangs_once_opero().attempt_timeout(), Some(ms(50)));
    assert_eq!(hangs_once_opero().metrics().attempt_timeouts, 1);
}

static CONSECUTIVE_CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(
    retries = 0,
    breaker_failure_threshold = 2,
    breaker_open_duration = "10s"
)]
async fn consecutive(up: bool) -> Result<u32, String> {
    CONSECUTIVE_CALLS.fetch_add(1, Ordering::SeqCst);
    if up {
        Ok(1)
    } else {
        Err("down".into())
    }
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_its_threshold_and_half_opens_after_its_open_duration() {
    assert!(consecutive(false).await.is_err());
    assert!(consecutive(false).await.is_err());
    let err = consecutive(true).await.unwrap_err();
    assert_eq!(err.attempts()[0].error, AttemptError::BreakerOpen);
    assert_eq!(
        CONSECUTIVE_CALLS.load(Ordering::SeqCst),
        2,
        "refused uncalled"
    );
    tokio::time::advance(Duration::from_secs(10) - Duration::from_nanos(1)).await;
    assert!(consecutive(true).await.is_err(), "still open");
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(
        consecutive(true).await.unwrap(),
        1,
        "the probe goes through"
    );
    let breaker = consecutive_opero().circuit_breaker(0).unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// Only the ratio trigger counts here: a threshold no run reaches.
#[opero(
    retries = 0,
    breaker_failure_threshold = 1000,
    breaker_failure_ratio = 0.5,
    breaker_min_throughput = 4,
    breaker_window = "10s"
)]
async fn ratio(up: bool) -> Result<u32, String> {
    if up {
        Ok(1)
    } else {
        Err("down".into())
    }
}

#[tokio::test(start_paused = true)]
async fn the_ratio_trigger_keeps_its_ratio_window_and_minimum_throughput() {
    let state = || ratio_opero().circuit_breaker(0).unwrap().state();
    for _ in 0..3 {
        let _ = ratio(false).await;
    }
    assert_eq!(state(), BreakerState::Closed, "3 calls, below 4");
    // The 10 s window forgets those three (the default 30 s one would not, and would open at the
    // next failure: 4 of 6).
    tokio::time::advance(Duration::from_secs(11)).await;
    let _ = ratio(true).await;
    let _ = ratio(true).await;
    let _ = ratio(false).await;
    assert_eq!(state(), BreakerState::Closed, "1 of 3");
    let _ = ratio(false).await;
    assert_eq!(state(), BreakerState::Open, "2 of 4: the ratio 0.5 is met");
}

#[opero(
    retries = 0,
    breaker_failure_threshold = 1,
    breaker_open_duration = "1s",
    breaker_half_open_probes = 2
)]
async fn probed(up: bool) -> Result<u32, String> {
    tokio::time::sleep(ms(10)).await;
    if up {
        Ok(1)
    } else {
        Err("down".into())
    }
}

#[tokio::test(start_paused = true)]
async fn a_half_open_breaker_lets_its_number_of_probes_through() {
    assert!(probed(false).await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    let (a, b, c) = tokio::join!(probed(true), probed(true), probed(true));
    assert_eq!((a.unwrap(), b.unwrap()), (1, 1), "two probes");
    assert_eq!(
        c.unwrap_err().attempts()[0].error,
        AttemptError::BreakerOpen
    );
}

/// `breaker` alone: the defaults (5 consecutive failures).
#[opero(breaker, retries = 0)]
fn default_breaker(up: bool) -> Result<u32, String> {
    if up {
        Ok(1)
    } else {
        Err("down".into())
    }
}

#[test]
fn breaker_alone_takes_the_defaults() {
    for _ in 0..4 {
        assert!(default_breaker(false).is_err());
    }
    let breaker = default_breaker_opero().circuit_breaker(0).unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(default_breaker(false).is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[opero(retries = 0, bulkhead_max_concurrent = 1)]
fn nested(depth: u32) -> Result<u32, String> {
    if depth == 0 {
        return Ok(0);
    }
    // The outer call holds the only slot, and there is no queue.
    match nested(depth - 1) {
        Ok(n) => Ok(n + 1),
        Err(e) => Err(e.attempts()[0].error.to_string()),
    }
}

#[test]
fn bulkhead_max_concurrent_bounds_the_calls_in_flight() {
    let inner = nested(1).unwrap_err();
    assert_eq!(
        inner.last_error().map(String::as_str),
        Some(
            AttemptError::<String>::BulkheadFull {
                max_concurrent: 1,
                max_queue: 0
            }
            .to_string()
            .as_str()
        )
    );
    assert_eq!(nested(0).unwrap(), 0);
    assert_eq!(
        nested_opero().bulkhead().unwrap().config(),
        BulkheadConfig {
            max_concurrent: 1,
            max_queue: 0
        }
    );
}

#[opero(retries = 0, bulkhead_max_concurrent = 1, bulkhead_max_queue = 1)]
async fn queued() -> Result<Duration, String> {
    tokio::time::sleep(ms(100)).await;
    Ok(Duration::ZERO)
}

#[tokio::test(start_paused = true)]
async fn bulkhead_max_queue_lets_that_many_calls_wait() {
    let start = Instant::now();
    let timed = || async {
        let r = queued().await;
        (r, start.elapsed())
    };
    let (a, b, c) = tokio::join!(timed(), timed(), timed());
    assert!(a.0.is_ok() && b.0.is_ok());
    assert_eq!(
        (a.1, b.1),
        (ms(100), ms(200)),
        "the second call waited its turn"
    );
    assert_eq!(
        c.0.unwrap_err().attempts()[0].error,
        AttemptError::BulkheadFull {
            max_concurrent: 1,
            max_queue: 1
        }
    );
}

#[opero(retries = 0, hedge_delay = "100ms", max_hedges = 2)]
async fn hedged() -> Result<u32, String> {
    tokio::time::sleep(ms(250)).await;
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn hedge_delay_and_max_hedges_start_the_hedges() {
    let start = Instant::now();
    assert_eq!(hedged().await.unwrap(), 1);
    assert_eq!(start.elapsed(), ms(250), "the first attempt won");
    assert_eq!(hedged_opero().metrics().hedges, 2, "at 100 and 200 ms");
}

/// `hedge_delay` alone: one hedge at most (the default `max_hedges`).
#[opero(retries = 0, hedge_delay = "100ms")]
async fn hedged_once() -> Result<u32, String> {
    tokio::time::sleep(ms(250)).await;
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn hedge_delay_alone_starts_one_hedge() {
    assert_eq!(hedged_once().await.unwrap(), 1);
    assert_eq!(hedged_once_opero().metrics().hedges, 1);
}

#[opmap(mode = "async", workers = 2, retries = 0, attempt_timeout = "50ms")]
async fn item_or_hang(x: u32) -> Result<u32, String> {
    if x == 0 {
        std::future::pending::<()>().await;
    }
    Ok(x)
}

#[tokio::test(start_paused = true)]
async fn an_async_opmap_takes_an_attempt_timeout() {
    let start = Instant::now();
    let out = item_or_hang(vec![0, 1]).await;
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(
        out[0].as_ref().unwrap_err().attempts()[0].error,
        AttemptError::TimedOut(ms(50))
    );
    assert_eq!(*out[1].as_ref().unwrap(), 1);
}
