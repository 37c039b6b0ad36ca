//! Single-flight across processes on a real Redis: four OS processes (this test binary re-run
//! with a role in its environment) miss one key at once and the work runs once; with the
//! leader killed by SIGKILL mid-work, another process completes it within the lock expiry plus
//! a margin. Also, in one process, pipelines on backends of their own (which only Redis can
//! coalesce): the setting on and off, async, errors not shared, options validated.
#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opero::{CacheConfig, ErrorKind, Opero, OperoConfig, RedisCache, RedisOptions};
use opero_tests::{conformance, flight, RedisCluster, RedisServer};
use redis::Commands;

const ROLE: &str = "OPERO_FLIGHT_CHILD";
const URL: &str = "OPERO_FLIGHT_URL";
const NS: &str = "OPERO_FLIGHT_NS";
const START_AT: &str = "OPERO_FLIGHT_START_AT_MS";
const LOCK_TTL: Duration = Duration::from_secs(2);
const WORK: Duration = Duration::from_millis(500);
const PROCESSES: usize = 4;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// INCR and friends on one server or a cluster.
// One per test or child, never moved: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Counters {
    Single(redis::Connection),
    Cluster(redis::cluster::ClusterConnection),
}

impl Counters {
    fn open(urls: &str) -> Self {
        if urls.contains(',') {
            let seeds: Vec<&str> = urls.split(',').collect();
            Counters::Cluster(
                redis::cluster::ClusterClient::new(seeds)
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            )
        } else {
            Counters::Single(redis::Client::open(urls).unwrap().get_connection().unwrap())
        }
    }
    fn incr(&mut self, key: &str) -> i64 {
        match self {
            Counters::Single(c) => c.incr(key, 1).unwrap(),
            Counters::Cluster(c) => c.incr(key, 1).unwrap(),
        }
    }
    fn get(&mut self, key: &str) -> Option<i64> {
        match self {
            Counters::Single(c) => c.get(key).unwrap(),
            Counters::Cluster(c) => c.get(key).unwrap(),
        }
    }
    fn set(&mut self, key: &str, value: i64) {
        match self {
            Counters::Single(c) => c.set::<_, _, ()>(key, value).unwrap(),
            Counters::Cluster(c) => c.set::<_, _, ()>(key, value).unwrap(),
        }
    }
}

/// Run by the child processes only: waits for the common start, then misses the shared key.
/// The work counts its runs in Redis; the first run, when the variable says so, publishes its
/// pid and then hangs so that the parent can kill it mid-work.
#[test]
fn child_misses_the_shared_key() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let urls = std::env::var(URL).unwrap();
    let ns = std::env::var(NS).unwrap();
    let start_at: u64 = std::env::var(START_AT).unwrap().parse().unwrap();
    let mut cache = CacheConfig {
        namespace: ns.clone(),
        ..CacheConfig::enabled("redis")
    };
    cache.backend_options.insert("url".into(), urls.clone());
    cache.backend_options.insert(
        "flight_lock_ttl".into(),
        format!("{}ms", LOCK_TTL.as_millis()),
    );
    cache
        .backend_options
        .insert("flight_wait".into(), "30s".into());
    let opero = Opero::<RedisCache>::new(OperoConfig {
        cache,
        retry: opero::RetryConfig {
            retries: 0,
            ..opero_tests::no_delay()
        },
        ..Default::default()
    })
    .unwrap()
    .named("shared-work");
    let mut counters = Counters::open(&urls);
    std::thread::sleep(Duration::from_millis(start_at.saturating_sub(now_ms())));
    let value = opero
        .call("the key", |k: &str| {
            let run = counters.incr(&format!("{ns}-runs"));
            if run == 1 && role == "hang-first" {
                counters.set(&format!("{ns}-leader"), i64::from(std::process::id()));
                std::thread::sleep(Duration::from_secs(3600));
            }
            std::thread::sleep(WORK);
            Ok::<_, String>(format!("computed {k}"))
        })
        .unwrap();
    assert_eq!(value, "computed the key");
}

/// Starts the children on `urls`, all to miss at one instant.
fn spawn_children(urls: &str, ns: &str, role: &str) -> Vec<Child> {
    let start_at = now_ms() + 1_500;
    (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["child_misses_the_shared_key", "--exact", "--test-threads=1"])
                .env(ROLE, role)
                .env(URL, urls)
                .env(NS, ns)
                .env(START_AT, start_at.to_string())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Kills children left behind by a failed assertion.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn four_processes_run_the_work_once(urls: &str) {
    let ns = conformance::fresh_namespace();
    let mut children = Reaper(spawn_children(urls, &ns, "plain"));
    for c in &mut children.0 {
        let status = c.wait().unwrap();
        assert!(status.success(), "a child failed: {status}");
    }
    let mut counters = Counters::open(urls);
    assert_eq!(counters.get(&format!("{ns}-runs")), Some(1));
}

fn a_killed_leader_is_taken_over_within_the_lock_expiry(urls: &str) {
    let ns = conformance::fresh_namespace();
    let mut children = Reaper(spawn_children(urls, &ns, "hang-first"));
    let mut counters = Counters::open(urls);
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(pid) = counters.get(&format!("{ns}-leader")) {
            break pid as u32;
        }
        assert!(Instant::now() < deadline, "no process led the work");
        std::thread::sleep(Duration::from_millis(10));
    };
    let at = children
        .0
        .iter()
        .position(|c| c.id() == leader)
        .expect("the leader is one of ours");
    let mut killed = children.0.remove(at);
    killed.kill().unwrap(); // SIGKILL: no release, the lock stays until it expires
    killed.wait().unwrap();
    let killed_at = Instant::now();
    for c in &mut children.0 {
        let status = c.wait().unwrap();
        assert!(status.success(), "a child failed: {status}");
    }
    let took = killed_at.elapsed();
    // The lock expires within LOCK_TTL of the kill; then one waiter runs WORK; 3 s covers
    // process scheduling on a loaded machine.
    assert!(
        took <= LOCK_TTL + WORK + Duration::from_secs(3),
        "the work was completed {took:?} after the leader died"
    );
    // The dead leader's run and exactly one takeover.
    assert_eq!(counters.get(&format!("{ns}-runs")), Some(2));
}

#[test]
fn four_processes_miss_one_key_and_the_work_runs_once() {
    let server = RedisServer::start();
    four_processes_run_the_work_once(&server.url());
}

#[test]
fn a_leader_killed_mid_work_is_taken_over_by_another_process() {
    let server = RedisServer::start();
    a_killed_leader_is_taken_over_within_the_lock_expiry(&server.url());
}

#[test]
fn four_processes_on_a_cluster_run_the_work_once_and_survive_a_killed_leader() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls().join(",");
    four_processes_run_the_work_once(&urls);
    a_killed_leader_is_taken_over_within_the_lock_expiry(&urls);
}

// ===== in one process: pipelines on backends of their own =====

fn redis(url: &str, single_flight: bool) -> RedisCache {
    RedisCache::new(RedisOptions {
        single_flight,
        ..RedisOptions::url(url)
    })
    .unwrap()
}

#[test]
fn the_setting_on_coalesces_separate_backends_and_off_does_not() {
    let server = RedisServer::start();
    assert!(RedisOptions::default().single_flight, "on by default");
    assert_eq!(
        flight::concurrent_pipelines_runs(|| redis(&server.url(), true)),
        1
    );
    assert_eq!(
        flight::concurrent_pipelines_runs(|| redis(&server.url(), false)),
        flight::PIPELINES
    );
}

#[test]
fn a_redis_backend_chosen_by_name_from_config_takes_part_too() {
    use opero::{AnyCache, BuildCache};
    let server = RedisServer::start();
    let build = |on: &str| {
        let mut config = CacheConfig::enabled("redis");
        config.backend_options.insert("url".into(), server.url());
        config
            .backend_options
            .insert("single_flight".into(), on.into());
        move || AnyCache::build(&config).unwrap()
    };
    assert_eq!(flight::concurrent_pipelines_runs(build("true")), 1);
    assert_eq!(
        flight::concurrent_pipelines_runs(build("false")),
        flight::PIPELINES
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_callers_are_coalesced_across_backends_too() {
    let server = RedisServer::start();
    let url = server.url();
    assert_eq!(
        flight::concurrent_pipelines_runs_async(|| redis(&url, true)).await,
        1
    );
    assert_eq!(
        flight::concurrent_pipelines_runs_async(|| redis(&url, false)).await,
        flight::PIPELINES
    );
}

#[test]
fn a_failing_leader_shares_no_error_and_waiters_run_their_own_call() {
    let server = RedisServer::start();
    assert_eq!(
        flight::errors_are_not_shared(|| redis(&server.url(), true)),
        flight::PIPELINES
    );
}

#[test]
fn flight_options_are_read_from_config_and_refused_by_name() {
    let mut config = CacheConfig::enabled("redis");
    config
        .backend_options
        .insert("single_flight".into(), "false".into());
    config
        .backend_options
        .insert("flight_lock_ttl".into(), "3s".into());
    config
        .backend_options
        .insert("flight_wait".into(), "500ms".into());
    let options = RedisOptions::from_config(&config).unwrap();
    assert!(!options.single_flight);
    assert_eq!(options.flight_lock_ttl, Duration::from_secs(3));
    assert_eq!(options.flight_wait, Duration::from_millis(500));
    for (name, bad) in [
        ("flight_lock_ttl", "0s"),
        ("flight_lock_ttl", "5ms"),
        ("flight_lock_ttl", "2days"),
        ("flight_wait", "0s"),
        ("flight_wait", "2days"),
        ("single_flight", "maybe"),
    ] {
        let mut config = CacheConfig::enabled("redis");
        config.backend_options.insert(name.into(), bad.into());
        let err = match RedisOptions::from_config(&config) {
            Ok(o) => RedisCache::new(o).unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{name}={bad}");
        assert_eq!(err.field(), Some(name), "{name}={bad}: {err}");
    }
}

#[test]
fn a_waiter_gives_up_after_flight_wait_and_runs_its_own_call() {
    let server = RedisServer::start();
    let ns = conformance::fresh_namespace();
    let make = |wait: Duration| {
        let cache = RedisCache::new(RedisOptions {
            flight_wait: wait,
            flight_lock_ttl: Duration::from_secs(30),
            ..RedisOptions::url(server.url())
        })
        .unwrap();
        opero_tests::cached_in(cache, &ns).named("slow")
    };
    let leader = make(Duration::from_secs(20));
    let waiter = make(Duration::from_millis(300));
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let work = |_: &u8| {
        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(2));
        Ok::<_, String>(1u8)
    };
    std::thread::scope(|s| {
        s.spawn(|| leader.call(&0u8, work).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(waiter.call(&0u8, work).unwrap(), 1);
    });
    // The waiter gave up before the leader's 2 s of work ended, and ran its own call.
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn a_panicking_leader_releases_its_lock_so_waiters_do_not_wait_out_the_expiry() {
    let server = RedisServer::start();
    let ns = conformance::fresh_namespace();
    let make = || {
        let cache = RedisCache::new(RedisOptions {
            flight_lock_ttl: Duration::from_secs(60),
            flight_wait: Duration::from_secs(60),
            ..RedisOptions::url(server.url())
        })
        .unwrap();
        opero_tests::cached_in(cache, &ns).named("panics")
    };
    let (leader, waiter) = (make(), make());
    let took = std::thread::scope(|s| {
        let led = s.spawn(|| {
            leader.call(&0u8, |_: &u8| -> Result<u8, String> {
                std::thread::sleep(Duration::from_millis(500));
                panic!("the work panicked")
            })
        });
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        assert_eq!(waiter.call(&0u8, |_: &u8| Ok::<_, String>(7u8)).unwrap(), 7);
        assert!(led.join().is_err(), "the leader's panic reaches its caller");
        started.elapsed()
    });
    // Woken by the release, far before the 60 s lock would have expired.
    assert!(took < Duration::from_secs(30), "{took:?}");
}
