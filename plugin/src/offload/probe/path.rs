//! The path a probe measures: a real pod's netns (`--netns`), or a
//! throwaway pod wired like the ptp plugin wires one.
//!
//! The throwaway pod is a netns that has no name: it is made by
//! unshare(2) on this thread, which then goes back home, and it is held
//! only by this process's fd. Its veth is created with the far end already
//! inside it. So when the process ends, however it ends (SIGKILL
//! included), the kernel frees the netns, which deletes the veth pair,
//! which takes the host route with it: nothing is left to clean up.
//!
//! Wiring, all on interfaces the probe creates:
//! - pod: `eth0` with `SOURCE/32`, a default route `dev eth0 scope link`,
//!   and a permanent neighbour entry for the target pointing at the host
//!   end's MAC (no ARP, no gateway address needed);
//! - host: the veth's host end `csprobe<pid>` up, without an address,
//!   and a route `SOURCE/32 dev csprobe<pid>`. The host forwards between
//!   it and the uplink as it does for pods (ip_forward must be on
//!   already; the probe never changes a sysctl, a firewall or NAT).

use super::ProbeError;
use crate::kernel::netlink::RouteSocket;
use crate::kernel::{netns, plumb};
use crate::offload::KernelError;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

/// The throwaway pod's interface.
pub const POD_IF: &str = "eth0";
/// The host end's MAC: locally administered ("csprb"), unique on its
/// point-to-point link, so the pod's neighbour entry can name it up front.
const HOST_MAC: [u8; 6] = [0x02, 0x63, 0x73, 0x70, 0x72, 0x62];

/// A netns to probe from, with a route socket inside it.
pub struct PodNetns {
    pub fd: OwnedFd,
    pub socket: RouteSocket,
}

impl PodNetns {
    /// Opens the socket inside `fd`'s netns (from `home`, this thread's).
    pub fn enter(fd: OwnedFd, home: &OwnedFd) -> Result<Self, KernelError> {
        let socket = netns::run_in(&fd, home, RouteSocket::open)
            .and_then(|s| s)
            .map_err(|e| KernelError::new("opening a socket in the pod's netns", e))?;
        Ok(Self { fd, socket })
    }
}

/// The throwaway pod: deleted on drop, and by the kernel if the process
/// dies first.
pub struct Throwaway {
    pub pod: PodNetns,
    pub host_if: String,
    host_index: u32,
    host: RouteSocket,
}

impl Throwaway {
    /// Creates and wires the pod for `source` to reach `target`.
    pub fn create(source: Ipv4Addr, target: Ipv4Addr, home: &OwnedFd) -> Result<Self, ProbeError> {
        if !forwards_ipv4() {
            return Err(ProbeError::NoForwarding);
        }
        if is_local(source) {
            return Err(ProbeError::SourceInUse(source));
        }
        let k = |what: String| move |e| ProbeError::from(KernelError::new(&what, e));
        let fd = unnamed_netns(home).map_err(k("creating the throwaway netns".into()))?;
        let mut host = RouteSocket::open().map_err(k("opening a route socket".into()))?;
        let host_if = format!("csprobe{}", std::process::id());
        plumb::add_veth(&mut host, &host_if, HOST_MAC, POD_IF, fd.as_fd())
            .map_err(k(format!("creating the veth pair {host_if}/{POD_IF}")))?;
        let host_index = host
            .link_by_name(&host_if)
            .map_err(k(format!("looking up {host_if}")))?
            .ok_or_else(|| KernelError::new(&host_if, std::io::ErrorKind::NotFound.into()))?
            .index;
        // From here on, drop deletes the pair.
        let mut pod = Throwaway {
            pod: PodNetns::enter(fd, home)?,
            host_if,
            host_index,
            host,
        };
        pod.wire(source, target)?;
        Ok(pod)
    }

    fn wire(&mut self, source: Ipv4Addr, target: Ipv4Addr) -> Result<(), ProbeError> {
        let k = |what: String| move |e| ProbeError::from(KernelError::new(&what, e));
        let socket = &mut self.pod.socket;
        let index = socket
            .link_by_name(POD_IF)
            .map_err(k(format!("looking up the pod's {POD_IF}")))?
            .ok_or_else(|| KernelError::new(POD_IF, std::io::ErrorKind::NotFound.into()))?
            .index;
        plumb::add_address(socket, index, source, 32)
            .map_err(k(format!("adding {source}/32 to the pod's {POD_IF}")))?;
        plumb::set_up(socket, index).map_err(k(format!("setting the pod's {POD_IF} up")))?;
        plumb::add_neighbour(socket, index, target, HOST_MAC)
            .map_err(k(format!("adding the pod's neighbour entry for {target}")))?;
        plumb::add_link_route(socket, Ipv4Addr::UNSPECIFIED, 0, index)
            .map_err(k("adding the pod's default route".to_string()))?;
        plumb::set_up(&mut self.host, self.host_index)
            .map_err(k(format!("setting {} up", self.host_if)))?;
        plumb::add_link_route(&mut self.host, source, 32, self.host_index).map_err(k(format!(
            "adding the host route {source}/32 dev {} (is {source} routed here already?)",
            self.host_if
        )))?;
        Ok(())
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        // Deleting the host end deletes the pod end and the route; the
        // netns goes with the fd. If this fails the kernel still frees it
        // all when the fd closes.
        if let Err(e) = plumb::delete_link(&mut self.host, self.host_index) {
            log::debug!("deleting {}: {e}", self.host_if);
        }
    }
}

/// A new netns held only by the returned fd: this thread unshares into
/// it, opens it and goes back to `home`.
fn unnamed_netns(home: &OwnedFd) -> std::io::Result<OwnedFd> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
    let fd = netns::current();
    if let Err(e) = nix::sched::setns(home, nix::sched::CloneFlags::CLONE_NEWNET) {
        // Going on in the new netns would wire the host side in the wrong
        // place; as in netns::run_in, nothing can recover that.
        log::error!("cannot return to the original network namespace: {e}; aborting");
        std::process::abort();
    }
    fd
}

/// net.ipv4.ip_forward of this thread's netns.
fn forwards_ipv4() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1")
}

/// Whether `address` is one of this netns's own (bind succeeds only then).
fn is_local(address: Ipv4Addr) -> bool {
    std::net::UdpSocket::bind((address, 0)).is_ok()
}
