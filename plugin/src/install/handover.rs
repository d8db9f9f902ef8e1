//! Who is in charge of a node: which installers are alive on it, and which
//! one of them edits.
//!
//! The DaemonSet rolls with `maxSurge: 1, maxUnavailable: 0`, so during an
//! update or a rollback two installers run on a node at once, and either
//! may be the one deleted first. Two locks in the conf dir decide:
//!
//! - **Presence** (`.csum-offload.lock`), with the algorithm the agent
//!   uses too (`kernel::presence`): the last installer out removes the
//!   entry (so deleting the DaemonSet still removes it); any other leaves
//!   the entry to the ones still running.
//! - **Activity** (`.csum-offload.active`): the newest installer claims the
//!   node by writing its token there, holding an exclusive flock on that
//!   file for its lifetime. An installer that finds a token not its own
//!   stands by (no edits: two installers never fight over two configs),
//!   and reclaims the node as soon as the holder is gone: its token file
//!   removed (it exited) or no longer locked (it was killed).
//!
//! A new installer whose config is invalid exits before it claims, so a
//! bad rollout leaves the old installer in charge.

use super::commit::{self, flock, write_atomic_locked};
use super::commit::{io_err, FsError};
use crate::kernel::presence;
pub use crate::kernel::presence::{Leave, Presence};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// In the conf dir; not names any runtime loads.
pub const TOKEN_FILE: &str = ".csum-offload.active";
pub const LOCK_FILE: &str = ".csum-offload.lock";
/// How tokens of this installer start; an installer from before the
/// activity lock wrote "pid ..." and never locks its token.
const TOKEN_PREFIX: &str = "installer/2 ";

fn would_block(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// A token unique to this installer process: pid namespaces repeat pids,
/// so the start time and random bytes are part of it.
pub fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut random = [0u8; 8];
    let _ = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{TOKEN_PREFIX}pid {} started {nanos} id {hex}",
        std::process::id()
    )
}

/// Why an installer could not join yet.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The last installer is removing the entry; try again shortly.
    #[error("the installer that exited last is still removing the entry")]
    Busy,
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Joins the installers present on the node (`kernel::presence`): a shared
/// lock on the conf dir's presence file, creating it if needed.
pub fn join(conf_dir: &Path) -> Result<Presence, JoinError> {
    // The directory the path leads to now: a conf dir reached through a
    // link that is re-pointed later must not make the last one out remove
    // the file of the directory it leads to then.
    let real = fs::canonicalize(conf_dir).map_err(io_err(conf_dir))?;
    let path = real.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err(&path))?;
    Presence::join(file, path).map_err(|e| match e {
        presence::JoinError::Busy => JoinError::Busy,
        presence::JoinError::Io { path, source } => io_err(&path)(source).into(),
    })
}

/// This installer's claim on the node: its token file, locked.
#[derive(Debug)]
pub struct Claim {
    _lock: File,
}

/// Makes `token` the active installer of this node.
pub fn claim(conf_dir: &Path, token: &str) -> Result<Claim, FsError> {
    let lock = write_atomic_locked(conf_dir, TOKEN_FILE, format!("{token}\n").as_bytes(), 0o644)?;
    Ok(Claim { _lock: lock })
}

/// Who holds the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// No token.
    Nobody,
    /// Its installer runs (or, for an installer from before the activity
    /// lock, may run: it cannot be told).
    Alive(String),
    /// Its installer is gone (killed): nobody holds the lock.
    Gone(String),
}

/// The token on disk and whether its installer is still there.
pub fn holder(conf_dir: &Path) -> Holder {
    let path = conf_dir.join(TOKEN_FILE);
    let Ok(bytes) = crate::fsread::read_regular(&path, 4096) else {
        return Holder::Nobody;
    };
    let token = String::from_utf8_lossy(&bytes).trim().to_string();
    if token.is_empty() {
        return Holder::Nobody;
    }
    if !token.starts_with(TOKEN_PREFIX) {
        return Holder::Alive(token);
    }
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
    else {
        return Holder::Nobody;
    };
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        Err(e) if would_block(&e) => Holder::Alive(token),
        _ => Holder::Gone(token),
    }
}

/// Whether a token was written by an installer from before the entry's
/// `managedBy` mark (whose entries carry no mark).
pub fn is_legacy(token: &str) -> bool {
    !token.starts_with(TOKEN_PREFIX)
}

/// Removes the token if it is still `token` (None: whatever it is).
pub fn release(conf_dir: &Path, token: Option<&str>) {
    let on_disk = match holder(conf_dir) {
        Holder::Nobody => return,
        Holder::Alive(t) | Holder::Gone(t) => t,
    };
    if token.is_none_or(|t| t == on_disk) {
        let _ = fs::remove_file(conf_dir.join(TOKEN_FILE));
        let _ = commit::sync_dir(conf_dir);
    }
}

/// What a pass should do, given the token on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ours: edit.
    Active,
    /// Another live installer's: stand by.
    Standby,
    /// Nobody's, or a gone installer's: claim, then edit.
    Claim,
}

pub fn role(mine: &str, holder: &Holder) -> Role {
    match holder {
        Holder::Alive(t) if t == mine => Role::Active,
        Holder::Alive(_) => Role::Standby,
        Holder::Nobody | Holder::Gone(_) => Role::Claim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        let cases = [
            (Holder::Alive("a".into()), Role::Active),
            (Holder::Alive("b".into()), Role::Standby),
            (Holder::Gone("a".into()), Role::Claim),
            (Holder::Gone("b".into()), Role::Claim),
            (Holder::Nobody, Role::Claim),
        ];
        for (holder, want) in cases {
            assert_eq!(role("a", &holder), want, "{holder:?}");
        }
    }

    #[test]
    fn a_token_is_alive_while_its_claim_is_held() {
        let dir = crate::unit_dirs::fresh("hand", "token");
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(holder(&dir), Holder::Nobody);
        let claim_a = claim(&dir, &a).unwrap();
        assert_eq!(holder(&dir), Holder::Alive(a.clone()));
        release(&dir, Some(&b));
        assert_eq!(holder(&dir), Holder::Alive(a.clone()), "not b's to release");
        drop(claim_a);
        assert_eq!(holder(&dir), Holder::Gone(a.clone()), "a killed holder");
        let _claim_b = claim(&dir, &b).unwrap();
        assert_eq!(holder(&dir), Holder::Alive(b.clone()));
        release(&dir, Some(&b));
        assert_eq!(holder(&dir), Holder::Nobody);
        // An installer from before the lock: taken as alive.
        fs::write(dir.join(TOKEN_FILE), "pid 1 started 2 id 3\n").unwrap();
        assert_eq!(holder(&dir), Holder::Alive("pid 1 started 2 id 3".into()));
        assert!(is_legacy("pid 1 started 2 id 3") && !is_legacy(&a));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn of_several_leaving_exactly_one_is_last() {
        let dir = crate::unit_dirs::fresh("hand", "presence");
        let a = join(&dir).unwrap();
        let b = join(&dir).unwrap();
        let c = join(&dir).unwrap();
        // Leaving one after the other: only the very last is last.
        assert!(matches!(a.leave(), Leave::Others));
        assert!(matches!(b.leave(), Leave::Others));
        let last = match c.leave() {
            Leave::Last(l) => l,
            Leave::Others => panic!("c was the last"),
        };
        // While it removes the entry, nobody joins...
        assert!(matches!(join(&dir), Err(JoinError::Busy)));
        drop(last);
        // ...and afterwards a new one starts afresh.
        assert!(!dir.join(LOCK_FILE).exists());
        let d = join(&dir).unwrap();
        assert!(matches!(d.leave(), Leave::Last(_)));
        fs::remove_dir_all(&dir).unwrap();
    }
}
