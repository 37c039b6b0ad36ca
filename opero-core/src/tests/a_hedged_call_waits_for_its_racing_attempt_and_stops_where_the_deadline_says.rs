//! A hedged call that cannot start a hedge (no rate-limit permit) keeps waiting for the attempt
//! already racing, which may still answer; a retry that would cross the deadline ends a hedged
//! call as it ends an unhedged one, before any next value. On tokio's paused clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::{AttemptError, Fallbacks, Jitter, NoCache, Opero, OperoError, RateLimiter};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A shared limiter that hands out one permit, then cannot reach its server.
struct OnePermit {
    given: AtomicU32,
}

impl RateLimiter for OnePermit {
    fn reserve(&self) -> Duration {
        Duration::ZERO
    }
    fn try_acquire(&self) -> bool {
        false
    }
    fn try_reserve(&self) -> Result<Duration, OperoError> {
        if self.given.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(OperoError::backend(
                "limiter unreachable",
                std::io::Error::other("down"),
            ))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_without_a_permit_leaves_the_race_to_the_running_attempt() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(50), 1)
        .rate_limiter(Arc::new(OnePermit {
            given: AtomicU32::new(0),
        }))
        .retries(0)
        .build()
        .unwrap();
    let start = Instant::now();
    let got = opero
        .run_async(|| async {
            tokio::time::sleep(ms(200)).await;
            Ok::<_, String>("slow but there")
        })
        .await;
    assert_eq!(got.unwrap(), "slow but there");
    assert_eq!(start.elapsed(), ms(200));
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_would_cross_the_deadline_ends_a_hedged_call_before_the_next_value() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(1_000), 1)
        .retries(1)
        .min_delay(ms(400))
        .jitter(Jitter::None)
        .deadline(ms(500))
        .build()
        .unwrap();
    let values = Fallbacks::new(vec!["a", "b"]).unwrap();
    let start = Instant::now();
    let tried = Mutex::new(Vec::new());
    let err = opero
        .run_fallback_async(&values, |v: &str| {
            tried.lock().unwrap().push(v);
            async {
                tokio::time::sleep(ms(200)).await;
                Err::<(), _>("refused")
            }
        })
        .await
        .unwrap_err();
    // a fails at 200 ms; its retry would start at 600 ms, past the deadline: the call ends.
    assert_eq!(*tried.lock().unwrap(), ["a"]);
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(err.ended_by_deadline(), Some(ms(500)));
    assert_eq!(err.attempts()[0].error, AttemptError::Failed("refused"));
}
