//! The core every front end calls: node facts -> decision -> tune the
//! interfaces -> read back.
//!
//! - `wanted`: what the entry asks of the core (`Placement`, `NonVeth`,
//!   the `Wanted` trait `config::Config` implements).
//! - `features`: kernel feature names and ethtool's aliases (pure).
//! - `settings`: what a policy asks of an interface (`tx: false`), merged
//!   across NICs with "off wins".
//! - `policy`: rules, then the driver table: a NIC -> settings, and why.
//! - `rules`: rules that match driver, versions, firmware, kernel, PCI id.
//! - `detection`: node facts (`find_uplink`): the default route down to the NIC(s) and their
//!   drivers.
//! - `decision`: `decide`, the one place that turns a config and the node's
//!   facts into the settings pods get, with the reasons.
//! - `veth`: a pod's interface and its host peer, by kernel pointers.
//! - `tune`: settings -> this kernel's feature bits, one SFEATURES per
//!   interface, read back and judged.
//! - `pair`: one veth pair: the ends a placement names, read before any
//!   change, tuned with one plan, a journal told before each change.
//! - `nics`: the uplink placement: the settings on the NIC(s) themselves,
//!   node-wide, with `nic_record` (what they were, for a restore).
//! - `pod`: the pod job the CNI verbs run: all of the above for one pod.
//! - `probe`: `csum-offload probe`: the same TCP transfer from a pod with
//!   TX checksum offload on and off, and the verdict.

pub mod decision;
pub mod detection;
pub mod features;
pub mod nic_record;
pub mod nics;
pub mod pair;
pub mod pod;
pub mod policy;
pub mod probe;
pub mod rules;
pub mod settings;
pub mod tune;
pub mod veth;
pub mod wanted;

use std::io;

/// A kernel call that failed, with what it was for.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct KernelError {
    pub what: String,
    pub source: io::Error,
}

impl KernelError {
    pub fn new(what: &str, source: io::Error) -> Self {
        Self {
            what: what.to_string(),
            source,
        }
    }

    /// Errnos that mean "busy now, may work if tried again".
    /// Also a netlink dump the kernel kept interrupting (a table that
    /// changed under every attempt): asked again later, it will do.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::EAGAIN | libc::EBUSY | libc::EINTR)
        ) || self.source.kind() == std::io::ErrorKind::Interrupted
    }
}
