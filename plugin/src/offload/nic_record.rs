//! What the uplink placement changed on the node's NICs, so it can be put
//! back: one small JSON file under /run (gone at reboot, as the NICs'
//! changed state is), shared by every process that sets a NIC (the plugin
//! at ADD, the agent) and read by `uninstall` and `agent restore`.
//!
//! Only read and changed under an exclusive lock beside it, replaced by
//! rename after an fsync, and written before the NIC is changed: a crash
//! between the two leaves a record of a state that is still the NIC's,
//! which restoring puts back as it is. A NIC is known by its netns (the
//! nsfs inode: nested or test setups have several host netns), ifindex and
//! name; a NIC re-created since (driver reload) has its defaults back and
//! a new ifindex, so its record is dropped, never applied to it.

use super::pair::{originals, Journal};
use super::tune::{Endpoint, FeaturePlan};
use crate::kernel::ethtool::FeatureState;
use crate::kernel::lock::lock_exclusive_within;
use crate::kernel::netns;
use crate::kernel::private;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the record lives; its lock is beside it (`.lock`).
pub const RECORD_FILE: &str = "/run/csum-offload/uplink-state.json";

/// How long a caller waits for another holder of the lock. Holders keep
/// it for a read, a write and one SFEATURES: milliseconds.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A record file larger than this is not ours to parse.
const MAX_BYTES: u64 = 1 << 20;

/// One NIC's original requested states, before the first change to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRecord {
    /// The netns the NIC is in, "dev:inode" of its nsfs file.
    pub netns: String,
    pub index: u32,
    pub name: String,
    /// Feature name -> requested state before the first change.
    pub features: BTreeMap<String, bool>,
}

/// The record, locked for as long as this value lives.
pub struct NicRecords {
    path: PathBuf,
    _lock: File,
    records: Vec<NicRecord>,
    /// This process's netns, as records name it.
    netns: String,
    /// The NIC being tuned now (index), set by the caller before tuning.
    pub current: Option<u32>,
}

/// A record that could not be locked, read or written; the uplink is left
/// as it is when this happens before a change.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct RecordError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl RecordError {
    /// Another process held the lock past the wait: worth a retry.
    pub fn is_busy(&self) -> bool {
        self.source.kind() == io::ErrorKind::WouldBlock
    }
}

/// A state file's refusal as the I/O error `RecordError` carries (its
/// text kept; `is_busy` looks at the kind only).
fn private_io(e: private::PrivateError) -> io::Error {
    match e {
        private::PrivateError::Io(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

/// The netns of the calling thread, as records name it.
pub fn netns_id() -> io::Result<String> {
    let fd = netns::current()?;
    let st = nix::sys::stat::fstat(&fd)?;
    Ok(format!("{}:{}", st.st_dev, st.st_ino))
}

impl NicRecords {
    /// Locks and reads the record at `path` (creating its directory 0700
    /// and the lock file 0600 as needed).
    pub fn lock(path: &Path) -> Result<Self, RecordError> {
        let err = |source| RecordError {
            path: path.to_path_buf(),
            source,
        };
        let lock_path = path.with_extension("lock");
        let lock = private::open_lock(&lock_path).map_err(|e| RecordError {
            path: lock_path.clone(),
            source: private_io(e),
        })?;
        lock_exclusive_within(&lock, LOCK_WAIT).map_err(|source| RecordError {
            path: lock_path.clone(),
            source: if source.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("held by another process for over {} s", LOCK_WAIT.as_secs()),
                )
            } else {
                source
            },
        })?;
        // Only a record of ours is read (never through a link, never a
        // FIFO, this uid's, writable by nobody else); anything else at the
        // path is an error and left as it is, never taken for "no record".
        let records = match private::read_own(path, MAX_BYTES) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))?,
            Ok(None) => Vec::new(),
            Err(e) => return Err(err(private_io(e))),
        };
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
            records,
            netns: netns_id().map_err(err)?,
            current: None,
        })
    }

    /// The records of NICs in this process's netns.
    pub fn here(&self) -> impl Iterator<Item = &NicRecord> {
        self.records.iter().filter(|r| r.netns == self.netns)
    }

    /// Drops the records of this netns that `done` names (restored, or of
    /// NICs that are gone) and writes the file.
    pub fn forget(&mut self, done: &[(u32, String)]) -> Result<(), RecordError> {
        let netns = self.netns.clone();
        self.records
            .retain(|r| !(r.netns == netns && done.contains(&(r.index, r.name.clone()))));
        self.save()
    }

    /// Replaces the file with the records held (temp file, fsync, rename,
    /// directory fsync); an empty record removes the file.
    fn save(&self) -> Result<(), RecordError> {
        let err = |source| RecordError {
            path: self.path.clone(),
            source,
        };
        if self.records.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            };
        }
        let mut text =
            serde_json::to_vec_pretty(&self.records).map_err(|e| err(io::Error::other(e)))?;
        text.push(b'\n');
        private::replace(&self.path, &text).map_err(err)?;
        Ok(())
    }
}

impl Journal for NicRecords {
    /// Records the original requested state of each bit about to change
    /// that is not recorded yet (the first original is the one to restore).
    fn before_change(
        &mut self,
        target: Endpoint<'_>,
        plan: &FeaturePlan,
        before: &FeatureState,
        changes: &[(usize, bool)],
    ) -> io::Result<()> {
        let Some(index) = self.current else {
            return Ok(());
        };
        let netns = self.netns.clone();
        let position = self
            .records
            .iter()
            .position(|r| r.netns == netns && r.index == index && r.name == target.ifname);
        let position = match position {
            Some(p) => p,
            None => {
                self.records.push(NicRecord {
                    netns,
                    index,
                    name: target.ifname.to_string(),
                    features: BTreeMap::new(),
                });
                self.records.len() - 1
            }
        };
        let record = &mut self.records[position];
        let new = originals(plan, before, changes, |n| record.features.contains_key(n));
        if new.is_empty() {
            return Ok(());
        }
        record.features.extend(new);
        self.save().map_err(|e| e.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_per_netns_and_forgotten_by_name() {
        let dir = crate::unit_dirs::fresh("nicrec", "netns");
        let path = dir.join("sub/uplink-state.json");
        let mut r = NicRecords::lock(&path).unwrap();
        let here = r.netns.clone();
        r.records = vec![
            NicRecord {
                netns: here.clone(),
                index: 3,
                name: "enp1s0".into(),
                features: [("tx-checksum-ipv4".to_string(), true)].into(),
            },
            NicRecord {
                netns: "0:1".into(),
                index: 3,
                name: "enp1s0".into(),
                features: BTreeMap::new(),
            },
        ];
        r.save().unwrap();
        drop(r);
        let mut again = NicRecords::lock(&path).unwrap();
        assert_eq!(again.here().count(), 1);
        again.forget(&[(3, "enp1s0".into())]).unwrap();
        assert_eq!(again.here().count(), 0);
        assert_eq!(again.records.len(), 1, "another netns's record is kept");
        again.forget(&[]).unwrap();
        drop(again);
        // A corrupt record is an error, never silently an empty one: the
        // originals it holds would be lost.
        std::fs::write(&path, b"[{\"netns\": ").unwrap();
        let e = NicRecords::lock(&path).err().unwrap();
        assert_eq!(e.source.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_that_is_not_ours_is_refused_and_left_as_it_is() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::unit_dirs::fresh("nicrec", "foreign");
        let target = dir.join("theirs.json");
        std::fs::write(&target, b"[]").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.join("uplink-state.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = NicRecords::lock(&path).err().unwrap();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = NicRecords::lock(&path).err().unwrap();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        std::fs::remove_file(&path).unwrap();
        std::fs::copy(&target, &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622)).unwrap();
        let e = NicRecords::lock(&path).err().unwrap();
        assert!(e.to_string().contains("has mode 0622"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"[]");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_held_lock_is_waited_for_then_reported_busy() {
        let dir = crate::unit_dirs::fresh("nicrec", "busy");
        let path = dir.join("uplink-state.json");
        let held = NicRecords::lock(&path).unwrap();
        // A second open file description of the lock conflicts with the
        // first, as another process's would.
        let t0 = std::time::Instant::now();
        let e = NicRecords::lock(&path).err().unwrap();
        assert!(e.is_busy(), "{e}");
        assert!(t0.elapsed() >= LOCK_WAIT);
        drop(held);
        NicRecords::lock(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
