//! What the entry asks of the core, in the core's own terms: where the
//! settings go, what a pod interface that is not a veth means, and the
//! `Wanted` trait through which `decide` and the pod job read the entry.
//! The entry (`config::Config`) is parsed above the core and implements
//! `Wanted`, so dependencies point one way: `config` uses `offload`, never
//! the reverse.

use super::policy::Policy;

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
}
