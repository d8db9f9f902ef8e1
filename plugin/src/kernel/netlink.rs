//! A synchronous rtnetlink client: the handful of requests this plugin
//! makes, on a socket bound to one netns.
//!
//! Synchronous on purpose: an ADD makes at most a few requests in sequence,
//! so an async runtime would only add start-up cost and binary size.

use super::link::Link;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkHeader, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Room for one datagram from the kernel. A dump never sends more than
/// 32 KiB per datagram (the kernel caps its dump skbs there), and the
/// single-link replies this plugin asks for (stats skipped) are ~1 KiB.
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

pub struct RouteSocket {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

/// A default route's output devices (several for a multipath route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub family: AddressFamily,
    pub metric: u32,
    pub interfaces: Vec<u32>,
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
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        // The kernel's address: port id 0, no multicast groups.
        self.socket.send_to(&out, &SocketAddr::new(0, 0), 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
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
                let (kind, sequence, payload) = frame?;
                if sequence != self.sequence {
                    continue;
                }
                match i32::from(kind) {
                    libc::NLMSG_DONE => return Ok(()),
                    libc::NLMSG_ERROR => {
                        // struct nlmsgerr: the error code first, 0 for an ACK.
                        let code = read_i32(payload).ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "short NLMSG_ERROR")
                        })?;
                        return match code {
                            0 => Ok(()),
                            code => Err(io::Error::from_raw_os_error(code.saturating_neg())),
                        };
                    }
                    _ => {
                        each(kind, payload);
                        if !dump {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// A GETLINK request; stats are skipped, as nothing here reads them.
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

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        self.get_links(LinkMessage::default(), NLM_F_DUMP)
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

    /// Default routes of the main table for one address family, best
    /// (lowest metric) first.
    pub fn default_routes(&mut self, family: AddressFamily) -> io::Result<Vec<DefaultRoute>> {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
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
        routes.sort_by_key(|r| r.metric);
        Ok(routes)
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

/// The netlink messages of one datagram as (type, sequence number,
/// payload). A malformed header ends the datagram with an error.
fn frames(datagram: &[u8]) -> impl Iterator<Item = io::Result<(u16, u32, &[u8])>> {
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
                Some(Ok((
                    frame.message_type(),
                    frame.sequence_number(),
                    frame.payload(),
                )))
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

fn read_u32(value: &[u8]) -> Option<u32> {
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
fn parse_link(payload: &[u8]) -> Option<Link> {
    let header = LinkHeader::parse(payload).ok()?;
    let mut link = Link {
        index: header.index,
        name: String::new(),
        kind: None,
        link: None,
        link_netnsid: None,
        master: None,
    };
    for (kind, value) in attributes(payload.get(LINK_HEADER_LEN..)?) {
        match kind {
            libc::IFLA_IFNAME => link.name = read_string(value)?,
            libc::IFLA_LINK => link.link = Some(read_u32(value)?),
            libc::IFLA_LINK_NETNSID => link.link_netnsid = Some(read_i32(value)?),
            libc::IFLA_MASTER => link.master = Some(read_u32(value)?),
            libc::IFLA_LINKINFO => {
                link.kind = attributes(value)
                    .find(|(kind, _)| *kind == libc::IFLA_INFO_KIND)
                    .and_then(|(_, kind)| read_string(kind));
            }
            _ => {}
        }
    }
    Some(link)
}

/// An RTM_NEWROUTE payload, if it is a unicast default route of the main
/// table with at least one output device.
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
    for (attr, value) in attributes(&payload[ROUTE_HEADER_LEN..]) {
        match attr {
            libc::RTA_TABLE => table = read_u32(value)?,
            libc::RTA_PRIORITY => metric = read_u32(value)?,
            libc::RTA_OIF => interfaces.push(read_u32(value)?),
            libc::RTA_MULTIPATH => interfaces.extend(next_hops(value)),
            _ => {}
        }
    }
    (table == u32::from(libc::RT_TABLE_MAIN) && !interfaces.is_empty()).then_some(DefaultRoute {
        family: AddressFamily::from(family),
        metric,
        interfaces,
    })
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
        let got: Vec<_> = frames(&datagram).map(|f| f.unwrap()).collect();
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
                for (_, _, payload) in frames(input).map_while(Result::ok) {
                    let _ = parse_link(payload);
                    let _ = default_route(payload);
                    let _ = next_hops(payload);
                }
            }
        }
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
                metric: 100,
                interfaces: vec![3]
            })
        );

        let mut hop_a = RouteNextHop::default();
        hop_a.interface_index = 5;
        let mut hop_b = RouteNextHop::default();
        hop_b.interface_index = 6;
        route.attributes = vec![RouteAttribute::MultiPath(vec![hop_a, hop_b])];
        assert_eq!(default_route(&emit(&route)).unwrap().interfaces, [5, 6]);

        route.attributes = vec![RouteAttribute::Table(100), RouteAttribute::Oif(3)];
        assert_eq!(default_route(&emit(&route)), None, "not the main table");
        route.attributes = vec![RouteAttribute::Oif(3)];
        route.header.destination_prefix_length = 8;
        assert_eq!(default_route(&emit(&route)), None, "not a default route");
    }
}
