//! Root-only files of the node's state (the agent's journal, lock and
//! presence files; the uplink record and its lock): their directory is
//! made 0700, the files are 0600 and never opened through a symbolic link,
//! and a file is replaced whole by a synced temp file and a rename.
//!
//! A path can be named by an operator (`--state-file`) or hold something
//! else by accident (a neighbour's file, a FIFO, a link planted in a shared
//! directory), so a file is used only when it is the project's own kind of
//! file: regular, not reached through a link, owned by this process's
//! effective uid and writable by nobody else. Every open is non-blocking
//! and checked with fstat before use: the agent blocks SIGTERM for its
//! signalfd, so an open(2) that waits (a FIFO with no writer) would leave
//! it killable only by SIGKILL, and a device's open may act.

use crate::fsread::{self, kind_of, ReadError};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a state file is not one this process may read or rewrite.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A FIFO, device, socket or directory: never opened, or refused
    /// before any read.
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is a symbolic link (state files are never followed through links)")]
    Link,
    #[error("is owned by uid {owner}, not by uid {euid} that runs this")]
    Owner { owner: u32, euid: u32 },
    #[error("has mode {0:04o} (group or others may write it; state files are 0600)")]
    Mode(u32),
    #[error("is larger than {0} bytes")]
    TooLarge(u64),
}

impl PrivateError {
    /// Everything but an I/O error means "not ours": the caller refuses
    /// the file and leaves it as it is.
    pub fn is_not_ours(&self) -> bool {
        !matches!(self, Self::Io(_))
    }
}

impl From<ReadError> for PrivateError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => Self::Io(e),
            ReadError::NotRegular(kind) => Self::NotRegular(kind),
            ReadError::TooLarge(max) => Self::TooLarge(max),
        }
    }
}

impl From<nix::errno::Errno> for PrivateError {
    fn from(e: nix::errno::Errno) -> Self {
        match e {
            // O_NOFOLLOW on a link that appeared after the lstat.
            nix::errno::Errno::ELOOP => Self::Link,
            e => Self::Io(e.into()),
        }
    }
}

/// The checks every state file passes, on what fstat (or lstat) says.
pub fn check_own(meta: &Metadata) -> Result<(), PrivateError> {
    if meta.file_type().is_symlink() {
        return Err(PrivateError::Link);
    }
    if !meta.is_file() {
        return Err(PrivateError::NotRegular(kind_of(meta)));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(PrivateError::Owner {
            owner: meta.uid(),
            euid,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PrivateError::Mode(meta.mode() & 0o7777));
    }
    Ok(())
}

/// lstat(2) of `path` (never opens, never follows): None when nothing is
/// there, an error when what is there is not a state file of ours. Lets a
/// FIFO or device be refused before any open(2) could wait or act on it.
pub fn check_path(path: &Path) -> Result<Option<Metadata>, PrivateError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => check_own(&meta).map(|()| Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens `path` with `flags` (plus no-follow, non-blocking, no tty,
/// close-on-exec; created 0600 when `flags` has O_CREAT) after lstat, and
/// checks the open file again with fstat, which no rename in between can
/// fool.
fn open_checked(path: &Path, flags: OFlag) -> Result<File, PrivateError> {
    check_path(path)?;
    let fd = nix::fcntl::open(
        path,
        flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let file = File::from(fd);
    check_own(&file.metadata()?)?;
    Ok(file)
}

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
/// locked with flock(2), never read or written: its content is left as it
/// is. Read-only is enough for flock, and a FIFO opened read-only and
/// non-blocking returns at once, to be refused by the fstat check.
pub fn open_lock(path: &Path) -> Result<File, PrivateError> {
    make_dir_of(path)?;
    open_checked(path, OFlag::O_RDONLY | OFlag::O_CREAT)
}

/// Opens (creating, 0600, in a 0700 directory) a file to read whole and
/// then append to, through one descriptor (nothing can swap the file
/// between the check, the read and the appends). The mode is set back to
/// 0600 if it was looser (but never group- or other-writable: that file
/// is refused).
pub fn open_append(path: &Path) -> Result<File, PrivateError> {
    make_dir_of(path)?;
    let file = open_checked(path, OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_CREAT)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// The bytes of the state file at `path`, at most `max`; None when there
/// is none. Never creates it.
pub fn read_own(path: &Path, max: u64) -> Result<Option<Vec<u8>>, PrivateError> {
    if check_path(path)?.is_none() {
        return Ok(None);
    }
    let file = match open_checked(path, OFlag::O_RDONLY) {
        Ok(f) => f,
        // Removed between the lstat and the open: none.
        Err(PrivateError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(fsread::read_bounded(&file, max)?))
}

/// The temp file `replace` writes: named for this process and moment, and
/// created with O_EXCL, so no file already there (a neighbour's
/// `<name>.tmp`) is ever truncated.
fn temp_name(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{nanos}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Replaces `path` with `bytes`: a new temp file beside it written 0600
/// and synced, renamed over it, and the directory synced, so a crash
/// leaves the old content or the new, never a part. The caller has
/// checked that what is at `path` is its own (rename replaces a link
/// itself, never its target).
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_name(path);
    let mut out = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = out
        .write_all(bytes)
        .and_then(|()| out.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // O_DIRECTORY: never a FIFO or device put where the directory was.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(dir)?
            .sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn only_own_regular_files_are_opened() {
        let dir = crate::unit_dirs::fresh("private", "kinds");
        let lock = dir.join("a.lock");
        open_lock(&lock).unwrap();
        assert_eq!(
            std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            open_lock(&fifo).unwrap_err().to_string(),
            "is a FIFO, not a regular file"
        );
        assert!(matches!(
            open_append(&fifo),
            Err(PrivateError::NotRegular(_))
        ));
        let target = dir.join("target");
        std::fs::write(&target, b"x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link");
        symlink(&target, &link).unwrap();
        assert!(matches!(open_lock(&link), Err(PrivateError::Link)));
        assert!(matches!(read_own(&link, 10), Err(PrivateError::Link)));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            open_append(&target),
            Err(PrivateError::Mode(0o666))
        ));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_own(&target, 10).unwrap().unwrap(), b"x");
        assert!(read_own(&dir.join("missing"), 10).unwrap().is_none());
        assert!(!dir.join("missing").exists(), "reading never creates");
        // A neighbour's `.tmp` is never truncated by a rewrite.
        std::fs::write(dir.join("target.tmp"), b"theirs").unwrap();
        replace(&target, b"new").unwrap();
        assert_eq!(std::fs::read(dir.join("target.tmp")).unwrap(), b"theirs");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
