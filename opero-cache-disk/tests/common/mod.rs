//! Helpers shared by the disk cache's integration tests.

use std::path::{Path, PathBuf};

/// Every content file of a `DiskCache` directory (cacache's `content-v2` tree).
pub fn content_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("content-v2")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
