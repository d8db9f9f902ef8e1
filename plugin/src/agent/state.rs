//! What the agent changed, so that `agent restore` can put it back: before
//! its first change to an interface, the agent appends that interface's
//! original feature states to a root-only file under /run (one JSON line
//! per end, synced before the change is made).
//!
//! An interface is known by its host end (ifindex, name, peer ifindex): an
//! ifindex is not reused while the interface exists, and records of pairs
//! that are gone are dropped at every full pass.

use crate::kernel::ethtool::FeatureState;
use crate::kernel::private;
use crate::offload::pair::{originals, Journal};
use crate::offload::tune::{End, Endpoint, FeaturePlan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_FILE: &str = "/run/csum-offload/agent-state.jsonl";

/// The host end that names a pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairId {
    pub host_index: u32,
    pub host: String,
    pub peer_index: u32,
}

/// One end's original states, before the agent's first change to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub pair: PairId,
    /// "host" or "container".
    pub end: String,
    /// Feature name -> requested state before the change (what `ethtool -K`
    /// had asked for: sending it back puts the kernel where it was).
    pub features: BTreeMap<String, bool>,
}

/// The journal file, open for appending.
pub struct StateFile {
    path: PathBuf,
    file: File,
    /// What is recorded already, so only the first original is kept.
    records: Vec<Record>,
    /// The pair being tuned now (set by the caller before each pair).
    pub current: Option<PairId>,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct StateError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl StateFile {
    /// Opens (creating 0600, its directory 0700) the journal and reads
    /// what it holds.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let err = |source| StateError {
            path: path.to_path_buf(),
            source,
        };
        private::make_dir_of(path).map_err(err)?;
        let records = load(path).map_err(err)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(err)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            records,
            current: None,
        })
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Keeps only the records `keep` accepts (pairs that still exist);
    /// rewrites the file when that drops any.
    pub fn retain(&mut self, keep: impl Fn(&PairId) -> bool) -> Result<usize, StateError> {
        let before = self.records.len();
        self.records.retain(|r| keep(&r.pair));
        let dropped = before - self.records.len();
        if dropped > 0 {
            self.rewrite()?;
        }
        Ok(dropped)
    }

    /// Keeps exactly `records` (what a restore did not put back).
    pub fn replace(&mut self, records: Vec<Record>) -> Result<(), StateError> {
        self.records = records;
        self.rewrite()
    }

    /// Replaces the file with the records held (temp file, fsync, rename,
    /// directory fsync).
    pub fn rewrite(&mut self) -> Result<(), StateError> {
        let err = |source| StateError {
            path: self.path.clone(),
            source,
        };
        let text: String = self.records.iter().map(line).collect();
        private::replace(&self.path, text.as_bytes()).map_err(err)?;
        self.file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(err)?;
        Ok(())
    }

    fn append(&mut self, record: Record) -> io::Result<()> {
        self.file.write_all(line(&record).as_bytes())?;
        self.file.sync_data()?;
        self.records.push(record);
        Ok(())
    }
}

fn line(r: &Record) -> String {
    let mut s = serde_json::to_string(r).unwrap_or_default();
    s.push('\n');
    s
}

/// The records of a journal; a missing file is an empty one, and a line
/// that does not parse (a write cut by a crash) is skipped.
pub fn load(path: &Path) -> io::Result<Vec<Record>> {
    let bytes = match crate::fsread::read_regular(path, 64 << 20) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::other(e)),
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

impl Journal for StateFile {
    fn before_change(
        &mut self,
        target: Endpoint<'_>,
        plan: &FeaturePlan,
        before: &FeatureState,
        changes: &[(usize, bool)],
    ) -> io::Result<()> {
        let Some(pair) = self.current.clone() else {
            return Ok(());
        };
        let end = match target.end {
            End::Host => "host",
            End::Container => "container",
            // NICs are in the uplink record (offload::nic_record).
            End::Nic => return Ok(()),
        };
        let known: Vec<&String> = self
            .records
            .iter()
            .filter(|r| r.pair == pair && r.end == end)
            .flat_map(|r| r.features.keys())
            .collect();
        let features = originals(plan, before, changes, |n| known.iter().any(|k| *k == n));
        if features.is_empty() {
            return Ok(());
        }
        self.append(Record {
            pair,
            end: end.to_string(),
            features,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("csum-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/state.jsonl");
        let mut state = StateFile::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let pair = PairId {
            host_index: 7,
            host: "veth1".into(),
            peer_index: 2,
        };
        state
            .append(Record {
                pair: pair.clone(),
                end: "host".into(),
                features: [("tx-checksum-ip-generic".to_string(), true)].into(),
            })
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"host_index\": 9, \"hos")
            .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].pair, pair);
        let mut again = StateFile::open(&path).unwrap();
        assert_eq!(again.retain(|p| p.host_index != 7).unwrap(), 1);
        assert!(load(&path).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
