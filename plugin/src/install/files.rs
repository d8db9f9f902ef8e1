//! Running a plan against the conf dir, and copying the binary.
//!
//! A plan is made from a `Snapshot`; each step touches a file only if it
//! is still the version the snapshot read (checked first by its stamp,
//! then for a rewrite by what `commit::replace` swaps out), so a rewrite by
//! the primary CNI is never overwritten with an edit of its old content:
//! the caller plans again. A symlinked config is edited at its target, the
//! link kept; owner, group and mode stay as they were.

use super::commit::{self, current_owner, io_err, FsError};
use super::edit::{Step, BACKUP_SUFFIX};
use super::snapshot::Snapshot;
use crate::fsread;
use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The binary is copied only from this process's own executable: a bound
/// far above its size (a few MiB).
const MAX_BINARY_BYTES: u64 = 256 << 20;

impl Snapshot {
    /// Runs a plan made from this snapshot (see the module doc).
    pub fn execute(&self, dir: &Path, plan: &[Step]) -> Result<(), FsError> {
        for step in plan {
            match step {
                Step::Write {
                    name,
                    bytes,
                    mode_from,
                } => {
                    // The owner and mode of the file the content came from
                    // (itself, or the .conf it was converted from).
                    let own = self
                        .seen(mode_from)
                        .map(|s| s.ownership)
                        .unwrap_or(current_owner(0o644));
                    match (self.seen(name), self.bytes(name)) {
                        (Some(seen), Some(expected)) => {
                            self.check_unchanged(dir, name)?;
                            commit::replace(&seen.target, bytes, expected, own)?;
                        }
                        _ => commit::create(&dir.join(name), bytes, own)?,
                    }
                }
                Step::Rename { from, to } => {
                    self.check_unchanged(dir, from)?;
                    // Setting an original aside replaces an older backup
                    // of it (ours); bringing it back never replaces a file
                    // the primary CNI has written since.
                    commit::rename(dir, from, to, to.ends_with(BACKUP_SUFFIX))?;
                }
                Step::Remove { name } => {
                    self.check_unchanged(dir, name)?;
                    match (self.seen(name), self.bytes(name)) {
                        // A link goes; what it points to stays.
                        (Some(seen), _) if seen.is_symlink => {
                            remove_if_there(&dir.join(name))?;
                            commit::sync_dir(dir)?;
                        }
                        (Some(_), Some(expected)) => commit::remove(&dir.join(name), expected)?,
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

fn remove_if_there(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Copies `src` to `dir/name` (mode 0755) unless it already has the same
/// bytes. Returns whether it wrote. A runtime executing the plugin during
/// the copy runs the old file or the new one, never a partial one, and
/// never fails with ETXTBSY (see `commit`).
pub fn install_binary(src: &Path, dir: &Path, name: &str) -> Result<bool, FsError> {
    let new = fsread::read_regular(src, MAX_BINARY_BYTES).map_err(|e| read_err(src, e))?;
    let target = dir.join(name);
    // A FIFO or a device in its place is not read (it could block); it is
    // replaced like any other stale file.
    if let Ok(old) = fsread::read_regular(&target, new.len() as u64) {
        let executable = fs::metadata(&target)
            .map_err(io_err(&target))?
            .permissions()
            .mode()
            & 0o111
            == 0o111;
        if old == new && executable {
            return Ok(false);
        }
    }
    commit::write_atomic(dir, name, &new, 0o755)?;
    Ok(true)
}

fn read_err(path: &Path, e: fsread::ReadError) -> FsError {
    match e {
        fsread::ReadError::Io(source) => io_err(path)(source),
        other => io_err(path)(io::Error::other(other.to_string())),
    }
}

/// Whether `dir/name` is an executable regular file.
pub fn binary_present(dir: &Path, name: &str) -> bool {
    fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What `remove_binary` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotThere,
    /// A config that names the plugin appeared after the first look; the
    /// binary is back in place (or a newer one took its place meanwhile).
    Kept,
}

/// Removes `dir/name` when `still_unused` agrees. The binary is first moved
/// aside (one rename in the same dir), then `still_unused` looks again: a
/// config written between the caller's look and the move would otherwise
/// name a binary that is gone for good. If it now says no, the binary goes
/// back, without replacing one an installer copied there meanwhile.
pub fn remove_binary(
    dir: &Path,
    name: &str,
    still_unused: impl FnOnce() -> Result<bool, FsError>,
) -> Result<Removal, FsError> {
    let path = dir.join(name);
    let parked = dir.join(format!(".{name}.removing-{}", std::process::id()));
    match fs::rename(&path, &parked) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::NotThere),
        Err(e) => return Err(io_err(&path)(e)),
    }
    let unused = still_unused();
    if !matches!(unused, Ok(true)) {
        match renameat2(
            nix::fcntl::AT_FDCWD,
            &parked,
            nix::fcntl::AT_FDCWD,
            &path,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {}
            // A newer binary is in place: it serves the config.
            Err(Errno::EEXIST) => fs::remove_file(&parked).map_err(io_err(&parked))?,
            // No RENAME_NOREPLACE here: a plain rename, unless one appeared.
            Err(_) if !path.exists() => fs::rename(&parked, &path).map_err(io_err(&path))?,
            Err(_) => fs::remove_file(&parked).map_err(io_err(&parked))?,
        }
        return unused.map(|_| Removal::Kept);
    }
    fs::remove_file(&parked).map_err(io_err(&parked))?;
    Ok(Removal::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn write(name: &str, bytes: &[u8]) -> Step {
        Step::Write {
            name: name.into(),
            bytes: bytes.to_vec(),
            mode_from: name.into(),
        }
    }

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temp() {
        let dir = crate::unit_dirs::fresh("files", "mode");
        fs::write(dir.join("10-a.conflist"), "{}").unwrap();
        fs::set_permissions(dir.join("10-a.conflist"), fs::Permissions::from_mode(0o600)).unwrap();
        let snap = Snapshot::read(&dir).unwrap();
        snap.execute(&dir, &[write("10-a.conflist", b"{\"x\":1}\n")])
            .unwrap();
        let meta = fs::metadata(dir.join("10-a.conflist")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::read(dir.join("10-a.conflist")).unwrap(), b"{\"x\":1}\n");
        assert_eq!(crate::unit_dirs::names(&dir), ["10-a.conflist"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_concurrent_rewrite_aborts_the_plan() {
        let dir = crate::unit_dirs::fresh("files", "race");
        fs::write(dir.join("10-a.conflist"), "{}").unwrap();
        let snap = Snapshot::read(&dir).unwrap();
        // Another writer replaces the file after our read.
        fs::write(dir.join("x"), "{\"new\":1}").unwrap();
        fs::rename(dir.join("x"), dir.join("10-a.conflist")).unwrap();
        assert!(matches!(
            snap.execute(&dir, &[write("10-a.conflist", b"{}")]),
            Err(FsError::Changed(_))
        ));
        assert_eq!(fs::read(dir.join("10-a.conflist")).unwrap(), b"{\"new\":1}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_config_is_edited_at_its_target_and_stays_a_link() {
        let dir = crate::unit_dirs::fresh("files", "link");
        let real = dir.join("real");
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join("calico.conflist"), "{}").unwrap();
        fs::set_permissions(
            real.join("calico.conflist"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let conf = dir.join("net.d");
        fs::create_dir_all(&conf).unwrap();
        symlink("../real/calico.conflist", conf.join("10-calico.conflist")).unwrap();
        let snap = Snapshot::read(&conf).unwrap();
        snap.execute(&conf, &[write("10-calico.conflist", b"{\"edited\":1}")])
            .unwrap();
        let link = fs::symlink_metadata(conf.join("10-calico.conflist")).unwrap();
        assert!(link.file_type().is_symlink(), "the link stays a link");
        assert_eq!(
            fs::read(real.join("calico.conflist")).unwrap(),
            b"{\"edited\":1}"
        );
        let meta = fs::metadata(real.join("calico.conflist")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(
            crate::unit_dirs::names(&real),
            ["calico.conflist"],
            "no temp left next to the target"
        );
        // Removing a linked list removes the link, not its target.
        let snap = Snapshot::read(&conf).unwrap();
        snap.execute(
            &conf,
            &[Step::Remove {
                name: "10-calico.conflist".into(),
            }],
        )
        .unwrap();
        assert!(crate::unit_dirs::names(&conf).is_empty());
        assert!(real.join("calico.conflist").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_binary_wanted_again_by_the_second_look_stays() {
        let dir = crate::unit_dirs::fresh("files", "late");
        fs::write(dir.join("plugin"), b"old").unwrap();
        // A config appeared after the first look: the binary goes back.
        let kept = remove_binary(&dir, "plugin", || {
            assert!(!dir.join("plugin").exists(), "moved aside during the look");
            Ok(false)
        });
        assert_eq!(kept.unwrap(), Removal::Kept);
        assert_eq!(fs::read(dir.join("plugin")).unwrap(), b"old");
        // An installer copied a newer binary meanwhile: it is not replaced.
        let kept = remove_binary(&dir, "plugin", || {
            fs::write(dir.join("plugin"), b"new").unwrap();
            Ok(false)
        });
        assert_eq!(kept.unwrap(), Removal::Kept);
        assert_eq!(fs::read(dir.join("plugin")).unwrap(), b"new");
        // The look itself failed: the binary stays, and the error is told.
        let failed = remove_binary(&dir, "plugin", || {
            Err(io_err(&dir)(io::Error::other("unreadable")))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(dir.join("plugin")).unwrap(), b"new");
        // Nothing parked is left behind.
        assert_eq!(crate::unit_dirs::names(&dir), ["plugin"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn owner_and_group_are_kept() {
        let dir = crate::unit_dirs::fresh("files", "owner");
        let path = dir.join("10-a.conflist");
        fs::write(&path, "{}").unwrap();
        std::os::unix::fs::chown(&path, Some(4242), Some(4343)).unwrap();
        let snap = Snapshot::read(&dir).unwrap();
        snap.execute(&dir, &[write("10-a.conflist", b"{\"x\":2}")])
            .unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn binary_copy_is_skipped_when_identical() {
        let dir = crate::unit_dirs::fresh("files", "bin");
        fs::write(dir.join("src"), b"\x7fELF v1").unwrap();
        assert!(install_binary(&dir.join("src"), &dir, "plugin").unwrap());
        assert!(binary_present(&dir, "plugin"));
        assert!(!install_binary(&dir.join("src"), &dir, "plugin").unwrap());
        fs::write(dir.join("src"), b"\x7fELF v2").unwrap();
        assert!(install_binary(&dir.join("src"), &dir, "plugin").unwrap());
        assert_eq!(fs::read(dir.join("plugin")).unwrap(), b"\x7fELF v2");
        // A FIFO in its place is replaced, never opened.
        fs::remove_file(dir.join("plugin")).unwrap();
        nix::unistd::mkfifo(
            &dir.join("plugin"),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        assert!(install_binary(&dir.join("src"), &dir, "plugin").unwrap());
        assert!(binary_present(&dir, "plugin"));
        let unused = || Ok(true);
        assert_eq!(
            remove_binary(&dir, "plugin", unused).unwrap(),
            Removal::Removed
        );
        assert_eq!(
            remove_binary(&dir, "plugin", unused).unwrap(),
            Removal::NotThere
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
