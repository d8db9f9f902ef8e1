//! What the entry asks of the core, in the core's own terms: where the
//! settings go, what a pod interface that is not a veth means, and the
//! `Wanted` trait through which `decide` and the pod job read the entry.
//! The entry (`config::Config`) is parsed above the core and implements
//! `Wanted`, so dependencies point one way: `config` uses `offload`, never
//! the reverse.

use super::policy::Policy;
use std::collections::BTreeMap;
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
/// it keeps the verdict every `decide` reads. The target and source are
/// per node: `nodes` overrides the top-level defaults by node name, as a
/// throwaway pod's address must be one the cluster routes to the node
/// that probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The default target: a TCP listener off the node, reached through
    /// the uplink.
    pub target: Option<SocketAddrV4>,
    /// The default throwaway pod's address (an unused address of the pod
    /// CIDR); None when every node that probes has its own.
    pub source: Option<Ipv4Addr>,
    /// Per-node overrides, by node name.
    pub nodes: BTreeMap<String, NodeProbe>,
    /// How often the agent probes (and at start, and when the uplink
    /// changes).
    pub interval: Duration,
    /// The agent's last verdict: written by the agent, read by ADD.
    pub verdict_file: PathBuf,
}

/// One node's overrides in `probe.nodes`; a key not set takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeProbe {
    pub target: Option<SocketAddrV4>,
    pub source: Option<Ipv4Addr>,
}

/// One node's path: where its throwaway pod probes from and to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePath {
    pub target: SocketAddrV4,
    pub source: Ipv4Addr,
}

/// Why a node has no probe path: it does not probe, and nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoProbePath {
    #[error(
        "this node's name is not known (--node-name or NODE_NAME) and probe has no default source"
    )]
    Unnamed,
    #[error(
        "node {0:?} has no probe source (no probe.nodes.{0}.source and no default probe.source)"
    )]
    Source(String),
    #[error(
        "node {0:?} has no probe target (no probe.nodes.{0}.target and no default probe.target)"
    )]
    Target(String),
    #[error(
        "probe has no default target and this node's name is not known (--node-name or NODE_NAME)"
    )]
    UnnamedNoTarget,
}

impl ProbeSpec {
    /// A verdict older than this is stale, and means no change: two
    /// intervals (one probe missed) and a minute for the probe itself.
    pub fn max_age(&self) -> Duration {
        self.interval.saturating_mul(2) + Duration::from_secs(60)
    }

    /// The path of the node named `node` (None: not known, the defaults):
    /// its own entry's keys, the defaults for the rest.
    pub fn path_for(&self, node: Option<&str>) -> Result<ProbePath, NoProbePath> {
        let own = node.and_then(|n| self.nodes.get(n));
        let target = own.and_then(|o| o.target).or(self.target);
        let source = own.and_then(|o| o.source).or(self.source);
        match (target, source, node) {
            (Some(target), Some(source), _) => Ok(ProbePath { target, source }),
            (None, _, Some(n)) => Err(NoProbePath::Target(n.to_string())),
            (None, _, None) => Err(NoProbePath::UnnamedNoTarget),
            (Some(_), None, Some(n)) => Err(NoProbePath::Source(n.to_string())),
            (Some(_), None, None) => Err(NoProbePath::Unnamed),
        }
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
    /// The name of the node that asks (the agent's `--node-name` or
    /// `NODE_NAME`); None where it is not known (the plugin's ADD).
    fn node_name(&self) -> Option<&str>;
}
