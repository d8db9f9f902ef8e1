//! What the entry asks of the core, in the core's own terms: where the
//! settings go, what a pod interface that is not a veth means, and the
//! `Wanted` trait through which `decide` and the pod job read the entry.
//! The entry (`config::Config`) is parsed above the core and implements
//! `Wanted`, so dependencies point one way: `config` uses `offload`, never
//! the reverse.

use super::policy::Policy;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// Where the settings go: which ends of the veth pair, or the host NIC(s)
/// instead of any veth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Both,
    Container,
    Host,
    /// The NIC(s) detection found (the leaves under a bond, vlan, bridge
    /// or macvlan): node-wide state, see `offload::nics`.
    Uplink,
}

impl Placement {
    /// Whether the container end of a pod's veth gets the settings.
    pub fn container(self) -> bool {
        matches!(self, Placement::Both | Placement::Container)
    }
    /// Whether the host end of a pod's veth gets the settings.
    pub fn host(self) -> bool {
        matches!(self, Placement::Both | Placement::Host)
    }
}

/// What to do when CNI_IFNAME is not a veth (macvlan, ipvlan, SR-IOV VF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonVeth {
    /// Log and pass through: such interfaces have no veth to fix.
    Skip,
    /// Fail the ADD: for clusters where every pod must be on a veth.
    Fail,
}

/// What decides whether this node's pods get the fix (`detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Detection {
    /// The policy (rules, drivers, default) on the detected NIC's facts.
    Table,
    /// The node agent's last probe verdict: the fix only on `broken`.
    Probe,
    /// The table decides; the verdict is shown beside it, and a
    /// disagreement between them reported.
    Both,
}

impl Detection {
    pub fn name(self) -> &'static str {
        match self {
            Detection::Table => "table",
            Detection::Probe => "probe",
            Detection::Both => "both",
        }
    }
}

/// The `probe` field: what the node agent probes, how often, and where
/// it keeps the verdict every `decide` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// A TCP listener off the node, reached through the uplink.
    pub target: SocketAddrV4,
    /// The throwaway pod's address (an unused address of the pod CIDR).
    pub source: Ipv4Addr,
    /// How often the agent probes (and at start, and when the uplink
    /// changes).
    pub interval: Duration,
    /// The agent's last verdict: written by the agent, read by ADD.
    pub verdict_file: PathBuf,
}

impl ProbeSpec {
    /// A verdict older than this is stale, and means no change: two
    /// intervals (one probe missed) and a minute for the probe itself.
    pub fn max_age(&self) -> Duration {
        self.interval.saturating_mul(2) + Duration::from_secs(60)
    }
}

/// The fields of a validated entry the core decides and acts on.
pub trait Wanted {
    /// `hostInterface`: the uplink to inspect instead of the default routes'.
    fn host_interface(&self) -> Option<&str>;
    /// `hostDriver`: the driver to assume, skipping detection.
    fn host_driver(&self) -> Option<&str>;
    /// The driver table and rules, with the entry's overrides.
    fn policy(&self) -> &Policy;
    /// `apply`.
    fn placement(&self) -> Placement;
    /// `nonVeth`.
    fn non_veth(&self) -> NonVeth;
    /// `detection`.
    fn detection(&self) -> Detection;
    /// `probe`: set whenever `detection` is not `Table`.
    fn probe(&self) -> Option<&ProbeSpec>;
}
