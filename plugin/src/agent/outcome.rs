//! What checking one pair (or, under `apply: "uplink"`, one NIC) came to,
//! as values: the core's own outcomes and errors, with what they were
//! about. They become text only where they are printed (the `--once`
//! summary, the daemon's log).

use crate::offload::nics::NicError;
use crate::offload::pair::{Problem, Problems};
use crate::offload::settings::FeatureSettings;
use crate::offload::tune::End;
use crate::offload::veth::PeerError;
use crate::offload::KernelError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// What checking one pair or NIC came to.
#[derive(Debug)]
pub enum Checked {
    /// Already as the policy wants.
    Conforming,
    /// Changed: which ends and features.
    Changed(Change),
    /// Dry run: what would change.
    WouldChange(Change),
    /// Could not be brought to the policy, and why.
    Failed(Failure),
    /// Not a pair the agent touches (gone, out of scope, the uplink).
    Skipped,
}

/// What a check was about.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A container's veth pair: its host end, its container end and where
    /// that end's netns was found.
    Pair {
        host: String,
        container: String,
        netns: String,
    },
    /// A NIC of the uplink placement.
    Nic { end: End, ifname: String },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pair {
                host,
                container,
                netns,
            } => write!(f, "{host} / {container} in {netns}"),
            Self::Nic { end, ifname } => write!(f, "{end} {ifname}"),
        }
    }
}

/// The features one end had changed (or would have).
#[derive(Debug, Clone)]
pub struct EndChange {
    pub end: End,
    pub ifname: String,
    pub features: Vec<String>,
}

/// Why the settings are what they are.
#[derive(Debug, Clone)]
pub enum Because {
    /// The veth placements: the host NICs the decision rests on.
    HostNics { nics: String },
    /// `apply: "uplink"`: the NIC's own settings.
    Uplink,
}

/// What a check changed, or in a dry run would change.
#[derive(Debug, Clone)]
pub struct Change {
    pub subject: Subject,
    pub because: Because,
    pub settings: FeatureSettings,
    pub ends: Vec<EndChange>,
    /// Changed back after it had been found conforming.
    pub drift: bool,
    pub dry_run: bool,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let drift = if self.drift { " (drift repaired)" } else { "" };
        match (&self.because, self.dry_run) {
            (Because::HostNics { .. }, true) => {
                write!(f, "{}: would change ", self.subject)?;
                ends(f, &self.ends)
            }
            (Because::HostNics { nics }, false) => {
                write!(
                    f,
                    "{}: host NIC {nics} -> {}; changed ",
                    self.subject, self.settings
                )?;
                ends(f, &self.ends)?;
                f.write_str(drift)
            }
            (Because::Uplink, dry_run) => {
                let features: Vec<&str> = self
                    .ends
                    .iter()
                    .flat_map(|e| e.features.iter().map(String::as_str))
                    .collect();
                match dry_run {
                    true => write!(
                        f,
                        "{}: -> {}; would change [{}]",
                        self.subject,
                        self.settings,
                        features.join(", ")
                    ),
                    false => write!(
                        f,
                        "{}: -> {} (apply \"uplink\"); changed [{}]{drift}",
                        self.subject,
                        self.settings,
                        features.join(", ")
                    ),
                }
            }
        }
    }
}

/// "container eth0 [a off, b off], host ah1 [a off, b off]".
fn ends(f: &mut fmt::Formatter<'_>, ends: &[EndChange]) -> fmt::Result {
    for (i, e) in ends.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        write!(f, "{sep}{} {} [{}]", e.end, e.ifname, e.features.join(", "))?;
    }
    Ok(())
}

/// Why a pair or NIC could not be brought to the policy.
#[derive(Debug)]
pub enum Failure {
    /// The host end could not be read.
    ReadLink { index: u32, error: io::Error },
    /// The peer's netns is in none of the places the agent looks.
    PeerNetnsNotFound {
        host: String,
        nsid: i32,
        looked_in: Vec<PathBuf>,
    },
    /// The peer's netns was found but could not be entered.
    EnterNetns {
        host: String,
        netns: String,
        error: io::Error,
    },
    /// The peer is not what a container end is.
    Peer(PeerError),
    ReadPeer {
        host: String,
        netns: String,
        error: io::Error,
    },
    /// The kernel refused the tuning.
    Kernel {
        subject: Subject,
        error: KernelError,
    },
    /// Tuned, but some features are not as the policy wants.
    Problems {
        subject: Subject,
        problems: Problems,
    },
    /// Under `apply: "uplink"`, the NICs could not be tuned at all.
    UplinkNics(NicError),
    /// Under `apply: "uplink"`, one NIC's features are not as wanted.
    NicProblems {
        subject: Subject,
        problems: Vec<Problem>,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadLink { index, error } => {
                write!(f, "cannot read interface #{index}: {error}")
            }
            Self::PeerNetnsNotFound {
                host,
                nsid,
                looked_in,
            } => write!(
                f,
                "{host}: the netns of its peer (id {nsid}) is in none of {} nor under /proc",
                looked_in
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::EnterNetns { host, netns, error } => write!(f, "{host}: {netns}: {error}"),
            Self::Peer(why) => write!(f, "{why}"),
            Self::ReadPeer { host, netns, error } => {
                write!(f, "{host}: reading its peer in {netns}: {error}")
            }
            Self::Kernel { subject, error } => write!(f, "{subject}: {error}"),
            Self::Problems { subject, problems } => write!(f, "{subject}: {problems}"),
            Self::UplinkNics(e) => write!(f, "uplink NICs: {e}"),
            Self::NicProblems { subject, problems } => {
                let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                write!(f, "{subject}: {}", text.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FeatureSettings {
        FeatureSettings::from_json(&serde_json::json!({"tx": false}), "test").unwrap()
    }

    fn end(end: End, ifname: &str) -> EndChange {
        EndChange {
            end,
            ifname: ifname.into(),
            features: vec![
                "tx-checksum-ip-generic off".into(),
                "tx-checksum-sctp off".into(),
            ],
        }
    }

    #[test]
    fn a_change_reads_as_the_agent_has_always_printed_it() {
        let pair = Change {
            subject: Subject::Pair {
                host: "ah1".into(),
                container: "eth0".into(),
                netns: "/run/netns/p1".into(),
            },
            because: Because::HostNics {
                nics: "hostDriver txgbe".into(),
            },
            settings: settings(),
            ends: vec![end(End::Container, "eth0"), end(End::Host, "ah1")],
            drift: true,
            dry_run: false,
        };
        assert_eq!(
            pair.to_string(),
            "ah1 / eth0 in /run/netns/p1: host NIC hostDriver txgbe -> tx off; changed \
             container eth0 [tx-checksum-ip-generic off, tx-checksum-sctp off], \
             host ah1 [tx-checksum-ip-generic off, tx-checksum-sctp off] (drift repaired)"
        );
        let would = Change {
            dry_run: true,
            drift: false,
            ends: vec![end(End::Host, "ah1")],
            ..pair
        };
        assert_eq!(
            would.to_string(),
            "ah1 / eth0 in /run/netns/p1: would change host ah1 [tx-checksum-ip-generic off, tx-checksum-sctp off]"
        );
        let nic = Change {
            subject: Subject::Nic {
                end: End::Nic,
                ifname: "up0".into(),
            },
            because: Because::Uplink,
            settings: settings(),
            ends: vec![end(End::Nic, "up0")],
            drift: false,
            dry_run: false,
        };
        assert_eq!(
            nic.to_string(),
            "uplink NIC up0: -> tx off (apply \"uplink\"); changed [tx-checksum-ip-generic off, tx-checksum-sctp off]"
        );
        let failed = Failure::PeerNetnsNotFound {
            host: "ah1".into(),
            nsid: 4,
            looked_in: vec!["/run/netns".into(), "/var/run/docker/netns".into()],
        };
        assert_eq!(
            failed.to_string(),
            "ah1: the netns of its peer (id 4) is in none of /run/netns, /var/run/docker/netns nor under /proc"
        );
    }
}
