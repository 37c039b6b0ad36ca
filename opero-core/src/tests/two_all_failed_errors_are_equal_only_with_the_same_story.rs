//! Two `AllFailedError`s are equal when they record the same attempts, the same count, the same
//! fallback values tried and the same deadline; any one of those differing tells them apart.

use std::time::Duration;

use crate::{AllFailedError, AttemptError};

fn story() -> AllFailedError<&'static str> {
    let mut e = AllFailedError::single(0, 1, AttemptError::Failed("busy"));
    e.push(1, 1, AttemptError::Failed("down"));
    e
}

#[test]
fn the_same_story_is_equal_and_each_difference_tells_them_apart() {
    assert_eq!(story(), story());
    let mut other_error = AllFailedError::single(0, 1, AttemptError::Failed("busy"));
    other_error.push(1, 1, AttemptError::Failed("refused"));
    assert_ne!(story(), other_error, "the same shape, another error");
    let mut attempt = story();
    attempt.push(1, 2, AttemptError::Failed("down"));
    assert_ne!(story(), attempt, "one more attempt");
    let mut deadline = story();
    deadline.end_by_deadline(Duration::from_secs(1));
    assert_ne!(story(), deadline, "ended by the deadline");
    // The same last attempts but more of them elided: the count differs.
    let mut long = AllFailedError::new();
    let mut longer = AllFailedError::new();
    for n in 0..40 {
        long.push(0, n + 1, AttemptError::Failed("busy"));
        longer.push(0, n + 1, AttemptError::Failed("busy"));
    }
    longer.push(0, 41, AttemptError::Failed("busy"));
    assert_ne!(long, longer);
    // The same attempts on other fallback values.
    let mut a = AllFailedError::single(0, 1, AttemptError::Failed("x"));
    a.push(0, 2, AttemptError::Failed("x"));
    let mut b = AllFailedError::single(0, 1, AttemptError::Failed("x"));
    b.push(1, 1, AttemptError::Failed("x"));
    assert_ne!(a, b);
}
