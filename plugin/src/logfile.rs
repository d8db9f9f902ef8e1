//! The `logFile`: where a root process on every node appends, named by a
//! ConfigMap. So it is confined: a regular file under `/var/log`, reached
//! without following any symbolic link, never the process's own stdout,
//! created 0600, never a directory created, and bounded in size (one
//! rotation to `<name>.1`).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::Mutex;

/// The only directory tree a log file may be in.
pub const LOG_ROOT: &str = "/var/log";
/// Past this size the file is rotated to `<name>.1` (replacing the last
/// one): at most twice this on disk, whatever the node's pod churn.
pub const MAX_LOG_BYTES: u64 = 8 << 20;

/// Why a `logFile` path is not acceptable (a config error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogPathError {
    #[error("logFile must be an absolute path, got {0:?}")]
    Relative(String),
    #[error("logFile must be a file under {LOG_ROOT}, got {0:?}")]
    OutsideRoot(String),
    #[error("logFile must not contain \".\", \"..\" or empty components, got {0:?}")]
    Unclean(String),
}

/// Checks a `logFile` value as written in the config.
pub fn check_path(path: &Path) -> Result<(), LogPathError> {
    let shown = || crate::json::clip(&path.display().to_string());
    if !path.is_absolute() {
        return Err(LogPathError::Relative(shown()));
    }
    let text = path.as_os_str().as_bytes();
    let unclean = text.ends_with(b"/")
        || text.windows(2).any(|w| w == b"//")
        || path
            .components()
            .any(|c| matches!(c, Component::CurDir | Component::ParentDir));
    if unclean || text.split(|b| *b == b'/').any(|c| c == b".") {
        return Err(LogPathError::Unclean(shown()));
    }
    match path.strip_prefix(LOG_ROOT) {
        Ok(rest) if rest.components().next().is_some() => Ok(()),
        _ => Err(LogPathError::OutsideRoot(shown())),
    }
}

/// An open log file.
pub struct LogFile {
    /// The directory that holds it, reached without links.
    dir: OwnedFd,
    name: CString,
    file: Mutex<File>,
}

impl LogFile {
    /// Opens (or creates, 0600) the log file at `path`, which
    /// `check_path` accepted. Every directory from `LOG_ROOT` down is
    /// opened with O_NOFOLLOW, and so is the file, so a link anywhere on
    /// the way is refused; the file must be a regular one (a FIFO is
    /// opened non-blocking and then refused), and not this process's
    /// stdout.
    pub fn open(path: &Path) -> io::Result<Self> {
        check_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let rest = path
            .strip_prefix(LOG_ROOT)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut dir = open_dir_at(None, Path::new(LOG_ROOT).as_os_str().as_bytes(), false)?;
        let mut components: Vec<&[u8]> = rest
            .components()
            .map(|c| c.as_os_str().as_bytes())
            .collect();
        let name = components
            .pop()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        for component in components {
            dir = open_dir_at(Some(&dir), component, true)?;
        }
        let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let file = open_file_at(&dir, &name)?;
        let log = Self {
            dir,
            name,
            file: Mutex::new(file),
        };
        if let Ok(mut file) = log.file.lock() {
            log.rotate_if_full(&mut file);
        }
        Ok(log)
    }

    /// Appends one line with one write(2): O_APPEND keeps lines of
    /// concurrent plugin runs whole in a shared file.
    pub fn write_line(&self, line: &[u8]) {
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        let _ = file.write_all(line);
        self.rotate_if_full(&mut file);
    }

    /// Moves a full file to `<name>.1` and starts a new one. Under an
    /// exclusive flock, and only if the name still is this file: of many
    /// processes that find it full at once, one rotates and the others
    /// just reopen.
    fn rotate_if_full(&self, file: &mut File) {
        if !file.metadata().is_ok_and(|m| m.len() >= MAX_LOG_BYTES) {
            return;
        }
        if crate::kernel::lock::flock(file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            return;
        }
        let mut backup = self.name.as_bytes().to_vec();
        backup.extend_from_slice(b".1");
        let Ok(backup) = CString::new(backup) else {
            return;
        };
        if same_file_at(&self.dir, &self.name, file) {
            // SAFETY: both names are NUL-terminated and relative to `dir`.
            unsafe {
                libc::renameat(
                    self.dir.as_raw_fd(),
                    self.name.as_ptr(),
                    self.dir.as_raw_fd(),
                    backup.as_ptr(),
                )
            };
        }
        if let Ok(fresh) = open_file_at(&self.dir, &self.name) {
            *file = fresh; // closing the old fd releases its lock
        }
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens a directory (relative to `at`, or absolute), refusing a link
/// when `nofollow`.
fn open_dir_at(at: Option<&OwnedFd>, name: &[u8], nofollow: bool) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let base = at.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a NUL-terminated name; the fd is owned by the OwnedFd below.
    let fd = cvt(unsafe { libc::openat(base, name.as_ptr(), flags) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `name` in `dir` for appending: never through a link, never
/// blocking, created 0600 when it is not there; it must be a regular file
/// and not this process's stdout.
fn open_file_at(dir: &OwnedFd, name: &CString) -> io::Result<File> {
    let flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | libc::O_NOCTTY
        | libc::O_CLOEXEC;
    let open = |extra: libc::c_int| {
        // SAFETY: a NUL-terminated name relative to an open directory.
        unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | extra,
                0o600 as libc::c_uint,
            )
        }
    };
    let mut fd = open(0);
    let mut created = false;
    if fd < 0 && io::Error::last_os_error().kind() == io::ErrorKind::NotFound {
        // O_EXCL: whoever creates it sets its mode; a process that loses
        // the race (many ADDs start at once) opens the winner's file.
        fd = open(libc::O_CREAT | libc::O_EXCL);
        created = fd >= 0;
        if fd < 0 && io::Error::last_os_error().kind() == io::ErrorKind::AlreadyExists {
            fd = open(0);
        }
    }
    let fd = cvt(fd)?;
    // SAFETY: fd was just opened and is owned from here on.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", crate::fsread::kind_of(&meta)),
        ));
    }
    if is_stdout(&meta) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is this process's stdout, which carries only the CNI result",
        ));
    }
    if created {
        // The umask may have narrowed 0600; never widened past it.
        let _ = file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
    }
    Ok(file)
}

fn is_stdout(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: fstat into a zeroed stat; fd 1 may be closed (then no match).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(1, &mut st) };
    rc == 0 && st.st_dev == meta.dev() && st.st_ino == meta.ino()
}

/// Whether `name` in `dir` (not following a link) is the open `file`.
fn same_file_at(dir: &OwnedFd, name: &CString, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return false;
    };
    // SAFETY: fstatat into a zeroed stat with a NUL-terminated name.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    rc == 0 && st.st_dev == meta.dev() && st.st_ino == meta.ino()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_root_only() {
        for ok in ["/var/log/csum-offload.log", "/var/log/csum/cni.log"] {
            assert_eq!(check_path(Path::new(ok)), Ok(()), "{ok}");
        }
        let cases = [
            ("csum.log", "must be an absolute path"),
            ("/etc/cron.d/csum", "must be a file under /var/log"),
            (
                "/proc/sys/kernel/core_pattern",
                "must be a file under /var/log",
            ),
            ("/var/log", "must be a file under /var/log"),
            ("/var/logs/x", "must be a file under /var/log"),
            ("/var/log/../../etc/passwd", "must not contain"),
            ("/var/log/./x", "must not contain"),
            ("/var/log//x", "must not contain"),
            ("/var/log/x/", "must not contain"),
        ];
        for (path, want) in cases {
            let e = check_path(Path::new(path)).unwrap_err().to_string();
            assert!(e.contains(want), "{path}: {e}");
        }
    }
}
