//! The Redis server of a shared rate limit is killed and restarted under load: each down policy
//! does what its documentation says, no call outlasts its timeouts, and every call returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use opero::{AttemptError, RedisDown, RedisLimiterOptions, RedisRateLimiter};
use opero_core::{NoCache, Opero, RateLimitConfig};
use opero_tests::RedisServer;

const OUTAGE: Duration = Duration::from_millis(1200);

fn limiter(
    server: &RedisServer,
    name: &str,
    down: RedisDown,
    wait_limit: Duration,
) -> RedisRateLimiter {
    let mut o = RedisLimiterOptions::new(server.url(), name);
    o.down = down;
    o.connect_timeout = Duration::from_millis(200);
    o.response_timeout = Duration::from_millis(200);
    o.down_min_wait = Duration::from_millis(50);
    o.down_max_wait = Duration::from_millis(200);
    o.wait_limit = wait_limit;
    RedisRateLimiter::new(&RateLimitConfig::per_second(200.0), o).unwrap()
}

struct Run {
    calls: usize,
    ok: usize,
    no_permit: usize,
    longest: Duration,
}

/// Two threads call a pipeline on `limiter` while the server goes down for `OUTAGE` and comes
/// back; every call's outcome and duration is booked.
fn under_load(server: &mut RedisServer, limiter: &RedisRateLimiter) -> Run {
    let opero = Opero::<NoCache>::builder()
        .retries(0)
        .rate_limiter(Arc::new(limiter.clone()))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let opero = opero.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut run = Run {
                    calls: 0,
                    ok: 0,
                    no_permit: 0,
                    longest: Duration::ZERO,
                };
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let result = opero.run(|| Ok::<_, String>(()));
                    run.longest = run.longest.max(start.elapsed());
                    run.calls += 1;
                    match result {
                        Ok(()) => run.ok += 1,
                        Err(e) => {
                            assert!(
                                e.attempts()
                                    .iter()
                                    .all(|a| matches!(a.error, AttemptError::NoPermit(_))),
                                "only a missing permit fails a call: {e}"
                            );
                            run.no_permit += 1;
                        }
                    }
                }
                run
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    server.stop();
    thread::sleep(OUTAGE);
    server.restart();
    thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let mut total = Run {
        calls: 0,
        ok: 0,
        no_permit: 0,
        longest: Duration::ZERO,
    };
    for w in workers {
        let r = w.join().expect("no call panics");
        total.calls += r.calls;
        total.ok += r.ok;
        total.no_permit += r.no_permit;
        total.longest = total.longest.max(r.longest);
    }
    assert_eq!(
        total.calls,
        total.ok + total.no_permit,
        "every call returned"
    );
    total
}

#[test]
fn local_falls_back_to_a_bucket_in_this_process_and_returns_to_redis() {
    let mut server = RedisServer::start();
    let limiter = limiter(
        &server,
        "down-local",
        RedisDown::Local,
        Duration::from_secs(30),
    );
    let run = under_load(&mut server, &limiter);
    let stats = limiter.stats();
    assert_eq!(run.no_permit, 0, "no call fails under the local policy");
    assert!(
        stats.redis_errors > 0 && stats.local_permits > 0,
        "{stats:?}"
    );
    // A dead server costs at most the connect plus response timeouts per try.
    assert!(
        run.longest < Duration::from_millis(1000),
        "a call took {:?}",
        run.longest
    );
    let before = limiter.stats().round_trips;
    let permit = limiter.reserve_permit().unwrap();
    assert_eq!(
        permit.source,
        opero::PermitSource::Redis,
        "back on the shared bucket"
    );
    assert!(limiter.stats().round_trips > before);
    assert!(!limiter.is_marked_down());
}

#[test]
fn wait_holds_calls_until_the_server_is_back_and_fails_none() {
    let mut server = RedisServer::start();
    let limiter = limiter(
        &server,
        "down-wait",
        RedisDown::Wait,
        Duration::from_secs(10),
    );
    let run = under_load(&mut server, &limiter);
    let stats = limiter.stats();
    assert_eq!(
        run.no_permit, 0,
        "no call fails while the wait is within wait_limit"
    );
    assert_eq!(
        stats.local_permits, 0,
        "the shared rate is never bypassed: {stats:?}"
    );
    assert!(stats.redis_errors > 0, "{stats:?}");
    // The longest call waited about the outage, never past wait_limit plus one try's timeouts.
    assert!(
        run.longest >= OUTAGE / 2,
        "a call waited for the server: {:?}",
        run.longest
    );
    assert!(
        run.longest < Duration::from_secs(10) + Duration::from_millis(400),
        "{:?}",
        run.longest
    );
}

#[test]
fn wait_gives_up_at_wait_limit_with_a_typed_error() {
    let mut server = RedisServer::start();
    let limiter = limiter(
        &server,
        "down-wait-limit",
        RedisDown::Wait,
        Duration::from_millis(300),
    );
    server.stop();
    let start = Instant::now();
    let err = limiter.reserve_permit().unwrap_err();
    assert_eq!(err.kind(), opero::ErrorKind::Backend);
    assert!(
        start.elapsed() < Duration::from_millis(300 + 400 + 200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(limiter.stats().refused_permits, 1);
}

#[test]
fn fail_fails_the_attempts_while_down_and_recovers() {
    let mut server = RedisServer::start();
    let limiter = limiter(
        &server,
        "down-fail",
        RedisDown::Fail,
        Duration::from_secs(30),
    );
    let run = under_load(&mut server, &limiter);
    let stats = limiter.stats();
    assert!(run.no_permit > 0, "calls fail while the server is down");
    assert_eq!(
        stats.local_permits, 0,
        "the shared rate is never bypassed: {stats:?}"
    );
    assert_eq!(stats.refused_permits as usize, run.no_permit);
    assert!(
        run.longest < Duration::from_millis(1000),
        "a call took {:?}",
        run.longest
    );
    assert!(
        limiter.try_acquire_permit().is_ok(),
        "back once the server is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_path_follows_the_policy_without_blocking_the_runtime() {
    let mut server = RedisServer::start();
    let limiter = limiter(
        &server,
        "down-async",
        RedisDown::Fail,
        Duration::from_secs(30),
    );
    let opero = Opero::<NoCache>::builder()
        .retries(0)
        .rate_limiter(Arc::new(limiter.clone()))
        .build()
        .unwrap();
    opero
        .run_async(|| async { Ok::<_, String>(()) })
        .await
        .unwrap();
    server.stop();
    let err = opero
        .run_async(|| async { Ok::<_, String>(()) })
        .await
        .unwrap_err();
    assert!(
        matches!(err.attempts()[0].error, AttemptError::NoPermit(_)),
        "{err}"
    );
    server.restart();
    let start = Instant::now();
    loop {
        // The server is tried again after down_min_wait, growing to down_max_wait.
        if opero
            .run_async(|| async { Ok::<_, String>(()) })
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "back within the down waits"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
