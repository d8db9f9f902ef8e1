//! The probe: does a pod's TCP with TX checksum offload on reach an
//! off-node peer, compared with the same transfer with it off, on the same
//! path? (`csum-offload probe`, docs/probe.md.)
//!
//! - this file: the figures of one attempt and the verdict over all of
//!   them (pure, unit-tested);
//! - `toggle`: the pod interface's TX checksum bits set on or off, put
//!   back exactly, and the record that survives a SIGKILL;
//! - `path`: the throwaway pod (an unnamed netns and a veth, routed
//!   through the host) that dies with the process;
//! - `run`: one probe, in order: restore what a killed probe left, the
//!   path, the tries, the uplink's facts, the report.

pub mod evidence;
pub mod path;
pub mod run;
pub mod toggle;

use super::KernelError;
use crate::kernel::private::PrivateError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// TX checksum offload on the pod's interface during one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    On,
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::On => "on",
            Mode::Off => "off",
        })
    }
}

/// One transfer's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based.
    pub try_number: u32,
    pub mode: Mode,
    pub bytes: u64,
    pub bytes_acked: u64,
    pub millis: u64,
    /// Where and why it failed ("connect: Connection refused").
    pub error: Option<String>,
}

impl Attempt {
    /// The peer acknowledged every byte in time.
    pub fn delivered(&self) -> bool {
        self.error.is_none() && self.bytes_acked == self.bytes
    }
}

/// What the tries, taken together, say about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// On and off both delivered, in every try.
    Ok,
    /// Off delivered and on did not, in every try: segments whose
    /// checksum is left to the hardware do not arrive.
    Broken,
    /// Neither delivered, in any try: no listener, or no path.
    Unreachable,
    /// Anything else: the path or the target changed between attempts.
    Inconclusive,
}

impl Verdict {
    /// The process's exit code (2 is taken by usage and setup errors).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Broken => 1,
            Verdict::Unreachable => 3,
            Verdict::Inconclusive => 4,
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Verdict::Ok => "segments with TX checksum offload on arrive: this path needs no fix",
            Verdict::Broken => {
                "segments with TX checksum offload on are lost while the same transfer with it off \
                 arrives: this path needs TX checksum off on pod veths (or on the uplink)"
            }
            Verdict::Unreachable => {
                "no transfer arrived, offload on or off: check the target (a TCP listener that \
                 accepts N bytes) and the route to it"
            }
            Verdict::Inconclusive => {
                "the attempts disagree (the path or the target changed between them): probe again"
            }
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Broken => "broken",
            Verdict::Unreachable => "unreachable",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}

/// The verdict over every attempt. No attempts at all is inconclusive.
pub fn judge(attempts: &[Attempt]) -> Verdict {
    let of = |mode: Mode| -> Vec<bool> {
        attempts
            .iter()
            .filter(|a| a.mode == mode)
            .map(Attempt::delivered)
            .collect()
    };
    let (on, off) = (of(Mode::On), of(Mode::Off));
    if on.is_empty() || off.is_empty() {
        return Verdict::Inconclusive;
    }
    let every = |v: &[bool], want: bool| v.iter().all(|&d| d == want);
    match (
        every(&on, true),
        every(&on, false),
        every(&off, true),
        every(&off, false),
    ) {
        (true, _, true, _) => Verdict::Ok,
        (_, true, true, _) => Verdict::Broken,
        (_, true, _, true) => Verdict::Unreachable,
        _ => Verdict::Inconclusive,
    }
}

/// Why a probe could not run (as opposed to a verdict).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{ifname} does not exist in {netns}")]
    NoInterface { ifname: String, netns: String },
    #[error("{ifname} in {netns} has no TX checksum feature it can change")]
    NoTxChecksum { ifname: String, netns: String },
    #[error(
        "TX checksum offload on {ifname} did not turn {mode} (the driver refused); nothing to compare"
    )]
    ToggleRefused { ifname: String, mode: Mode },
    #[error("the probe's state file {path}: {source}")]
    State {
        path: String,
        #[source]
        source: PrivateError,
    },
    #[error(
        "this netns does not forward IPv4 (net.ipv4.ip_forward is 0), so a throwaway pod \
         cannot reach the target; the probe never changes that: use --netns with a real pod"
    )]
    NoForwarding,
    #[error("a throwaway pod needs --source (an IPv4 address the target routes back to this node) and an IPv4 target; or use --netns")]
    NeedsSource,
    #[error("--source {0} is already an address of this host; give an unused one")]
    SourceInUse(std::net::Ipv4Addr),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(mode: Mode, ok: bool) -> Attempt {
        Attempt {
            try_number: 1,
            mode,
            bytes: 10,
            bytes_acked: if ok { 10 } else { 0 },
            millis: 1,
            error: (!ok).then(|| "connect: timed out".to_string()),
        }
    }

    #[test]
    fn verdicts() {
        use Mode::{Off, On};
        let cases: &[(&[(Mode, bool)], Verdict)] = &[
            (&[(Off, true), (On, true)], Verdict::Ok),
            (
                &[(Off, true), (On, true), (Off, true), (On, true)],
                Verdict::Ok,
            ),
            (&[(Off, true), (On, false)], Verdict::Broken),
            (
                &[(Off, true), (On, false), (Off, true), (On, false)],
                Verdict::Broken,
            ),
            (&[(Off, false), (On, false)], Verdict::Unreachable),
            // Mixed: one try each way.
            (
                &[(Off, true), (On, true), (Off, true), (On, false)],
                Verdict::Inconclusive,
            ),
            (
                &[(Off, true), (On, false), (Off, false), (On, false)],
                Verdict::Inconclusive,
            ),
            // On works where off does not: not what a checksum bug does.
            (&[(Off, false), (On, true)], Verdict::Inconclusive),
            (&[], Verdict::Inconclusive),
            (&[(Off, true)], Verdict::Inconclusive),
        ];
        for (attempts, want) in cases {
            let list: Vec<Attempt> = attempts.iter().map(|&(m, ok)| a(m, ok)).collect();
            assert_eq!(judge(&list), *want, "{attempts:?}");
        }
    }

    #[test]
    fn partial_acks_are_not_delivery() {
        let mut x = a(Mode::On, true);
        x.bytes_acked = 9;
        assert!(!x.delivered());
        x.bytes_acked = 10;
        x.error = Some("wait for ack: deadline passed".into());
        assert!(!x.delivered());
    }

    #[test]
    fn exit_codes_are_distinct_and_skip_2() {
        let all = [
            Verdict::Ok,
            Verdict::Broken,
            Verdict::Unreachable,
            Verdict::Inconclusive,
        ];
        let codes: Vec<i32> = all.iter().map(|v| v.exit_code()).collect();
        assert_eq!(codes, [0, 1, 3, 4]);
    }
}
