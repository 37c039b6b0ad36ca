//! The retry policies on their own: `Backoff`'s schedule, cap, jitter and hint, closures as
//! policies, predicates and hints, and the default for machinery faults.

use std::time::Duration;

use crate::{
    Backoff, CustomPolicy, Jitter, NoCache, NoHint, Opero, RetryConfig, RetryHint, RetryOn,
    RetryPolicy, RetryPredicate,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn exact(retries: u32, factor: f64, min: Duration, max: Duration) -> Backoff {
    Backoff::new(RetryConfig {
        retries,
        backoff_factor: factor,
        min_delay: min,
        max_delay: max,
        jitter: Jitter::None,
        ..Default::default()
    })
    .unwrap()
}

fn close(a: Duration, b: f64) -> bool {
    (a.as_secs_f64() - b).abs() < 1e-9
}

#[test]
fn max_delay_caps_every_delay_once_the_exponential_passes_it() {
    let b = exact(6, 2.0, ms(100), ms(500));
    let ceilings: Vec<_> = (1..=6).map(|n| b.ceiling(n)).collect();
    assert_eq!(ceilings, [100, 200, 400, 500, 500, 500].map(ms));
    assert_eq!(
        b.delays().collect::<Vec<_>>(),
        [100, 200, 400, 500, 500, 500].map(ms)
    );
    // An exponent past any float: still the cap, never an overflow.
    assert_eq!(b.ceiling(u32::MAX), ms(500));
    // A zero minimum times an infinite growth is not a number: the cap, not zero.
    let zero_min = exact(3, 10.0, Duration::ZERO, ms(700));
    assert_eq!(zero_min.ceiling(u32::MAX), ms(700));
    assert_eq!(zero_min.ceiling(1), Duration::ZERO);
}

#[test]
fn the_delays_are_one_per_retry_in_order() {
    let b = exact(3, 3.0, ms(10), Duration::from_secs(1));
    assert_eq!(b.delays().collect::<Vec<_>>(), [10, 30, 90].map(ms));
    assert_eq!(exact(0, 3.0, ms(10), ms(10)).delays().count(), 0);
}

#[test]
fn full_jitter_draws_between_min_delay_and_the_ceiling_and_varies() {
    let b = Backoff::new(RetryConfig {
        retries: 3,
        backoff_factor: 10.0,
        min_delay: ms(10),
        max_delay: Duration::from_secs(1),
        jitter: Jitter::Full,
        ..Default::default()
    })
    .unwrap();
    let draws: Vec<_> = (0..200).map(|_| b.delay(3).unwrap()).collect();
    assert!(draws.iter().all(|d| *d >= ms(10) && *d <= ms(1000)));
    // Uniform over [10 ms, 1 s]: two hundred draws all in one tenth of it would be a broken draw.
    assert!(draws.iter().any(|d| *d > ms(500)), "{draws:?}");
    assert!(draws.iter().any(|d| *d < ms(500)), "{draws:?}");
    assert_eq!(b.delay(4), None);
}

#[test]
fn decorrelated_delays_follow_the_documented_curve() {
    let b = Backoff::new(RetryConfig {
        retries: 10,
        backoff_factor: 2.0,
        min_delay: ms(100),
        max_delay: Duration::from_secs(30),
        jitter: Jitter::Decorrelated,
        ..Default::default()
    })
    .unwrap();
    // min_delay * (g(t) - g(t - 1)) / 1.4, g(t) = 2^t * tanh(sqrt(4t)), t = n - 1 + r.
    for (n, r, secs) in [
        (1, 0.9, 0.127_427_173_934_612_64),
        (3, 0.5, 0.203_574_796_262_163_35),
        (4, 0.0, 0.286_584_986_225_865_5),
        (5, 0.75, 0.961_226_396_637_218),
        (6, 0.999, 2.284_218_975_291_702_6),
    ] {
        let d = b.decorrelated(n, r);
        assert!(close(d, secs), "n={n} r={r}: {d:?} vs {secs}");
    }
    // Below min_delay it is raised to it; a draw outside [0, 1) is clamped; no number is 0.
    assert_eq!(b.decorrelated(1, 0.0), ms(100));
    assert_eq!(b.decorrelated(4, 7.0), b.decorrelated(4, 1.0));
    assert_eq!(b.decorrelated(4, f64::NAN), b.decorrelated(4, 0.0));
    // Growth past any float (infinity minus infinity): max_delay, not min_delay.
    assert_eq!(b.decorrelated(u32::MAX, 0.5), Duration::from_secs(30));
    assert_eq!(b.decorrelated(40, 0.5), Duration::from_secs(30));
    for _ in 0..100 {
        let d = b.delay(5).unwrap();
        assert!(
            d >= b.decorrelated(5, 0.0) && d <= b.decorrelated(5, 1.0),
            "{d:?}"
        );
    }
}

#[test]
fn a_server_hint_raises_the_delay_up_to_max_delay_but_never_lowers_it() {
    let hint = |e: &Option<Duration>| *e;
    let b = exact(3, 2.0, ms(100), ms(1000)).with_retry_after(hint);
    assert_eq!(b.retry_delay(1, &None), Some(ms(100)));
    assert_eq!(b.retry_delay(1, &Some(ms(40))), Some(ms(100)));
    assert_eq!(b.retry_delay(2, &Some(ms(300))), Some(ms(300)));
    assert_eq!(b.retry_delay(1, &Some(ms(5000))), Some(ms(1000)));
    // The hint never adds a retry past the count.
    assert_eq!(b.retry_delay(4, &Some(ms(300))), None);
    assert_eq!(hint.retry_after(&Some(ms(3))), Some(ms(3)));
    assert_eq!(
        RetryHint::<Option<Duration>>::retry_after(b.retry_after(), &Some(ms(3))),
        Some(ms(3))
    );
    assert_eq!(RetryHint::<u8>::retry_after(&NoHint, &1), None);
}

#[test]
fn retry_on_decides_which_errors_are_retried() {
    assert!(RetryOn::Always.matches(&"x"));
    assert!(!RetryOn::Never.matches(&"x"));
    assert!(RetryOn::Always.should_retry(&1u8));
    assert!(!RetryOn::Never.should_retry(&1u8));
    let only_big = RetryOn::when(|e: &u32| *e > 10);
    assert!(only_big.should_retry(&11));
    assert!(!only_big.should_retry(&10));

    let b = exact(2, 2.0, ms(10), ms(100)).with_retry_on(only_big);
    assert_eq!(b.retry_delay(1, &11), Some(ms(10)));
    assert_eq!(b.retry_delay(1, &10), None);
    assert!(b.retry_on().should_retry(&11));
    let never = Backoff::new(RetryConfig {
        retry_on: RetryOn::Never,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(never.retry_delay(1, &"x"), None);
    assert_eq!(*never.retry_on(), RetryOn::Never);
}

#[test]
fn backoff_retries_crashed_attempts_on_its_own_schedule() {
    let b = exact(2, 2.0, ms(10), ms(100));
    assert_eq!(
        RetryPolicy::<()>::retry_delay_after_fault(&b, 1),
        Some(ms(10))
    );
    assert_eq!(
        RetryPolicy::<()>::retry_delay_after_fault(&b, 2),
        Some(ms(20))
    );
    assert_eq!(RetryPolicy::<()>::retry_delay_after_fault(&b, 3), None);
}

#[test]
fn a_closure_is_a_policy_that_never_retries_crashed_attempts() {
    let policy = |attempt: u32, e: &u64| (attempt < 3).then(|| ms(*e * u64::from(attempt)));
    assert_eq!(policy.retry_delay(2, &7), Some(ms(14)));
    assert_eq!(policy.retry_delay(3, &7), None);
    // Machinery faults (a crashed worker, a timed-out attempt) are not retried by default.
    assert_eq!(
        RetryPolicy::<u64>::retry_delay_after_fault(&policy, 1),
        None
    );
}

struct FaultTolerant;

impl RetryPolicy<str> for FaultTolerant {
    fn retry_delay(&self, attempt: u32, _error: &str) -> Option<Duration> {
        (attempt == 1).then(|| ms(3))
    }
    fn retry_delay_after_fault(&self, attempt: u32) -> Option<Duration> {
        Some(ms(u64::from(attempt) * 5))
    }
}

#[test]
fn a_custom_policy_keeps_both_of_the_user_s_decisions() {
    let custom = CustomPolicy(FaultTolerant);
    assert_eq!(custom.retry_delay(1, "x"), Some(ms(3)));
    assert_eq!(custom.retry_delay(2, "x"), None);
    assert_eq!(custom.retry_delay_after_fault(4), Some(ms(20)));
}

#[test]
fn the_builder_s_retry_settings_reach_the_policy_it_runs() {
    let opero = Opero::<NoCache>::builder()
        .retries(5)
        .backoff_factor(3.0)
        .min_delay(ms(2))
        .max_delay(ms(40))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let policy = opero.retry_policy();
    let config = policy.config();
    assert_eq!(config.retries, 5);
    assert_eq!(config.backoff_factor, 3.0);
    assert_eq!((config.min_delay, config.max_delay), (ms(2), ms(40)));
    assert_eq!(
        policy.delays().collect::<Vec<_>>(),
        [2, 6, 18, 40, 40].map(ms)
    );
    // The settings stay with the policy when a predicate replaces retry_on, in either order.
    let opero = Opero::<NoCache>::builder()
        .retry_on(|e: &&str| *e == "busy")
        .retries(1)
        .min_delay(Duration::ZERO)
        .build()
        .unwrap();
    let mut calls = 0;
    let _ = opero.run(|| {
        calls += 1;
        Err::<(), _>("busy")
    });
    assert_eq!(calls, 2);
    assert_eq!(opero.retry_policy().config().retries, 1);
}
