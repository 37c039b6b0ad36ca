//! Dropping an opmap in worker processes returns within seconds and leaves no worker behind, also
//! while its workers are being SIGKILLed from another thread at random moments around the drop.
//!
//! Once in a few runs this used to hang for ever: procspawn's monitor of a killed worker held a
//! lock while it waited to report to the idle channel that owned the worker, and the drop waited
//! on that lock (see `Workers::shut_down` in opero-parallel's `process.rs`). Each iteration builds
//! a map (`process` and `async_process` in turn), uses it (an async one is sometimes dropped with
//! a batch still running), and drops it on a thread of its own while a killer thread SIGKILLs
//! some of its workers; a watchdog fails the test when a drop overruns [`DROP_LIMIT`].
//!
//! `OPERO_STRESS_ITERS` sets the number of iterations (500 by default; `scripts/stress-drop.sh`
//! runs many more) and `OPERO_STRESS_SEED` replays a run. Children are counted through /proc,
//! so this file holds a single test (tests of one binary run at once and would count each
//! other's workers).
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use opero::opmap;

opero::enable_process_test_support!();

/// The longest a drop may take before the test fails instead of hanging.
const DROP_LIMIT: Duration = Duration::from_secs(5);

const WORKERS: usize = 2;

fn double(x: &u32) -> Result<u32, String> {
    Ok(x * 2)
}

async fn nap(ms: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// Processes whose parent is this one, zombies included (an unreaped child is left behind too).
fn my_children() -> BTreeSet<u32> {
    opero_tests::children_of(std::process::id())
        .into_iter()
        .collect()
}

/// A handle on one process that stays on that process: a signal sent through it can never hit
/// another process that reused the pid after the drop reaped the worker.
struct Pidfd(OwnedFd);

impl Pidfd {
    #[allow(unsafe_code)]
    fn open(pid: u32) -> Option<Pidfd> {
        let pid = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor or -1;
        // no memory is shared with the kernel.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: the kernel just made this descriptor for us; nothing else owns or closes it.
        Some(Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    #[allow(unsafe_code)]
    fn kill(&self) {
        // SAFETY: passes a descriptor we own, a signal number, a null `siginfo` (documented to
        // mean "as if sent by kill(2)") and no flags. ESRCH (already gone) is fine.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

fn iterations() -> usize {
    std::env::var("OPERO_STRESS_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
}

fn seed() -> u64 {
    std::env::var("OPERO_STRESS_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(15)
        })
}

#[test]
fn dropping_an_opmap_never_hangs_while_its_workers_are_killed() {
    let iterations = iterations();
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = my_children();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut killed = 0usize;

    for i in 0..iterations {
        let process_mode = i % 2 == 0;
        let mode = if process_mode {
            "process"
        } else {
            "async_process"
        };
        let context = format!("iteration {i} ({mode}), OPERO_STRESS_SEED={seed}");

        // Build and use a map, so that its workers hold channels (idle ones, or in an async
        // map dropped midway, busy ones).
        let map: Box<dyn Send> = if process_mode {
            let f = opmap()
                .workers(WORKERS)
                .progress(false)
                .wrap_process(double)
                .unwrap();
            assert_eq!(f.call(0..6u32)[5], Ok(10), "{context}");
            Box::new(f)
        } else {
            let f = opmap()
                .workers(WORKERS)
                .progress(false)
                .wrap_process_async(nap)
                .unwrap();
            let naps: Vec<u64> = (0..8).map(|_| rng.u64(0..10)).collect();
            let budget = Duration::from_millis(rng.u64(0..15));
            rt.block_on(async {
                let _ = tokio::time::timeout(budget, f.call(naps)).await;
            });
            Box::new(f)
        };
        let workers: BTreeSet<u32> = my_children().difference(&before).copied().collect();
        assert_eq!(workers.len(), WORKERS, "{context}: {workers:?}");

        // Kill some of its workers at random moments around the start of the drop.
        let targets: Vec<Pidfd> = workers
            .iter()
            .filter(|_| rng.bool())
            .filter_map(|&pid| Pidfd::open(pid))
            .collect();
        killed += targets.len();
        let delays: Vec<Duration> = targets
            .iter()
            .map(|_| Duration::from_micros(rng.u64(0..4000)))
            .collect();
        let go = Arc::new(Barrier::new(2));
        let killer = {
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                go.wait();
                for (target, delay) in targets.iter().zip(delays) {
                    std::thread::sleep(delay);
                    target.kill();
                }
            })
        };
        let drop_delay = Duration::from_micros(rng.u64(0..3000));

        go.wait();
        std::thread::sleep(drop_delay);
        let (dropped, done) = mpsc::channel();
        let dropping = Instant::now();
        std::thread::spawn(move || {
            drop(map);
            let _ = dropped.send(());
        });
        if done.recv_timeout(DROP_LIMIT).is_err() {
            panic!(
                "{context}: dropping the map took more than {DROP_LIMIT:?}; its workers were \
                 {workers:?}, children now {:?}",
                my_children()
            );
        }
        slowest = slowest.max(dropping.elapsed());
        killer.join().unwrap();

        // Every worker is gone and reaped once the drop has returned: the first ones, and any
        // that procspawn started in place of a killed one.
        let left: Vec<u32> = my_children().difference(&before).copied().collect();
        assert!(
            left.is_empty(),
            "{context}: worker processes outlived their map: {left:?} (its first workers were \
             {workers:?})"
        );
    }

    #[allow(clippy::print_stderr)] // the figures scripts/stress-drop.sh reports
    {
        eprintln!(
            "{iterations} drops ({killed} workers killed) in {:.1?}, the slowest drop {slowest:.1?}, \
             OPERO_STRESS_SEED={seed}",
            started.elapsed()
        );
    }
}
