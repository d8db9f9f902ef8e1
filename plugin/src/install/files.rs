//! The installer's filesystem side: reading the conf dir, running a plan
//! with atomic writes, and copying the binary.
//!
//! Every write goes to a temp file in the same directory (a name runtimes
//! never load: no `.conf`/`.conflist`/`.json` ending), is fsynced, then
//! renamed over the target, so a runtime or a crash never sees half a file.

use super::edit::{Step, BACKUP_SUFFIX};
use super::select::{is_config_name, ConfFile};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Config files larger than this are not network configs.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Prefix of our temp files; also how stale ones are recognised.
pub const TEMP_PREFIX: &str = ".csum-offload.tmp-";

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The file changed between our read and our write: plan again.
    #[error("{0} changed while it was being edited; will read it again")]
    Changed(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The conf dir as read at one moment: config files and our backups.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub files: Vec<ConfFile>,
    stamps: Vec<(String, Stamp)>,
    /// Age of each file's content (for "just being written" checks).
    pub ages: Vec<(String, std::time::Duration)>,
}

impl Snapshot {
    pub fn read(dir: &Path) -> Result<Self, FsError> {
        let mut snap = Snapshot::default();
        for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
            let dirent = dirent.map_err(io_err(dir))?;
            let Ok(name) = dirent.file_name().into_string() else {
                continue;
            };
            if !is_config_name(&name) && !name.ends_with(BACKUP_SUFFIX) {
                continue;
            }
            let path = dir.join(&name);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                // Gone since the listing, or a dangling link: not a config.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            let meta = file.metadata().map_err(io_err(&path))?;
            if meta.is_dir() {
                continue;
            }
            let mut bytes = Vec::new();
            Read::by_ref(&mut file)
                .take(MAX_CONFIG_BYTES)
                .read_to_end(&mut bytes)
                .map_err(io_err(&path))?;
            if let Ok(modified) = meta.modified() {
                let age = modified.elapsed().unwrap_or_default();
                snap.ages.push((name.clone(), age));
            }
            snap.stamps.push((name.clone(), Stamp::of(&meta)));
            snap.files.push(ConfFile { name, bytes });
        }
        snap.files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(snap)
    }

    pub fn age(&self, name: &str) -> Option<std::time::Duration> {
        self.ages.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Fails if `name` is not the version this snapshot read.
    fn check_unchanged(&self, dir: &Path, name: &str) -> Result<(), FsError> {
        let path = dir.join(name);
        let now = match fs::metadata(&path) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let then = self.stamps.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
        if now == then {
            Ok(())
        } else {
            Err(FsError::Changed(path))
        }
    }

    /// Runs a plan made from this snapshot. Before each step touches a
    /// file, it checks the file is still the version that was read, so a
    /// concurrent rewrite by the primary CNI is never overwritten with an
    /// edit of its old content (the caller plans again instead).
    pub fn execute(&self, dir: &Path, plan: &[Step]) -> Result<(), FsError> {
        let mut touched: Vec<&str> = Vec::new();
        for step in plan {
            match step {
                Step::Write {
                    name,
                    bytes,
                    mode_from,
                } => {
                    if !touched.contains(&name.as_str()) {
                        self.check_unchanged(dir, name)?;
                    }
                    let mode = fs::metadata(dir.join(mode_from))
                        .map(|m| m.permissions().mode() & 0o7777)
                        .unwrap_or(0o644);
                    write_atomic(dir, name, bytes, mode)?;
                    touched.push(name);
                }
                Step::Rename { from, to } => {
                    self.check_unchanged(dir, from)?;
                    let (src, dst) = (dir.join(from), dir.join(to));
                    fs::rename(&src, &dst).map_err(io_err(&src))?;
                    sync_dir(dir)?;
                    touched.push(to);
                }
                Step::Remove { name } => {
                    if !touched.contains(&name.as_str()) {
                        self.check_unchanged(dir, name)?;
                    }
                    let path = dir.join(name);
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&path)(e)),
                    }
                    sync_dir(dir)?;
                }
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `dir/name` atomically with `mode`: temp file, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let (tmp_path, mut tmp) = create_temp(dir, mode)?;
    let result = (|| {
        tmp.write_all(bytes).map_err(io_err(&tmp_path))?;
        // The umask may have narrowed the mode given at creation.
        tmp.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp_path))?;
        tmp.sync_all().map_err(io_err(&tmp_path))?;
        // Closed before the rename: once the name is the target's, a
        // runtime may exec it, and exec fails with ETXTBSY ("Text file
        // busy") while any process holds the file open for writing.
        drop(tmp);
        let target = dir.join(name);
        fs::rename(&tmp_path, &target).map_err(io_err(&target))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

/// A new temp file in `dir`, named so no runtime loads it.
fn create_temp(dir: &Path, mode: u32) -> Result<(PathBuf, File), FsError> {
    let mut last = None;
    for attempt in 0..100u32 {
        let path = dir.join(format!("{TEMP_PREFIX}{}-{attempt}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
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

/// Removes temp files a killed installer left behind (older than a minute,
/// so a concurrent installer's file in flight is left alone).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let stale = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 60);
        if name.to_string_lossy().starts_with(TEMP_PREFIX) && stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Copies `src` to `dir/name` (mode 0755) unless it already has the same
/// bytes. Returns whether it wrote. A runtime executing the plugin during
/// the copy runs the old file or the new one, never a partial one.
pub fn install_binary(src: &Path, dir: &Path, name: &str) -> Result<bool, FsError> {
    let new = fs::read(src).map_err(io_err(src))?;
    let target = dir.join(name);
    match fs::read(&target) {
        Ok(old) if old == new => {
            let mode = fs::metadata(&target)
                .map_err(io_err(&target))?
                .permissions()
                .mode();
            if mode & 0o111 == 0o111 {
                return Ok(false);
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&target)(e)),
    }
    write_atomic(dir, name, &new, 0o755)?;
    Ok(true)
}

/// Whether `dir/name` is an executable regular file.
pub fn binary_present(dir: &Path, name: &str) -> bool {
    fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Removes `dir/name`; a missing file is fine.
pub fn remove_binary(dir: &Path, name: &str) -> Result<bool, FsError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("csum-offload-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temp() {
        let dir = tempdir("mode");
        fs::write(dir.join("10-a.conflist"), "{}").unwrap();
        fs::set_permissions(dir.join("10-a.conflist"), fs::Permissions::from_mode(0o600)).unwrap();
        let snap = Snapshot::read(&dir).unwrap();
        let step = Step::Write {
            name: "10-a.conflist".into(),
            bytes: b"{\"x\":1}\n".to_vec(),
            mode_from: "10-a.conflist".into(),
        };
        snap.execute(&dir, &[step]).unwrap();
        let meta = fs::metadata(dir.join("10-a.conflist")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::read(dir.join("10-a.conflist")).unwrap(), b"{\"x\":1}\n");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["10-a.conflist"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_concurrent_rewrite_aborts_the_plan() {
        let dir = tempdir("race");
        fs::write(dir.join("10-a.conflist"), "{}").unwrap();
        let snap = Snapshot::read(&dir).unwrap();
        // Another writer replaces the file after our read.
        fs::write(dir.join("x"), "{\"new\":1}").unwrap();
        fs::rename(dir.join("x"), dir.join("10-a.conflist")).unwrap();
        let step = Step::Write {
            name: "10-a.conflist".into(),
            bytes: b"{}".to_vec(),
            mode_from: "10-a.conflist".into(),
        };
        assert!(matches!(
            snap.execute(&dir, &[step]),
            Err(FsError::Changed(_))
        ));
        assert_eq!(fs::read(dir.join("10-a.conflist")).unwrap(), b"{\"new\":1}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn binary_copy_is_skipped_when_identical() {
        let dir = tempdir("bin");
        fs::write(dir.join("src"), b"\x7fELF v1").unwrap();
        assert!(install_binary(&dir.join("src"), &dir, "plugin").unwrap());
        assert!(binary_present(&dir, "plugin"));
        assert!(!install_binary(&dir.join("src"), &dir, "plugin").unwrap());
        fs::write(dir.join("src"), b"\x7fELF v2").unwrap();
        assert!(install_binary(&dir.join("src"), &dir, "plugin").unwrap());
        assert_eq!(fs::read(dir.join("plugin")).unwrap(), b"\x7fELF v2");
        assert!(remove_binary(&dir, "plugin").unwrap());
        assert!(!remove_binary(&dir, "plugin").unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
