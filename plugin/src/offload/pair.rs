//! Tuning one veth pair, for every front end that finds pairs (the pod job
//! from the pod's side, the agent from the host's): the ends a placement
//! names, every one found and read before any is changed, one plan.

use super::settings::FeatureSettings;
use super::tune::{End, EndReport, Endpoint, FeaturePlan, FeatureProblem};
use super::veth::PeerError;
use super::wanted::Placement;
use super::KernelError;
use crate::kernel::ethtool::FeatureState;
use std::collections::BTreeMap;
use std::fmt;
use std::io;

/// A pair's two ends: the container end always (it was found first), the
/// host end if it could be reached, else why not.
pub struct Pair<'s> {
    pub container: Endpoint<'s>,
    pub host: Result<Endpoint<'s>, PeerError>,
}

/// Set the features (ADD) or only compare them (CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Set,
    Verify,
}

/// One way a pod's pair is not as the policy wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A feature of one end.
    Feature {
        end: End,
        ifname: String,
        problem: FeatureProblem,
    },
    /// The placement covers the host end, and it cannot be found.
    HostEndUnreachable(PeerError),
    /// The host end merges (GRO) on a pair that carries the fix: it hands
    /// the node merged packets with partial checksums to forward to the
    /// NIC the fix is for, whatever turned it on.
    MergesOnHostEnd(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Feature {
                end,
                ifname,
                problem,
            } => write!(f, "{end} {ifname}: {problem}"),
            Self::HostEndUnreachable(why) => write!(f, "host end: {why}"),
            Self::MergesOnHostEnd(ifname) => write!(
                f,
                "host {ifname}: GRO is on, so it merges the pod's checksummed segments into packets with partial checksums that the node forwards to the NIC this pair is fixed for; turn GRO off there (docs/performance.md#cheaper-veth-settings)"
            ),
        }
    }
}

/// Every problem a job found, in the order of the ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Adds the feature problems `report` found on `ifname`, at `end`.
    pub fn add_report(&mut self, end: End, ifname: &str, report: &EndReport) {
        self.0.extend(
            report
                .problems
                .iter()
                .cloned()
                .map(|problem| Problem::Feature {
                    end,
                    ifname: ifname.to_string(),
                    problem,
                }),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any problem is a feature found in the wrong state (as
    /// opposed to an end that could not be reached).
    pub fn has_feature_problems(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Problem::Feature { .. }))
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Told, before any change to an end, its state and the bits about to be
/// sent: the agent records there what it can later restore. A journal
/// that fails stops the change.
pub trait Journal {
    fn before_change(
        &mut self,
        target: Endpoint<'_>,
        plan: &FeaturePlan,
        before: &FeatureState,
        changes: &[(usize, bool)],
    ) -> io::Result<()>;
}

/// What a journal records of `changes`: the original requested state of
/// each bit about to be sent that `known` does not hold yet (the first
/// original is the one to restore).
pub fn originals(
    plan: &FeaturePlan,
    before: &FeatureState,
    changes: &[(usize, bool)],
    known: impl Fn(&str) -> bool,
) -> BTreeMap<String, bool> {
    changes
        .iter()
        .filter_map(|(i, _)| plan.names.get(*i).map(|n| (n, before.requested(*i))))
        .filter(|(n, _)| !known(n))
        .map(|(n, v)| (n.clone(), v))
        .collect()
}

/// No record kept (the CNI plugin: a pod's veth dies with the pod).
pub struct NoJournal;

impl Journal for NoJournal {
    fn before_change(
        &mut self,
        _: Endpoint<'_>,
        _: &FeaturePlan,
        _: &FeatureState,
        _: &[(usize, bool)],
    ) -> io::Result<()> {
        Ok(())
    }
}

/// What tuning did to, or found on, one end.
#[derive(Debug)]
pub struct EndOutcome {
    pub end: End,
    pub ifname: String,
    pub report: EndReport,
}

/// What tuning a pair did: per end (only the ends the placement names and
/// that were reached), and every problem.
#[derive(Debug, Default)]
pub struct PairOutcome {
    pub ends: Vec<EndOutcome>,
    pub problems: Problems,
}

/// Sets (or verifies) `settings` on the ends of `pair` that `placement`
/// names.
pub fn conform(
    pair: &Pair<'_>,
    settings: &FeatureSettings,
    placement: Placement,
    mode: Mode,
    journal: &mut dyn Journal,
) -> Result<PairOutcome, KernelError> {
    let mut targets = Vec::new();
    if placement.container() {
        targets.push(pair.container);
    }
    if placement.host() {
        match &pair.host {
            Ok(host) => targets.push(*host),
            // Every end the placement covers must be there before any is
            // changed: half a fix is reported, never left behind. An end
            // that cannot be found is not "drift" either.
            Err(why) => {
                return Ok(PairOutcome {
                    ends: Vec::new(),
                    problems: Problems(vec![Problem::HostEndUnreachable(why.clone())]),
                })
            }
        }
    }
    let Some(first) = targets.first() else {
        return Ok(PairOutcome::default());
    };
    let plan = FeaturePlan::read(settings, *first)
        .map_err(|e| KernelError::new("reading feature names", e))?;
    // Read every end before changing any, for the same reason.
    let mut states = Vec::with_capacity(targets.len());
    for target in &targets {
        let state = plan
            .state(*target)
            .map_err(|e| KernelError::new(&target.to_string(), e))?;
        states.push(state);
    }
    let mut outcome = PairOutcome::default();
    for (target, before) in targets.iter().zip(states) {
        let report = match mode {
            Mode::Verify => plan.verify(&before),
            Mode::Set => {
                let changes = plan.changes(&before);
                if !changes.is_empty() {
                    journal
                        .before_change(*target, &plan, &before, &changes)
                        .map_err(|e| {
                            KernelError::new(&format!("{target}: recording its state"), e)
                        })?;
                }
                plan.apply(*target, before, &changes)
                    .map_err(|e| KernelError::new(&target.to_string(), e))?
            }
        };
        outcome
            .problems
            .add_report(target.end, target.ifname, &report);
        outcome.ends.push(EndOutcome {
            end: target.end,
            ifname: target.ifname.to_string(),
            report,
        });
    }
    if let (Ok(host), true) = (&pair.host, placement.host() && settings.turns_gro_on()) {
        if host_end_undoes_the_fix(&plan, settings, pair.container, *host)? {
            outcome
                .problems
                .0
                .push(Problem::MergesOnHostEnd(host.ifname.to_string()));
        }
    }
    Ok(outcome)
}

/// Settings that turn GRO on for the host end: whether that end now merges
/// on a pair that carries the fix (these settings turn TX checksum off, or
/// an end already has it off: another entry of the chain). The host end
/// forwards what it receives from the pod; GRO there merges the pod's
/// segments, checksummed in software, into one packet the kernel marks
/// CHECKSUM_PARTIAL, and the node forwards it to the NIC partial, whatever
/// the host end's own TX setting. The wire check shows it
/// (docs/performance.md#cheaper-veth-settings). Only a GRO these settings
/// ask for is judged: a veth's GRO flag set otherwise (on by default on
/// older kernels, where a veth without NAPI merges nothing) is not this
/// entry's doing, and failing pods for it would harm nodes that work.
fn host_end_undoes_the_fix(
    plan: &FeaturePlan,
    settings: &FeatureSettings,
    container: Endpoint<'_>,
    host: Endpoint<'_>,
) -> Result<bool, KernelError> {
    let read = |end: Endpoint<'_>| {
        plan.state(end)
            .map_err(|e| KernelError::new(&end.to_string(), e))
    };
    let host_state = read(host)?;
    if !plan.merges(&host_state) {
        return Ok(false);
    }
    Ok(settings.turns_checksum_off()
        || plan.checksums_in_software(&host_state)
        || plan.checksums_in_software(&read(container)?))
}
