//! A synchronous rtnetlink client: the handful of requests this plugin
//! makes, on a socket bound to one netns.
//!
//! Synchronous on purpose: an ADD makes at most a few requests in sequence,
//! so an async runtime would only add start-up cost and binary size.

use super::link::Link;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkHeader, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Room for one datagram from the kernel. A dump never sends more than
/// 32 KiB per datagram (the kernel caps its dump skbs there), and the
/// single-link replies this plugin asks for are ~1 KiB.
/// Allocated once and never zeroed: only the bytes the kernel writes are
/// touched.
const RECV_BUFFER: usize = 32 * 1024;
const NETLINK_HEADER_LEN: usize = 16;
const LINK_HEADER_LEN: usize = 16;
/// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
/// type (u8 each), flags (u32).
const ROUTE_HEADER_LEN: usize = 12;
/// struct rtgenmsg, padded to 4 bytes.
const NSID_HEADER_LEN: usize = 4;
const NETNSA_NSID: u16 = 1;
const RTA_NH_ID: u16 = 30;
/// In a vxlan's IFLA_INFO_DATA: the device it sends through.
const IFLA_VXLAN_LINK: u16 = 3;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_GETNEXTHOP: u16 = 106;
/// struct nhmsg: family, scope, protocol, reserved (u8 each), flags (u32).
const NEXTHOP_HEADER_LEN: usize = 8;
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_OIF: u16 = 5;
/// A dump marked interrupted is asked again up to this many times.
const DUMP_ATTEMPTS: usize = 8;
/// nlmsg_flags of a dump message whose table changed during the dump.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK): the kernel checks
/// requests strictly and applies the filters a dump request carries.
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_GET_STRICT_CHK: libc::c_int = 12;

pub struct RouteSocket {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

/// A default route's output devices (several for a multipath route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub family: AddressFamily,
    pub table: u32,
    pub metric: u32,
    pub interfaces: Vec<u32>,
    /// RTA_NH_ID: the route's devices are those of this nexthop object.
    pub nexthop: Option<u32>,
}

/// What a nexthop object leads to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Nexthop {
    device: Option<u32>,
    group: Vec<u32>,
}

impl RouteSocket {
    /// Opens a socket in the calling thread's current netns.
    ///
    /// Neither bound nor connected: the kernel binds it to a free port id
    /// on the first send, requests are addressed to the kernel with
    /// sendto, and replies from anyone but the kernel are dropped. That is
    /// three syscalls fewer per socket than bind + getsockname + connect.
    pub fn open() -> io::Result<Self> {
        let socket = Socket::new(NETLINK_ROUTE)?;
        // Kernels before 4.20 lack it and dump everything: every reply is
        // filtered here too, so that only costs time.
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to an int and its size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_GET_STRICT_CHK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(Self {
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// The socket's fd; also serves SIOCETHTOOL, which acts on the netns the
    /// socket was created in. Borrowed, so nothing can act through it after
    /// the socket (and the netns it stands for) is gone.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Sends one request and hands each reply message (its type and
    /// payload) to `each` until the answer is complete: one message, or
    /// NLMSG_DONE for a dump.
    ///
    /// Replies are decoded by hand, only the attributes this plugin reads:
    /// decoding whole messages with netlink-packet-route cost more than all
    /// the rest of an ADD's own work (docs/performance.md), and it keeps an
    /// attribute this crate cannot parse (a newer kernel) from mattering.
    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.request(out, each)
    }

    /// As `exchange`, for a request built by hand (`out` is the whole
    /// message, its sequence number still to be set).
    fn request(&mut self, mut out: Vec<u8>, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let flags = u16::from_ne_bytes([out[6], out[7]]);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let messages = retry_interrupted(|| {
            self.sequence += 1;
            out[8..12].copy_from_slice(&self.sequence.to_ne_bytes());
            // The kernel's address: port id 0, no multicast groups.
            self.socket.send_to(&out, &SocketAddr::new(0, 0), 0)?;
            let mut messages: Vec<(u16, Vec<u8>)> = Vec::new();
            let interrupted = self.receive(dump, |kind, payload| {
                if dump {
                    messages.push((kind, payload.to_vec()));
                } else {
                    each(kind, payload);
                }
            })?;
            Ok((messages, interrupted))
        })?;
        for (kind, payload) in &messages {
            each(*kind, payload);
        }
        Ok(())
    }

    /// Reads the answer to the last request; returns whether the kernel
    /// marked the dump interrupted (NLM_F_DUMP_INTR).
    fn receive(&mut self, dump: bool, mut each: impl FnMut(u16, &[u8])) -> io::Result<bool> {
        let mut interrupted = false;
        loop {
            self.buffer.clear();
            let (len, sender) = self.socket.recv_from(&mut self.buffer, libc::MSG_TRUNC)?;
            if sender.port_number() != 0 {
                // Another process's message to our port id: not an answer.
                continue;
            }
            if len > self.buffer.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("netlink reply of {len} bytes exceeds the {RECV_BUFFER}-byte buffer"),
                ));
            }
            for frame in frames(&self.buffer[..len]) {
                let frame = frame?;
                if frame.sequence != self.sequence {
                    continue;
                }
                interrupted |= frame.flags & NLM_F_DUMP_INTR != 0;
                match i32::from(frame.kind) {
                    libc::NLMSG_DONE => {
                        // A dump's end carries its error, if it failed.
                        return match read_i32(frame.payload) {
                            Some(code) if code < 0 => {
                                Err(io::Error::from_raw_os_error(code.saturating_neg()))
                            }
                            _ => Ok(interrupted),
                        };
                    }
                    libc::NLMSG_ERROR => {
                        // struct nlmsgerr: the error code first, 0 for an ACK.
                        let code = read_i32(frame.payload).ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "short NLMSG_ERROR")
                        })?;
                        return match code {
                            0 => Ok(interrupted),
                            code => Err(io::Error::from_raw_os_error(code.saturating_neg())),
                        };
                    }
                    _ => {
                        each(frame.kind, frame.payload);
                        if !dump {
                            return Ok(false);
                        }
                    }
                }
            }
        }
    }

    /// A GETLINK request. It asks the kernel to skip stats, which nothing
    /// here reads; the kernel still sends IFLA_STATS64 (it skips only the
    /// per-VF and extended ones), which the decoder passes over.
    fn get_links(&mut self, mut msg: LinkMessage, flags: u16) -> io::Result<Vec<Link>> {
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut links = Vec::new();
        self.exchange(RouteNetlinkMessage::GetLink(msg), flags, |kind, payload| {
            if kind != libc::RTM_NEWLINK {
                return;
            }
            match parse_link(payload) {
                Some(link) => links.push(link),
                None => log::debug!("skipping undecodable RTM_NEWLINK message"),
            }
        })?;
        Ok(links)
    }

    /// Every link of this socket's netns.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        self.get_links(LinkMessage::default(), NLM_F_DUMP)
    }

    /// The devices enslaved to `master` (bond or team slaves, bridge or
    /// VRF ports). The kernel filters the dump (strict checking), so a
    /// node with hundreds of pod veths sends only the ports; the filter is
    /// applied here too for kernels that ignore it.
    pub fn ports_of(&mut self, master: u32) -> io::Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Controller(master));
        let mut ports = self.get_links(msg, NLM_F_DUMP)?;
        ports.retain(|l| l.master == Some(master));
        Ok(ports)
    }

    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.single_link(msg)
    }

    pub fn link_by_index(&mut self, index: u32) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.single_link(msg)
    }

    fn single_link(&mut self, msg: LinkMessage) -> io::Result<Option<Link>> {
        match self.get_links(msg, 0) {
            Ok(links) => Ok(links.into_iter().next()),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The unicast default routes of one address family in every table
    /// but `local`, best (lowest metric) first. The kernel filters the
    /// dump to unicast routes.
    pub fn default_routes(&mut self, family: AddressFamily) -> io::Result<Vec<DefaultRoute>> {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        query.header.kind = RouteType::Unicast;
        let mut routes = Vec::new();
        self.exchange(
            RouteNetlinkMessage::GetRoute(query),
            NLM_F_DUMP,
            |kind, payload| {
                if kind == libc::RTM_NEWROUTE {
                    routes.extend(default_route(payload));
                }
            },
        )?;
        routes.sort_by_key(|r| (r.table != u32::from(libc::RT_TABLE_MAIN), r.metric));
        Ok(routes)
    }

    /// The output devices of a nexthop object (`ip nexthop`): its device,
    /// or for a group every member's.
    pub fn nexthop_devices(&mut self, id: u32) -> io::Result<Vec<u32>> {
        let mut devices = Vec::new();
        let mut members = Vec::new();
        self.get_nexthop(id, |nh| {
            devices.extend(nh.device);
            members.extend(nh.group);
        })?;
        // A group's members are plain nexthops (the kernel forbids nested
        // groups), so one level is all there is.
        for member in members {
            self.get_nexthop(member, |nh| devices.extend(nh.device))?;
        }
        devices.dedup();
        Ok(devices)
    }

    fn get_nexthop(&mut self, id: u32, mut each: impl FnMut(Nexthop)) -> io::Result<()> {
        // struct nlmsghdr, struct nhmsg (8 bytes, AF_UNSPEC), NHA_ID.
        let mut out = Vec::with_capacity(NETLINK_HEADER_LEN + 16);
        out.extend(((NETLINK_HEADER_LEN + 16) as u32).to_ne_bytes());
        out.extend(RTM_GETNEXTHOP.to_ne_bytes());
        out.extend(NLM_F_REQUEST.to_ne_bytes());
        out.extend([0u8; 8]); // sequence (set by request), port id
        out.extend([0u8; 8]); // nhmsg
        out.extend(8u16.to_ne_bytes());
        out.extend(NHA_ID.to_ne_bytes());
        out.extend(id.to_ne_bytes());
        self.request(out, |kind, payload| {
            if kind == RTM_NEWNEXTHOP {
                each(parse_nexthop(payload));
            }
        })
    }

    /// Sends one change request (RTM_NEWLINK, RTM_NEWADDR, ...) with
    /// NLM_F_ACK and `flags`, and waits for the kernel's answer: Ok on its
    /// ACK, the errno it refused with otherwise. Used by `plumb`.
    pub fn change(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(message, NLM_F_ACK | flags, |_, _| {})
    }

    /// The id under which this socket's netns knows the netns behind `fd`
    /// (what IFLA_LINK_NETNSID reports for links into it).
    pub fn nsid_of(&mut self, netns: BorrowedFd<'_>) -> io::Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(netns.as_raw_fd() as u32));
        let mut id = None;
        self.exchange(RouteNetlinkMessage::GetNsId(msg), 0, |kind, payload| {
            if kind != libc::RTM_NEWNSID || payload.len() < NSID_HEADER_LEN {
                return;
            }
            id = attributes(&payload[NSID_HEADER_LEN..])
                .find(|(kind, _)| *kind == NETNSA_NSID)
                .and_then(|(_, value)| read_i32(value))
                // NETNSA_NSID_NOT_ASSIGNED is -1.
                .filter(|id| *id >= 0);
        })?;
        Ok(id)
    }
}

/// Runs `attempt` until it answers without the kernel's "interrupted"
/// mark, at most DUMP_ATTEMPTS times. A dump the kernel marks interrupted
/// (NLM_F_DUMP_INTR: the table changed under it, as pods come and go) may
/// have skipped entries (a bridge's NIC port among its pod ports, on
/// kernels that dump by hash bucket) or repeated them; it is thrown away.
fn retry_interrupted<T>(mut attempt: impl FnMut() -> io::Result<(T, bool)>) -> io::Result<T> {
    for _ in 0..DUMP_ATTEMPTS {
        let (answer, interrupted) = attempt()?;
        if !interrupted {
            return Ok(answer);
        }
        log::debug!("netlink dump interrupted by a change; asking again");
    }
    Err(io::Error::new(
        io::ErrorKind::Interrupted,
        format!("netlink dump interrupted {DUMP_ATTEMPTS} times in a row"),
    ))
}

/// One netlink message of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame<'a> {
    pub kind: u16,
    pub flags: u16,
    pub sequence: u32,
    pub payload: &'a [u8],
}

/// The netlink messages of one datagram. A malformed header ends the
/// datagram with an error.
pub(super) fn frames(datagram: &[u8]) -> impl Iterator<Item = io::Result<Frame<'_>>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset + NETLINK_HEADER_LEN > datagram.len() {
            return None;
        }
        match NetlinkBuffer::new_checked(&datagram[offset..]) {
            Ok(frame) => {
                // new_checked ensured NETLINK_HEADER_LEN <= length <= the
                // rest, so every step moves forward and stays in bounds.
                offset += (frame.length() as usize + 3) & !3;
                Some(Ok(Frame {
                    kind: frame.message_type(),
                    flags: frame.flags(),
                    sequence: frame.sequence_number(),
                    payload: frame.payload(),
                }))
            }
            Err(e) => {
                offset = datagram.len();
                Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    e.to_string(),
                )))
            }
        }
    })
}

/// The attributes of a message body, as (type without flags, value);
/// stops at the first malformed one.
fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    NlasIterator::new(bytes).map_while(|nla| {
        let nla = nla.ok()?;
        let (kind, len) = (nla.kind(), usize::from(nla.length()));
        // new_checked (inside the iterator) ensured 4 <= len <= the rest.
        Some((kind, nla.into_inner().get(4..len)?))
    })
}

pub(super) fn read_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
}

fn read_i32(value: &[u8]) -> Option<i32> {
    read_u32(value).map(|v| v as i32)
}

/// A NUL-terminated attribute string.
fn read_string(value: &[u8]) -> Option<String> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8(value[..end].to_vec()).ok()
}

/// An RTM_NEWLINK payload: struct ifinfomsg, then attributes.
pub(super) fn parse_link(payload: &[u8]) -> Option<Link> {
    let header = LinkHeader::parse(payload).ok()?;
    let mut link = Link {
        index: header.index,
        name: String::new(),
        kind: None,
        link: None,
        link_netnsid: None,
        master: None,
        underlay: None,
    };
    for (kind, value) in attributes(payload.get(LINK_HEADER_LEN..)?) {
        match kind {
            libc::IFLA_IFNAME => link.name = read_string(value)?,
            libc::IFLA_LINK => link.link = Some(read_u32(value)?),
            libc::IFLA_LINK_NETNSID => link.link_netnsid = Some(read_i32(value)?),
            libc::IFLA_MASTER => link.master = Some(read_u32(value)?),
            libc::IFLA_LINKINFO => {
                let mut data = None;
                for (info, value) in attributes(value) {
                    match info {
                        libc::IFLA_INFO_KIND => link.kind = read_string(value),
                        libc::IFLA_INFO_DATA => data = Some(value),
                        _ => {}
                    }
                }
                if let (Some("vxlan"), Some(data)) = (link.kind.as_deref(), data) {
                    link.underlay = attributes(data)
                        .find(|(attr, _)| *attr == IFLA_VXLAN_LINK)
                        .and_then(|(_, value)| read_u32(value));
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// An RTM_NEWROUTE payload, if it is a unicast default route outside the
/// `local` table that leads somewhere (devices or a nexthop object).
fn default_route(payload: &[u8]) -> Option<DefaultRoute> {
    let header = payload.get(..ROUTE_HEADER_LEN)?;
    let (family, destination_prefix_length, table, kind) =
        (header[0], header[1], header[4], header[7]);
    if destination_prefix_length != 0 || kind != libc::RTN_UNICAST {
        return None;
    }
    let mut table = u32::from(table);
    let mut metric = 0;
    let mut interfaces = Vec::new();
    let mut nexthop = None;
    for (attr, value) in attributes(&payload[ROUTE_HEADER_LEN..]) {
        match attr {
            libc::RTA_TABLE => table = read_u32(value)?,
            libc::RTA_PRIORITY => metric = read_u32(value)?,
            libc::RTA_OIF => interfaces.push(read_u32(value)?),
            libc::RTA_MULTIPATH => interfaces.extend(next_hops(value)),
            RTA_NH_ID => nexthop = Some(read_u32(value)?),
            _ => {}
        }
    }
    let leads_somewhere = !interfaces.is_empty() || nexthop.is_some();
    (table != u32::from(libc::RT_TABLE_LOCAL) && leads_somewhere).then_some(DefaultRoute {
        family: AddressFamily::from(family),
        table,
        metric,
        interfaces,
        nexthop,
    })
}

/// An RTM_NEWNEXTHOP payload: struct nhmsg, then attributes; NHA_GROUP is
/// a list of struct nexthop_grp { id: u32, weight: u8, weight_high: u8,
/// resvd2: u16 }.
fn parse_nexthop(payload: &[u8]) -> Nexthop {
    let mut nh = Nexthop::default();
    let Some(attrs) = payload.get(NEXTHOP_HEADER_LEN..) else {
        return nh;
    };
    for (attr, value) in attributes(attrs) {
        match attr {
            NHA_OIF => nh.device = read_u32(value),
            NHA_GROUP => nh.group.extend(value.chunks_exact(8).filter_map(read_u32)),
            _ => {}
        }
    }
    nh
}

/// The output devices of RTA_MULTIPATH: a list of struct rtnexthop
/// { len: u16, flags: u8, hops: u8, ifindex: i32 }, each followed by its
/// own attributes within `len`.
fn next_hops(mut value: &[u8]) -> Vec<u32> {
    let mut interfaces = Vec::new();
    while value.len() >= 8 {
        let len = usize::from(u16::from_ne_bytes([value[0], value[1]]));
        if len < 8 || len > value.len() {
            break;
        }
        interfaces.extend(read_u32(&value[4..8]));
        value = &value[((len + 3) & !3).min(value.len())..];
    }
    interfaces
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::{InfoKind, LinkInfo};
    use netlink_packet_route::route::{RouteAttribute, RouteNextHop, RouteType};

    fn emit(msg: &impl Emitable) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn link_attributes_are_read_by_hand_as_the_crate_writes_them() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Link(12),
            LinkAttribute::LinkNetNsId(3),
            LinkAttribute::Controller(4),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let link = parse_link(&emit(&msg)).unwrap();
        assert_eq!(
            link,
            Link {
                index: 7,
                name: "eth0".into(),
                kind: Some("veth".into()),
                link: Some(12),
                link_netnsid: Some(3),
                master: Some(4),
                underlay: None,
            }
        );
        let mut bare = LinkMessage::default();
        bare.header.index = 2;
        bare.attributes = vec![LinkAttribute::IfName("enp1s0".into())];
        let link = parse_link(&emit(&bare)).unwrap();
        assert_eq!(
            (link.index, link.name.as_str(), link.kind),
            (2, "enp1s0", None)
        );
    }

    #[test]
    fn truncated_link_messages_are_rejected() {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::Link(12)];
        let bytes = emit(&msg);
        assert!(parse_link(&bytes[..10]).is_none());
        // The attribute header claims 8 bytes; only 6 remain: ignored, not
        // read past the end.
        let link = parse_link(&bytes[..bytes.len() - 2]).unwrap();
        assert_eq!(link.link, None);
    }

    fn frame(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let len = NETLINK_HEADER_LEN + payload.len();
        let mut out = Vec::new();
        out.extend((len as u32).to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend(0u16.to_ne_bytes());
        out.extend(sequence.to_ne_bytes());
        out.extend(0u32.to_ne_bytes());
        out.extend(payload);
        out.resize((out.len() + 3) & !3, 0);
        out
    }

    #[test]
    fn frames_split_a_datagram() {
        let mut datagram = frame(libc::RTM_NEWLINK, 7, b"abcde");
        datagram.extend(frame(libc::NLMSG_DONE as u16, 7, &0i32.to_ne_bytes()));
        let got: Vec<_> = frames(&datagram)
            .map(|f| f.unwrap())
            .map(|f| (f.kind, f.sequence, f.payload))
            .collect();
        assert_eq!(
            got,
            [
                (libc::RTM_NEWLINK, 7, &b"abcde"[..]),
                (libc::NLMSG_DONE as u16, 7, &0i32.to_ne_bytes()[..])
            ]
        );
        // A length field past the end is an error, not a read past it.
        let mut bad = frame(libc::RTM_NEWLINK, 1, b"xy");
        bad[0] = 200;
        assert!(frames(&bad).next().unwrap().is_err());
        assert_eq!(frames(&bad).count(), 1);
    }

    /// Every truncation and many single-byte corruptions of real messages:
    /// the decoders must return, never panic or loop, whatever the bytes.
    #[test]
    fn decoders_survive_any_corruption() {
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Link(12),
            LinkAttribute::LinkNetNsId(3),
            LinkAttribute::Controller(4),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let mut route = RouteMessage::default();
        route.header.table = libc::RT_TABLE_MAIN;
        route.header.kind = RouteType::Unicast;
        let mut hop = RouteNextHop::default();
        hop.interface_index = 5;
        route.attributes = vec![
            RouteAttribute::Priority(1),
            RouteAttribute::MultiPath(vec![hop.clone(), hop]),
        ];
        for message in [emit(&link), emit(&route)] {
            let mut datagram = frame(libc::RTM_NEWLINK, 1, &message);
            datagram.extend(frame(libc::RTM_NEWROUTE, 1, &message));
            let mut inputs: Vec<Vec<u8>> = (0..datagram.len())
                .map(|n| datagram[..n].to_vec())
                .collect();
            for i in 0..datagram.len() {
                for byte in [0x00, 0x01, 0x07, 0x7f, 0x80, 0xff] {
                    let mut corrupted = datagram.clone();
                    corrupted[i] = byte;
                    inputs.push(corrupted);
                }
            }
            for input in &inputs {
                for frame in frames(input).map_while(Result::ok) {
                    let _ = parse_link(frame.payload);
                    let _ = default_route(frame.payload);
                    let _ = next_hops(frame.payload);
                    let _ = parse_nexthop(frame.payload);
                }
            }
        }
    }

    #[test]
    fn interrupted_dumps_are_asked_again_a_bounded_number_of_times() {
        let mut left = 2;
        let answer = retry_interrupted(|| {
            left -= 1;
            Ok((left, left >= 0))
        });
        assert_eq!(answer.unwrap(), -1, "the third, uninterrupted answer");
        let mut tries = 0;
        let e = retry_interrupted(|| {
            tries += 1;
            Ok(((), true))
        })
        .unwrap_err();
        assert_eq!(
            (tries, e.kind()),
            (DUMP_ATTEMPTS, io::ErrorKind::Interrupted)
        );
        let failed: io::Result<()> = retry_interrupted(|| Err(io::Error::other("x")));
        assert!(failed.is_err());
    }

    #[test]
    fn nexthop_objects_by_hand() {
        // struct nhmsg, NHA_ID 7, NHA_OIF 4; then a group of 7 and 8.
        let mut single = vec![0u8; 8];
        single.extend([8, 0, 1, 0, 7, 0, 0, 0, 8, 0, 5, 0, 4, 0, 0, 0]);
        assert_eq!(
            parse_nexthop(&single),
            Nexthop {
                device: Some(4),
                group: vec![]
            }
        );
        let mut group = vec![0u8; 8];
        group.extend([20, 0, 2, 0, 7, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(parse_nexthop(&group).group, [7, 8]);
        assert_eq!(parse_nexthop(&[1, 2]), Nexthop::default());
    }

    #[test]
    fn default_routes_by_hand() {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = libc::RT_TABLE_MAIN;
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![RouteAttribute::Priority(100), RouteAttribute::Oif(3)];
        assert_eq!(
            default_route(&emit(&route)),
            Some(DefaultRoute {
                family: AddressFamily::Inet,
                table: u32::from(libc::RT_TABLE_MAIN),
                metric: 100,
                interfaces: vec![3],
                nexthop: None,
            })
        );

        let mut hop_a = RouteNextHop::default();
        hop_a.interface_index = 5;
        let mut hop_b = RouteNextHop::default();
        hop_b.interface_index = 6;
        route.attributes = vec![RouteAttribute::MultiPath(vec![hop_a, hop_b])];
        assert_eq!(default_route(&emit(&route)).unwrap().interfaces, [5, 6]);

        // Policy routing and VRFs keep default routes in other tables.
        route.attributes = vec![RouteAttribute::Table(100), RouteAttribute::Oif(3)];
        assert_eq!(default_route(&emit(&route)).unwrap().table, 100);
        route.attributes = vec![RouteAttribute::Table(255), RouteAttribute::Oif(3)];
        assert_eq!(default_route(&emit(&route)), None, "the local table");
        route.attributes = vec![RouteAttribute::Table(100)];
        assert_eq!(default_route(&emit(&route)), None, "leads nowhere");
        let mut nh = emit(&route);
        nh.extend([8, 0, 30, 0, 7, 0, 0, 0]); // RTA_NH_ID 7
        assert_eq!(default_route(&nh).unwrap().nexthop, Some(7));
        route.attributes = vec![RouteAttribute::Oif(3)];
        route.header.destination_prefix_length = 8;
        assert_eq!(default_route(&emit(&route)), None, "not a default route");
    }
}
