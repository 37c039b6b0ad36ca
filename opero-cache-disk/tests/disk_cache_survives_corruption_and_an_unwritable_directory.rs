//! The disk cache never fails a call: a corrupt entry is a miss and is removed, an unwritable
//! directory makes calls run uncached, and two processes sharing a directory lose nothing.

mod common;
use common::content_files;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opero_cache_disk::DiskCache;
use opero_conformance::{fresh_namespace, key, no_delay};
use opero_core::{CacheBackend, CacheConfig, OperoConfig};

type Opero = opero_core::Opero<DiskCache>;

fn pipeline(cache: DiskCache) -> Opero {
    let cfg = OperoConfig {
        retry: opero_core::RetryConfig {
            retries: 0,
            ..no_delay()
        },
        cache: CacheConfig {
            namespace: fresh_namespace(),
            ..CacheConfig::enabled("disk")
        },
        ..Default::default()
    };
    Opero::with_cache(cfg, cache).unwrap()
}

fn greet(opero: &Opero, name: &str, runs: &AtomicU64) -> String {
    opero
        .named("greet")
        .call(name, |n: &str| {
            runs.fetch_add(1, Ordering::Relaxed);
            Ok::<_, String>(format!("hello {n}"))
        })
        .unwrap()
}

#[test]
fn a_corrupt_or_truncated_entry_is_a_miss_and_is_removed() {
    for damage in ["flip", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let opero = pipeline(DiskCache::new(dir.path()));
        let runs = AtomicU64::new(0);
        assert_eq!(greet(&opero, "ada", &runs), "hello ada");
        let files = content_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let mut bytes = std::fs::read(&files[0]).unwrap();
        match damage {
            "flip" => *bytes.last_mut().unwrap() ^= 0xff,
            _ => bytes.truncate(bytes.len() / 2),
        }
        std::fs::write(&files[0], bytes).unwrap();

        assert_eq!(greet(&opero, "ada", &runs), "hello ada", "{damage}");
        assert_eq!(runs.load(Ordering::Relaxed), 2, "{damage}: ran again");
        assert_eq!(opero.metrics().cache_errors, 1, "{damage}: counted");
        // Stored afresh, so the next call is a hit.
        assert_eq!(greet(&opero, "ada", &runs), "hello ada");
        assert_eq!(runs.load(Ordering::Relaxed), 2, "{damage}: a hit");
    }
}

#[test]
fn a_corrupt_entry_read_directly_is_reported_once_then_gone() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(dir.path());
    let ns = fresh_namespace();
    cache.set(&key(&ns, 1), &vec![7u8; 1000], None).unwrap();
    for f in content_files(dir.path()) {
        std::fs::write(f, b"garbage").unwrap();
    }
    assert!(cache.get::<Vec<u8>>(&key(&ns, 1)).is_err());
    assert_eq!(cache.get::<Vec<u8>>(&key(&ns, 1)).unwrap(), None);
}

/// A directory that cannot be created: its parent is a regular file. (Tests run as root, which
/// chmod does not stop.)
fn unwritable_dir() -> (tempfile::NamedTempFile, std::path::PathBuf) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let dir = file.path().join("cache");
    (file, dir)
}

#[test]
fn an_unwritable_directory_makes_calls_run_uncached() {
    let (_file, dir) = unwritable_dir();
    let opero = pipeline(DiskCache::new(&dir));
    let runs = AtomicU64::new(0);
    for _ in 0..3 {
        assert_eq!(greet(&opero, "bob", &runs), "hello bob");
    }
    assert_eq!(runs.load(Ordering::Relaxed), 3);
    assert!(opero.metrics().cache_errors >= 3, "{:?}", opero.metrics());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_directory_makes_async_calls_run_uncached() {
    let (_file, dir) = unwritable_dir();
    let opero = pipeline(DiskCache::new(&dir));
    let runs = Arc::new(AtomicU64::new(0));
    for _ in 0..3 {
        let runs = Arc::clone(&runs);
        let v = opero
            .named("greet_async")
            .call_async("eve".to_string(), move |n: String| {
                runs.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, String>(n.len()) }
            })
            .await
            .unwrap();
        assert_eq!(v, 3);
    }
    assert_eq!(runs.load(Ordering::Relaxed), 3);
    assert!(opero.metrics().cache_errors >= 3);
}

const CHILD_DIR: &str = "OPERO_TEST_SHARED_DISK_DIR";
const PER_PROCESS: u128 = 150;

/// Writes one process's half; `owner` is 0 for the parent and 1 for the child.
fn write_half(dir: &Path, owner: u64) {
    let cache = DiskCache::new(dir);
    for i in 0..PER_PROCESS {
        cache
            .set(
                &key("shared", i * 2 + u128::from(owner)),
                &(owner, i as u64),
                None,
            )
            .unwrap();
        // Both processes also write one key over and over, each with a value of its own.
        cache
            .set(&key("shared", u128::MAX), &vec![owner; 512], None)
            .unwrap();
        if let Some(v) = cache.get::<Vec<u64>>(&key("shared", u128::MAX)).unwrap() {
            assert!(
                v.len() == 512 && v.iter().all(|&x| x == v[0]),
                "a torn read"
            );
        }
    }
}

/// Run by the child process only (the parent re-runs this test binary with the variable set).
#[test]
fn child_process_writes_its_half() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        write_half(Path::new(&dir), 1);
    }
}

#[test]
fn two_processes_sharing_a_directory_lose_nothing_and_read_no_torn_entry() {
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_writes_its_half",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    write_half(dir.path(), 0);
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "the child failed: {status}");
    let cache = DiskCache::new(dir.path());
    for i in 0..PER_PROCESS {
        for owner in 0..2u64 {
            let got = cache
                .get::<(u64, u64)>(&key("shared", i * 2 + u128::from(owner)))
                .unwrap();
            assert_eq!(got, Some((owner, i as u64)));
        }
    }
    let last = cache
        .get::<Vec<u64>>(&key("shared", u128::MAX))
        .unwrap()
        .unwrap();
    assert!(last.iter().all(|&x| x == last[0]));
}
