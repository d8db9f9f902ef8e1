//! A synchronous rtnetlink client: the handful of requests this plugin
//! makes, on a socket bound to one netns.
//!
//! Synchronous on purpose: an ADD makes at most a few requests in sequence,
//! so an async runtime would only add start-up cost and binary size.

use crate::link::Link;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

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
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// The socket's fd; also serves SIOCETHTOOL, which acts on the netns the
    /// socket was created in.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Sends one request and collects every reply message until the answer
    /// is complete (one message, or NLMSG_DONE for a dump).
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let len = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            let mut offset = 0;
            while offset < len {
                let raw = &self.buffer[offset..len];
                let frame_len = NetlinkBuffer::new_checked(raw)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
                    .length() as usize;
                offset += (frame_len + 3) & !3;
                let msg =
                    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw[..frame_len]) {
                        Ok(m) => m,
                        Err(e) => {
                            // An attribute this crate cannot parse (a newer kernel)
                            // must not break detection: skip that one message.
                            log::debug!("skipping undecodable netlink message: {e}");
                            continue;
                        }
                    };
                if msg.header.sequence_number != self.sequence {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(err) => match err.code {
                        None => return Ok(replies),
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                    },
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !dump {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })
            .collect())
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
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Default routes of the main table for one address family, best
    /// (lowest metric) first.
    pub fn default_routes(&mut self, family: AddressFamily) -> io::Result<Vec<DefaultRoute>> {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        let replies = self.request(RouteNetlinkMessage::GetRoute(query), NLM_F_DUMP)?;
        let mut routes: Vec<DefaultRoute> = replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => default_route(r),
                _ => None,
            })
            .collect();
        routes.sort_by_key(|r| r.metric);
        Ok(routes)
    }

    /// The id under which this socket's netns knows the netns behind `fd`
    /// (what IFLA_LINK_NETNSID reports for links into it).
    pub fn nsid_of(&mut self, netns_fd: RawFd) -> io::Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(netns_fd as u32));
        let replies = self.request(RouteNetlinkMessage::GetNsId(msg), 0)?;
        Ok(replies.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewNsId(n) => n.attributes.into_iter().find_map(|a| match a {
                NsidAttribute::Id(id) if id >= 0 => Some(id),
                _ => None,
            }),
            _ => None,
        }))
    }
}

fn to_link(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        link: None,
        link_netnsid: None,
        master: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Link(l) => link.link = Some(l),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
            LinkAttribute::Controller(m) => link.master = Some(m),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.into_iter().find_map(|i| match i {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    link
}

fn default_route(route: RouteMessage) -> Option<DefaultRoute> {
    let RouteHeader {
        address_family,
        destination_prefix_length,
        table,
        kind,
        ..
    } = route.header;
    if destination_prefix_length != 0 || kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(table);
    let mut metric = 0;
    let mut interfaces = Vec::new();
    for attr in route.attributes {
        match attr {
            RouteAttribute::Table(t) => table = t,
            RouteAttribute::Priority(p) => metric = p,
            RouteAttribute::Oif(i) => interfaces.push(i),
            RouteAttribute::MultiPath(hops) => {
                interfaces.extend(hops.iter().map(|h| h.interface_index))
            }
            _ => {}
        }
    }
    (table == u32::from(RouteHeader::RT_TABLE_MAIN) && !interfaces.is_empty()).then_some(
        DefaultRoute {
            family: address_family,
            metric,
            interfaces,
        },
    )
}
