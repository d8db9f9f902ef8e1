//! The job on one pod: open its netns, find its veth pair, decide for the
//! node, and set (or verify) the features on the ends the placement names.

use super::decision::{decide, Decision};
use super::detection::DetectError;
use super::nic_record::{RecordError, RECORD_FILE};
use super::nics::{self, NicError};
use super::pair::{self, NoJournal, Pair};
use super::tune::{End, Endpoint};
use super::veth::{self, PodInterface};
use super::wanted::{NonVeth, Placement, Wanted};
use super::KernelError;
use crate::kernel::netlink::RouteSocket;
use crate::kernel::netns;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Sockets into the host netns (the one the process runs in) and the pod's.
pub struct PodSockets {
    pub host: RouteSocket,
    pub pod: RouteSocket,
    host_netns: OwnedFd,
}

/// Why the job could not run to the end. Problems with the features
/// themselves are not errors: they come back as `Problems`.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("cannot open network namespace {path}: {source}")]
    Netns { path: String, source: io::Error },
    /// The "pod" netns is the one the process runs in.
    #[error("{0} is this process's own network namespace, not a pod's")]
    SameAsHost(String),
    #[error("{ifname} does not exist in {netns}")]
    IfnameMissing { ifname: String, netns: String },
    /// Not a veth, and the config says that is an error.
    #[error("{0} is not a veth and nonVeth is \"fail\"")]
    NotVeth(String),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The uplink placement could not record the NIC's state first.
    #[error("{0}")]
    Record(RecordError),
}

impl From<NicError> for PodError {
    fn from(e: NicError) -> Self {
        match e {
            NicError::Kernel(e) => Self::Kernel(e),
            NicError::Record(e) => Self::Record(e),
        }
    }
}

pub use super::pair::{Mode, Problems};

/// What the job did. Only `Tuned` changed (or, verifying, read) features.
#[derive(Debug)]
pub enum PodOutcome {
    /// The interface is not a veth (and `nonVeth` is "skip").
    NotVeth,
    /// The host NIC could not be detected: nothing was changed, because
    /// nothing says a change is needed. The front end decides whether
    /// that fails the call (`detectionFailure`).
    Undetected(DetectError),
    /// The policy asks for nothing on this node.
    NoChange,
    /// The features were set (or verified); what is not as wanted.
    Tuned(Problems),
}

impl PodSockets {
    /// Opens a socket in the pod netns (entering it only for that), plus one
    /// in the current netns.
    pub fn open(netns_path: &str) -> Result<Self, PodError> {
        let netns_err = |source| PodError::Netns {
            path: netns_path.to_string(),
            source,
        };
        let socket_err = |source| KernelError::new("netlink socket", source);
        let host_netns = netns::current().map_err(socket_err)?;
        let pod_netns = netns::open(Path::new(netns_path)).map_err(netns_err)?;
        // Working on the host's own interfaces would change the uplink, not
        // a pod; the reference plugins refuse this too.
        if netns::same(&pod_netns, &host_netns).map_err(netns_err)? {
            return Err(PodError::SameAsHost(netns_path.to_string()));
        }
        let pod = netns::run_in(&pod_netns, &host_netns, RouteSocket::open)
            .map_err(netns_err)?
            .map_err(socket_err)?;
        let host = RouteSocket::open().map_err(socket_err)?;
        Ok(Self {
            host,
            pod,
            host_netns,
        })
    }

    /// What `ifname` is in the pod, and for a veth its host peer.
    pub fn locate(&mut self, ifname: &str) -> io::Result<PodInterface> {
        veth::locate(
            &mut self.pod,
            &mut self.host,
            self.host_netns.as_fd(),
            ifname,
        )
    }
}

/// Sets or verifies the policy on the pod's veth pair named by `netns`
/// and `ifname`.
pub fn conform<W: Wanted + ?Sized>(
    config: &W,
    netns: &str,
    ifname: &str,
    mode: Mode,
) -> Result<PodOutcome, PodError> {
    let mut sockets = PodSockets::open(netns)?;
    let (container, host) = match sockets
        .locate(ifname)
        .map_err(|e| KernelError::new("reading the pod's interface", e))?
    {
        PodInterface::Missing => {
            return Err(PodError::IfnameMissing {
                ifname: ifname.to_string(),
                netns: netns.to_string(),
            })
        }
        // The uplink placement needs no veth: a macvlan or ipvlan pod's
        // packets leave through the same NIC.
        PodInterface::NotVeth(_) if config.placement() == Placement::Uplink => {
            return uplink(config, mode)
        }
        PodInterface::NotVeth(link) if config.non_veth() == NonVeth::Fail => {
            return Err(PodError::NotVeth(link.describe()))
        }
        PodInterface::NotVeth(link) => {
            log::info!("{} is not a veth; nothing to do", link.describe());
            return Ok(PodOutcome::NotVeth);
        }
        PodInterface::Veth { .. } if config.placement() == Placement::Uplink => {
            return uplink(config, mode)
        }
        PodInterface::Veth { container, host } => (container, host),
    };
    let decision = match decision_for(config) {
        Ok(d) => d,
        Err(outcome) => return Ok(outcome),
    };
    let pair = Pair {
        container: Endpoint {
            end: End::Container,
            ifname: &container.name,
            fd: sockets.pod.fd(),
        },
        host: host
            .as_ref()
            .map(|peer| Endpoint {
                end: End::Host,
                ifname: &peer.name,
                fd: sockets.host.fd(),
            })
            .map_err(Clone::clone),
    };
    let outcome = pair::conform(
        &pair,
        &decision.settings,
        config.placement(),
        mode,
        &mut NoJournal,
    )?;
    if mode == Mode::Set {
        for end in &outcome.ends {
            log::info!(
                "{} {}: host NIC {} -> {}; changed: [{}]; kernel also changed: [{}]",
                end.end,
                end.ifname,
                decision.nic_list(),
                decision.settings,
                end.report.changed.join(", "),
                end.report.side_effects.join(", ")
            );
        }
    }
    Ok(PodOutcome::Tuned(outcome.problems))
}

/// The decision for this node, or the outcome that ends the job before
/// any device is looked at: detection failed, or the policy changes
/// nothing.
fn decision_for<W: Wanted + ?Sized>(config: &W) -> Result<Decision, PodOutcome> {
    let decision = decide(config).map_err(PodOutcome::Undetected)?;
    if decision.changes_nothing() {
        match &decision.probe {
            Some(p) if p.detection == super::wanted::Detection::Probe => log::info!(
                "host NIC {}: probe verdict {}: changing nothing (detection \"probe\")",
                decision.nic_list(),
                p.status
            ),
            _ => log::info!("host NIC {}: policy changes nothing", decision.nic_list()),
        }
        return Err(PodOutcome::NoChange);
    }
    Ok(decision)
}

/// The uplink placement at a pod's ADD or CHECK: the node's NICs, never
/// the pod's veth.
fn uplink<W: Wanted + ?Sized>(config: &W, mode: Mode) -> Result<PodOutcome, PodError> {
    let decision = match decision_for(config) {
        Ok(d) => d,
        Err(outcome) => return Ok(outcome),
    };
    let outcome = nics::conform(&decision, mode, std::path::Path::new(RECORD_FILE))?;
    for nic in &outcome.nics {
        if mode == Mode::Set && !nic.report.changed.is_empty() {
            log::info!(
                "{} {}: -> {} (apply \"uplink\"); changed: [{}]; kernel also changed: [{}]",
                nic.end,
                nic.ifname,
                decision
                    .nics_to_set()
                    .find(|n| n.name == nic.ifname)
                    .map(|n| n.settings.as_str())
                    .unwrap_or_default(),
                nic.report.changed.join(", "),
                nic.report.side_effects.join(", ")
            );
        } else {
            log::debug!("{} {}: as the policy wants", nic.end, nic.ifname);
        }
    }
    Ok(PodOutcome::Tuned(outcome.problems))
}
