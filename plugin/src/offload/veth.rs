//! Locating the pod's veth and its host-side peer.

use crate::kernel::link::Link;
use crate::kernel::netlink::RouteSocket;
use std::io;
use std::os::fd::BorrowedFd;

/// Why the other end of a veth could not be trusted as its peer. Each
/// variant names the kernel pointer that did not check out; none is an I/O
/// error (those come back as `io::Error`, beside this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("{0} reports no peer interface")]
    NoPeer(String),
    #[error("the peer of {0} is inside the pod netns, not on the host")]
    PeerInsidePod(String),
    #[error(
        "the peer of {ifname} is in another netns (id {nsid}) than the one the plugin runs in"
    )]
    PeerInOtherNetns { ifname: String, nsid: i32 },
    #[error("host interface #{index} ({found}) is not the peer of {ifname}")]
    HostNotPeer {
        index: u32,
        found: String,
        ifname: String,
    },
    #[error("host interface #{index} (peer of {ifname}) does not exist")]
    HostPeerMissing { index: u32, ifname: String },
    #[error("the peer #{index} of {ifname} is not in that netns")]
    ContainerPeerMissing { index: u32, ifname: String },
    #[error("#{index} ({found}) in that netns is not the peer of {ifname}")]
    ContainerNotPeer {
        index: u32,
        found: String,
        ifname: String,
    },
    #[error("the peer of {0} in that netns points to another netns")]
    ContainerPeerElsewhere(String),
}

/// What CNI_IFNAME turned out to be in the pod netns.
#[derive(Debug)]
pub enum PodInterface {
    Missing,
    /// Not a veth (macvlan, ipvlan, SR-IOV VF...): nothing to fix here.
    NotVeth(Link),
    Veth {
        container: Link,
        host: Result<Link, PeerError>,
    },
}

/// Finds `ifname` in the pod and, for a veth, its peer in the host netns.
/// The peer is identified by the kernel's own pointers: the container end's
/// IFLA_LINK (peer ifindex) and IFLA_LINK_NETNSID (peer netns), checked
/// against the id the pod netns has for the host netns; names are never
/// guessed.
pub fn locate(
    pod: &mut RouteSocket,
    host: &mut RouteSocket,
    host_netns: BorrowedFd<'_>,
    ifname: &str,
) -> io::Result<PodInterface> {
    let Some(container) = pod.link_by_name(ifname)? else {
        return Ok(PodInterface::Missing);
    };
    if !container.is_veth() {
        return Ok(PodInterface::NotVeth(container));
    }
    let host_end = find_host_peer(pod, host, host_netns, &container)?;
    Ok(PodInterface::Veth {
        container,
        host: host_end,
    })
}

fn find_host_peer(
    pod: &mut RouteSocket,
    host: &mut RouteSocket,
    host_netns: BorrowedFd<'_>,
    container: &Link,
) -> io::Result<Result<Link, PeerError>> {
    let ifname = || container.name.clone();
    let Some(peer_index) = container.link.filter(|&i| i != 0) else {
        return Ok(Err(PeerError::NoPeer(ifname())));
    };
    let Some(peer_nsid) = container.link_netnsid else {
        return Ok(Err(PeerError::PeerInsidePod(ifname())));
    };
    match pod.nsid_of(host_netns)? {
        Some(id) if id == peer_nsid => {}
        _ => {
            return Ok(Err(PeerError::PeerInOtherNetns {
                ifname: ifname(),
                nsid: peer_nsid,
            }))
        }
    }
    match host.link_by_index(peer_index)? {
        Some(peer) if peer.is_veth() && peer.link == Some(container.index) => Ok(Ok(peer)),
        Some(other) => Ok(Err(PeerError::HostNotPeer {
            index: peer_index,
            found: other.describe(),
            ifname: ifname(),
        })),
        None => Ok(Err(PeerError::HostPeerMissing {
            index: peer_index,
            ifname: ifname(),
        })),
    }
}

/// From the host's side: the container end of `host_end` (a veth whose
/// peer is in another netns), read through `pod`, a socket in the netns
/// that holds the peer. The same kernel pointers are checked as from the
/// pod's side, the other way round: the peer is a veth whose IFLA_LINK is
/// the host end, in a netns whose id for the host netns is the peer's
/// IFLA_LINK_NETNSID.
pub fn container_end_of(
    host_end: &Link,
    pod: &mut RouteSocket,
    host_netns: BorrowedFd<'_>,
) -> io::Result<Result<Link, PeerError>> {
    let ifname = || host_end.name.clone();
    let Some(peer_index) = host_end.link.filter(|&i| i != 0) else {
        return Ok(Err(PeerError::NoPeer(ifname())));
    };
    let Some(peer) = pod.link_by_index(peer_index)? else {
        return Ok(Err(PeerError::ContainerPeerMissing {
            index: peer_index,
            ifname: ifname(),
        }));
    };
    if !peer.is_veth() || peer.link != Some(host_end.index) {
        return Ok(Err(PeerError::ContainerNotPeer {
            index: peer_index,
            found: peer.describe(),
            ifname: ifname(),
        }));
    }
    match (peer.link_netnsid, pod.nsid_of(host_netns)?) {
        (Some(a), Some(b)) if a == b => Ok(Ok(peer)),
        _ => Ok(Err(PeerError::ContainerPeerElsewhere(ifname()))),
    }
}
