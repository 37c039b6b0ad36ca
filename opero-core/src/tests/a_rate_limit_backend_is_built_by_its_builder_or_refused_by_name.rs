//! `rate_limit.backend` picks where the bucket lives: `"local"` builds a `TokenBucket` here, any
//! other name is built by the builder given with `rate_limiter_backend` (the facade's Redis one)
//! or refused by name; a shared limiter that cannot hand out a permit fails that attempt with
//! its reason, and the builder shows the settings made so far.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{
    AttemptError, ErrorKind, NoCache, Opero, OperoError, RateLimitConfig, RateLimiter,
    LOCAL_LIMITER,
};

/// A limiter whose state lives elsewhere and is unreachable: every permit is refused.
struct Unreachable {
    asked: AtomicU32,
}

impl RateLimiter for Unreachable {
    fn reserve(&self) -> Duration {
        Duration::ZERO
    }
    fn try_acquire(&self) -> bool {
        false
    }
    fn try_reserve(&self) -> Result<Duration, OperoError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Err(OperoError::backend(
            "limiter unreachable",
            std::io::Error::other("connection refused"),
        ))
    }
}

static BUILT: AtomicU32 = AtomicU32::new(0);

fn build_remote(config: &RateLimitConfig) -> Result<Arc<dyn RateLimiter>, OperoError> {
    assert_eq!(config.backend, "remote");
    BUILT.fetch_add(1, Ordering::SeqCst);
    Ok(Arc::new(Unreachable {
        asked: AtomicU32::new(0),
    }))
}

fn remote() -> RateLimitConfig {
    RateLimitConfig {
        backend: "remote".into(),
        ..RateLimitConfig::per_second(10.0)
    }
}

#[test]
fn an_unknown_backend_without_a_builder_is_refused_by_name() {
    let err = Opero::<NoCache>::builder()
        .rate_limit_config(remote())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), Some("rate_limit.backend"));
    assert_eq!(err.value(), Some("remote"));
    assert_eq!(err.kind(), ErrorKind::UnknownBackend);
}

#[test]
fn a_named_backend_is_built_by_the_given_builder_and_its_refusal_fails_the_attempt() {
    let before = BUILT.load(Ordering::SeqCst);
    let opero = Opero::<NoCache>::builder()
        .rate_limit_config(remote())
        .rate_limiter_backend(build_remote)
        .retries(0)
        .build()
        .unwrap();
    assert_eq!(BUILT.load(Ordering::SeqCst), before + 1);
    let mut runs = 0;
    let err = opero
        .run(|| {
            runs += 1;
            Ok::<_, String>(1)
        })
        .unwrap_err();
    assert_eq!(runs, 0, "no permit, no call");
    let AttemptError::NoPermit(why) = &err.attempts()[0].error else {
        panic!("{err:?}");
    };
    assert!(why.contains("limiter unreachable"), "{why}");
    assert!(err.to_string().contains("limiter unreachable"), "{err}");
}

#[tokio::test]
async fn an_async_attempt_without_a_permit_fails_with_the_limiter_s_reason() {
    let opero = Opero::<NoCache>::builder()
        .rate_limiter(Arc::new(Unreachable {
            asked: AtomicU32::new(0),
        }))
        .retries(0)
        .build()
        .unwrap();
    let err = opero
        .run_async(|| async { Ok::<_, String>(1) })
        .await
        .unwrap_err();
    let AttemptError::NoPermit(why) = &err.attempts()[0].error else {
        panic!("{err:?}");
    };
    assert!(why.contains("limiter unreachable"), "{why}");
}

#[test]
fn the_local_backend_is_a_token_bucket_built_here() {
    let before = BUILT.load(Ordering::SeqCst);
    let config = RateLimitConfig {
        backend: LOCAL_LIMITER.into(),
        ..RateLimitConfig::per_second(1_000.0)
    };
    let opero = Opero::<NoCache>::builder()
        .rate_limit_config(config)
        .rate_limiter_backend(build_remote)
        .build()
        .unwrap();
    assert_eq!(
        BUILT.load(Ordering::SeqCst),
        before,
        "the builder is for other backends"
    );
    let limiter = opero.rate_limiter().unwrap();
    assert!(limiter.try_acquire());
    assert!(!limiter.try_acquire(), "a burst of one, spent");
}

#[test]
fn the_builder_shows_the_settings_made_so_far() {
    let builder = Opero::<NoCache>::builder()
        .retries(5)
        .rate_limit(20.0)
        .deadline(Duration::from_secs(2));
    let config = builder.config();
    assert_eq!(config.retry.retries, 5);
    assert_eq!(config.rate_limit.rate, Some(20.0));
    assert_eq!(config.retry.deadline, Some(Duration::from_secs(2)));
}
