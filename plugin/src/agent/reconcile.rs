//! Bringing container veth pairs to the policy: one pair at a time, or
//! every pair in a full pass. The decision, the pair lookup and the tuning
//! are the core's, exactly as the plugin runs them at ADD.

use super::metrics::{Metrics, ProbeMetrics, UplinkInfo};
use super::scan::{is_container_veth, may_touch, uplink_devices, NetnsIndex, Scope};
use super::state::{PairId, StateFile};
use crate::config::{Config, Detection, Placement};
use crate::kernel::link::Link;
use crate::kernel::netlink::RouteSocket;
use crate::kernel::netns;
use crate::offload::decision::{decide, Decision};
use crate::offload::detection::DetectError;
use crate::offload::nic_record::RECORD_FILE;
use crate::offload::nics;
use crate::offload::pair::{self, Journal, Mode, NoJournal, Pair};
use crate::offload::tune::{End, Endpoint};
use crate::offload::veth;
use crate::offload::wanted::NoProbePath;
use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use super::outcome::Checked;
use super::outcome::{Because, Change, EndChange, Failure, Subject};

/// The agent's view of the node, and its tools.
pub struct Agent {
    pub config: Config,
    pub scope: Scope,
    pub netns_dirs: Vec<PathBuf>,
    pub dry_run: bool,
    /// Where the peers' netns are, kept for the agent's life (verified at
    /// every use).
    namespaces: NetnsIndex,
    pub host: RouteSocket,
    host_netns: OwnedFd,
    pub state: Option<StateFile>,
    pub metrics: Arc<Mutex<Metrics>>,
    /// The node's decision, or why there is none.
    decision: Result<Decision, DetectError>,
    /// The uplink's devices, never touched: the decision's, or with
    /// `hostDriver` (no detection) what detection would walk, if anything.
    uplink_devices: Vec<String>,
    /// Host ends found conforming (or made so): a later change there is
    /// drift repaired.
    conforming: BTreeSet<u32>,
    /// The same for the uplink's NICs (`apply: "uplink"`), by name.
    conforming_nics: BTreeSet<String>,
    /// Why this node does not probe, as last logged: said once, not at
    /// every interval.
    pub no_probe_path: Option<NoProbePath>,
}

impl Agent {
    pub fn new(
        config: Config,
        scope: Scope,
        netns_dirs: Vec<PathBuf>,
        scan_processes: bool,
        dry_run: bool,
        state: Option<StateFile>,
    ) -> std::io::Result<Self> {
        let decision = decide(&config);
        let mut agent = Self {
            config,
            scope,
            namespaces: NetnsIndex::new(&netns_dirs, scan_processes),
            netns_dirs,
            dry_run,
            host: RouteSocket::open()?,
            host_netns: netns::current()?,
            state,
            metrics: Arc::new(Mutex::new(Metrics::default())),
            decision,
            uplink_devices: Vec::new(),
            conforming: BTreeSet::new(),
            conforming_nics: BTreeSet::new(),
            no_probe_path: None,
        };
        agent.publish(true);
        Ok(agent)
    }

    pub fn decision(&self) -> Result<&Decision, &DetectError> {
        self.decision.as_ref()
    }

    /// Runs the decision again (after routing or uplink changes, or a new
    /// config); returns whether what pods get changed.
    pub fn redecide(&mut self) -> bool {
        let new = decide(&self.config);
        let key = |d: &Result<Decision, DetectError>| match d {
            Ok(d) => format!("{} {:?}", d.settings, d.devices),
            Err(e) => e.to_string(),
        };
        let changed = key(&new) != key(&self.decision);
        self.decision = new;
        self.publish(changed);
        changed
    }

    /// Makes the decision known: logged when it `changed` (and at start),
    /// in the metrics, and the uplink's devices found again.
    fn publish(&mut self, changed: bool) {
        let new = &self.decision;
        if changed {
            match &new {
                Ok(d) => {
                    for line in d.to_string().lines() {
                        log::info!("decision: {line}");
                    }
                }
                Err(e) => {
                    log::warn!("host NIC detection failed: {e}; changing nothing until it succeeds")
                }
            }
        }
        if let Ok(mut m) = self.metrics.lock() {
            m.detection_ok = new.is_ok();
            m.uplinks = new
                .as_ref()
                .map(|d| {
                    d.nics
                        .iter()
                        .map(|n| UplinkInfo {
                            nic: n.name.clone(),
                            driver: n.driver.clone(),
                            driver_version: n.driver_version.clone(),
                            firmware_version: n.firmware_version.clone(),
                            settings: n.settings.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            m.settings = new
                .as_ref()
                .map(|d| d.settings.to_string())
                .unwrap_or_default();
            if self.config.detection == Detection::Table {
                m.probe = None;
            } else {
                let view = new.as_ref().ok().and_then(|d| d.probe.as_ref());
                let p = m.probe.get_or_insert_with(ProbeMetrics::default);
                p.verdict = view.and_then(|v| v.verdict);
                p.at = view.and_then(|v| v.at).unwrap_or_default();
                p.fallback =
                    view.is_none_or(|v| v.fallback) && self.config.detection == Detection::Probe;
                p.disagreement = view.is_some_and(|v| v.disagreement.is_some());
            }
        }
        // With hostDriver the decision walks nothing; the uplink must still
        // be known, or a node whose uplink is a veth (a kind node's eth0)
        // would have it taken for a container's.
        let walked = new.as_ref().map(|d| d.devices.as_slice()).unwrap_or(&[]);
        self.uplink_devices = uplink_devices(
            &mut self.host,
            walked,
            self.config.host_interface.as_deref(),
        );
    }

    /// What the probe measures, by name: the uplink's devices and their
    /// drivers (empty when detection failed). When it changes, the agent
    /// probes again.
    pub fn uplink_key(&self) -> String {
        match &self.decision {
            Ok(d) => format!("{:?} {}", d.devices, d.nic_list()),
            Err(_) => String::new(),
        }
    }

    /// Every container veth pair of the host netns, by host ifindex.
    pub fn pairs(&mut self) -> std::io::Result<Vec<Link>> {
        let mut links = self.host.links()?;
        links.retain(is_container_veth);
        Ok(links)
    }

    /// Checks (and, unless a dry run, fixes) every pair; returns each
    /// pair's host end and what checking it came to.
    pub fn full_pass(&mut self) -> std::io::Result<Vec<(String, Checked)>> {
        let pairs = self.pairs()?;
        let mut results = Vec::with_capacity(pairs.len());
        for link in &pairs {
            let checked = self.check(link.index);
            results.push((link.name.clone(), checked));
        }
        // Records of pairs that are gone would only mislead a restore.
        let alive: BTreeSet<(u32, String, u32)> = pairs
            .iter()
            .map(|l| (l.index, l.name.clone(), l.link.unwrap_or_default()))
            .collect();
        if let Some(state) = &mut self.state {
            if let Err(e) =
                state.retain(|p| alive.contains(&(p.host_index, p.host.clone(), p.peer_index)))
            {
                log::warn!("cannot prune the restore records: {e}");
            }
        }
        self.conforming
            .retain(|i| pairs.iter().any(|l| l.index == *i));
        if let Ok(mut m) = self.metrics.lock() {
            m.pairs = results
                .iter()
                .filter(|(_, c)| !matches!(c, Checked::Skipped))
                .count() as u64;
            m.pairs_conforming = results
                .iter()
                .filter(|(_, c)| matches!(c, Checked::Conforming | Checked::Changed(_)))
                .count() as u64;
            m.full_passes_total += 1;
            m.touch();
        }
        Ok(results)
    }

    /// The uplink placement: every NIC whose policy asks for something set
    /// (unless a dry run) through the same core as the plugin's ADD, the
    /// original state recorded first. Empty under any other placement.
    pub fn uplink_pass(&mut self) -> Vec<(String, Checked)> {
        let decision = match &self.decision {
            Ok(d) if d.placement == Placement::Uplink => d.clone(),
            _ => return Vec::new(),
        };
        let mode = if self.dry_run {
            Mode::Verify
        } else {
            Mode::Set
        };
        let outcome = match nics::conform(&decision, mode, std::path::Path::new(RECORD_FILE)) {
            Ok(o) => o,
            Err(e) => return vec![("uplink".into(), Checked::Failed(Failure::UplinkNics(e)))],
        };
        let mut results = Vec::new();
        let dry_run = self.dry_run;
        for nic in &outcome.nics {
            let subject = Subject::Nic {
                end: nic.end,
                ifname: nic.ifname.clone(),
            };
            let problems: Vec<pair::Problem> = outcome
                .problems
                .0
                .iter()
                .filter(
                    |p| matches!(p, pair::Problem::Feature { ifname, .. } if *ifname == nic.ifname),
                )
                .cloned()
                .collect();
            let settings = decision
                .nics_to_set()
                .find(|n| n.name == nic.ifname)
                .map(|n| n.wanted.clone())
                .unwrap_or_default();
            let change = |features: &Vec<String>, drift: bool| Change {
                subject: subject.clone(),
                because: Because::Uplink,
                settings: settings.clone(),
                ends: vec![EndChange {
                    end: nic.end,
                    ifname: nic.ifname.clone(),
                    features: features.clone(),
                }],
                drift,
                dry_run,
            };
            let failed = |problems| {
                Checked::Failed(Failure::NicProblems {
                    subject: subject.clone(),
                    problems,
                })
            };
            let checked = if self.dry_run {
                match (nic.report.pending.is_empty(), problems.is_empty()) {
                    (false, _) => Checked::WouldChange(change(&nic.report.pending, false)),
                    (true, true) => Checked::Conforming,
                    (true, false) => failed(problems),
                }
            } else if !problems.is_empty() {
                failed(problems)
            } else if nic.report.changed.is_empty() {
                self.conforming_nics.insert(nic.ifname.clone());
                Checked::Conforming
            } else {
                let drift = !self.conforming_nics.insert(nic.ifname.clone());
                if let Ok(mut m) = self.metrics.lock() {
                    m.changed_total += 1;
                    if drift {
                        m.drift_repaired_total += 1;
                    }
                }
                let change = change(&nic.report.changed, drift);
                log::info!("{change}");
                Checked::Changed(change)
            };
            if let (Checked::Failed(_), Ok(mut m)) = (&checked, self.metrics.lock()) {
                m.failed_total += 1;
            }
            results.push((subject.to_string(), checked));
        }
        results
    }

    /// Whether `name` is a device of the uplink (the placement's NICs and
    /// what stands above them).
    pub fn is_uplink_device(&self, name: &str) -> bool {
        self.uplink_devices.iter().any(|d| d == name)
    }

    /// Forgets a host end that went away.
    pub fn forget(&mut self, host_index: u32) {
        self.conforming.remove(&host_index);
    }

    /// Checks the pair whose host end is `host_index`.
    pub fn check(&mut self, host_index: u32) -> Checked {
        let checked = self.check_inner(host_index);
        if let Ok(mut m) = self.metrics.lock() {
            if !matches!(checked, Checked::Skipped) {
                m.checks_total += 1;
                m.touch();
            }
            if let Checked::Failed(_) = checked {
                m.failed_total += 1;
            }
        }
        checked
    }

    fn check_inner(&mut self, host_index: u32) -> Checked {
        let decision = match &self.decision {
            // The uplink placement leaves every veth as it is.
            Ok(d) if d.placement == Placement::Uplink => return Checked::Skipped,
            Ok(d) => d.clone(),
            // Nothing says a fix is needed: change nothing.
            Err(_) => return Checked::Skipped,
        };
        let link = match self.host.link_by_index(host_index) {
            Ok(Some(link)) => link,
            Ok(None) => return Checked::Skipped,
            Err(error) => {
                return Checked::Failed(Failure::ReadLink {
                    index: host_index,
                    error,
                })
            }
        };
        // Not a container's pair, or the uplink itself (a kind node's eth0).
        if may_touch(&link, &self.uplink_devices).is_err() {
            return Checked::Skipped;
        }
        let master = match link.master {
            Some(m) if !self.scope.bridges.is_empty() => {
                self.host.link_by_index(m).ok().flatten().map(|l| l.name)
            }
            _ => None,
        };
        if !self.scope.admits(&link, master.as_deref()) {
            return Checked::Skipped;
        }
        if decision.settings.is_empty() {
            return Checked::Conforming;
        }
        let nsid = link.link_netnsid.unwrap_or(-1);
        let Some(found) = self.namespaces.find(&mut self.host, nsid) else {
            return Checked::Failed(Failure::PeerNetnsNotFound {
                host: link.name.clone(),
                nsid,
                looked_in: self.netns_dirs.clone(),
            });
        };
        let path = found.path.display().to_string();
        let mut pod = match netns::run_in(&found.fd, &self.host_netns, RouteSocket::open) {
            Ok(Ok(socket)) => socket,
            Ok(Err(error)) | Err(error) => {
                return Checked::Failed(Failure::EnterNetns {
                    host: link.name.clone(),
                    netns: path,
                    error,
                })
            }
        };
        let peer = match veth::container_end_of(&link, &mut pod, self.host_netns.as_fd()) {
            Ok(Ok(peer)) => peer,
            Ok(Err(why)) => return Checked::Failed(Failure::Peer(why)),
            Err(error) => {
                return Checked::Failed(Failure::ReadPeer {
                    host: link.name.clone(),
                    netns: path,
                    error,
                })
            }
        };
        let subject = Subject::Pair {
            host: link.name.clone(),
            container: peer.name.clone(),
            netns: path,
        };
        let pair = Pair {
            container: Endpoint {
                end: End::Container,
                ifname: &peer.name,
                fd: pod.fd(),
            },
            host: Ok(Endpoint {
                end: End::Host,
                ifname: &link.name,
                fd: self.host.fd(),
            }),
        };
        let mode = if self.dry_run {
            Mode::Verify
        } else {
            Mode::Set
        };
        let journal: &mut dyn Journal = match &mut self.state {
            Some(state) => {
                state.current = Some(PairId {
                    host_index: link.index,
                    host: link.name.clone(),
                    peer_index: peer.index,
                });
                state
            }
            None => &mut NoJournal,
        };
        let outcome = match pair::conform(
            &pair,
            &decision.settings,
            self.config.placement,
            mode,
            journal,
        ) {
            Ok(o) => o,
            Err(error) => {
                return Checked::Failed(Failure::Kernel {
                    subject: subject.clone(),
                    error,
                })
            }
        };
        let dry_run = self.dry_run;
        let ends = |pick: fn(&pair::EndOutcome) -> &Vec<String>| {
            outcome
                .ends
                .iter()
                .filter(|e| !pick(e).is_empty())
                .map(|e| EndChange {
                    end: e.end,
                    ifname: e.ifname.clone(),
                    features: pick(e).clone(),
                })
                .collect::<Vec<_>>()
        };
        let changed = ends(|e| &e.report.changed);
        let pending = ends(|e| &e.report.pending);
        let change = |ends: Vec<EndChange>, drift: bool| Change {
            subject: subject.clone(),
            because: Because::HostNics {
                nics: decision.nic_list(),
            },
            settings: decision.settings.clone(),
            ends,
            drift,
            dry_run,
        };
        let failed = |problems: &pair::Problems| {
            Checked::Failed(Failure::Problems {
                subject: subject.clone(),
                problems: problems.clone(),
            })
        };
        if self.dry_run {
            // Reading only, every bit not yet set is a "problem": what
            // setting would change is the answer, unless nothing would.
            return match (pending.is_empty(), outcome.problems.is_empty()) {
                (false, _) => Checked::WouldChange(change(pending, false)),
                (true, true) => Checked::Conforming,
                (true, false) => failed(&outcome.problems),
            };
        }
        if !outcome.problems.is_empty() {
            return failed(&outcome.problems);
        }
        if changed.is_empty() {
            self.conforming.insert(link.index);
            return Checked::Conforming;
        }
        let ends_changed = outcome
            .ends
            .iter()
            .filter(|e| !e.report.changed.is_empty())
            .count();
        let drift = !self.conforming.insert(link.index);
        if let Ok(mut m) = self.metrics.lock() {
            m.changed_total += ends_changed as u64;
            if drift {
                m.drift_repaired_total += 1;
            }
        }
        let change = change(changed, drift);
        log::info!("{change}");
        Checked::Changed(change)
    }
}
