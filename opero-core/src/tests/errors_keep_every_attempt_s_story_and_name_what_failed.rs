//! The error types on their own: `AllFailedError` counts and keeps the first and last attempts
//! and says so, `AttemptError` gives the user's error back, `OperoError` names kind, field,
//! value, message and source.

use std::error::Error as _;
use std::time::Duration;

use crate::{AllFailedError, AttemptError, ErrorKind, OperoError};

#[derive(Debug, Clone, PartialEq)]
struct Boom(u32);

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom {}", self.0)
    }
}

impl std::error::Error for Boom {}

#[test]
fn one_failed_attempt_reads_as_one() {
    let e = AllFailedError::single(0, 1, AttemptError::Failed(Boom(7)));
    assert_eq!((e.len(), e.fallbacks_tried(), e.elided()), (1, 1, 0));
    assert!(!e.is_empty());
    assert_eq!(
        e.to_string(),
        "all 1 attempt failed across 1 fallback value; last (fallback 0, attempt 1): boom 7"
    );
    assert_eq!(e.last_error(), Some(&Boom(7)));
    assert_eq!(e.source().unwrap().to_string(), "boom 7");
    assert_eq!(e.into_last_error(), Some(Boom(7)));
    let empty = AllFailedError::<Boom>::default();
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert_eq!(
        empty.to_string(),
        "all 0 attempts failed across 0 fallback values"
    );
    assert!(empty.source().is_none());
}

#[test]
fn attempts_across_fallbacks_are_counted_and_listed_in_order() {
    let mut e = AllFailedError::new();
    e.push(0, 1, AttemptError::Failed(Boom(1)));
    e.push(0, 2, AttemptError::TimedOut(Duration::from_millis(5)));
    e.push(1, 1, AttemptError::Failed(Boom(2)));
    e.push(1, 2, AttemptError::BreakerOpen);
    assert_eq!((e.len(), e.fallbacks_tried()), (4, 2));
    assert_eq!(
        e.to_string(),
        "all 4 attempts failed across 2 fallback values; last (fallback 1, attempt 2): circuit \
         breaker open [#0.1: boom 1; #0.2: timed out after 5ms; #1.1: boom 2; #1.2: circuit breaker open]"
    );
    // The last error of the user's, skipping the machinery's.
    assert_eq!(e.last_error(), Some(&Boom(2)));
    assert_eq!(e.last().unwrap().error, AttemptError::BreakerOpen);
    assert_eq!(e.source().unwrap().to_string(), "boom 2");
    let attempts = e.attempts();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.fallback_index, a.attempt))
            .collect::<Vec<_>>(),
        [(0, 1), (0, 2), (1, 1), (1, 2)]
    );
    assert_eq!(e.clone().into_attempts(), attempts.to_vec());
    assert_eq!(e.into_last_error(), Some(Boom(2)));
}

#[test]
fn past_sixteen_attempts_the_first_and_last_eight_are_kept_and_the_rest_counted() {
    let mut e = AllFailedError::new();
    for n in 1..=20 {
        e.push(0, n, AttemptError::Failed(Boom(n)));
    }
    assert_eq!((e.len(), e.elided(), e.attempts().len()), (20, 4, 16));
    let kept: Vec<u32> = e.attempts().iter().map(|a| a.attempt).collect();
    assert_eq!(
        kept,
        [1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16, 17, 18, 19, 20]
    );
    let text = e.to_string();
    assert!(
        text.contains("#0.8: boom 8; ... 4 more ...; #0.13: boom 13;"),
        "{text}"
    );
    assert!(text.starts_with("all 20 attempts failed across 1 fallback value; last"));
    // Exactly sixteen: nothing elided, nothing said about it.
    let mut sixteen = AllFailedError::new();
    for n in 1..=16 {
        sixteen.push(0, n, AttemptError::Failed(Boom(n)));
    }
    assert_eq!(sixteen.elided(), 0);
    assert!(!sixteen.to_string().contains("more"));
    // A fallback returned to after another counts again, as the pipeline tries them in order.
    let mut back = AllFailedError::new();
    back.push(0, 1, AttemptError::Failed(Boom(1)));
    back.push(1, 1, AttemptError::Failed(Boom(2)));
    back.push(0, 1, AttemptError::Failed(Boom(3)));
    assert_eq!(back.fallbacks_tried(), 3);
}

#[test]
fn a_deadline_that_ended_the_call_is_kept_and_told() {
    let mut e = AllFailedError::single(
        2,
        3,
        AttemptError::<Boom>::DeadlineExceeded(Duration::from_secs(1)),
    );
    assert_eq!(e.ended_by_deadline(), None);
    e.end_by_deadline(Duration::from_secs(1));
    assert_eq!(e.ended_by_deadline(), Some(Duration::from_secs(1)));
    assert_eq!(
        e.to_string(),
        "the deadline of 1s ended the call after 1 failed attempt across 1 fallback value; last \
         (fallback 2, attempt 3): cut by the call's deadline of 1s"
    );
    assert_eq!(e.last_error(), None);
}

#[test]
fn attempt_errors_give_the_user_s_error_back_and_say_what_happened() {
    assert_eq!(AttemptError::Failed(Boom(1)).user_error(), Some(&Boom(1)));
    assert_eq!(
        AttemptError::RejectedOk(Boom(2)).user_error(),
        Some(&Boom(2))
    );
    assert_eq!(AttemptError::<Boom>::BreakerOpen.user_error(), None);
    assert_eq!(
        AttemptError::RejectedOk(Boom(2)).into_user_error(),
        Some(Boom(2))
    );
    assert_eq!(
        AttemptError::Failed(Boom(3)).into_user_error(),
        Some(Boom(3))
    );
    assert_eq!(
        AttemptError::<Boom>::Panicked("p".into()).into_user_error(),
        None
    );
    for (e, text) in [
        (AttemptError::Failed(Boom(1)), "boom 1"),
        (AttemptError::RejectedOk(Boom(1)), "Ok value rejected by retry_if_ok: boom 1"),
        (AttemptError::Panicked("oops".into()), "panicked: oops"),
        (AttemptError::Crashed("signal 9".into()), "worker crashed: signal 9"),
        (AttemptError::NoPermit("down".into()), "no rate-limit permit: down"),
        (AttemptError::Codec("bad".into()), "cannot cross the process boundary: bad"),
        (
            AttemptError::BulkheadFull {
                max_concurrent: 2,
                max_queue: 3,
            },
            "bulkhead full: 2 calls in flight (bulkhead.max_concurrent) and 3 waiting (bulkhead.max_queue)",
        ),
        (
            AttemptError::Unsupported {
                field: "hedge",
                reason: "sync",
            },
            "`hedge` cannot apply to this call: sync",
        ),
    ] {
        assert_eq!(e.to_string(), text);
    }
}

#[test]
fn an_opero_error_names_kind_field_value_message_and_source() {
    let e = OperoError::invalid_config("retry.retries", -1, "must not be negative");
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert_eq!((e.field(), e.value()), (Some("retry.retries"), Some("-1")));
    assert_eq!(e.message(), "must not be negative");
    assert!(!e.is_temporary());
    assert!(e.source().is_none());
    assert_eq!(
        e.to_string(),
        "invalid configuration: `retry.retries` = \"-1\": must not be negative"
    );
    let io = std::io::Error::other("connection refused");
    let e = OperoError::backend("redis GET failed", io);
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(e.is_temporary());
    assert_eq!(e.field(), None);
    assert_eq!(e.source().unwrap().to_string(), "connection refused");
    assert_eq!(
        e.to_string(),
        "cache backend error: redis GET failed: connection refused"
    );
    let e = e.with_kind(ErrorKind::Codec).set_temporary(false);
    assert_eq!(e.kind(), ErrorKind::Codec);
    assert!(!e.is_temporary());
    let bare = OperoError::new(ErrorKind::Executor, "");
    assert_eq!(bare.to_string(), "executor error");
    let sourced = OperoError::new(ErrorKind::UnknownBackend, "x").with_source(Boom(4));
    assert_eq!(sourced.to_string(), "unknown cache backend: x: boom 4");
    for (kind, text) in [
        (ErrorKind::FeatureDisabled, "feature disabled"),
        (ErrorKind::Codec, "codec error"),
    ] {
        assert_eq!(kind.to_string(), text);
    }
}
