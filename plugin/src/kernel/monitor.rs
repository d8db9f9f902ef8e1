//! Link and route events, from the host netns and from every netns that
//! has an id there (a container's, once its veth peer lives in it): one
//! rtnetlink socket in the host netns with NETLINK_LISTEN_ALL_NSID, so no
//! socket is ever held inside a container's netns (which would keep that
//! netns, and its veth, alive after the container is gone).

use super::link::Link;
use super::netlink::{frames, parse_link};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RTNLGRP_NEXTHOP: u32 = 32;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
/// Room for a burst of events (100 containers at once) before the kernel
/// drops them (ENOBUFS, which the caller answers with a full pass).
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link appeared or changed (features included: `ethtool -K` sends
    /// RTM_NEWLINK). `nsid`: the netns it is in, as the host numbers it;
    /// None for the host's own.
    Link { nsid: Option<i32>, link: Link },
    /// A link went away: deleted, or moved to another netns. When a veth
    /// end leaves the host netns for a container's (`ip link set X netns`,
    /// what runtimes do), this is often the only event the host sees:
    /// `peer` is then the end that stays, which just became a container's.
    LinkGone {
        nsid: Option<i32>,
        index: u32,
        /// The veth peer of a link that moved to another netns.
        peer_of_moved: Option<u32>,
    },
    /// A route or nexthop of the host changed: the uplink may have.
    Routing,
}

/// The event socket.
pub struct Monitor {
    fd: OwnedFd,
    buffer: Vec<u8>,
    all_netns: bool,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to an int and its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl Monitor {
    /// A non-blocking socket in the calling thread's netns, subscribed to
    /// link, route and nexthop events of every netns with an id here.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: `raw` is the new socket's fd, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_nl is the kernel-assigned port, no groups.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: bind(2) with a sockaddr_nl and its own size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        // SO_RCVBUFFORCE needs CAP_NET_ADMIN, which the agent has; the
        // plain option is the fallback (capped by rmem_max).
        if set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER).is_err() {
            let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER);
        }
        for group in [RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE] {
            set_int(
                &fd,
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                group as libc::c_int,
            )?;
        }
        // Nexthop objects arrived in Linux 5.3; without them there is
        // nothing to miss.
        let _ = set_int(
            &fd,
            SOL_NETLINK,
            NETLINK_ADD_MEMBERSHIP,
            RTNLGRP_NEXTHOP as libc::c_int,
        );
        // Needs CAP_NET_BROADCAST; without it only the host's own events
        // arrive (see `hears_all_netns`).
        let all_netns = set_int(&fd, SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1).is_ok();
        Ok(Self {
            fd,
            buffer: vec![0; 64 * 1024],
            all_netns,
        })
    }

    /// Whether events of other netns arrive too (NETLINK_LISTEN_ALL_NSID
    /// could be set: the process has CAP_NET_BROADCAST).
    pub fn hears_all_netns(&self) -> bool {
        self.all_netns
    }

    /// The events waiting now; empty when there are none. An error of
    /// kind `OutOfMemory` (ENOBUFS) means events were lost: the caller
    /// must look at everything again.
    pub fn read(&mut self) -> io::Result<Vec<Event>> {
        let mut events = Vec::new();
        loop {
            let mut control = [0u8; 64];
            let mut iov = libc::iovec {
                iov_base: self.buffer.as_mut_ptr().cast(),
                iov_len: self.buffer.len(),
            };
            // SAFETY: a zeroed msghdr pointing at our buffers.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len() as _;
            // SAFETY: `msg` points at `iov` and `control`, both live and
            // writable for the call; recvmsg writes within their lengths.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(events),
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => Err(io::Error::new(io::ErrorKind::OutOfMemory, e)),
                    _ => Err(e),
                };
            }
            let nsid = nsid_of(&msg);
            for frame in frames(&self.buffer[..n as usize]).map_while(Result::ok) {
                events.extend(decode(frame.kind, frame.payload, nsid));
            }
        }
    }
}

impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The NETLINK_LISTEN_ALL_NSID control message: the netns an event came
/// from, as this netns numbers it (none: this netns itself).
fn nsid_of(msg: &libc::msghdr) -> Option<i32> {
    // SAFETY: walking the control buffer recvmsg filled, with the libc
    // macros that bound every step by msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_NETLINK && (*cmsg).cmsg_type == NETLINK_LISTEN_ALL_NSID {
                let data = libc::CMSG_DATA(cmsg).cast::<i32>();
                return Some(std::ptr::read_unaligned(data)).filter(|id| *id >= 0);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// IFLA_NEW_NETNSID: on an RTM_DELLINK, the link went to that netns.
const IFLA_NEW_NETNSID: u16 = 45;
const LINK_HEADER_LEN: usize = 16;

fn moved(payload: &[u8]) -> bool {
    payload.get(LINK_HEADER_LEN..).is_some_and(|attrs| {
        netlink_packet_core::NlasIterator::new(attrs)
            .map_while(Result::ok)
            .any(|nla| nla.kind() == IFLA_NEW_NETNSID)
    })
}

fn decode(kind: u16, payload: &[u8], nsid: Option<i32>) -> Option<Event> {
    // A bridge also reports its ports (family AF_BRIDGE), without the
    // port's own link attributes: only the link's own message counts.
    if matches!(kind, libc::RTM_NEWLINK | libc::RTM_DELLINK)
        && payload.first() == Some(&(libc::AF_BRIDGE as u8))
    {
        return None;
    }
    match kind {
        libc::RTM_NEWLINK => parse_link(payload).map(|link| Event::Link { nsid, link }),
        libc::RTM_DELLINK => parse_link(payload).map(|link| Event::LinkGone {
            nsid,
            index: link.index,
            peer_of_moved: (link.is_veth() && moved(payload))
                .then_some(link.link)
                .flatten(),
        }),
        libc::RTM_NEWROUTE | libc::RTM_DELROUTE | RTM_NEWNEXTHOP | RTM_DELNEXTHOP
            if nsid.is_none() =>
        {
            Some(Event::Routing)
        }
        _ => None,
    }
}
