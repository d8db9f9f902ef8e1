//! Putting bytes on disk so that nobody ever sees half a file, and never
//! over content the installer has not read.
//!
//! Every write goes to a temp file in the target's directory (a name no
//! runtime loads), is fsynced and closed (an exec of a file still open for
//! writing fails with ETXTBSY), then takes the target's place:
//! - `replace`: renameat2(RENAME_EXCHANGE) swaps it with the target, and
//!   what was swapped out must be exactly what the installer read; if it
//!   is not (the primary CNI wrote in between), it is swapped back and the
//!   caller plans again. A plain rename after a check would lose a write
//!   that lands between the check and the rename.
//! - `create`: renameat2(RENAME_NOREPLACE), so a file that appeared
//!   meanwhile is never overwritten;
//! - `write_atomic`: a plain rename, for files only the installer writes
//!   (the binary, its token).
//!
//! A temp file is locked (flock, through a read-only handle, so it never
//! counts as open for writing) from its creation until it is gone, so a
//! later start removes the temp files of a killed installer at once and
//! leaves those of a live one alone (`remove_stale_temps`).

use crate::fsread;
use nix::fcntl::{renameat2, RenameFlags};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// Config files larger than this are not judged (libcni reads any size,
/// so such a file is reported, never skipped); also the verification
/// bound of a rewrite.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What a write to the conf dir or the bin dir can fail with: the
/// installer's one error for files, from this bottom layer up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The file changed between our read and our write: plan again.
    #[error("{0} changed while it was being edited; will read it again")]
    Changed(PathBuf),
    #[error("{path}: cannot give the rewritten file the owner {uid}:{gid} the original has ({source}); csum-offload never changes a file's owner, so it leaves this file alone")]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        source: io::Error,
    },
}

/// An io::Error on `path`, as an FsError.
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Owner and permission bits a rewrite must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Ownership {
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// Prefix of our temp files; also how stale ones are recognised.
pub const TEMP_PREFIX: &str = ".csum-offload.tmp-";
/// An unlocked temp file whose inode changed longer ago than this belongs
/// to nobody: every holder locks its file right after creating it, and a
/// file swapped out by RENAME_EXCHANGE (unlocked, but renamed just now)
/// is read and removed within milliseconds.
const STALE_AFTER: Duration = Duration::from_secs(2);
/// Bound of the read that verifies a swapped-out file.
const MAX_VERIFY: u64 = MAX_CONFIG_BYTES;

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);
static NO_EXCHANGE_LOGGED: AtomicBool = AtomicBool::new(false);

fn dir_and_name(path: &Path) -> Result<(&Path, &std::ffi::OsStr), FsError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io_err(path)(io::Error::from(io::ErrorKind::InvalidInput))),
    }
}

fn open_dir(dir: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK)
        .open(dir)
        .map_err(io_err(dir))
}

pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    open_dir(dir)?.sync_all().map_err(io_err(dir))
}

pub use crate::kernel::lock::flock;

/// A written temp file, locked until dropped (or removed).
struct Temp {
    path: PathBuf,
    _lock: File,
}

impl Temp {
    /// `bytes` in a new temp file in `dir`: mode and owner set, fsynced,
    /// closed for writing.
    fn write(dir: &Path, bytes: &[u8], own: Ownership) -> Result<Temp, FsError> {
        let (path, mut file) = create_temp(dir)?;
        // Locked before anything else: see remove_stale_temps.
        let lock = File::open(&path).map_err(io_err(&path))?;
        flock(&lock, libc::LOCK_EX | libc::LOCK_NB).map_err(io_err(&path))?;
        let temp = Temp { path, _lock: lock };
        let result = (|| {
            file.write_all(bytes).map_err(io_err(&temp.path))?;
            let meta = file.metadata().map_err(io_err(&temp.path))?;
            if (meta.uid(), meta.gid()) != (own.uid, own.gid) {
                // SAFETY: fchown(2) on a descriptor we own.
                if unsafe { libc::fchown(file.as_raw_fd(), own.uid, own.gid) } != 0 {
                    return Err(FsError::Owner {
                        path: temp.path.clone(),
                        uid: own.uid,
                        gid: own.gid,
                        source: io::Error::last_os_error(),
                    });
                }
            }
            // After chown, which clears set-id bits; and whatever the umask.
            file.set_permissions(fs::Permissions::from_mode(own.mode))
                .map_err(io_err(&temp.path))?;
            file.sync_all().map_err(io_err(&temp.path))
        })();
        // Closed for writing before it takes any name a runtime may exec.
        drop(file);
        match result {
            Ok(()) => Ok(temp),
            Err(e) => {
                temp.remove();
                Err(e)
            }
        }
    }

    fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A new temp file in `dir`, named so no runtime loads it.
fn create_temp(dir: &Path) -> Result<(PathBuf, File), FsError> {
    let mut last = None;
    for _ in 0..100 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Err(io_err(dir)(
        last.unwrap_or_else(|| io::Error::other("no temp name")),
    ))
}

fn rename2(dir: &File, from: &Path, to: &Path, flags: RenameFlags) -> nix::Result<()> {
    let (Some(from), Some(to)) = (from.file_name(), to.file_name()) else {
        return Err(nix::errno::Errno::EINVAL);
    };
    renameat2(dir, from, dir, to, flags)
}

/// Writes `dir/name` atomically: temp file, fsync, close, rename over it,
/// fsync of the directory. For files only the installer writes.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let own = current_owner(mode);
    let temp = Temp::write(dir, bytes, own)?;
    let target = dir.join(name);
    if let Err(e) = fs::rename(&temp.path, &target) {
        temp.remove();
        return Err(io_err(&target)(e));
    }
    drop(temp);
    sync_dir(dir)
}

/// As `write_atomic`, and returns a read-only handle on the new file that
/// holds an exclusive flock on it (see handover.rs: a claim).
pub fn write_atomic_locked(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<File, FsError> {
    let temp = Temp::write(dir, bytes, current_owner(mode))?;
    let target = dir.join(name);
    if let Err(e) = fs::rename(&temp.path, &target) {
        temp.remove();
        return Err(io_err(&target)(e));
    }
    sync_dir(dir)?;
    Ok(temp._lock)
}

/// This process's uid and gid with `mode`: a file it creates needs no chown.
pub fn current_owner(mode: u32) -> Ownership {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    Ownership { mode, uid, gid }
}

/// Replaces the file at `path` with `bytes` (owner and mode `own`) if and
/// only if it still holds `expected`; `Changed` otherwise, with the file as
/// the other writer left it. See the module doc.
pub fn replace(path: &Path, bytes: &[u8], expected: &[u8], own: Ownership) -> Result<(), FsError> {
    let (dir_path, _) = dir_and_name(path)?;
    let dir = open_dir(dir_path)?;
    let temp = Temp::write(dir_path, bytes, own)?;
    match rename2(&dir, &temp.path, path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => {
            // The target is gone: someone else's doing; look again.
            temp.remove();
            return Err(FsError::Changed(path.to_path_buf()));
        }
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
            return replace_without_exchange(path, temp, expected);
        }
        Err(e) => {
            temp.remove();
            return Err(io_err(path)(e.into()));
        }
    }
    // The temp name now holds what the target held a moment ago.
    let displaced = fsread::read_regular(&temp.path, MAX_VERIFY).ok();
    if displaced.as_deref() == Some(expected) {
        temp.remove();
        return sync_dir(dir_path);
    }
    // Not what we read: a write we never saw. It goes back.
    log::debug!(
        "{}: changed while being rewritten; putting the new version back",
        path.display()
    );
    match rename2(&dir, &temp.path, path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => {
            // If the target was replaced again since our swap, the temp
            // name now holds that newest version, not ours: it wins over
            // the one we displaced.
            let now = fsread::read_regular(&temp.path, MAX_VERIFY).ok();
            if now.as_deref() != Some(bytes) {
                let _ = rename2(&dir, &temp.path, path, RenameFlags::RENAME_EXCHANGE);
            }
        }
        // The target was removed since: the displaced version comes
        // back unless something new took the name.
        Err(nix::errno::Errno::ENOENT) => {
            let _ = rename2(&dir, &temp.path, path, RenameFlags::RENAME_NOREPLACE);
        }
        Err(e) => log::warn!("{}: cannot put the new version back: {e}", path.display()),
    }
    temp.remove();
    sync_dir(dir_path)?;
    Err(FsError::Changed(path.to_path_buf()))
}

/// For filesystems without RENAME_EXCHANGE: compare, then rename. A write
/// that lands between the two is lost; said once in the log.
fn replace_without_exchange(path: &Path, temp: Temp, expected: &[u8]) -> Result<(), FsError> {
    if !NO_EXCHANGE_LOGGED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "{}: the filesystem has no RENAME_EXCHANGE; rewrites are checked before the rename only",
            path.display()
        );
    }
    let now = fsread::read_regular(path, MAX_VERIFY).ok();
    if now.as_deref() != Some(expected) {
        temp.remove();
        return Err(FsError::Changed(path.to_path_buf()));
    }
    if let Err(e) = fs::rename(&temp.path, path) {
        temp.remove();
        return Err(io_err(path)(e));
    }
    drop(temp);
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Creates the file at `path` with `bytes` unless something has that name
/// by then (`Changed`).
pub fn create(path: &Path, bytes: &[u8], own: Ownership) -> Result<(), FsError> {
    let (dir_path, _) = dir_and_name(path)?;
    let dir = open_dir(dir_path)?;
    let temp = Temp::write(dir_path, bytes, own)?;
    let result = match rename2(&dir, &temp.path, path, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => Err(FsError::Changed(path.to_path_buf())),
        // No RENAME_NOREPLACE: link(2) never replaces either.
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
            match fs::hard_link(&temp.path, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(FsError::Changed(path.to_path_buf()))
                }
                Err(e) => Err(io_err(path)(e)),
            }
        }
        Err(e) => Err(io_err(path)(e.into())),
    };
    temp.remove();
    result?;
    sync_dir(dir_path)
}

/// Renames `from` to `to` in `dir`; with `replace` false, `Changed` if `to`
/// exists by then.
pub fn rename(dir_path: &Path, from: &str, to: &str, replace: bool) -> Result<(), FsError> {
    let dir = open_dir(dir_path)?;
    let flags = match replace {
        true => RenameFlags::empty(),
        false => RenameFlags::RENAME_NOREPLACE,
    };
    let (src, dst) = (dir_path.join(from), dir_path.join(to));
    match rename2(&dir, &src, &dst, flags) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => return Err(FsError::Changed(dst)),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) if !replace => {
            if dst.symlink_metadata().is_ok() {
                return Err(FsError::Changed(dst));
            }
            fs::rename(&src, &dst).map_err(io_err(&src))?;
        }
        Err(e) => return Err(io_err(&src)(e.into())),
    }
    sync_dir(dir_path)
}

/// Removes the file at `path` if it still holds `expected`: it is moved
/// to a temp name first, and put back (unless the name was taken again)
/// when it turns out to be a version we did not read.
pub fn remove(path: &Path, expected: &[u8]) -> Result<(), FsError> {
    let (dir_path, _) = dir_and_name(path)?;
    let dir = open_dir(dir_path)?;
    let (aside, file) = create_temp(dir_path)?;
    drop(file);
    let lock = File::open(&aside).map_err(io_err(&aside))?;
    let _ = flock(&lock, libc::LOCK_EX | libc::LOCK_NB);
    let temp = Temp {
        path: aside,
        _lock: lock,
    };
    match rename2(&dir, path, &temp.path, RenameFlags::empty()) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => {
            temp.remove();
            return sync_dir(dir_path);
        }
        Err(e) => {
            temp.remove();
            return Err(io_err(path)(e.into()));
        }
    }
    let moved = fsread::read_regular(&temp.path, MAX_VERIFY).ok();
    if moved.as_deref() != Some(expected) {
        let _ = rename2(&dir, &temp.path, path, RenameFlags::RENAME_NOREPLACE);
        temp.remove();
        sync_dir(dir_path)?;
        return Err(FsError::Changed(path.to_path_buf()));
    }
    temp.remove();
    sync_dir(dir_path)
}

/// Removes temp files nobody holds: left by an installer that was killed
/// (SIGKILL, OOM, a node crash) between creating and renaming them. A live
/// installer's temp file is locked, or was renamed just now.
pub fn remove_stale_temps(dir: &Path) {
    remove_unheld_temps(dir, STALE_AFTER);
}

/// Removes the temp files in `dir` that nobody has locked and whose inode
/// changed longer than `quiet` ago.
fn remove_unheld_temps(dir: &Path, quiet: Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = e.path();
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&path)
        else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() || flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            continue;
        }
        let old = changed_at(meta.ctime(), meta.ctime_nsec())
            .and_then(|changed| changed.elapsed().ok())
            .is_some_and(|age| age >= quiet);
        // Still the same file under that name (we hold it open and locked).
        let same = fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == meta.ino());
        if old && same {
            match fs::remove_file(&path) {
                Ok(()) => log::info!("removed {}, left by a stopped installer", path.display()),
                Err(err) => log::debug!("{}: {err}", path.display()),
            }
        }
    }
}

/// The time an inode changed, from its ctime; None if it is not a time
/// this system can hold. The values come from the file system (a crafted
/// image can hold any, nanoseconds past a second included), and a
/// `SystemTime + Duration` that overflows panics.
fn changed_at(secs: i64, nsec: i64) -> Option<SystemTime> {
    let nsec = u32::try_from(nsec.clamp(0, 999_999_999)).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs.max(0)).ok()?, nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ctime_out_of_range_is_no_time_rather_than_a_panic() {
        assert_eq!(changed_at(0, 0), Some(SystemTime::UNIX_EPOCH));
        assert_eq!(
            changed_at(-5, -1),
            Some(SystemTime::UNIX_EPOCH),
            "before the epoch counts as the epoch: old"
        );
        assert_eq!(
            changed_at(1, 5_000_000_000),
            Some(SystemTime::UNIX_EPOCH + Duration::new(1, 999_999_999))
        );
        // The largest: `UNIX_EPOCH + Duration::new(i64::MAX, 4e9)`, as
        // before, carried the nanoseconds past what a SystemTime holds.
        let far = changed_at(i64::MAX, 4_000_000_000).unwrap();
        assert!(far.elapsed().is_err(), "the future: not old, kept");
    }

    #[test]
    fn replace_swaps_only_what_was_read() {
        let dir = crate::unit_dirs::fresh("commit", "replace");
        let path = dir.join("10-a.conflist");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let own = Ownership::of(&fs::metadata(&path).unwrap());
        replace(&path, b"new", b"old", own).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        // Someone wrote "theirs" after we read "new": it stays.
        fs::write(&path, "theirs").unwrap();
        let e = replace(&path, b"edited", b"new", own).unwrap_err();
        assert!(matches!(e, FsError::Changed(_)), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"theirs");
        assert_eq!(
            crate::unit_dirs::names(&dir),
            ["10-a.conflist"],
            "no temp file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn create_and_rename_never_overwrite() {
        let dir = crate::unit_dirs::fresh("commit", "create");
        let own = current_owner(0o644);
        create(&dir.join("a.conflist"), b"1", own).unwrap();
        assert!(matches!(
            create(&dir.join("a.conflist"), b"2", own),
            Err(FsError::Changed(_))
        ));
        assert_eq!(fs::read(dir.join("a.conflist")).unwrap(), b"1");
        fs::write(dir.join("b.conf"), "b").unwrap();
        assert!(matches!(
            rename(&dir, "b.conf", "a.conflist", false),
            Err(FsError::Changed(_))
        ));
        rename(&dir, "b.conf", "a.conflist", true).unwrap();
        assert_eq!(fs::read(dir.join("a.conflist")).unwrap(), b"b");
        // Removal checks what it removes.
        assert!(matches!(
            remove(&dir.join("a.conflist"), b"not this"),
            Err(FsError::Changed(_))
        ));
        assert_eq!(fs::read(dir.join("a.conflist")).unwrap(), b"b");
        remove(&dir.join("a.conflist"), b"b").unwrap();
        assert!(
            crate::unit_dirs::names(&dir).is_empty(),
            "{:?}",
            crate::unit_dirs::names(&dir)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temps_go_at_once_live_ones_stay() {
        let dir = crate::unit_dirs::fresh("commit", "stale");
        // A killed installer's file: nobody holds it.
        let stale = dir.join(format!("{TEMP_PREFIX}999999-1"));
        fs::write(&stale, "partial").unwrap();
        let live = Temp::write(&dir, b"in flight", current_owner(0o600)).unwrap();
        // Just changed: it may be a file swapped out a moment ago.
        remove_stale_temps(&dir);
        assert!(stale.exists());
        // Quiet long enough (here: at all): removed; locked: kept.
        remove_unheld_temps(&dir, Duration::ZERO);
        assert!(!stale.exists(), "unlocked and quiet: removed");
        assert!(live.path.exists(), "locked: kept");
        live.remove();
        assert!(crate::unit_dirs::names(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
