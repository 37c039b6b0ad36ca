//! An index entry whose content file is gone (removed by `clear_all` or by hand in another
//! process) is a miss, and the dangling entry is removed; content that cannot be read for another
//! reason is a backend error naming the directory, and the entry is kept for a later read.
//! `clear_all` empties every namespace.

mod common;
use common::content_files;

use opero_cache_disk::DiskCache;
use opero_conformance::{fresh_namespace, key};
use opero_core::{CacheBackend, ErrorKind};

#[test]
fn an_entry_whose_content_file_is_gone_is_a_miss_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(dir.path());
    let ns = fresh_namespace();
    cache.set(&key(&ns, 1), &"kept".to_string(), None).unwrap();
    for f in content_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    assert_eq!(cache.get::<String>(&key(&ns, 1)).unwrap(), None);
    let name = key(&ns, 1).to_string();
    assert!(
        cacache::metadata_sync(dir.path(), &name).unwrap().is_none(),
        "the dangling index entry was removed"
    );
}

#[test]
fn content_that_cannot_be_read_is_an_error_and_the_entry_stays() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(dir.path());
    let ns = fresh_namespace();
    cache.set(&key(&ns, 1), &"kept".to_string(), None).unwrap();
    // A directory where the content file was: opening it works, reading it fails (as root too,
    // which file modes would not stop).
    for f in content_files(dir.path()) {
        std::fs::remove_file(&f).unwrap();
        std::fs::create_dir(&f).unwrap();
    }
    let err = cache.get::<String>(&key(&ns, 1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let name = key(&ns, 1).to_string();
    assert!(cacache::metadata_sync(dir.path(), &name).unwrap().is_some());
}

#[test]
fn clear_all_empties_every_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::new(dir.path());
    let (a, b) = (fresh_namespace(), fresh_namespace());
    cache.set(&key(&a, 1), &1u32, None).unwrap();
    cache.set(&key(&b, 2), &2u32, None).unwrap();
    cache.clear_all().unwrap();
    assert_eq!(cache.get::<u32>(&key(&a, 1)).unwrap(), None);
    assert_eq!(cache.get::<u32>(&key(&b, 2)).unwrap(), None);
    assert!(content_files(dir.path()).is_empty());
}
