//! Just enough Ethernet/IPv4/IPv6/TCP parsing to find a TCP segment in a
//! captured frame and check its checksum.

use crate::checksum::{verify_tcp, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const TCP: u8 = 6;

/// One TCP segment found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
    pub payload_len: usize,
    /// Length of the IP packet (header and segment): above the MTU for a
    /// GSO packet or one that GRO merged.
    pub ip_len: usize,
    pub verdict: Verdict,
}

/// What a frame turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Tcp(Segment),
    /// TCP, but the frame holds fewer bytes than the IP header announces:
    /// the checksum cannot be checked.
    Truncated,
    /// Not TCP over IP (ARP, ICMP, UDP, an IP fragment...).
    Other,
}

/// Parses an Ethernet frame as captured by an AF_PACKET socket.
pub fn parse(frame: &[u8]) -> Parsed {
    if frame.len() < ETH_HLEN {
        return Parsed::Other;
    }
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut off = ETH_HLEN;
    if ethertype == ETHERTYPE_VLAN && frame.len() >= off + 4 {
        ethertype = u16::from_be_bytes([frame[off + 2], frame[off + 3]]);
        off += 4;
    }
    let ip = &frame[off..];
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(ip),
        ETHERTYPE_IPV6 => parse_ipv6(ip),
        _ => Parsed::Other,
    }
}

fn parse_ipv4(ip: &[u8]) -> Parsed {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Parsed::Other;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    // More-fragments set or a non-zero offset: not a whole segment.
    if ip[9] != TCP || frag & 0x3fff != 0 || ihl < 20 {
        return Parsed::Other;
    }
    let mut total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // A GSO packet larger than 64 KiB carries 0 here (BIG TCP).
    if total == 0 {
        total = ip.len();
    }
    if total < ihl + 20 || ip.len() < total {
        return Parsed::Truncated;
    }
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    segment(src, dst, &ip[ihl..total], total)
}

fn parse_ipv6(ip: &[u8]) -> Parsed {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return Parsed::Other;
    }
    // Only TCP directly after the fixed header; extension headers are
    // not used on the test paths.
    if ip[6] != TCP {
        return Parsed::Other;
    }
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let end = if payload == 0 { ip.len() } else { 40 + payload };
    if ip.len() < end || end < 60 {
        return Parsed::Truncated;
    }
    let addr = |b: &[u8]| {
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    segment(addr(&ip[8..24]), addr(&ip[24..40]), &ip[40..end], end)
}

fn segment(src: IpAddr, dst: IpAddr, tcp: &[u8], ip_len: usize) -> Parsed {
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if data_offset < 20 || data_offset > tcp.len() {
        return Parsed::Other;
    }
    Parsed::Tcp(Segment {
        src,
        dst,
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        flags: tcp[13],
        payload_len: tcp.len() - data_offset,
        ip_len,
        verdict: verify_tcp(src, dst, tcp),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checksum::tcp_checksum;

    /// Builds an Ethernet/IPv4/TCP frame with a correct TCP checksum.
    pub fn ipv4_frame(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut tcp = vec![
            0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        ];
        tcp.extend_from_slice(payload);
        let (s, d) = (IpAddr::from(src), IpAddr::from(dst));
        let c = tcp_checksum(s, d, &tcp);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let total = (20 + tcp.len()) as u16;
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&tcp);
        f
    }

    #[test]
    fn valid_ipv4_segment() {
        let f = ipv4_frame([10, 99, 1, 2], [10, 99, 1, 3], b"payload!");
        match parse(&f) {
            Parsed::Tcp(s) => {
                assert_eq!(s.verdict, Verdict::Valid);
                assert_eq!((s.sport, s.dport, s.payload_len), (40000, 5001, 8));
                assert_eq!(s.ip_len, 20 + 20 + 8);
                assert_eq!(s.flags, 0x18);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ethernet_padding_is_not_part_of_the_segment() {
        // Short frames are padded to 60 bytes; the IP length bounds the segment.
        let mut f = ipv4_frame([10, 99, 1, 2], [10, 99, 1, 3], b"");
        f.resize(60, 0xaa);
        assert!(matches!(
            parse(&f),
            Parsed::Tcp(Segment {
                verdict: Verdict::Valid,
                ..
            })
        ));
    }

    #[test]
    fn truncated_and_other_frames() {
        let f = ipv4_frame([10, 99, 1, 2], [10, 99, 1, 3], b"payload!");
        assert_eq!(parse(&f[..f.len() - 1]), Parsed::Truncated);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp), Parsed::Other);
        let mut udp = f.clone();
        udp[23] = 17;
        assert_eq!(parse(&udp), Parsed::Other);
        let mut fragment = f;
        fragment[20] = 0x20; // more fragments
        assert_eq!(parse(&fragment), Parsed::Other);
        assert_eq!(parse(&[0u8; 10]), Parsed::Other);
    }

    #[test]
    fn corrupted_payload_is_bad() {
        let mut f = ipv4_frame([10, 99, 1, 2], [10, 99, 1, 3], b"payload!");
        let last = f.len() - 1;
        f[last] ^= 0xff;
        assert!(matches!(
            parse(&f),
            Parsed::Tcp(Segment {
                verdict: Verdict::Bad,
                ..
            })
        ));
    }
}
