//! The job on one pod: find its veth pair and set (or check) the features.

use crate::apply::{self, Problem, Wanted};
use crate::config::ApplyTo;
use crate::ethtool;
use crate::netlink::RouteSocket;
use crate::netns;
use crate::policy::FeatureSettings;
use crate::veth::{self, PodInterface};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Sockets into the host netns (the one the plugin runs in) and the pod's.
pub struct PodSockets {
    pub host: RouteSocket,
    pub pod: RouteSocket,
    pub host_netns: OwnedFd,
}

/// Why the pod's netns could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open network namespace {path}: {source}")]
    Netns { path: String, source: io::Error },
    #[error("CNI_NETNS {0} is the plugin's own network namespace, not a pod's")]
    SameAsHost(String),
    #[error("netlink socket: {0}")]
    Socket(io::Error),
}

impl PodSockets {
    /// Opens a socket in the pod netns (entering it only for that), plus one
    /// in the current netns.
    pub fn open(netns_path: &str) -> Result<Self, OpenError> {
        let netns_err = |source| OpenError::Netns {
            path: netns_path.to_string(),
            source,
        };
        let host_netns = netns::current().map_err(OpenError::Socket)?;
        let pod_netns = netns::open(Path::new(netns_path)).map_err(netns_err)?;
        // Working on the host's own interfaces would change the uplink, not
        // a pod; the reference plugins refuse this too.
        if netns::same(&pod_netns, &host_netns).map_err(netns_err)? {
            return Err(OpenError::SameAsHost(netns_path.to_string()));
        }
        let pod = netns::run_in(&pod_netns, &host_netns, RouteSocket::open)
            .map_err(netns_err)?
            .map_err(OpenError::Socket)?;
        let host = RouteSocket::open().map_err(OpenError::Socket)?;
        Ok(Self {
            host,
            pod,
            host_netns,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Container,
    Host,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Container => "container",
            Side::Host => "host",
        })
    }
}

/// One end of the pair that the job touches, or why it could not.
#[derive(Debug)]
pub struct Target {
    pub side: Side,
    pub ifname: String,
    /// Which socket reaches it.
    pub fd: i32,
}

/// The ends of the pod's veth pair selected by `apply`.
pub enum Targets {
    /// CNI_IFNAME does not exist in the pod.
    Missing,
    /// Not a veth; the text says what it is.
    NotVeth(String),
    Veth {
        targets: Vec<Target>,
        /// Why a wanted end could not be found (host peer elsewhere).
        unreachable: Vec<String>,
    },
}

pub fn targets(sockets: &mut PodSockets, ifname: &str, apply: ApplyTo) -> io::Result<Targets> {
    let host_netns = sockets.host_netns.as_raw_fd();
    Ok(
        match veth::locate(&mut sockets.pod, &mut sockets.host, host_netns, ifname)? {
            PodInterface::Missing => Targets::Missing,
            PodInterface::NotVeth(link) => Targets::NotVeth(link.describe()),
            PodInterface::Veth { container, host } => {
                let mut targets = Vec::new();
                let mut unreachable = Vec::new();
                if apply.container() {
                    targets.push(Target {
                        side: Side::Container,
                        ifname: container.name,
                        fd: sockets.pod.fd(),
                    });
                }
                if apply.host() {
                    match host {
                        Ok(peer) => targets.push(Target {
                            side: Side::Host,
                            ifname: peer.name,
                            fd: sockets.host.fd(),
                        }),
                        Err(why) => unreachable.push(why),
                    }
                }
                Targets::Veth {
                    targets,
                    unreachable,
                }
            }
        },
    )
}

/// The settings resolved against this kernel's feature table.
pub struct Plan {
    pub names: Vec<String>,
    pub wanted: Vec<Wanted>,
    pub missing: Vec<String>,
}

impl Plan {
    pub fn new(settings: &FeatureSettings, any_target: &Target) -> io::Result<Self> {
        let names = ethtool::feature_names(any_target.fd, &any_target.ifname)?;
        let (wanted, missing) = apply::plan(settings, &names);
        Ok(Self {
            names,
            wanted,
            missing,
        })
    }

    pub fn apply(&self, target: &Target) -> io::Result<apply::Outcome> {
        apply::apply(
            target.fd,
            &target.ifname,
            &self.names,
            &self.wanted,
            &self.missing,
        )
    }

    pub fn verify(&self, target: &Target) -> io::Result<Vec<Problem>> {
        apply::verify(
            target.fd,
            &target.ifname,
            &self.names,
            &self.wanted,
            &self.missing,
        )
    }
}
