//! `#[opero(deadline = .., jitter = "decorrelated")]` reaches the pipeline: the deadline ends
//! the call, and the jitter is the decorrelated one.

use std::time::Duration;

use opero::{opero, Jitter};

#[opero(
    retries = 100,
    min_delay = "1h",
    max_delay = "1h",
    deadline = "1s",
    jitter = "decorrelated"
)]
fn down(x: u32) -> Result<u32, String> {
    Err(format!("{x} is down"))
}

#[opero(retries = 1, min_delay = 0, deadline = 5)]
async fn up(x: u32) -> Result<u32, String> {
    Ok(x + 1)
}

#[test]
fn the_deadline_ends_the_call_and_the_jitter_is_decorrelated() {
    let err = down(7).unwrap_err();
    assert_eq!(err.ended_by_deadline(), Some(Duration::from_secs(1)));
    assert_eq!(err.len(), 1, "an hour's delay does not fit in a second");
    let opero = down_opero();
    assert_eq!(opero.deadline(), Some(Duration::from_secs(1)));
    assert_eq!(opero.retry_policy().config().jitter, Jitter::Decorrelated);
}

#[tokio::test]
async fn an_async_function_takes_a_deadline_too() {
    assert_eq!(up(1).await.unwrap(), 2);
    assert_eq!(up_opero().deadline(), Some(Duration::from_secs(5)));
}
