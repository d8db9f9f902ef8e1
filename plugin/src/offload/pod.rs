//! The job on one pod: open its netns, find its veth pair, decide for the
//! node, and set (or verify) the features on the ends the placement names.

use super::decision::decide;
use super::tune::{End, Endpoint, FeaturePlan, FeatureProblem};
use super::uplink::DetectError;
use super::veth::{self, PodInterface};
use super::KernelError;
use crate::config::{Config, NonVeth};
use crate::kernel::netlink::RouteSocket;
use crate::kernel::netns;
use std::fmt;
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
}

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

/// Set the features (ADD) or only compare them (CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Set,
    Verify,
}

/// One way a pod's pair is not as the policy wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A feature of one end.
    Feature {
        end: End,
        ifname: String,
        problem: FeatureProblem,
    },
    /// The placement covers the host end, and it cannot be found.
    HostEndUnreachable(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Feature {
                end,
                ifname,
                problem,
            } => write!(f, "{end} {ifname}: {problem}"),
            Self::HostEndUnreachable(why) => write!(f, "host end: {why}"),
        }
    }
}

/// Every problem a job found, in the order of the ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any problem is a feature found in the wrong state (as
    /// opposed to an end that could not be reached).
    pub fn has_feature_problems(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Problem::Feature { .. }))
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Sets or verifies the policy on the pod's veth pair named by `netns`
/// and `ifname`.
pub fn tune(
    config: &Config,
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
        PodInterface::NotVeth(link) if config.non_veth == NonVeth::Fail => {
            return Err(PodError::NotVeth(link.describe()))
        }
        PodInterface::NotVeth(link) => {
            log::info!("{} is not a veth; nothing to do", link.describe());
            return Ok(PodOutcome::NotVeth);
        }
        PodInterface::Veth { container, host } => (container, host),
    };
    let decision = match decide(config) {
        Ok(d) => d,
        Err(e) => return Ok(PodOutcome::Undetected(e)),
    };
    if decision.settings.is_empty() {
        log::info!("host NIC {}: policy changes nothing", decision.nic_list());
        return Ok(PodOutcome::NoChange);
    }
    let mut targets = Vec::new();
    if config.placement.container() {
        targets.push(Endpoint {
            end: End::Container,
            ifname: &container.name,
            fd: sockets.pod.fd(),
        });
    }
    if config.placement.host() {
        match &host {
            Ok(peer) => targets.push(Endpoint {
                end: End::Host,
                ifname: &peer.name,
                fd: sockets.host.fd(),
            }),
            // Every end the placement covers must be there before any is
            // changed: half a fix is reported, never left behind. An end
            // that cannot be found is not "drift" either.
            Err(why) => {
                return Ok(PodOutcome::Tuned(Problems(vec![
                    Problem::HostEndUnreachable(why.clone()),
                ])))
            }
        }
    }
    let Some(first) = targets.first() else {
        return Ok(PodOutcome::Tuned(Problems::default()));
    };
    let plan = FeaturePlan::read(&decision.settings, *first)
        .map_err(|e| KernelError::new("reading feature names", e))?;
    // Read every end before changing any, for the same reason.
    let mut states = Vec::with_capacity(targets.len());
    for target in &targets {
        let state = plan
            .state(*target)
            .map_err(|e| KernelError::new(&target.to_string(), e))?;
        states.push(state);
    }
    let mut problems = Vec::new();
    for (target, before) in targets.iter().zip(states) {
        let found = match mode {
            Mode::Verify => plan.verify(&before),
            Mode::Set => {
                let report = plan
                    .apply(*target, before)
                    .map_err(|e| KernelError::new(&target.to_string(), e))?;
                log::info!(
                    "{target}: host NIC {} -> {}; changed: [{}]; kernel also changed: [{}]",
                    decision.nic_list(),
                    decision.settings,
                    report.changed.join(", "),
                    report.side_effects.join(", ")
                );
                report.problems
            }
        };
        problems.extend(found.into_iter().map(|problem| Problem::Feature {
            end: target.end,
            ifname: target.ifname.to_string(),
            problem,
        }));
    }
    Ok(PodOutcome::Tuned(Problems(problems)))
}
