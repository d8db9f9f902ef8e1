//! Root-only files of the node's state (the agent's journal, lock and
//! presence files; the uplink record and its lock): their directory is
//! made 0700, the files are 0600 and never opened through a symbolic link,
//! and a file is replaced whole by a synced temp file and a rename.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Makes `path`'s directory (and its parents) 0700 where missing.
pub fn make_dir_of(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        None => Ok(()),
    }
}

/// Opens (creating, 0600, in a 0700 directory) a file that is only ever
/// locked with flock(2), never read: its content is left as it is.
pub fn open_lock(path: &Path) -> io::Result<File> {
    make_dir_of(path)?;
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Replaces `path` with `bytes`: `<path>.tmp` written 0600 and synced,
/// renamed over it, and the directory synced, so a crash leaves the old
/// content or the new, never a part.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
