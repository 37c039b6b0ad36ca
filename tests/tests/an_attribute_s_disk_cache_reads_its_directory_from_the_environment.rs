//! A `#[opero(cache_backend = "disk")]` function takes its directory from `OPERO_DISK_DIR`: a
//! setting that belongs outside the code.

use std::sync::atomic::{AtomicU32, Ordering};

use opero::opero;

static CALLS: AtomicU32 = AtomicU32::new(0);

#[opero(cache = true, cache_backend = "disk", cache_namespace = "env_dir")]
fn on_disk(x: u32) -> Result<u32, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(x * 10)
}

#[test]
fn the_disk_cache_of_an_attribute_lives_in_opero_disk_dir() {
    let dir = tempfile::tempdir().unwrap();
    // The only test in this binary: no other thread reads the environment.
    std::env::set_var("OPERO_DISK_DIR", dir.path());
    assert_eq!(on_disk(4).unwrap(), 40);
    assert_eq!(on_disk(4).unwrap(), 40);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(on_disk_opero().metrics().cache_hits, 1);
    let written = walk(dir.path());
    assert!(written > 0, "entries are written under OPERO_DISK_DIR");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                1
            }
        })
        .sum()
}
