//! Four OS processes (this test binary re-run with a child role) share one limit through Redis:
//! the aggregate count matches rate × time + burst within 3%, and no sliding second of the
//! server's clock holds more than rate + burst permits. With leases, the same holds.

use std::path::Path;
use std::process::{Command, Stdio};

use opero::{RedisLimiterOptions, RedisRateLimiter};
use opero_core::RateLimitConfig;
use opero_tests::RedisServer;

/// The child's role: `url|name|rate|burst|lease|end_us|out_file`.
const CHILD_ROLE: &str = "OPERO_TEST_LIMIT_CHILD";
const PROCESSES: usize = 4;

/// Run by the child processes only: takes permits until their valid time (server clock) passes
/// `end_us`, and writes each one's valid time.
#[test]
fn child_takes_permits_until_the_end() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let parts: Vec<&str> = role.split('|').collect();
    let [url, name, rate, burst, lease, end_us, out] = parts[..] else {
        panic!("malformed child role {role:?}");
    };
    let mut options = RedisLimiterOptions::new(url, name);
    options.lease = lease.parse().unwrap();
    let limiter = RedisRateLimiter::new(
        &RateLimitConfig::per_second(rate.parse().unwrap()).with_burst(burst.parse().unwrap()),
        options,
    )
    .unwrap();
    let end_us: f64 = end_us.parse().unwrap();
    let mut times = Vec::new();
    loop {
        let permit = limiter.acquire_blocking_permit().unwrap();
        let at = permit
            .server_time_us
            .expect("a permit of the shared bucket");
        if at > end_us {
            break;
        }
        times.push(at);
    }
    let text: Vec<String> = times.iter().map(|t| format!("{t:.3}")).collect();
    std::fs::write(out, text.join("\n")).unwrap();
}

fn server_time_us(url: &str) -> f64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    secs as f64 * 1e6 + micros as f64
}

/// Runs `PROCESSES` children on one limit and returns every permit's valid time, sorted, and
/// how many each child took.
fn run_children(
    server: &RedisServer,
    name: &str,
    rate: f64,
    burst: u32,
    lease: u32,
    seconds: f64,
) -> (Vec<f64>, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    // Room for the children to start before the measured span.
    let end_us = server_time_us(&server.url()) + (seconds + 1.0) * 1e6;
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            let out = dir.path().join(format!("child-{i}"));
            let role = format!(
                "{}|{name}|{rate}|{burst}|{lease}|{end_us}|{}",
                server.url(),
                out.display()
            );
            let child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "child_takes_permits_until_the_end",
                    "--exact",
                    "--test-threads=1",
                ])
                .env(CHILD_ROLE, role)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let mut all = Vec::new();
    let mut per_child = Vec::new();
    for (child, out) in children {
        let status = child.wait_with_output().unwrap().status;
        assert!(status.success(), "a child failed: {status}");
        let times = read_times(&out);
        per_child.push(times.len());
        all.extend(times);
    }
    all.sort_by(f64::total_cmp);
    (all, per_child)
}

fn read_times(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Checks the aggregate over `seconds` from the first permit and every sliding second.
fn assert_one_limit(times: &[f64], rate: f64, burst: u32, seconds: f64) {
    let first = times[0];
    let last = times[times.len() - 1];
    assert!(
        last - first >= seconds * 1e6,
        "the children ran {:.2}s, less than the measured {seconds}s",
        (last - first) / 1e6
    );
    let count = times.iter().filter(|t| **t < first + seconds * 1e6).count() as f64;
    let expected = rate * seconds + f64::from(burst);
    assert!(
        (count - expected).abs() <= expected * 0.03,
        "{count} permits in {seconds}s; expected {expected} within 3%"
    );
    let mut j = 0;
    let mut worst = 0;
    for i in 0..times.len() {
        while times[j] + 1e6 <= times[i] {
            j += 1;
        }
        worst = worst.max(i - j + 1);
    }
    assert!(
        worst as f64 <= rate + f64::from(burst),
        "{worst} permits in one second of the server's clock; at most {} allowed",
        rate + f64::from(burst)
    );
}

#[test]
fn four_processes_share_fifty_permits_a_second_with_burst_one() {
    let server = RedisServer::start();
    let (times, per_child) = run_children(&server, "four-processes", 50.0, 1, 1, 5.0);
    assert!(
        per_child.iter().all(|n| *n > 0),
        "every process got permits: {per_child:?}"
    );
    assert_one_limit(&times, 50.0, 1, 5.0);
}

#[test]
fn four_leasing_processes_keep_the_aggregate_rate() {
    let server = RedisServer::start();
    let (times, per_child) = run_children(&server, "four-leasing", 200.0, 10, 10, 3.0);
    assert!(
        per_child.iter().all(|n| *n > 0),
        "every process got permits: {per_child:?}"
    );
    assert_one_limit(&times, 200.0, 10, 3.0);
}
