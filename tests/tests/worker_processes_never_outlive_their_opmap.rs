//! No worker process is left behind: not when the opmap is dropped after its map, not when the
//! caller panics, not when an async map is dropped midway; and a worker whose parent dies exits
//! by itself. Children are counted through /proc, so this file holds a single test (tests of one
//! binary run at once and would count each other's workers).
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use opero::opmap;
use opero_tests::children_of;

opero::enable_process_test_support!();

fn double(x: &u32) -> Result<u32, String> {
    Ok(x * 2)
}

async fn slow(x: u32) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(x)
}

fn my_children() -> Vec<u32> {
    children_of(std::process::id())
}

/// Waits a little for the kernel to finish tearing a process down.
fn settles_to(expected: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while my_children().len() != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(my_children().len(), expected, "{what}: {:?}", my_children());
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn worker_processes_never_outlive_their_opmap() {
    let before = my_children().len();

    // The map ends and the opmap is dropped.
    {
        let f = opmap()
            .workers(3)
            .progress(false)
            .wrap_process(double)
            .unwrap();
        assert_eq!(
            my_children().len(),
            before + 3,
            "three workers while it lives"
        );
        assert_eq!(f.call(0..30u32).len(), 30);
    }
    settles_to(before, "after the opmap was dropped");

    // The caller panics while holding the opmap.
    let caught = std::panic::catch_unwind(|| {
        let f = opmap()
            .workers(2)
            .progress(false)
            .wrap_process(double)
            .unwrap();
        let _ = f.call([1, 2]);
        panic!("the caller gave up");
    });
    assert!(caught.is_err());
    settles_to(before, "after the caller panicked");

    // An async map dropped midway, its items still running in the workers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let f = opmap()
            .workers(2)
            .progress(false)
            .wrap_process_async(slow)
            .unwrap();
        let midway = tokio::time::timeout(Duration::from_millis(200), f.call(0..10u32)).await;
        assert!(midway.is_err(), "the map was still running");
        drop(f);
    });
    settles_to(before, "after an async map was dropped midway");

    // A worker whose parent dies exits by itself: a middle process starts workers, then is
    // killed; its workers (now orphans) must go within their watchdog's period.
    let middle = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_parent_that_starts_workers_and_hangs",
            "--ignored",
            "--nocapture",
        ])
        .env("OPERO_TEST_HANG_PARENT", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let middle_pid = middle.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut grandchildren = children_of(middle_pid);
    while grandchildren.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        grandchildren = children_of(middle_pid);
    }
    assert_eq!(
        grandchildren.len(),
        2,
        "the middle process started two workers"
    );
    // Let both workers take their item.
    std::thread::sleep(Duration::from_millis(300));
    let mut middle = middle;
    middle.kill().unwrap();
    middle.wait().unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(5);
    while grandchildren.iter().any(|&pid| is_alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !grandchildren.iter().any(|&pid| is_alive(pid)),
        "orphaned workers still running: {grandchildren:?}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "the watchdog polls every 200 ms"
    );
}

/// Run by the test above in a process of its own; does nothing when run otherwise.
#[test]
#[ignore = "a helper process for worker_processes_never_outlive_their_opmap"]
fn a_parent_that_starts_workers_and_hangs() {
    if std::env::var_os("OPERO_TEST_HANG_PARENT").is_none() {
        return;
    }
    let f = opmap()
        .workers(2)
        .progress(false)
        .wrap_process(hang)
        .unwrap();
    // Both workers busy for a minute: they cannot notice their parent's death through their
    // channel, only through their watchdog.
    std::thread::spawn(move || f.call(0..2u32));
    std::thread::sleep(Duration::from_secs(60));
}

fn hang(x: &u32) -> Result<u32, String> {
    std::thread::sleep(Duration::from_secs(60));
    Ok(*x)
}
