//! "Am I the last one out?": the one presence algorithm of the long-running
//! front ends. Two of a kind run on a node at once during a DaemonSet's
//! surge update, and either may stop first; only the last may undo what
//! they both keep in place (the installer's conflist entry, the agent's
//! uplink NIC settings).
//!
//! Every process holds a shared flock on one file for its life. At its
//! exit it converts that to an exclusive lock without waiting, which
//! succeeds only when nobody else holds the file: that one is the last.
//! The kernel converts one lock at a time and a failed conversion drops
//! the lock, so of several leaving at once exactly one finds itself last.
//! The last one keeps the file locked while it cleans up, then removes it;
//! one that joins meanwhile is told `Busy` (the lock is held exclusively,
//! or the file it opened is no longer the one named) and tries again, so
//! it never starts while the cleanup runs. A killed process's lock goes
//! with it.
//!
//! Each front end opens the file its own checked way (the conf dir's lock
//! beside the runtime's configs, the agent's beside its journal) and hands
//! it over with its name.

use super::lock::flock;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// One process's presence: a shared lock on the file at `path`.
#[derive(Debug)]
pub struct Presence {
    file: File,
    path: PathBuf,
}

/// Why a process could not join yet.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The last one out is still cleaning up; try again shortly.
    #[error("the one that stopped last is still cleaning up")]
    Busy,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// What `Presence::leave` found.
#[derive(Debug)]
pub enum Leave {
    /// Nobody else is there: clean up, then drop it.
    Last(LastOne),
    Others,
}

/// The last one out, holding the file exclusively until dropped.
#[derive(Debug)]
pub struct LastOne(Presence);

impl Presence {
    /// Joins through `file`, opened by the caller from `path` (which must
    /// name the real directory: see `LastOne`'s drop).
    pub fn join(file: File, path: PathBuf) -> Result<Self, JoinError> {
        match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(JoinError::Busy),
            Err(source) => return Err(JoinError::Io { path, source }),
        }
        // The last one removes the file when it is done: a lock on a file
        // that is no longer there counts for nobody.
        if !names(&file, &path) {
            return Err(JoinError::Busy);
        }
        Ok(Presence { file, path })
    }

    /// At exit: whether this is the last one (see the module doc).
    pub fn leave(self) -> Leave {
        match flock(&self.file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Leave::Last(LastOne(self)),
            Err(_) => Leave::Others,
        }
    }
}

/// Whether `path` still names `file` (same inode on the same device).
fn names(file: &File, path: &std::path::Path) -> bool {
    fs::symlink_metadata(path)
        .ok()
        .zip(file.metadata().ok())
        .is_some_and(|(named, held)| named.ino() == held.ino() && named.dev() == held.dev())
}

impl Drop for LastOne {
    fn drop(&mut self) {
        // Removed while still held, and only if the name still is this
        // file: never a file someone else made there since.
        if names(&self.0.file, &self.0.path) {
            let _ = fs::remove_file(&self.0.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(path: &std::path::Path) -> Result<Presence, JoinError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        Presence::join(file, path.to_path_buf())
    }

    #[test]
    fn only_the_last_one_out_is_last_and_joiners_wait_for_its_cleanup() {
        let dir = crate::unit_dirs::fresh("presence", "last");
        let path = dir.join("p.lock");
        let (a, b) = (join(&path).unwrap(), join(&path).unwrap());
        assert!(matches!(a.leave(), Leave::Others));
        let last = match b.leave() {
            Leave::Last(last) => last,
            Leave::Others => panic!("b is the last one"),
        };
        // While the last one cleans up, a newcomer waits.
        assert!(matches!(join(&path), Err(JoinError::Busy)));
        drop(last);
        assert!(!path.exists(), "the last one removes the file");
        let c = join(&path).unwrap();
        assert!(matches!(c.leave(), Leave::Last(_)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_conversion_drops_the_shared_lock_at_once() {
        // What the exit decision rests on: of two leaving at the same
        // moment, the second finds itself last even while the first still
        // has the file open.
        let dir = crate::unit_dirs::fresh("presence", "convert");
        let path = dir.join("p.lock");
        let (a, b) = (join(&path).unwrap(), join(&path).unwrap());
        assert!(flock(&a.file, libc::LOCK_EX | libc::LOCK_NB).is_err());
        assert!(matches!(b.leave(), Leave::Last(_)));
        drop(a);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_last_one_never_removes_a_file_made_since() {
        let dir = crate::unit_dirs::fresh("presence", "inode");
        let path = dir.join("p.lock");
        let a = join(&path).unwrap();
        let Leave::Last(last) = a.leave() else {
            panic!("alone, so last")
        };
        // The name now leads to another file (a re-pointed dir, a rename).
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"").unwrap();
        drop(last);
        assert!(path.exists(), "another's file is left alone");
        fs::remove_dir_all(&dir).unwrap();
    }
}
