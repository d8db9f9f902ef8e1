//! Scratch directories for the unit tests that need real files.

use std::fs;
use std::path::{Path, PathBuf};

/// An empty directory `csum-offload-<module>-<tag>-<pid>` under the
/// system's temp dir (emptied first if a killed run left it).
pub fn fresh(module: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "csum-offload-{module}-{tag}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}
