//! `CircuitBreaker` on its own, on tokio's paused clock: each trigger opens it at exactly its
//! threshold, the ratio trigger counts the calls of its window and forgets older ones, and an
//! open breaker lets its probes through after exactly its open duration.

use std::time::Duration;

use crate::{BreakerConfig, BreakerState, CircuitBreaker};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn advance(d: Duration) {
    tokio::time::advance(d).await;
}

fn fail(b: &CircuitBreaker) {
    b.try_acquire()
        .expect("a closed breaker lets calls through")
        .failure();
}

fn succeed(b: &CircuitBreaker) {
    b.try_acquire()
        .expect("a closed breaker lets calls through")
        .success();
}

/// Ratio trigger only: half the calls of the last 10 s (ten 1-second buckets), 4 calls at least.
fn ratio_breaker() -> CircuitBreaker {
    CircuitBreaker::new(&BreakerConfig {
        failure_threshold: None,
        failure_ratio: Some(0.5),
        window: Duration::from_secs(10),
        min_throughput: 4,
        open_duration: Duration::from_secs(5),
        half_open_probes: 1,
    })
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_failure_ratio_counts_the_calls_of_every_bucket_of_its_window() {
    let b = ratio_breaker();
    fail(&b);
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "2 calls: below min_throughput"
    );
    advance(ms(1500)).await;
    succeed(&b);
    advance(ms(1000)).await;
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "3 failures in 4 calls over three buckets"
    );
}

#[tokio::test(start_paused = true)]
async fn exactly_the_failure_ratio_at_exactly_min_throughput_opens() {
    let b = ratio_breaker();
    succeed(&b);
    succeed(&b);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Closed);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open, "2 of 4 is the ratio 0.5");
}

#[tokio::test(start_paused = true)]
async fn a_success_never_opens_the_breaker_whatever_the_ratio() {
    let b = ratio_breaker();
    for _ in 0..3 {
        fail(&b);
    }
    succeed(&b);
    assert_eq!(b.state(), BreakerState::Closed, "judged on failures only");
}

#[tokio::test(start_paused = true)]
async fn failures_still_in_the_window_count_until_it_has_passed() {
    let b = ratio_breaker();
    for _ in 0..3 {
        fail(&b);
    }
    // 9.5 s later the first bucket is still in the 10 s window.
    advance(ms(9500)).await;
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_are_forgotten() {
    let b = ratio_breaker();
    for _ in 0..3 {
        fail(&b);
    }
    advance(ms(10_000)).await;
    fail(&b);
    assert_eq!(b.state(), BreakerState::Closed, "1 call in the window");

    let b = ratio_breaker();
    for _ in 0..3 {
        fail(&b);
    }
    advance(ms(10_500)).await;
    for _ in 0..3 {
        succeed(&b);
    }
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "1 failure in 4 calls, not 4 in 7"
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_it_at_the_threshold_and_a_success_restarts_the_count() {
    let b = CircuitBreaker::new(&BreakerConfig {
        failure_threshold: Some(3),
        ..Default::default()
    })
    .unwrap();
    fail(&b);
    fail(&b);
    succeed(&b);
    fail(&b);
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "two in a row since the success"
    );
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.try_acquire().is_none(), "an open breaker refuses at once");
}

#[tokio::test(start_paused = true)]
async fn it_half_opens_after_exactly_its_open_duration_and_lets_its_probes_through() {
    let b = CircuitBreaker::new(&BreakerConfig {
        failure_threshold: Some(1),
        open_duration: Duration::from_secs(5),
        half_open_probes: 2,
        ..Default::default()
    })
    .unwrap();
    // Taken while closed, reported after the breaker opened: changes nothing.
    let late = b.try_acquire().unwrap();
    assert!(!late.is_probe());
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    late.success();
    assert_eq!(b.state(), BreakerState::Open);

    advance(ms(4999)).await;
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.try_acquire().is_none());
    advance(ms(1)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let first = b.try_acquire().expect("first probe");
    let second = b.try_acquire().expect("second probe");
    assert!(first.is_probe() && second.is_probe());
    assert!(b.try_acquire().is_none(), "two probes at most");
    // A probe dropped without an outcome (its call was cancelled) gives its place back.
    drop(second);
    let third = b.try_acquire().expect("the dropped probe's place");
    assert!(b.try_acquire().is_none());

    // A failed probe opens the breaker for another full open duration.
    first.failure();
    assert_eq!(b.state(), BreakerState::Open);
    // The other probe's late success belongs to the earlier half-open spell.
    third.success();
    assert_eq!(b.state(), BreakerState::Open);
    advance(ms(4999)).await;
    assert!(b.try_acquire().is_none());
    advance(ms(1)).await;
    let probe = b
        .try_acquire()
        .expect("a probe after the second open duration");
    probe.success();
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "a successful probe closes it"
    );
    succeed(&b);
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "closed again, threshold 1 as before"
    );
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_closed_again_judges_only_calls_made_since() {
    let b = ratio_breaker();
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), BreakerState::Open);
    advance(Duration::from_secs(5)).await;
    b.try_acquire().expect("a probe").success();
    assert_eq!(b.state(), BreakerState::Closed);
    // Still inside the 10 s window of the four failures, which no longer count.
    fail(&b);
    succeed(&b);
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "3 calls since closing: below min_throughput"
    );
    fail(&b);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "3 failures in the 4 calls since closing"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_from_the_middle_of_the_window_still_count_when_a_new_bucket_starts() {
    let b = ratio_breaker();
    advance(ms(5500)).await;
    for _ in 0..3 {
        fail(&b);
    }
    // The first bucket's slot is reused 5 s later; the failures of 5.5 s are still in the window.
    advance(ms(5000)).await;
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_of_an_earlier_half_open_spell_gives_back_no_place_of_the_next() {
    let b = CircuitBreaker::new(&BreakerConfig {
        failure_threshold: Some(1),
        open_duration: Duration::from_secs(1),
        half_open_probes: 2,
        ..Default::default()
    })
    .unwrap();
    fail(&b);
    advance(Duration::from_secs(1)).await;
    let stale = b.try_acquire().expect("probe of the first spell");
    b.try_acquire().expect("second probe").failure();
    assert_eq!(b.state(), BreakerState::Open);
    advance(Duration::from_secs(1)).await;
    let _c = b.try_acquire().expect("probe of the second spell");
    let _d = b.try_acquire().expect("second probe of the second spell");
    assert!(b.try_acquire().is_none());
    drop(stale);
    assert!(
        b.try_acquire().is_none(),
        "the stale probe held no place in this spell"
    );
}
