//! The classification of the kernel's link and routing events into the
//! daemon's work: which pairs to check, which peer entries to read again,
//! and whether a full pass or a new detection is due. The daemon's loop
//! (`daemon`) acts on it; nothing here touches an interface.

use super::reconcile::Agent;
use super::scan;
use crate::kernel::monitor::Event;
use std::collections::{BTreeMap, BTreeSet};

/// What a batch of events asks of the daemon.
#[derive(Debug, Default)]
pub(super) struct Work {
    /// Host ends of the pairs to check.
    pub check: BTreeSet<u32>,
    /// Host ends whose peer entry must be read again.
    pub refresh: BTreeSet<u32>,
    /// A full pass now (the uplink under `apply: "uplink"` changed).
    pub full_pass: bool,
    /// Detect the uplink again, after the rest of the burst.
    pub redetect: bool,
}

/// Sorts `events` into work; keeps `peers` and the agent's record of
/// conforming pairs current as links come and go.
pub(super) fn classify(events: Vec<Event>, agent: &mut Agent, peers: &mut Peers) -> Work {
    let mut work = Work::default();
    for event in events {
        match event {
            Event::Link { nsid: None, link } if scan::is_container_veth(&link) => {
                peers.note(&link);
                work.check.insert(link.index);
                // A veth uplink (a kind node's eth0) looks like one.
                if agent.config.placement == crate::config::Placement::Uplink
                    && agent.is_uplink_device(&link.name)
                {
                    work.full_pass = true;
                }
            }
            Event::Link { nsid: None, link } => {
                // Not a container's veth: maybe the uplink (a NIC
                // plugged, renamed, enslaved).
                if !link.is_veth() {
                    work.redetect = true;
                }
                // Under apply "uplink", a NIC's features changed (the
                // kernel tells every feature change): look again.
                if agent.config.placement == crate::config::Placement::Uplink
                    && agent.is_uplink_device(&link.name)
                {
                    work.full_pass = true;
                }
            }
            Event::Link {
                nsid: Some(nsid),
                link,
            } => {
                // A container end changed (a feature, a rename).
                if let Some(host) = peers.host_of(nsid, link.index) {
                    work.check.insert(host);
                }
            }
            Event::LinkGone {
                nsid: None,
                index,
                peer_of_moved,
            } => {
                peers.forget(index);
                agent.forget(index);
                match peer_of_moved {
                    // The container end went into its netns: the end
                    // that stayed is a container's veth now.
                    Some(host) => {
                        work.check.insert(host);
                        work.refresh.insert(host);
                    }
                    None => {
                        work.redetect = true;
                    }
                }
            }
            Event::LinkGone { .. } => {}
            Event::Routing => {
                work.redetect = true;
            }
        }
    }
    work
}

/// Container ends by (netns id, ifindex), to find the pair of an event
/// from a container's netns. Rebuilt at every full pass and kept current
/// by the host's link events; an id is never trusted past its pair.
#[derive(Default)]
pub(super) struct Peers(BTreeMap<(i32, u32), u32>);

impl Peers {
    pub(super) fn rebuild(&mut self, agent: &mut Agent) {
        self.0.clear();
        if let Ok(pairs) = agent.pairs() {
            for link in pairs {
                self.note(&link);
            }
        }
    }

    pub(super) fn note(&mut self, host_end: &crate::kernel::link::Link) {
        if let (Some(nsid), Some(peer)) = (host_end.link_netnsid, host_end.link) {
            self.0.retain(|_, h| *h != host_end.index);
            self.0.insert((nsid, peer), host_end.index);
        }
    }

    fn forget(&mut self, host_index: u32) {
        self.0.retain(|_, h| *h != host_index);
    }

    fn host_of(&self, nsid: i32, index: u32) -> Option<u32> {
        self.0.get(&(nsid, index)).copied()
    }
}
