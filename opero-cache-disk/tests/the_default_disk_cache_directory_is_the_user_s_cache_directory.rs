//! Without a `dir` option the disk cache lives in the user's cache directory: `opero` under
//! `$XDG_CACHE_HOME` when it is an absolute path, else under `~/.cache` (Linux); with neither,
//! building the cache is an error naming `dir`. One test in this file: it sets the process's
//! environment, which no other test here reads.

use opero_cache_disk::DiskCache;
use opero_core::{BuildCache, CacheConfig};

#[cfg(target_os = "linux")]
#[test]
fn the_default_directory_follows_xdg_cache_home_then_home() {
    let xdg = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_CACHE_HOME", xdg.path());
    std::env::set_var("HOME", home.path());
    assert_eq!(DiskCache::default_dir().unwrap(), xdg.path().join("opero"));
    let built = DiskCache::build(&CacheConfig::enabled("disk")).unwrap();
    assert_eq!(built.dir(), xdg.path().join("opero"));

    // A relative XDG_CACHE_HOME is ignored, as the XDG specification says.
    std::env::set_var("XDG_CACHE_HOME", "relative/cache");
    assert_eq!(
        DiskCache::default_dir().unwrap(),
        home.path().join(".cache").join("opero")
    );

    std::env::remove_var("XDG_CACHE_HOME");
    std::env::remove_var("HOME");
    let err = DiskCache::build(&CacheConfig::enabled("disk")).unwrap_err();
    assert_eq!(err.field(), Some("dir"));
}
