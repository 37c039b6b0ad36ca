//! opmap in worker processes (modes `process` and `async_process`): a worker that aborts,
//! segfaults, hangs or panics fails only its own item; every other item comes back, in order.
//! Real worker processes (this test binary, re-executed), no mocks.

// The segfault and the unsynchronised counter below need `unsafe`; both are deliberate.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use opero::{opmap, AttemptError, Mode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

opero::enable_process_test_support!();

fn double_or_abort_on_13(x: &u32) -> Result<u32, String> {
    if *x == 13 {
        std::process::abort();
    }
    Ok(x * 2)
}

fn identity_or_segfault_on_7(x: &u32) -> Result<u32, String> {
    if *x == 7 {
        // SAFETY: none, on purpose: writing through a null pointer is the segfault under test.
        unsafe { std::ptr::null_mut::<u32>().write_volatile(1) };
    }
    Ok(*x)
}

/// Counts the calls this worker process has served, with no synchronisation at all.
static mut CALLS: u64 = 0;

fn count_calls(_: &u32) -> Result<(u32, u64), String> {
    // SAFETY: a `process`-mode worker runs one item at a time on one thread, so nothing else
    // touches the counter while this reads and writes it.
    let n = unsafe {
        CALLS += 1;
        CALLS
    };
    Ok((std::process::id(), n))
}

/// Aborts the first time it sees an item (leaving a marker file), succeeds after.
fn abort_once(job: &(String, u32)) -> Result<u32, String> {
    let marker = Path::new(&job.0).join(format!("crashed-{}", job.1));
    if !marker.exists() {
        std::fs::write(&marker, std::process::id().to_string()).map_err(|e| e.to_string())?;
        std::process::abort();
    }
    Ok(std::process::id())
}

/// Its worker's pid; `exit(3)` on item 5, SIGKILL (sent by `kill -9`) on item 8.
fn pid_or_exit_3_on_5_or_sigkill_on_8(x: &u32) -> Result<u32, String> {
    let pid = std::process::id();
    match x {
        5 => std::process::exit(3),
        8 => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(10));
            Err("still alive after kill -9".to_owned())
        }
        _ => Ok(pid),
    }
}

/// The pid in a `Crashed` message ("worker process <pid> ...").
fn crashed_pid(message: &str) -> Option<u32> {
    let rest = message.split("worker process ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// The pids named in this process's opmap status files (`<tmp>/opero-workers-<pid>-<n>/<n>`,
/// each starting with `pid <worker pid>`), whichever pool they belong to.
fn pids_in_status_files() -> Vec<u32> {
    let prefix = format!("opero-workers-{}-", std::process::id());
    let mut pids = Vec::new();
    for dir in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if !dir.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(file.path()).unwrap_or_default();
            pids.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("pid "))
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

fn sleep_on_1(x: &u32) -> Result<u32, String> {
    if *x == 1 {
        std::thread::sleep(Duration::from_secs(30));
    }
    Ok(*x)
}

fn panic_on_0(x: &u32) -> Result<u32, String> {
    if *x == 0 {
        panic!("item zero exploded");
    }
    Ok(*x)
}

/// An item that refuses to serialize when it is 2.
#[derive(Deserialize)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 2 {
            return Err(serde::ser::Error::custom("two is not allowed"));
        }
        s.serialize_u32(self.0)
    }
}

/// A result that refuses to deserialize when it is odd.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Even(u32);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n % 2 == 1 {
            return Err(serde::de::Error::custom("odd"));
        }
        Ok(Even(n))
    }
}

fn picky_even(x: &Picky) -> Result<Even, String> {
    Ok(Even(x.0))
}

#[test]
fn an_item_that_aborts_its_worker_fails_alone_while_the_other_99_succeed() {
    let f = opmap()
        .workers(4)
        .retries(1)
        .min_delay(Duration::ZERO)
        .progress(false)
        .wrap_process(double_or_abort_on_13)
        .unwrap();
    let out = f.call(0..100u32);
    assert_eq!(out.len(), 100);
    for (i, result) in out.iter().enumerate() {
        if i == 13 {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.len(), 2, "one retry after the crash: {err}");
            for attempt in err.attempts() {
                let AttemptError::Crashed(why) = &attempt.error else {
                    panic!("not a crash: {err}");
                };
                if cfg!(unix) {
                    assert!(why.contains("killed by signal 6 (SIGABRT)"), "{why}");
                    assert!(crashed_pid(why).is_some(), "{why}");
                }
            }
        } else {
            assert_eq!(result, &Ok(i as u32 * 2), "item {i}");
        }
    }
    // Workers replaced after each crash keep serving the next call.
    assert_eq!(f.call([1, 2]), [Ok(2), Ok(4)]);
}

#[test]
fn a_worker_that_segfaults_fails_alone() {
    let f = opmap()
        .workers(2)
        .retries(0)
        .progress(false)
        .wrap_process(identity_or_segfault_on_7)
        .unwrap();
    let out = f.call(0..20u32);
    for (i, result) in out.iter().enumerate() {
        if i == 7 {
            let err = result.as_ref().unwrap_err();
            let AttemptError::Crashed(why) = &err.last().unwrap().error else {
                panic!("not a crash: {err}");
            };
            // On Linux a write through a null pointer is an unmapped-page fault: SIGSEGV, not
            // SIGBUS.
            if cfg!(target_os = "linux") {
                assert!(why.contains("killed by signal 11 (SIGSEGV)"), "{why}");
            }
        } else {
            assert_eq!(result, &Ok(i as u32));
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_worker_that_exits_or_is_sigkilled_says_so_and_leaves_no_status_file() {
    let f = opmap()
        .workers(2)
        .retries(1)
        .min_delay(Duration::ZERO)
        .progress(false)
        .wrap_process(pid_or_exit_3_on_5_or_sigkill_on_8)
        .unwrap();
    let out = f.call(0..12u32);
    let mut crashed: Vec<u32> = Vec::new();
    let mut served: Vec<u32> = Vec::new();
    for (i, result) in out.iter().enumerate() {
        let expected = match i {
            5 => "exited with status 3",
            8 => "died without a status (SIGKILL or killed from outside)",
            _ => {
                served.push(*result.as_ref().unwrap());
                continue;
            }
        };
        let err = result.as_ref().unwrap_err();
        assert_eq!(err.len(), 2, "one retry after the crash: {err}");
        for attempt in err.attempts() {
            let AttemptError::Crashed(why) = &attempt.error else {
                panic!("item {i}: not a crash: {err}");
            };
            assert!(why.contains(expected), "item {i}: {why}");
            crashed.push(crashed_pid(why).unwrap());
        }
    }
    assert!(!served.contains(&std::process::id()), "ran in the parent");
    // A crashed worker's file is read and removed at once.
    let left = pids_in_status_files();
    assert!(
        crashed.iter().all(|pid| !left.contains(pid)),
        "status files of crashed workers left: {left:?} (crashed: {crashed:?})"
    );
    // The serving workers' files go with the pool.
    drop(f);
    let left = pids_in_status_files();
    assert!(
        served.iter().all(|pid| !left.contains(pid)),
        "status files left behind: {left:?} (this pool's workers: {served:?})"
    );
}

#[test]
fn a_global_counter_mutated_without_synchronisation_stays_correct_per_process() {
    let f = opmap()
        .workers(3)
        .progress(false)
        .wrap_process(count_calls)
        .unwrap();
    let out = f.call(0..60u32);
    let mut per_process: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (pid, n) in out.into_iter().map(Result::unwrap) {
        per_process.entry(pid).or_default().push(n);
    }
    assert!(
        !per_process.contains_key(&std::process::id()),
        "ran in the parent"
    );
    let mut total = 0;
    for counts in per_process.values_mut() {
        counts.sort_unstable();
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(
            *counts, expected,
            "each worker counted its own calls, none lost"
        );
        total += counts.len();
    }
    assert_eq!(total, 60);
}

#[test]
fn a_retry_after_a_crash_succeeds_on_a_fresh_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let f = opmap()
        .workers(2)
        .retries(2)
        .min_delay(Duration::ZERO)
        .progress(false)
        .wrap_process(abort_once)
        .unwrap();
    let out = f.call((0..4u32).map(|n| (path.clone(), n)));
    for (n, result) in out.into_iter().enumerate() {
        let pid = result.unwrap();
        let crashed: u32 = std::fs::read_to_string(dir.path().join(format!("crashed-{n}")))
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(
            pid, crashed,
            "item {n} succeeded on the worker that crashed"
        );
    }
    assert_eq!(f.opero().metrics().retries, 4);
}

#[test]
fn a_hung_worker_is_killed_at_the_timeout_and_the_others_finish() {
    let f = opmap()
        .workers(2)
        .retries(0)
        .timeout(Duration::from_millis(300))
        .progress(false)
        .wrap_process(sleep_on_1)
        .unwrap();
    let out = f.call(0..6u32);
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(
        err.last().unwrap().error,
        AttemptError::TimedOut(Duration::from_millis(300))
    );
    for i in [0, 2, 3, 4, 5] {
        assert_eq!(out[i], Ok(i as u32));
    }
}

#[test]
fn a_panic_in_a_worker_fails_its_item_once_and_the_worker_lives_on() {
    let f = opmap()
        .workers(1)
        .retries(3)
        .min_delay(Duration::ZERO)
        .progress(false)
        .wrap_process(panic_on_0)
        .unwrap();
    let out = f.call([0, 1, 2]);
    let err = out[0].as_ref().unwrap_err();
    assert_eq!(err.len(), 1, "panics are never retried");
    assert_eq!(
        err.last().unwrap().error,
        AttemptError::Panicked("item zero exploded".to_string())
    );
    assert_eq!(&out[1..], [Ok(1), Ok(2)]);
}

#[test]
fn values_that_cannot_cross_the_process_boundary_are_per_item_codec_errors() {
    let f = opmap()
        .workers(2)
        .retries(3)
        .progress(false)
        .wrap_process(picky_even)
        .unwrap();
    let out = f.call([Picky(0), Picky(1), Picky(2), Picky(4)]);
    assert_eq!(out[0], Ok(Even(0)));
    let odd = out[1].as_ref().unwrap_err();
    assert_eq!(odd.len(), 1, "codec errors are never retried");
    assert!(
        odd.to_string().contains("result failed to deserialize"),
        "{odd}"
    );
    let two = out[2].as_ref().unwrap_err();
    assert!(
        two.to_string().contains("argument failed to serialize"),
        "{two}"
    );
    assert_eq!(out[3], Ok(Even(4)));
}

#[test]
fn a_capturing_closure_or_a_mode_mismatch_is_an_error_up_front() {
    let k = 3u32;
    let err = opmap()
        .progress(false)
        .wrap_process(move |x: &u32| Ok::<_, String>(x + k))
        .unwrap_err();
    assert!(err.to_string().contains("captures nothing"), "{err}");
    let err = opmap()
        .mode(Mode::Rayon)
        .wrap_process(double_or_abort_on_13)
        .unwrap_err();
    assert_eq!(err.field(), Some("mode"));
    let err = opmap()
        .mode(Mode::Process)
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .unwrap_err();
    assert_eq!(err.field(), Some("mode"));
}

// ===== async_process =====

async fn triple_after_a_nap(x: u32) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(x * 3)
}

async fn abort_on_5(x: u32) -> Result<u32, String> {
    if x == 5 {
        std::process::abort();
    }
    Ok(x)
}

async fn abort_once_async(job: (String, u32)) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    abort_once(&job)
}

#[tokio::test]
async fn async_process_runs_several_items_per_worker_in_input_order() {
    let f = opmap()
        .workers(2)
        .in_flight_per_worker(8)
        .progress(false)
        .wrap_process_async(triple_after_a_nap)
        .unwrap();
    let started = std::time::Instant::now();
    let out = f.call(0..64u32).await;
    let expected: Vec<Result<u32, _>> = (0..64).map(|x| Ok(x * 3)).collect();
    assert_eq!(out, expected);
    // 64 naps of 5 ms, one at a time in each of 2 workers, would take 160 ms.
    assert!(started.elapsed() < Duration::from_millis(2000));
}

#[tokio::test]
async fn async_process_fails_an_aborting_item_alone() {
    let f = opmap()
        .workers(2)
        .in_flight_per_worker(1)
        .retries(1)
        .min_delay(Duration::ZERO)
        .progress(false)
        .wrap_process_async(abort_on_5)
        .unwrap();
    let out = f.call(0..12u32).await;
    for (i, result) in out.iter().enumerate() {
        if i == 5 {
            let err = result.as_ref().unwrap_err();
            for attempt in err.attempts() {
                let AttemptError::Crashed(why) = &attempt.error else {
                    panic!("not a crash: {err}");
                };
                if cfg!(unix) {
                    assert!(why.contains("killed by signal 6 (SIGABRT)"), "{why}");
                }
            }
        } else {
            assert_eq!(result, &Ok(i as u32));
        }
    }
}

#[tokio::test]
async fn async_process_retries_every_item_of_a_crashed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let f = opmap()
        .workers(2)
        .in_flight_per_worker(4)
        .retries(3)
        .min_delay(Duration::ZERO)
        .progress(false)
        .wrap_process_async(abort_once_async)
        .unwrap();
    // Only item 3 crashes (once); whoever shared its batch is retried too, and all succeed.
    std::fs::write(dir.path().join("crashed-0"), "0").unwrap();
    for n in [1, 2, 4, 5, 6, 7] {
        std::fs::write(dir.path().join(format!("crashed-{n}")), "0").unwrap();
    }
    let out = f.call((0..8u32).map(|n| (path.clone(), n))).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert!(f.opero().metrics().retries >= 1);
}

#[test]
fn concurrent_calls_share_the_workers_of_one_opmap() {
    let f = opmap()
        .workers(1)
        .progress(false)
        .wrap_process(double_or_abort_on_13)
        .unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let f = f.clone();
                s.spawn(move || f.call(0..10u32))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let expected: Vec<Result<u32, _>> = (0..10).map(|x| Ok(x * 2)).collect();
    for out in results {
        assert_eq!(out, expected);
    }
}

#[test]
fn the_cache_runs_in_the_parent_so_a_second_call_needs_no_worker() {
    let f = opmap()
        .workers(2)
        .cache(true)
        .progress(false)
        .wrap_process(count_calls)
        .unwrap();
    let first = f.call(0..5u32);
    let second = f.call(0..5u32);
    assert_eq!(
        first, second,
        "the same (pid, count) pairs, served from the cache"
    );
    let metrics = f.opero().metrics();
    assert_eq!(metrics.cache_hits, 5);
    assert_eq!(metrics.cache_misses, 5);
}
