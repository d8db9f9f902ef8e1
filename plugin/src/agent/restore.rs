//! `csum-offload agent restore`: puts back what the agent changed, on the
//! interfaces that still exist and that the agent may change, and forgets
//! what it restored. Every record it could not read, could not apply or
//! refused is reported, stays in the journal, and makes the exit code 1:
//! the summary's "0 failed" is true or the command fails.

use super::error::{io, AgentError};
use super::lock;
use super::options::{netns_dirs, state_file};
use super::scan::{self, may_touch, NetnsIndex, Untouchable};
use super::state::{self, Record, RecordEnd, StateFile};
use crate::args::Args;
use crate::config;
use crate::kernel::link::Link;
use crate::kernel::netlink::RouteSocket;
use crate::kernel::netns;
use crate::offload::features;
use crate::offload::nic_record::RECORD_FILE;
use crate::offload::nics;
use crate::offload::tune::{self, End};
use crate::offload::veth::{self, PeerError};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why a record was not put back.
#[derive(Debug, thiserror::Error)]
enum NotRestored {
    /// The journal names an interface the agent never changes: whatever
    /// wrote that record, restoring it could only do harm.
    #[error("refused: {0}, which the agent never changes")]
    Refused(#[from] Untouchable),
    #[error("the record names an end {0:?}, neither \"host\" nor \"container\"")]
    UnknownEnd(String),
    #[error("reading interface #{index}: {source}")]
    Read { index: u32, source: io::Error },
    #[error("the netns of its peer (id {0}) was not found")]
    NetnsNotFound(i32),
    #[error("{}: {source}", path.display())]
    Netns { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("reading its peer: {0}")]
    ReadPeer(io::Error),
    #[error("setting {ifname}: {source}")]
    Set { ifname: String, source: io::Error },
}

/// What became of one record.
enum Outcome {
    /// Put back, on this interface.
    Restored(String),
    /// The pair is gone (its original state went with it): nothing to do.
    Gone(String),
    NotRestored(NotRestored),
}

/// What the host netns and the peers' netns are reached through.
struct Host {
    socket: RouteSocket,
    netns: OwnedFd,
    namespaces: NetnsIndex,
    /// The uplink's devices, as the agent knows them.
    uplink_devices: Vec<String>,
}

pub(super) fn command(mut args: Args) -> Result<String, AgentError> {
    let state_path = state_file(&mut args)?;
    let dirs = netns_dirs(&mut args)?;
    let scan_processes = !args.flag("--no-proc");
    // Only for `hostInterface`: the uplink it names is never restored.
    let config_path = args.value("--config")?.map(PathBuf::from);
    args.finish()?;
    let host_interface = match &config_path {
        Some(path) => config::load_file(path)?.host_interface,
        None => None,
    };
    // Refused before the lock file is made beside it.
    state::check(&state_path)?;
    let _lock = lock(&state_path).map_err(|e| match e {
        AgentError::Locked(why) => AgentError::Locked(format!(
            "{why}: stop it first, or its next look changes the interfaces again"
        )),
        e => e,
    })?;
    let mut state = StateFile::open(&state_path)?;
    let mut socket = RouteSocket::open().map_err(io("netlink socket"))?;
    let uplink_devices = scan::uplink_devices(&mut socket, &[], host_interface.as_deref());
    let mut host = Host {
        socket,
        netns: netns::current().map_err(io("netns"))?,
        namespaces: NetnsIndex::new(&dirs, scan_processes),
        uplink_devices,
    };
    let mut lines = Vec::new();
    let (mut restored, mut gone, mut failed) = (0, 0, 0);
    let unreadable = state.unreadable().len();
    for u in state.unreadable() {
        lines.push(format!(
            "UNREADABLE line {} of {}: {} (a write cut by a crash, or damage; kept in the journal)",
            u.line,
            state_path.display(),
            state::excerpt(&u.text)
        ));
    }
    let mut keep = Vec::new();
    for record in state.records().to_vec() {
        let label = format!("{} end of {}", record.end, record.pair.host);
        match restore_one(&mut host, &record) {
            Outcome::Restored(ifname) => {
                restored += 1;
                lines.push(format!(
                    "{label} ({ifname}): restored [{}]",
                    features::describe_states(&record.features)
                ));
            }
            Outcome::Gone(why) => {
                gone += 1;
                lines.push(format!("{label}: {why}; nothing to restore"));
            }
            Outcome::NotRestored(why) => {
                failed += 1;
                lines.push(format!("FAILED {label}: {why}"));
                keep.push(record);
            }
        }
    }
    let left = keep.len() + unreadable;
    state.replace(keep)?;
    // The NICs `apply: "uplink"` changed (the plugin's or an agent's).
    match nics::restore(Path::new(RECORD_FILE)) {
        Ok(r) => {
            restored += r.restored;
            gone += r.gone;
            failed += r.failed;
            lines.extend(r.lines);
        }
        Err(e) => {
            failed += 1;
            lines.push(format!("FAILED restoring the uplink NICs: {e}"));
        }
    }
    lines.push(format!(
        "{restored} restored, {gone} gone, {failed} failed, {unreadable} unreadable; {left} records left"
    ));
    let text = lines.join("\n");
    if failed + unreadable > 0 {
        return Err(AgentError::Unmet(text));
    }
    Ok(text)
}

/// One record: its pair looked up by the host end's ifindex, name and
/// peer, checked as the agent checks a pair before changing it, then the
/// recorded states sent back to the end it names.
fn restore_one(host: &mut Host, record: &Record) -> Outcome {
    let pair = &record.pair;
    let link = match host.socket.link_by_index(pair.host_index) {
        Ok(Some(l)) if l.name == pair.host && l.link == Some(pair.peer_index) => l,
        Ok(Some(l)) => {
            return Outcome::Gone(format!(
                "gone (interface #{} is {} now)",
                pair.host_index,
                l.describe()
            ))
        }
        Ok(None) => return Outcome::Gone("gone".into()),
        Err(source) => {
            return Outcome::NotRestored(NotRestored::Read {
                index: pair.host_index,
                source,
            })
        }
    };
    let result = may_touch(&link, &host.uplink_devices)
        .map_err(NotRestored::from)
        .and_then(|()| match &record.end {
            RecordEnd::Pair(End::Host) => {
                set_features(host.socket.fd(), &link.name, &record.features)
            }
            RecordEnd::Pair(End::Container) => restore_container_end(host, &link, &record.features),
            other => Err(NotRestored::UnknownEnd(other.to_string())),
        });
    match result {
        Ok(ifname) => Outcome::Restored(ifname),
        Err(e) => Outcome::NotRestored(e),
    }
}

fn restore_container_end(
    host: &mut Host,
    host_end: &Link,
    features: &BTreeMap<String, bool>,
) -> Result<String, NotRestored> {
    // may_touch has checked that the peer is in another netns.
    let nsid = host_end.link_netnsid.unwrap_or(-1);
    let found = host
        .namespaces
        .find(&mut host.socket, nsid)
        .ok_or(NotRestored::NetnsNotFound(nsid))?;
    let netns_err = |source| NotRestored::Netns {
        path: found.path.clone(),
        source,
    };
    let mut pod = netns::run_in(&found.fd, &host.netns, RouteSocket::open)
        .and_then(|r| r)
        .map_err(netns_err)?;
    let peer = veth::container_end_of(host_end, &mut pod, host.netns.as_fd())
        .map_err(NotRestored::ReadPeer)??;
    set_features(pod.fd(), &peer.name, features)
}

/// Sends the recorded requested states back in one SFEATURES.
fn set_features(
    fd: BorrowedFd<'_>,
    ifname: &str,
    features: &BTreeMap<String, bool>,
) -> Result<String, NotRestored> {
    tune::restore_requested(fd, ifname, features).map_err(|source| NotRestored::Set {
        ifname: ifname.to_string(),
        source,
    })?;
    Ok(ifname.to_string())
}
