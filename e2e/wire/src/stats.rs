//! Per-direction counts of what went by, printed as `key=value` lines a
//! shell script can read without a JSON tool.

use crate::checksum::Verdict;
use crate::frame::{Parsed, Segment};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub frames: u64,
    /// TCP segments whose checksum was checked.
    pub tcp: u64,
    /// Of those, segments with SYN set (connection attempts and answers).
    pub syn: u64,
    pub valid: u64,
    pub partial: u64,
    pub bad: u64,
    /// TCP frames too short to check.
    pub truncated: u64,
    /// Frames the kernel marked as checksum-not-ready (CHECKSUM_PARTIAL).
    pub kernel_partial: u64,
    pub payload_bytes: u64,
    /// Largest frame seen (a GSO packet is larger than the MTU).
    pub max_frame: u64,
    /// TCP segments whose IP packet is longer than `mtu`: GSO packets, or
    /// segments that GRO merged on the way in.
    pub large: u64,
    /// The interface's MTU (not printed).
    pub mtu: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self::with_mtu(1500)
    }
}

impl Counts {
    pub fn with_mtu(mtu: u64) -> Self {
        Counts {
            frames: 0,
            tcp: 0,
            syn: 0,
            valid: 0,
            partial: 0,
            bad: 0,
            truncated: 0,
            kernel_partial: 0,
            payload_bytes: 0,
            max_frame: 0,
            large: 0,
            mtu,
        }
    }

    /// Counts one frame; returns the segment if it was TCP on `port` (any
    /// port when `port` is None).
    pub fn add(
        &mut self,
        parsed: &Parsed,
        wire_len: usize,
        kernel_partial: bool,
        port: Option<u16>,
    ) -> Option<Segment> {
        self.frames += 1;
        self.max_frame = self.max_frame.max(wire_len as u64);
        match parsed {
            Parsed::Tcp(s) if port.is_none_or(|p| s.sport == p || s.dport == p) => {
                self.tcp += 1;
                self.syn += u64::from(s.flags & 0x02 != 0);
                self.payload_bytes += s.payload_len as u64;
                self.kernel_partial += u64::from(kernel_partial);
                self.large += u64::from(s.ip_len as u64 > self.mtu);
                match s.verdict {
                    Verdict::Valid => self.valid += 1,
                    Verdict::Partial => self.partial += 1,
                    Verdict::Bad => self.bad += 1,
                }
                Some(s.clone())
            }
            Parsed::Truncated => {
                self.truncated += 1;
                None
            }
            _ => None,
        }
    }

    pub fn merged(&self, other: &Counts) -> Counts {
        Counts {
            frames: self.frames + other.frames,
            tcp: self.tcp + other.tcp,
            syn: self.syn + other.syn,
            valid: self.valid + other.valid,
            partial: self.partial + other.partial,
            bad: self.bad + other.bad,
            truncated: self.truncated + other.truncated,
            kernel_partial: self.kernel_partial + other.kernel_partial,
            payload_bytes: self.payload_bytes + other.payload_bytes,
            max_frame: self.max_frame.max(other.max_frame),
            large: self.large + other.large,
            mtu: self.mtu.max(other.mtu),
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames={} tcp={} syn={} valid={} partial={} bad={} truncated={} kernel_partial={} payload_bytes={} max_frame={} large={}",
            self.frames,
            self.tcp,
            self.syn,
            self.valid,
            self.partial,
            self.bad,
            self.truncated,
            self.kernel_partial,
            self.payload_bytes,
            self.max_frame,
            self.large
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{parse, tests::ipv4_frame};

    #[test]
    fn counts_by_verdict_and_port() {
        let mut c = Counts::default();
        let good = parse(&ipv4_frame([10, 99, 1, 2], [10, 99, 1, 3], b"abc"));
        let mut raw = ipv4_frame([10, 99, 1, 2], [10, 99, 1, 3], b"abc");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let bad = parse(&raw);
        assert!(c.add(&good, 57, false, Some(5001)).is_some());
        assert!(c.add(&bad, 57, true, None).is_some());
        // Another port: counted as a frame only.
        assert!(c.add(&good, 57, false, Some(80)).is_none());
        c.add(&Parsed::Truncated, 9000, false, None);
        assert_eq!(
            c.to_string(),
            "frames=4 tcp=2 syn=0 valid=1 partial=0 bad=1 truncated=1 kernel_partial=1 payload_bytes=6 max_frame=9000 large=0"
        );
    }

    #[test]
    fn segments_above_the_mtu_count_as_large() {
        // 43-byte IP packets: above an MTU of 42, not of 43.
        let seg = parse(&ipv4_frame([10, 99, 1, 2], [10, 99, 1, 3], b"abc"));
        let mut small = Counts::with_mtu(43);
        let mut tight = Counts::with_mtu(42);
        small.add(&seg, 57, false, None);
        tight.add(&seg, 57, false, None);
        assert_eq!((small.large, tight.large), (0, 1));
        assert_eq!(small.merged(&tight).large, 1);
        assert_eq!(Counts::default().mtu, 1500);
    }
}
