//! The `logFile`: where a root process on every node appends, named by a
//! ConfigMap. So it is confined: a regular file under `/var/log`, reached
//! without following any symbolic link, never the process's own stdout,
//! created 0600, never a directory created, and bounded in size (one
//! rotation to `<name>.1`). And it appends to and rotates only a file it
//! wrote: another daemon's log under `/var/log` named by mistake (or on
//! purpose) is left exactly as it is. The root is fixed here, not in the
//! config: the config is the cluster-wide input being confined.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat2, AtFlags, OFlag, RenameFlags, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, Mode};

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

/// How much of a file's head is read to tell whether csum-offload wrote
/// it: more than the prefix every log line starts with.
const HEAD_BYTES: usize = 128;

/// A file csum-offload did not write: it never appends to one, nor
/// renames one (issue 9: `"logFile": "/var/log/syslog"` in a cluster-wide
/// ConfigMap must not touch another daemon's file on every node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Foreign {
    #[error("not a file csum-offload wrote (its first line is not a csum-offload log line)")]
    FirstLine,
    #[error("not a file csum-offload wrote (it is empty, but owned by uid {uid} with mode {mode:04o}, not by uid {euid} with mode 0600)")]
    Empty { uid: u32, mode: u32, euid: u32 },
    #[error("not a file csum-offload wrote (it is {0})")]
    NotRegular(&'static str),
}

/// A line the log file did not take: the caller writes it to stderr, after
/// `notice` (the reason), which is given once per process.
#[derive(Debug)]
pub struct Diverted {
    pub notice: Option<String>,
}

/// An open log file.
pub struct LogFile {
    /// The directory that holds it, reached without links.
    dir: OwnedFd,
    name: CString,
    /// The path as configured, for messages.
    shown: String,
    state: Mutex<State>,
}

struct State {
    /// None until the first line creates it (it was not there at open).
    file: Option<File>,
    /// Whether the reason for a diverted line was given already.
    told: bool,
}

impl LogFile {
    /// Opens the log file at `path`, which `check_path` accepted. Every
    /// directory from `LOG_ROOT` down is opened with O_NOFOLLOW, and so is
    /// the file, so a link anywhere on the way is refused; an existing file
    /// must be a regular one (a FIFO is opened non-blocking and then
    /// refused), not this process's stdout, and one csum-offload wrote. A
    /// missing file is created by the first line written.
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
        let file = open_existing_at(&dir, &name)?;
        Ok(Self {
            dir,
            name,
            shown: path.display().to_string(),
            state: Mutex::new(State { file, told: false }),
        })
    }

    /// Appends one line with one write(2): O_APPEND keeps lines of
    /// concurrent plugin runs whole in a shared file. A full file is
    /// rotated first, so a new file's first line is a real log line.
    pub fn write_line(&self, line: &[u8]) -> Result<(), Diverted> {
        let Ok(mut state) = self.state.lock() else {
            return Err(Diverted { notice: None });
        };
        match self.write_locked(&mut state, line) {
            Ok(()) => Ok(()),
            Err(why) => {
                let notice = (!state.told).then_some(why);
                state.told = true;
                Err(Diverted { notice })
            }
        }
    }

    /// Writes `line`, or says why it cannot be written to the file.
    fn write_locked(&self, state: &mut State, line: &[u8]) -> Result<(), String> {
        let Some(file) = &mut state.file else {
            state.file = Some(self.create_with(line)?);
            return Ok(());
        };
        if !file.metadata().is_ok_and(|m| m.len() >= MAX_LOG_BYTES) {
            let _ = file.write_all(line);
            return Ok(());
        }
        // Full. Under an exclusive flock, and only if the name still is
        // this file: of many processes that find it full at once, one
        // rotates and the others go on in the new file. One that finds the
        // lock taken writes this line where it is: the file is being
        // rotated at this moment, a few lines over the bound at most.
        if crate::kernel::lock::flock(file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            let _ = file.write_all(line);
            return Ok(());
        }
        let fresh = self.rotate_locked(file, line);
        // Released on every way out, so a run that keeps its descriptor
        // (the agent) never holds others off the file it has left.
        let _ = crate::kernel::lock::flock(file, libc::LOCK_UN);
        state.file = Some(fresh?);
        Ok(())
    }

    /// With `file` full and locked: moves it to `<name>.1` if that name is
    /// free or holds csum-offload's previous log, then starts the new file
    /// with `line`. A foreign `<name>.1` is never replaced: the file then
    /// stays full and lines go to stderr, rather than grow without bound.
    fn rotate_locked(&self, file: &File, line: &[u8]) -> Result<File, String> {
        if same_file_at(&self.dir, &self.name, file) {
            let mut backup = self.name.as_bytes().to_vec();
            backup.extend_from_slice(b".1");
            let backup = CString::new(backup).map_err(|e| e.to_string())?;
            let full = |why: String| {
                format!(
                    "logFile {} is full ({MAX_LOG_BYTES} bytes) and {why}; not rotating it: this line and later ones go to stderr",
                    self.shown
                )
            };
            let flag = match check_backup_at(&self.dir, &backup) {
                Ok(None) => RenameFlags::RENAME_NOREPLACE,
                Ok(Some(())) => RenameFlags::empty(),
                Err(e) => {
                    return Err(full(format!(
                        "{}.1 is {e}, which it does not replace; move {}.1 away",
                        self.shown, self.shown
                    )))
                }
            };
            // A check and a rename are two steps; what this guards against
            // is a config naming another daemon's file, not a local racer
            // (who is root already). NOREPLACE still keeps a `.1` that
            // appeared meanwhile.
            renameat2(
                &self.dir,
                self.name.as_c_str(),
                &self.dir,
                backup.as_c_str(),
                flag,
            )
            .map_err(|e| full(format!("cannot be renamed to {}.1: {e}", self.shown)))?;
        }
        self.create_with(line)
    }

    /// Creates the file with `line` as its first line, so a file
    /// csum-offload created is never empty; or, when another run created it
    /// first, opens that one (if csum-offload wrote it) and appends `line`.
    fn create_with(&self, line: &[u8]) -> Result<File, String> {
        let refused = |e: io::Error| {
            format!(
                "cannot open log file {}: {e}; logging to stderr",
                self.shown
            )
        };
        let mut file = match open_at(&self.dir, &self.name, OFlag::O_CREAT | OFlag::O_EXCL) {
            Ok(file) => {
                // The umask may have narrowed 0600; never widened past it.
                let _ = file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
                check_opened(&file).map_err(refused)?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                open_existing_at(&self.dir, &self.name)
                    .map_err(refused)?
                    .ok_or_else(|| refused(io::Error::from(io::ErrorKind::NotFound)))?
            }
            Err(e) => return Err(refused(e)),
        };
        let _ = file.write_all(line);
        Ok(file)
    }
}

/// Opens a directory (relative to `at`, or absolute), refusing a link
/// when `nofollow`.
fn open_dir_at(at: Option<&OwnedFd>, name: &[u8], nofollow: bool) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if nofollow {
        flags |= OFlag::O_NOFOLLOW;
    }
    let base = at.map_or(AT_FDCWD, |d| d.as_fd());
    Ok(openat(base, name.as_c_str(), flags, Mode::empty())?)
}

/// Opens `name` in `dir` for appending, with `extra` flags: never through
/// a link, never blocking.
fn open_at(dir: &OwnedFd, name: &CString, extra: OFlag) -> io::Result<File> {
    let flags = OFlag::O_WRONLY
        | OFlag::O_APPEND
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC
        | extra;
    let fd = openat(dir, name.as_c_str(), flags, Mode::from_bits_truncate(0o600))?;
    Ok(File::from(fd))
}

/// A file opened for appending must be a regular file and not this
/// process's stdout.
fn check_opened(file: &File) -> io::Result<std::fs::Metadata> {
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
    Ok(meta)
}

/// Opens the existing `name` in `dir` for appending, if it is there and
/// csum-offload may append to it (`check_opened`, `check_ours_at`).
fn open_existing_at(dir: &OwnedFd, name: &CString) -> io::Result<Option<File>> {
    let file = match open_at(dir, name, OFlag::empty()) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = check_opened(&file)?;
    check_ours_at(dir, name, &meta).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{e}; csum-offload appends only to its own log; choose a new path"),
        )
    })?;
    Ok(Some(file))
}

/// Whether csum-offload wrote the regular file `name` in `dir`, whose
/// metadata (from the descriptor csum-offload would write to) is `meta`:
/// its first line is a csum-offload log line, or it is empty and private
/// to this euid (an operator's copytruncate of the log, or a file another
/// run created an instant ago and is writing its first line to). The head
/// is read through a read-only descriptor of the same file: the
/// descriptor written to is write-only, as the FIFO rule needs.
fn check_ours_at(dir: &OwnedFd, name: &CString, meta: &std::fs::Metadata) -> Result<(), Foreign> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    if meta.len() == 0 {
        let euid = nix::unistd::geteuid().as_raw();
        let mode = meta.mode() & 0o7777;
        // "Or narrower": a umask may narrow 0600 for the instant between
        // another run's create and its chmod.
        return if meta.uid() == euid && mode & !0o600 == 0 {
            Ok(())
        } else {
            Err(Foreign::Empty {
                uid: meta.uid(),
                mode,
                euid,
            })
        };
    }
    let Ok(reader) = open_read_only_at(dir, name) else {
        return Err(Foreign::FirstLine);
    };
    let same = reader
        .metadata()
        .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
    let mut head = [0u8; HEAD_BYTES];
    let n = reader.read_at(&mut head, 0).unwrap_or(0);
    if same && crate::log_line::is_log_line(&head[..n]) {
        Ok(())
    } else {
        Err(Foreign::FirstLine)
    }
}

/// Whether `<name>.1` may be replaced by a rotation: `None` when it is not
/// there, `Some(())` when csum-offload wrote it (the same test as for the
/// log itself). Looked at without opening anything but a regular file.
fn check_backup_at(dir: &OwnedFd, backup: &CString) -> Result<Option<()>, Foreign> {
    let st = match fstatat(dir, backup.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(None),
        Err(_) => return Err(Foreign::FirstLine),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => "a symbolic link",
            libc::S_IFDIR => "a directory",
            libc::S_IFIFO => "a FIFO",
            libc::S_IFSOCK => "a socket",
            _ => "a device",
        };
        return Err(Foreign::NotRegular(kind));
    }
    // A regular file: open it read-only for its head (no side effects).
    let Ok(file) = open_read_only_at(dir, backup) else {
        return Err(Foreign::FirstLine);
    };
    let meta = file.metadata().map_err(|_| Foreign::FirstLine)?;
    if !meta.is_file() {
        return Err(Foreign::NotRegular(crate::fsread::kind_of(&meta)));
    }
    check_ours_at(dir, backup, &meta).map(Some)
}

/// Opens `name` in `dir` read-only, for its head: never through a link,
/// never blocking (a FIFO), never as a controlling terminal.
fn open_read_only_at(dir: &OwnedFd, name: &CString) -> nix::Result<File> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    openat(dir, name.as_c_str(), flags, Mode::empty()).map(File::from)
}

fn is_stdout(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // fd 1 may be closed: then no match.
    fstat(io::stdout().as_fd()).is_ok_and(|st| st.st_dev == meta.dev() && st.st_ino == meta.ino())
}

/// Whether `name` in `dir` (not following a link) is the open `file`.
fn same_file_at(dir: &OwnedFd, name: &CString, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return false;
    };
    fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_dev == meta.dev() && st.st_ino == meta.ino())
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
