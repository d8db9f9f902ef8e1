//! The metrics as a file for node_exporter's textfile collector, whose
//! directory other collectors share (and which may be writable by others):
//! the text goes to a temp file of our own, made with O_CREAT|O_EXCL (so a
//! link or FIFO planted at its name is never followed or opened), synced,
//! and renamed over the target (so a link or FIFO at the target is
//! replaced, never written through, and the collector never reads half a
//! file).
//!
//! The temp name is `.<target>.<pid>.<16 hex digits>.tmp`: hidden, and not
//! ending in `.prom`, since node_exporter reads every `*.prom` of the
//! directory; the digits are unpredictable, so nobody can plant a file at
//! the next name. A crash can leave one behind: those are removed at start
//! when recognisably ours (that exact shape, for this target, a regular
//! file, ours) and never anything else.

use super::Metrics;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many fresh names to try when one exists already (someone planted
/// it, or a leftover): the names are random, so a second try nearly
/// always succeeds, and a bound keeps a hostile directory from looping us.
const NAME_TRIES: usize = 8;

/// Why the textfile could not be written; the previous one, if any, stays.
#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    #[error("{path} has no file name")]
    NoFileName { path: PathBuf },
    #[error("cannot create a temp file beside {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {tmp}: {source}")]
    Write {
        tmp: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot rename {tmp} to {path}: {source}")]
    Rename {
        tmp: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The directory and file name of `path` (the directory is `.` for a bare
/// name).
fn split(path: &Path) -> Result<(PathBuf, String), TextfileError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TextfileError::NoFileName {
            path: path.to_path_buf(),
        })?
        .to_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// 64 bits nobody outside this process can predict: std's `RandomState`
/// is keyed from the kernel's random source, and SipHash of a counter and
/// the clock under that key needs no `unsafe` and no device file.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

fn temp_name(target: &str) -> String {
    format!(".{target}.{}.{:016x}.tmp", std::process::id(), random_u64())
}

/// The pid in `name` when it has the shape of one of our temp names for
/// `target`.
fn temp_pid(name: &str, target: &str) -> Option<u32> {
    let rest = name
        .strip_prefix('.')?
        .strip_prefix(target)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let (pid, hex) = rest.split_once('.')?;
    let digits = |s: &str, hex: bool| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_digit() || (hex && c.is_ascii_hexdigit() && c.is_ascii_lowercase())
            })
    };
    if hex.len() != 16 || !digits(hex, true) || !digits(pid, false) {
        return None;
    }
    pid.parse().ok()
}

/// Removes temp files a crashed agent left beside `path`: only names of
/// our exact shape for this target, only regular files (a link is not
/// ours, and is never followed), only files of our own user, and never
/// one of this process. Returns how many were removed.
pub fn remove_leftovers(path: &Path) -> usize {
    let Ok((dir, target)) = split(path) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let me = std::process::id();
    let uid = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| temp_pid(n, &target)) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // lstat: the entry itself, never what a link points to.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.file_type().is_file() || meta.uid() != uid {
            continue;
        }
        if std::fs::remove_file(entry.path()).is_ok() {
            log::info!(
                "removed {}, left by an earlier agent",
                entry.path().display()
            );
            removed += 1;
        }
    }
    removed
}

/// A fresh temp file beside the target, made by us (O_EXCL: an existing
/// name, whatever it is, fails instead of being opened).
fn create_temp(dir: &Path, target: &str, path: &Path) -> Result<(PathBuf, File), TextfileError> {
    let mut last = None;
    for _ in 0..NAME_TRIES {
        let tmp = dir.join(temp_name(target));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            // O_NOFOLLOW is implied by O_EXCL for the last component; said
            // anyway, and O_NONBLOCK so nothing could ever wait on a FIFO.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(source) => {
                return Err(TextfileError::Create {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(TextfileError::Create {
        path: path.to_path_buf(),
        source: last.unwrap_or_else(|| std::io::ErrorKind::AlreadyExists.into()),
    })
}

/// Writes the metrics to `path` through a temp file of our own, synced
/// and renamed over it. On any failure the temp file is removed and the
/// previous textfile stays as it was. The first write of the process
/// first removes what a crashed agent left (the agent writes only while
/// it holds the node's lock, so no other agent is writing then).
pub fn write_textfile(path: &Path, metrics: &Metrics) -> Result<(), TextfileError> {
    static LEFTOVERS: std::sync::Once = std::sync::Once::new();
    LEFTOVERS.call_once(|| {
        remove_leftovers(path);
    });
    let (dir, target) = split(path)?;
    let (tmp, mut file) = create_temp(&dir, &target, path)?;
    let written = (|| {
        file.write_all(metrics.render().as_bytes())?;
        // 0644 whatever the umask: node_exporter runs as another user.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()
    })();
    drop(file);
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(TextfileError::Write { tmp, source });
    }
    // rename(2) replaces whatever is at the target (a file, a link, a
    // FIFO) without following or opening it; a directory there fails.
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(TextfileError::Rename {
            tmp,
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_ours_and_never_prom() {
        let name = temp_name("csum_offload.prom");
        assert!(!name.ends_with(".prom"), "{name}");
        assert!(name.starts_with(".csum_offload.prom."), "{name}");
        assert_eq!(
            temp_pid(&name, "csum_offload.prom"),
            Some(std::process::id())
        );
        assert_ne!(name, temp_name("csum_offload.prom"), "unpredictable");
        for other in [
            "csum_offload.prom",
            "csum_offload.prom.tmp",
            ".csum_offload.prom.12.tmp",
            ".csum_offload.prom.12.0123456789abcdeg.tmp",
            ".csum_offload.prom.12.0123456789ABCDEF.tmp",
            ".csum_offload.prom.x.0123456789abcdef.tmp",
            ".other.prom.12.0123456789abcdef.tmp",
            "node.prom.12.0123456789abcdef.tmp",
        ] {
            assert_eq!(temp_pid(other, "csum_offload.prom"), None, "{other}");
        }
        assert_eq!(
            temp_pid(
                ".csum_offload.prom.12.0123456789abcdef.tmp",
                "csum_offload.prom"
            ),
            Some(12)
        );
    }
}
