//! RFC 1071 Internet checksum and the TCP checksum over the IPv4/IPv6
//! pseudo-header, written out here rather than trusted to the kernel: the
//! point of the wire check is to verify what the kernel put on the wire.

use std::net::IpAddr;

/// Adds `data` as big-endian 16-bit words (an odd last byte padded with
/// zero) to a 32-bit accumulator, without folding.
pub fn sum_words(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds the carries back in (one's-complement addition), giving the
/// 16-bit one's-complement sum.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The RFC 1071 checksum of `data`: the complement of its one's-complement sum.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_words(0, data))
}

/// The unfolded sum of the TCP pseudo-header (RFC 793 / RFC 8200 8.1).
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, tcp_len: u32) -> u64 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum_words(acc, &s.octets());
            acc = sum_words(acc, &d.octets());
            acc += u64::from(libc::IPPROTO_TCP as u16);
            acc += u64::from(tcp_len);
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            acc = sum_words(acc, &v6(s));
            acc = sum_words(acc, &v6(d));
            acc = sum_words(acc, &tcp_len.to_be_bytes());
            acc += u64::from(libc::IPPROTO_TCP as u16);
        }
    }
    acc
}

/// What the checksum field of one TCP segment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The one's-complement sum over pseudo-header and segment is 0xffff.
    Valid,
    /// The field holds only the folded pseudo-header sum: the stack left
    /// the rest to the NIC (CHECKSUM_PARTIAL) and nothing completed it.
    Partial,
    /// Anything else: corrupted in flight or computed wrongly.
    Bad,
}

/// Verifies a whole TCP segment (header and payload) against its
/// pseudo-header.
pub fn verify_tcp(src: IpAddr, dst: IpAddr, segment: &[u8]) -> Verdict {
    let pseudo = pseudo_header_sum(src, dst, segment.len() as u32);
    if fold(sum_words(pseudo, segment)) == 0xffff {
        return Verdict::Valid;
    }
    let field = u16::from_be_bytes([segment[16], segment[17]]);
    if field == fold(pseudo) {
        Verdict::Partial
    } else {
        Verdict::Bad
    }
}

/// Computes the checksum a correct sender puts into `segment` (whose
/// checksum field is ignored). Used by the tests to build valid segments.
pub fn tcp_checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    let mut copy = segment.to_vec();
    copy[16] = 0;
    copy[17] = 0;
    let pseudo = pseudo_header_sum(src, dst, copy.len() as u32);
    !fold(sum_words(pseudo, &copy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn rfc1071_worked_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(0, &data)), 0xddf2);
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum_words(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_checksum_of_a_known_header() {
        // A well-known IPv4 header whose checksum field is 0xb861.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&hdr), 0);
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(internet_checksum(&zeroed), 0xb861);
    }

    /// A SYN from 10.99.1.2:40000 to 10.99.1.3:5001 whose checksum was
    /// computed by hand: pseudo-header 0x0a63 + 0x0102 + 0x0a63 + 0x0103 +
    /// 0x0006 + 0x0014 = 0x16e5; header words 0x9c40 + 0x1389 + 0x0001 +
    /// 0x5002 + 0xffff = 0x1_ffcb, folded 0xffcc; total 0x1_16b1, folded
    /// 0x16b2; checksum !0x16b2 = 0xe94d.
    fn syn() -> Vec<u8> {
        vec![
            0x9c, 0x40, 0x13, 0x89, // ports 40000 -> 5001
            0x00, 0x00, 0x00, 0x01, // seq 1
            0x00, 0x00, 0x00, 0x00, // ack 0
            0x50, 0x02, 0xff, 0xff, // data offset 5, SYN, window 65535
            0xe9, 0x4d, 0x00, 0x00, // checksum, urgent pointer
        ]
    }

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    #[test]
    fn hand_computed_syn_is_valid() {
        let (s, d) = (v4([10, 99, 1, 2]), v4([10, 99, 1, 3]));
        assert_eq!(tcp_checksum(s, d, &syn()), 0xe94d);
        assert_eq!(verify_tcp(s, d, &syn()), Verdict::Valid);
    }

    #[test]
    fn partial_checksum_is_recognised() {
        let (s, d) = (v4([10, 99, 1, 2]), v4([10, 99, 1, 3]));
        let mut seg = syn();
        // What the kernel leaves for the NIC: the folded pseudo-header sum.
        let partial = fold(pseudo_header_sum(s, d, seg.len() as u32));
        assert_eq!(partial, 0x16e5);
        seg[16..18].copy_from_slice(&partial.to_be_bytes());
        assert_eq!(verify_tcp(s, d, &seg), Verdict::Partial);
    }

    #[test]
    fn one_flipped_bit_is_bad() {
        let (s, d) = (v4([10, 99, 1, 2]), v4([10, 99, 1, 3]));
        let mut seg = syn();
        seg[4] ^= 0x01;
        assert_eq!(verify_tcp(s, d, &seg), Verdict::Bad);
        // The same segment checked against another address is bad too.
        assert_eq!(verify_tcp(s, v4([10, 99, 1, 4]), &syn()), Verdict::Bad);
    }

    #[test]
    fn ipv6_round_trip_with_payload() {
        let s = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
        let d = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3));
        let mut seg = syn();
        seg.extend_from_slice(b"hello, odd payload");
        let c = tcp_checksum(s, d, &seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(verify_tcp(s, d, &seg), Verdict::Valid);
        seg[25] ^= 0x80;
        assert_eq!(verify_tcp(s, d, &seg), Verdict::Bad);
    }
}
