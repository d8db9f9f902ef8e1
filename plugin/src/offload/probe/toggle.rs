//! TX checksum offload on the probed interface, on or off for one attempt,
//! then put back exactly: the requested state of every `tx-checksum-*` bit
//! the device can change is recorded before the first change and sent
//! back in one SFEATURES. The kernel derives the rest (TSO follows TX
//! checksumming) from the requested bits, so `ethtool -k` reads as before.
//!
//! A probe killed with SIGKILL cannot put anything back, so in a real
//! pod's netns (`--netns`) the original state is first written to a
//! root-only record (`kernel::private`), and every probe starts by putting
//! back what such a record holds, then removing it. A lock beside the
//! record keeps two probes from taking each other's record for a leftover.

use super::{Mode, ProbeError};
use crate::kernel::{ethtool, lock, netlink::RouteSocket, netns, private};
use crate::offload::features::FeatureSelector;
use crate::offload::tune::restore_requested;
use crate::offload::KernelError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default record of a `--netns` probe.
pub const STATE_FILE: &str = "/run/csum-offload/probe-state.json";
/// A record is small; anything larger is not ours.
const RECORD_MAX: u64 = 64 * 1024;
/// How long a probe waits for another one to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// One interface's TX checksum bits, and what they were.
pub struct TxToggle<'s> {
    fd: BorrowedFd<'s>,
    ifname: String,
    names: Vec<String>,
    /// The changeable `tx-checksum-*` bits.
    bits: Vec<usize>,
    /// Their requested state before the probe, by name.
    original: BTreeMap<String, bool>,
}

impl<'s> TxToggle<'s> {
    /// Reads `ifname`'s TX checksum bits on `fd` (a socket of its netns).
    pub fn read(fd: BorrowedFd<'s>, ifname: &str, netns: &str) -> Result<Self, ProbeError> {
        let kernel = |what: &str, e| KernelError::new(&format!("{what} {ifname}"), e);
        let names = ethtool::feature_names(fd, ifname)
            .map_err(|e| kernel("reading the feature names of", e))?;
        let state = ethtool::features(fd, ifname, names.len())
            .map_err(|e| kernel("reading the features of", e))?;
        let tx = FeatureSelector::parse("tx").ok_or_else(|| ProbeError::NoTxChecksum {
            ifname: ifname.to_string(),
            netns: netns.to_string(),
        })?;
        let bits: Vec<usize> = tx
            .members(&names)
            .map(|(i, _)| i)
            .filter(|&i| state.changeable(i))
            .collect();
        if bits.is_empty() {
            return Err(ProbeError::NoTxChecksum {
                ifname: ifname.to_string(),
                netns: netns.to_string(),
            });
        }
        let original = bits
            .iter()
            .map(|&i| (names[i].clone(), state.requested(i)))
            .collect();
        Ok(Self {
            fd,
            ifname: ifname.to_string(),
            names,
            bits,
            original,
        })
    }

    /// The requested state of the bits before any change.
    pub fn original(&self) -> &BTreeMap<String, bool> {
        &self.original
    }

    /// Turns every changeable TX checksum bit on or off, and reads back
    /// that it took: an attempt with a state other than `mode` would
    /// measure the wrong thing.
    pub fn set(&self, mode: Mode) -> Result<(), ProbeError> {
        let on = mode == Mode::On;
        let changes: Vec<(usize, bool)> = self.bits.iter().map(|&i| (i, on)).collect();
        let kernel = |what: &str, e| KernelError::new(&format!("{what} {}", self.ifname), e);
        ethtool::set_features(self.fd, &self.ifname, self.names.len(), &changes)
            .map_err(|e| kernel("setting TX checksum offload on", e))?;
        let state = ethtool::features(self.fd, &self.ifname, self.names.len())
            .map_err(|e| kernel("reading back the features of", e))?;
        if self.bits.iter().any(|&i| state.active(i)) != on {
            return Err(ProbeError::ToggleRefused {
                ifname: self.ifname.clone(),
                mode,
            });
        }
        Ok(())
    }

    /// Puts the bits back as they were.
    pub fn restore(&self) -> Result<(), ProbeError> {
        restore_requested(self.fd, &self.ifname, &self.original).map_err(|e| {
            KernelError::new(&format!("restoring the features of {}", self.ifname), e).into()
        })
    }
}

/// What a `--netns` probe changes, written before the change: enough to
/// find the same interface in the same netns and put its bits back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub netns: PathBuf,
    /// The netns file's identity (nsfs device and inode) when recorded.
    pub dev: u64,
    pub ino: u64,
    pub ifname: String,
    pub ifindex: u32,
    pub features: BTreeMap<String, bool>,
}

/// The record file and the lock held while a probe runs.
pub struct StateFile {
    path: PathBuf,
    _lock: File,
}

impl StateFile {
    /// Locks `<path>.lock` (waiting at most LOCK_WAIT for another probe).
    pub fn lock(path: &Path) -> Result<Self, ProbeError> {
        let err = |source| ProbeError::State {
            path: path.display().to_string(),
            source,
        };
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let file = private::open_lock(Path::new(&lock_path)).map_err(err)?;
        lock::lock_exclusive_within(&file, LOCK_WAIT)
            .map_err(|e| err(private::PrivateError::Io(e)))?;
        Ok(Self {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    fn err(&self, source: private::PrivateError) -> ProbeError {
        ProbeError::State {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Writes `record` (synced, replaced whole) before the change it
    /// describes.
    pub fn write(&self, record: &Record) -> Result<(), ProbeError> {
        private::check_path(&self.path).map_err(|e| self.err(e))?;
        let bytes =
            serde_json::to_vec(record).map_err(|e| self.err(std::io::Error::from(e).into()))?;
        private::replace(&self.path, &bytes).map_err(|e| self.err(e.into()))
    }

    pub fn clear(&self) -> Result<(), ProbeError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.err(e.into())),
            _ => Ok(()),
        }
    }

    /// Puts back what a killed probe's record holds, then removes it; what
    /// was done, for the report. A record whose netns or interface is gone
    /// (the pod was deleted: nothing left to restore) is removed too.
    pub fn restore_leftover(&self) -> Result<Option<String>, ProbeError> {
        let Some(bytes) = private::read_own(&self.path, RECORD_MAX).map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let done = match serde_json::from_slice::<Record>(&bytes) {
            Ok(record) => restore_record(&record)?,
            Err(e) => format!("an unreadable record ({e}) was removed"),
        };
        self.clear()?;
        Ok(Some(done))
    }
}

/// The netns file's (device, inode).
pub fn identity(fd: impl AsFd) -> std::io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

fn restore_record(r: &Record) -> Result<String, ProbeError> {
    let where_ = format!("{} in {}", r.ifname, r.netns.display());
    let Ok(target) = netns::open(&r.netns) else {
        return Ok(format!("{where_}: the netns is gone, nothing to restore"));
    };
    if identity(&target).ok() != Some((r.dev, r.ino)) {
        return Ok(format!("{where_}: another netns now, nothing restored"));
    }
    let kernel = |what: &str, e| KernelError::new(what, e);
    let home = netns::current().map_err(|e| kernel("opening this netns", e))?;
    let mut socket = netns::run_in(&target, &home, RouteSocket::open)
        .and_then(|s| s)
        .map_err(|e| kernel(&format!("opening a socket in {}", r.netns.display()), e))?;
    let link = socket
        .link_by_index(r.ifindex)
        .map_err(|e| kernel(&format!("looking up {where_}"), e))?;
    if link.is_none_or(|l| l.name != r.ifname) {
        return Ok(format!(
            "{where_}: the interface is gone, nothing to restore"
        ));
    }
    restore_requested(socket.fd(), &r.ifname, &r.features)
        .map_err(|e| kernel(&format!("restoring the features of {where_}"), e))?;
    Ok(format!(
        "{where_}: put back the TX checksum features a killed probe had changed"
    ))
}
