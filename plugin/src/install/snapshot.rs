//! The conf dir as read at one moment: every file the runtime would look
//! at, as far as the installer can see it.
//!
//! Reading never blocks and never fails the pass for one file: every read
//! goes through `crate::fsread` (stat first, then a non-blocking open of
//! regular files only), and a file that cannot be read is kept, with why,
//! so that selection can judge it the way the runtime would (a looping
//! symlink fails the runtime's read too; a mode-000 file does not, for a
//! runtime that runs as root with every capability; a FIFO hangs it).
//! Only a directory that cannot be listed fails the read.
//!
//! A symlink is judged "the runtime cannot read it either" only when the
//! installer resolves it as the runtime does: under the DaemonSet the conf
//! dir is a mount (`/host/etc/cni/net.d`), so a link whose target is
//! absolute or a path (`../calico/x.conflist`) leads somewhere else in the
//! installer's view than in the host's. Such a link that dangles or loops
//! here may be a good file to the runtime: it is "cannot tell" (see
//! `link_out_of_view`), whatever the runtime.

use super::commit::{io_err, FsError, Ownership, MAX_CONFIG_BYTES};
use super::edit::BACKUP_SUFFIX;
use super::select::{extension, is_config_name_bytes, plugins, ConfFile, SkipReason};
use crate::fsread::{self, ReadError};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What identifies one version of a file: a rewrite or replacement
/// changes at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// What the installer knows about a file it read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub stamp: Stamp,
    /// Age of its content (for "just being written" checks).
    pub age: Duration,
    /// Where a rewrite goes: the file itself, or, for a symlink, the file
    /// at the end of its links (the link stays a link).
    pub target: PathBuf,
    pub is_symlink: bool,
    pub ownership: Ownership,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Config files and our backups, each read or with why not.
    pub files: Vec<ConfFile>,
    /// The files that were read, by name.
    seen: Vec<(String, Seen)>,
    /// Directories with a config file's name: libcni skips them, but no
    /// file can be written in their place.
    pub dirs: Vec<String>,
}

/// One directory entry, read.
enum Read {
    /// Gone since the listing: not part of this snapshot.
    Gone,
    Bytes(Vec<u8>, Seen),
    Unread(SkipReason),
}

impl Snapshot {
    pub fn read(dir: &Path) -> Result<Self, FsError> {
        let mut snap = Snapshot::default();
        for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
            let dirent = dirent.map_err(io_err(dir))?;
            let os_name = dirent.file_name();
            let raw = os_name.as_bytes();
            if !is_config_name_bytes(raw) && !raw.ends_with(BACKUP_SUFFIX.as_bytes()) {
                continue;
            }
            // libcni's ConfFiles skips directories, but not symlinks to
            // them (reading those fails).
            let is_symlink = match dirent.file_type() {
                Ok(t) if t.is_dir() => {
                    snap.dirs.push(os_name.to_string_lossy().into_owned());
                    continue;
                }
                Ok(t) => t.is_symlink(),
                Err(_) => false,
            };
            let (name, raw_name) = match os_name.to_str() {
                Some(n) => (n.to_string(), None),
                None => (os_name.to_string_lossy().into_owned(), Some(raw.to_vec())),
            };
            let path = dir.join(&os_name);
            let mut file = match read_one(&path, is_symlink) {
                Read::Gone => continue,
                Read::Unread(why) => ConfFile::unread(&name, why),
                Read::Bytes(bytes, seen) => {
                    if raw_name.is_none() {
                        snap.seen.push((name.clone(), seen));
                    }
                    ConfFile::new(&name, bytes)
                }
            };
            file.raw_name = raw_name;
            // libcni 1.3 appends a conflist's <name>/*.conf plugins, or
            // fails the list on them: part of what the runtime loads.
            if extension(&file.name) == Some("conflist") && file.unread.is_none() {
                if let Some(name) = plugins::runs(&file).and_then(|r| r.plugin_dir) {
                    file.plugin_dir = Some(plugins::read_plugin_dir(dir, &name));
                }
            }
            snap.files.push(file);
        }
        snap.files.sort_by(|a, b| a.sort_key().cmp(b.sort_key()));
        Ok(snap)
    }

    pub fn seen(&self, name: &str) -> Option<&Seen> {
        self.seen.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    pub fn age(&self, name: &str) -> Option<Duration> {
        self.seen(name).map(|s| s.age)
    }

    /// The bytes read for `name`, if it was read.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.seen(name)?;
        self.files
            .iter()
            .find(|f| f.name == name && f.unread.is_none() && f.raw_name.is_none())
            .map(|f| f.bytes.as_slice())
    }

    /// Fails if `name` is not the version this snapshot read (or exists
    /// now when it did not then).
    pub fn check_unchanged(&self, dir: &Path, name: &str) -> Result<(), FsError> {
        let path = dir.join(name);
        let now = match fs::metadata(&path) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if now == self.seen(name).map(|s| s.stamp) {
            Ok(())
        } else {
            Err(FsError::Changed(path))
        }
    }
}

/// Reads one entry without blocking; `is_symlink` is the entry itself.
fn read_one(path: &Path, is_symlink: bool) -> Read {
    // stat never blocks; it follows links, so a link is judged by what it
    // points to, as the runtime's read does.
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !is_symlink => return Read::Gone,
        Err(e) => return Read::Unread(classify_at(path, ReadError::Io(e), is_symlink)),
    };
    match fsread::read_regular(path, MAX_CONFIG_BYTES) {
        Ok(bytes) => {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            let target = match is_symlink {
                true => fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
                false => path.to_path_buf(),
            };
            Read::Bytes(
                bytes,
                Seen {
                    stamp: Stamp::of(&meta),
                    age,
                    target,
                    is_symlink,
                    ownership: Ownership::of(&meta),
                },
            )
        }
        Err(e) if e.is_not_found() && !is_symlink => Read::Gone,
        Err(e) => Read::Unread(classify_at(path, e, is_symlink)),
    }
}

/// `classify`, unless `path` is a link that fails to resolve here and
/// leads out of the conf dir on the way (see the module comment).
fn classify_at(path: &Path, e: ReadError, is_symlink: bool) -> SkipReason {
    let unresolved = match &e {
        ReadError::Io(io) => match io.raw_os_error() {
            Some(libc::ENOENT) => Some("does not exist there"),
            Some(libc::ELOOP) => Some("loops there"),
            _ => None,
        },
        _ => None,
    };
    if let (true, Some(unresolved)) = (is_symlink, unresolved) {
        if let Some(out) = link_out_of_view(path) {
            return SkipReason::Unjudged(format!(
                "is a symbolic link to {:?}, which leads out of the conf dir to {} in the \
                 installer's view and {unresolved}, while the node's runtime, which sees the \
                 conf dir at its own path, may read it (fix: mount the directory it leads to \
                 into the installer's container at {}, or replace the link with the file it \
                 points to)",
                out.target,
                out.leads_to.display(),
                out.leads_to.parent().unwrap_or(Path::new("/")).display(),
            ));
        }
    }
    classify(e, is_symlink)
}

/// The first link in a chain whose target is not a plain name in the conf
/// dir: what it says and where that leads in this process's view.
#[derive(Debug, PartialEq, Eq)]
struct OutOfView {
    target: PathBuf,
    leads_to: PathBuf,
}

/// Follows the link chain from `path` (in the conf dir) while every target
/// is a plain name, which resolves to the same entry of the same directory
/// in any view of it; the first target that is absolute or has a `/` in it
/// (`..`, a subdirectory) may resolve differently for the host's runtime.
/// None: the chain stays in the conf dir (so a dangling or looping chain
/// fails for the runtime too).
fn link_out_of_view(path: &Path) -> Option<OutOfView> {
    let dir = path.parent()?;
    let mut current = path.to_path_buf();
    // The kernel gives up after 40 links; a longer in-dir chain loops.
    for _ in 0..40 {
        let target = fs::read_link(&current).ok()?;
        let plain = target.components().count() == 1
            && matches!(
                target.components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain {
            return Some(OutOfView {
                leads_to: lexical(&current.parent().unwrap_or(dir).join(&target)),
                target,
            });
        }
        current = dir.join(&target);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => continue,
            _ => return None,
        }
    }
    None
}

/// `path` with `.` and `..` taken out by name, as the kernel would if no
/// component were a link: only for saying where a link leads.
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What a failed read means for the runtime, which reads the same path
/// with Go's os.ReadFile as root with every capability.
fn classify(e: ReadError, is_symlink: bool) -> SkipReason {
    match e {
        ReadError::NotRegular("a FIFO") => SkipReason::Hangs(
            "is a FIFO: libcni reads config files with os.ReadFile, which blocks on a FIFO \
             until something writes to it"
                .into(),
        ),
        ReadError::NotRegular("a directory") => SkipReason::Unreadable(
            "a symbolic link to a directory (reading it fails with EISDIR)".into(),
        ),
        ReadError::NotRegular("a socket") => {
            SkipReason::Unreadable("a socket (opening it fails with ENXIO)".into())
        }
        ReadError::NotRegular(kind) => SkipReason::Unjudged(format!(
            "is {kind}: what the runtime would read from it is unknown"
        )),
        ReadError::TooLarge(max) => SkipReason::Unjudged(format!(
            "is larger than {} MiB: the runtime reads it, csum-offload does not judge files that large",
            max >> 20
        )),
        ReadError::Io(e) => match e.raw_os_error() {
            Some(libc::ELOOP) => SkipReason::Unreadable("too many levels of symbolic links".into()),
            Some(libc::ENOENT) if is_symlink => {
                SkipReason::Unreadable("a dangling symbolic link".into())
            }
            Some(libc::EACCES | libc::EPERM) => SkipReason::Unjudged(format!(
                "csum-offload cannot read it ({e}), while the runtime, root with every \
                 capability, can"
            )),
            _ => SkipReason::Unjudged(format!("cannot be read: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn reason<'a>(snap: &'a Snapshot, name: &str) -> Option<&'a SkipReason> {
        snap.files
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .unread
            .as_ref()
    }

    #[test]
    fn every_kind_of_entry_is_read_or_judged_without_blocking() {
        let dir = crate::unit_dirs::fresh("snap", "kinds");
        fs::write(dir.join("10-a.conflist"), "{}").unwrap();
        fs::write(
            dir.join("99-big.conf"),
            vec![b' '; MAX_CONFIG_BYTES as usize + 1],
        )
        .unwrap();
        fs::write(dir.join("notes.txt"), "x").unwrap();
        fs::create_dir(dir.join("sub.conf")).unwrap();
        symlink("sub.conf", dir.join("20-dirlink.conf")).unwrap();
        symlink("30-loop.conf", dir.join("30-loop.conf")).unwrap();
        symlink("nowhere", dir.join("40-dangling.json")).unwrap();
        // Dangling here, but leading out of the dir: the host's runtime
        // may read them (the DaemonSet sees the conf dir through a mount).
        let absolute = format!("/csum-offload-nowhere-{}/x.conflist", std::process::id());
        symlink(&absolute, dir.join("41-abs.conflist")).unwrap();
        symlink("../elsewhere/x.conflist", dir.join("42-up.conflist")).unwrap();
        symlink("42-up.conflist", dir.join("43-via.conflist")).unwrap();
        symlink("10-a.conflist", dir.join("50-link.conflist")).unwrap();
        nix::unistd::mkfifo(
            &dir.join("60-fifo.conf"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let raw = std::ffi::OsStr::from_bytes(b"70-\xff.conflist");
        fs::write(dir.join(raw), "{}").unwrap();
        let snap = Snapshot::read(&dir).unwrap();
        let names: Vec<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "10-a.conflist",
                "20-dirlink.conf",
                "30-loop.conf",
                "40-dangling.json",
                "41-abs.conflist",
                "42-up.conflist",
                "43-via.conflist",
                "50-link.conflist",
                "60-fifo.conf",
                "70-\u{FFFD}.conflist",
                "99-big.conf"
            ]
        );
        assert!(reason(&snap, "10-a.conflist").is_none());
        assert!(matches!(
            reason(&snap, "20-dirlink.conf"),
            Some(SkipReason::Unreadable(_))
        ));
        assert!(
            matches!(reason(&snap, "30-loop.conf"), Some(SkipReason::Unreadable(w)) if w.contains("levels"))
        );
        assert!(
            matches!(reason(&snap, "40-dangling.json"), Some(SkipReason::Unreadable(w)) if w.contains("dangling"))
        );
        let unjudged = |name| match reason(&snap, name) {
            Some(SkipReason::Unjudged(w)) => w.clone(),
            other => panic!("{name}: {other:?}"),
        };
        let abs = unjudged("41-abs.conflist");
        assert!(abs.contains(&format!("{absolute:?}")), "{abs}");
        assert!(abs.contains("(fix: mount the directory"), "{abs}");
        let up = unjudged("42-up.conflist");
        let leads = dir.parent().unwrap().join("elsewhere");
        assert!(
            up.contains(&format!("to {} in the", leads.join("x.conflist").display())),
            "{up}"
        );
        assert!(
            up.contains(&format!("container at {}, or replace", leads.display())),
            "{up}"
        );
        // Through an in-dir link, the out-of-dir hop is named.
        assert!(unjudged("43-via.conflist").contains("\"../elsewhere/x.conflist\""));
        assert!(matches!(
            reason(&snap, "60-fifo.conf"),
            Some(SkipReason::Hangs(_))
        ));
        assert!(
            matches!(reason(&snap, "99-big.conf"), Some(SkipReason::Unjudged(w)) if w.contains("larger than 1 MiB"))
        );
        let odd = snap.files.iter().find(|f| f.raw_name.is_some()).unwrap();
        assert_eq!(odd.raw_name.as_deref(), Some(&b"70-\xff.conflist"[..]));
        assert_eq!(odd.bytes, b"{}");
        // A link is read through; a rewrite goes to its target.
        let link = snap.seen("50-link.conflist").unwrap();
        assert!(link.is_symlink);
        assert_eq!(
            link.target,
            fs::canonicalize(dir.join("10-a.conflist")).unwrap()
        );
        assert_eq!(snap.bytes("50-link.conflist"), Some(&b"{}"[..]));
        fs::set_permissions(dir.join("10-a.conflist"), fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            Snapshot::read(&dir)
                .unwrap()
                .seen("10-a.conflist")
                .unwrap()
                .ownership
                .mode,
            0o640
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
