//! The few rtnetlink changes that wire a throwaway pod (the probe's): a
//! veth pair created with its far end already in another netns, links up
//! or deleted, an IPv4 address, a host route and a permanent neighbour.
//! Each is one request, acknowledged or refused by the kernel; nothing
//! here knows what the pieces are for.

use super::netlink::RouteSocket;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Creates the veth pair `name` <-> `peer`, `name` in this socket's netns
/// with the MAC `mac`, `peer` created directly in the netns behind
/// `peer_netns`. One request: there is no moment in which both ends live
/// in this netns, so a process killed at any point leaves either nothing
/// or a pair that dies with the peer's netns.
pub fn add_veth(
    socket: &mut RouteSocket,
    name: &str,
    mac: [u8; 6],
    peer: &str,
    peer_netns: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut far = LinkMessage::default();
    far.attributes = vec![
        LinkAttribute::IfName(peer.to_string()),
        LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
    ];
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::Address(mac.to_vec()),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(far))),
        ]),
    ];
    socket.change(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

/// Sets the link `index` up.
pub fn set_up(socket: &mut RouteSocket, index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    socket.change(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Deletes the link `index` (for a veth, both ends).
pub fn delete_link(socket: &mut RouteSocket, index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    socket.change(RouteNetlinkMessage::DelLink(msg), 0)
}

/// Adds `address/prefix` to the link `index`.
pub fn add_address(
    socket: &mut RouteSocket,
    index: u32,
    address: Ipv4Addr,
    prefix: u8,
) -> io::Result<()> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    msg.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(address)),
        AddressAttribute::Address(IpAddr::V4(address)),
    ];
    socket.change(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Adds `destination/prefix dev index scope link` to the main table;
/// refused (EEXIST) when that exact route is already there.
pub fn add_link_route(
    socket: &mut RouteSocket,
    destination: Ipv4Addr,
    prefix: u8,
    index: u32,
) -> io::Result<()> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = prefix;
    msg.header.table = libc::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = RouteScope::Link;
    msg.header.kind = RouteType::Unicast;
    msg.attributes = vec![RouteAttribute::Oif(index)];
    if prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    }
    socket.change(
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Adds a permanent neighbour entry `address -> mac` on the link `index`:
/// frames to `address` go to `mac` without ARP.
pub fn add_neighbour(
    socket: &mut RouteSocket,
    index: u32,
    address: Ipv4Addr,
    mac: [u8; 6],
) -> io::Result<()> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unicast;
    msg.attributes = vec![
        NeighbourAttribute::Destination(NeighbourAddress::Inet(address)),
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
    ];
    socket.change(
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}
