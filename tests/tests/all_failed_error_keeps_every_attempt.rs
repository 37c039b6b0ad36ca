//! When every attempt of every fallback value fails, `AllFailedError` holds each attempt's error
//! in order with its fallback index and attempt number, and summarises them.

use opero::{AttemptError, Fallbacks, NoCache, Opero, OperoConfig, RetryConfig};
use opero_tests::no_delay;

#[derive(Debug, Clone, PartialEq)]
struct Refused {
    key: usize,
    try_no: u32,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key {} refused try {}", self.key, self.try_no)
    }
}

#[test]
fn every_attempt_is_recorded_in_order() {
    let opero = Opero::<NoCache>::new(OperoConfig {
        retry: RetryConfig {
            retries: 1,
            ..no_delay()
        },
        ..Default::default()
    })
    .unwrap();
    let keys = Fallbacks::new(vec![0usize, 1, 2]).unwrap();
    let mut tries = [0u32; 3];
    let err = opero
        .run_fallback(&keys, |k: &usize| {
            tries[*k] += 1;
            Err::<(), _>(Refused {
                key: *k,
                try_no: tries[*k],
            })
        })
        .unwrap_err();

    assert_eq!(err.len(), 6);
    assert_eq!(err.fallbacks_tried(), 3);
    for (i, a) in err.attempts().iter().enumerate() {
        assert_eq!(a.fallback_index, i / 2);
        assert_eq!(a.attempt, (i % 2) as u32 + 1);
        assert_eq!(
            a.error,
            AttemptError::Failed(Refused {
                key: i / 2,
                try_no: (i % 2) as u32 + 1
            })
        );
    }
    assert_eq!(err.last_error(), Some(&Refused { key: 2, try_no: 2 }));

    let text = err.to_string();
    assert!(
        text.starts_with("all 6 attempts failed across 3 fallback values; last (fallback 2, attempt 2): key 2 refused try 2"),
        "{text}"
    );
    assert!(text.contains("#0.1: key 0 refused try 1"), "{text}");

    // The user's own error comes back by value.
    let last: Refused = err.into_last_error().unwrap();
    assert_eq!(last.key, 2);
}

#[test]
fn a_call_without_fallbacks_fails_with_the_same_type() {
    let opero = Opero::<NoCache>::new(OperoConfig {
        retry: RetryConfig {
            retries: 0,
            ..no_delay()
        },
        ..Default::default()
    })
    .unwrap();
    let err = opero
        .run(|| Err::<u8, _>(std::io::Error::other("disk on fire")))
        .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err.attempts()[0].fallback_index, 0);
    assert_eq!(
        err.to_string(),
        "all 1 attempt failed across 1 fallback value; last (fallback 0, attempt 1): disk on fire"
    );
    // It is a std error, so `?` into Box<dyn Error> works.
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(boxed.to_string().contains("disk on fire"));
}
