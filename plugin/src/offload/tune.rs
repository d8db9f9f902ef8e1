//! Tuning one interface: settings resolved to this kernel's feature bits
//! (`FeaturePlan`), set in one ETHTOOL_SFEATURES, read back and judged.

use super::features::on_off;
use super::settings::{FeatureSettings, GRO_FEATURES};
use crate::kernel::ethtool::{self, FeatureState};
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;

/// What an interface being tuned is: an end of a pod's veth pair, or a
/// NIC of the uplink (the uplink placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Container,
    Host,
    Nic,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::Container => "container",
            End::Host => "host",
            End::Nic => "uplink NIC",
        })
    }
}

/// Sends recorded requested states back in one SFEATURES (a restore):
/// the features `features` names that `ifname` has.
pub fn restore_requested(
    fd: BorrowedFd<'_>,
    ifname: &str,
    features: &std::collections::BTreeMap<String, bool>,
) -> io::Result<()> {
    let names = ethtool::feature_names(fd, ifname)?;
    let changes: Vec<(usize, bool)> = features
        .iter()
        .filter_map(|(n, on)| names.iter().position(|k| k == n).map(|i| (i, *on)))
        .collect();
    ethtool::set_features(fd, ifname, names.len(), &changes)?;
    Ok(())
}

/// An interface to tune, with the socket of the netns it was found in:
/// the fd is borrowed from that socket, so an endpoint cannot outlive it
/// and cannot be paired with another netns's socket by mistake.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'s> {
    pub end: End,
    pub ifname: &'s str,
    pub fd: BorrowedFd<'s>,
}

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.end, self.ifname)
    }
}

/// One kernel feature the settings ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedFeature {
    pub index: usize,
    pub name: String,
    pub enabled: bool,
    /// Named exactly (not through an alias): it must end in the wanted
    /// state even if the device has it fixed.
    pub exact: bool,
    /// The alias that asks for this feature on, when only an alias does:
    /// the alias is satisfied if any of its members can be on.
    pub alias_on: Option<String>,
}

/// Settings resolved against this kernel's feature table (global to the
/// kernel, so one plan serves every interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturePlan {
    pub names: Vec<String>,
    pub wanted: Vec<WantedFeature>,
    /// Keys asked on that name no feature this kernel has.
    pub missing: Vec<String>,
}

impl FeaturePlan {
    /// Reads the kernel's feature names through `any` and resolves
    /// `settings` against them.
    pub fn read(settings: &FeatureSettings, any: Endpoint<'_>) -> io::Result<Self> {
        let names = ethtool::feature_names(any.fd, any.ifname)?;
        Ok(Self::resolve(settings, names))
    }

    /// Resolves settings against the kernel's feature names. Where
    /// settings disagree on a feature (merged from several NICs), `false`
    /// wins: turning offload off is the safe side.
    pub fn resolve(settings: &FeatureSettings, names: Vec<String>) -> Self {
        let (wanted, missing) = wanted_bits(settings, &names);
        Self {
            names,
            wanted,
            missing,
        }
    }

    /// The current features of `target` (ETHTOOL_GFEATURES): reading them
    /// first for every end is also how a caller knows each end is there
    /// before it changes any.
    pub fn state(&self, target: Endpoint<'_>) -> io::Result<FeatureState> {
        ethtool::features(target.fd, target.ifname, self.names.len())
    }

    /// The bits to send to bring an interface in state `before` to the
    /// policy: none when it conforms. When anything is off from the
    /// policy, every wanted changeable bit is sent, as
    /// `ethtool -K dev tx off tso off` sends every feature it names: the
    /// kernel keeps the *requested* state, and a bit that is already off
    /// only as a consequence (TSO while TX checksum is off, "off
    /// [requested on]") would come back on when its dependency does.
    pub fn changes(&self, before: &FeatureState) -> Vec<(usize, bool)> {
        let changeable: Vec<&WantedFeature> = self
            .wanted
            .iter()
            .filter(|w| before.changeable(w.index))
            .collect();
        let stale = changeable
            .iter()
            .any(|w| before.active(w.index) != w.enabled || before.requested(w.index) != w.enabled);
        if stale {
            changeable.iter().map(|w| (w.index, w.enabled)).collect()
        } else {
            Vec::new()
        }
    }

    /// `changes` as a reader sees them: the features whose active state
    /// they would change, e.g. "tx-checksum-ip-generic off", and those
    /// whose request alone they would change, e.g. "tx-tcp-segmentation
    /// requested off" (a dry run must not call conforming what a real run
    /// changes).
    pub fn describe(&self, before: &FeatureState, changes: &[(usize, bool)]) -> Vec<String> {
        changes
            .iter()
            .filter_map(|(i, on)| {
                let name = self.names.get(*i)?;
                if before.active(*i) != *on {
                    Some(format!("{name} {}", on_off(*on)))
                } else if before.requested(*i) != *on {
                    Some(format!("{name} requested {}", on_off(*on)))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Sends `changes` (from `changes`) to `target`, whose state was
    /// `before`, in one SFEATURES call, then reads back and evaluates.
    pub fn apply(
        &self,
        target: Endpoint<'_>,
        before: FeatureState,
        changes: &[(usize, bool)],
    ) -> io::Result<EndReport> {
        let count = self.names.len();
        let after = if changes.is_empty() {
            before.clone()
        } else {
            let flags = ethtool::set_features(target.fd, target.ifname, count, changes)?;
            log::debug!("{}: SFEATURES returned flags {flags:#x}", target.ifname);
            ethtool::features(target.fd, target.ifname, count)?
        };
        let mut report = EndReport {
            problems: evaluate(&self.wanted, &self.missing, &after),
            ..EndReport::default()
        };
        for (i, name) in self.names.iter().enumerate() {
            if before.active(i) == after.active(i) {
                continue;
            }
            let entry = format!("{name} {}", on_off(after.active(i)));
            if changes.iter().any(|(c, _)| *c == i) {
                report.changed.push(entry);
            } else {
                report.side_effects.push(entry);
            }
        }
        Ok(report)
    }

    /// Evaluates a state read with `state`, changing nothing (CHECK).
    /// The active bits are judged: they are what packets see.
    pub fn verify(&self, state: &FeatureState) -> EndReport {
        let changes = self.changes(state);
        EndReport {
            pending: self.describe(state, &changes),
            problems: evaluate(&self.wanted, &self.missing, state),
            ..EndReport::default()
        }
    }

    /// Whether an interface in `state` merges received TCP segments (any
    /// GRO feature on).
    pub fn merges(&self, state: &FeatureState) -> bool {
        self.any_active(state, &|n| GRO_FEATURES.contains(&n))
    }

    /// Whether an interface in `state` leaves no IP checksum to the device
    /// (every `tx-checksum-ip*` feature off).
    pub fn checksums_in_software(&self, state: &FeatureState) -> bool {
        !self.any_active(state, &|n| n.starts_with("tx-checksum-ip"))
    }

    fn any_active(&self, state: &FeatureState, pick: &dyn Fn(&str) -> bool) -> bool {
        self.names
            .iter()
            .enumerate()
            .any(|(i, n)| pick(n) && state.active(i))
    }
}

/// The wanted bits of `settings` among `names`, and the keys asked on that
/// match no name (a feature the kernel does not have is as good as fixed
/// off).
fn wanted_bits(settings: &FeatureSettings, names: &[String]) -> (Vec<WantedFeature>, Vec<String>) {
    let mut wanted: Vec<WantedFeature> = Vec::new();
    let mut missing = Vec::new();
    for setting in &settings.0 {
        let mut any = false;
        for (index, name) in setting.selector.members(names) {
            any = true;
            match wanted.iter_mut().find(|w| w.index == index) {
                Some(w) => {
                    w.enabled &= setting.enabled;
                    w.exact |= !setting.selector.is_alias;
                    if w.exact || !w.enabled {
                        w.alias_on = None;
                    }
                }
                None => wanted.push(WantedFeature {
                    index,
                    name: name.to_string(),
                    enabled: setting.enabled,
                    exact: !setting.selector.is_alias,
                    alias_on: (setting.selector.is_alias && setting.enabled)
                        .then(|| setting.selector.key.clone()),
                }),
            }
        }
        if !any && setting.enabled {
            missing.push(setting.selector.key.clone());
        }
    }
    (wanted, missing)
}

/// Why a wanted feature is not in its wanted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureProblem {
    /// The device does not let this feature change (`[fixed]` in ethtool).
    Fixed { feature: String, wanted: bool },
    /// The feature is changeable but the kernel did not keep the request
    /// (e.g. TSO cannot be on without TX checksum).
    DidNotStick { feature: String, wanted: bool },
    /// The feature is in its wanted state only through a dependency: the
    /// kernel holds the opposite request (`ethtool -k` shows "off
    /// [requested on]"), so it flips back when that dependency does (TSO
    /// when TX checksum is turned on again).
    RequestedOtherwise { feature: String, wanted: bool },
    /// This kernel has no feature of that name or alias.
    Unsupported { key: String },
    /// An alias asked on, and the device has every feature it covers
    /// fixed off (`ethtool -K` fails the same way).
    AllFixed { key: String },
}

impl fmt::Display for FeatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed { feature, wanted } => {
                write!(
                    f,
                    "{feature} is fixed {} on this device, wanted {}",
                    on_off(!wanted),
                    on_off(*wanted)
                )
            }
            Self::DidNotStick { feature, wanted } => {
                write!(
                    f,
                    "{feature} is {} although {} was requested",
                    on_off(!wanted),
                    on_off(*wanted)
                )
            }
            Self::RequestedOtherwise { feature, wanted } => {
                write!(
                    f,
                    "{feature} is {} but requested {}, so it turns {} when the feature it depends on does",
                    on_off(*wanted),
                    on_off(!wanted),
                    on_off(!wanted)
                )
            }
            Self::Unsupported { key } => write!(f, "{key} is not a feature this kernel has"),
            Self::AllFixed { key } => {
                write!(
                    f,
                    "{key}: every feature it covers is fixed off on this device, wanted on"
                )
            }
        }
    }
}

/// Compares the state with the plan. Through an alias, a feature the device
/// has fixed off is fine when asking for on, as `ethtool -K dev tx on`
/// treats it; a fixed feature in the wrong state is a problem otherwise.
/// A changeable feature must also be *requested* as wanted: the kernel
/// acts on the request again whenever a dependency changes, so one that is
/// right only by consequence has drifted (`changes` sends it again).
pub fn evaluate(
    wanted: &[WantedFeature],
    missing: &[String],
    state: &FeatureState,
) -> Vec<FeatureProblem> {
    let mut problems: Vec<FeatureProblem> = missing
        .iter()
        .map(|key| FeatureProblem::Unsupported { key: key.clone() })
        .collect();
    for w in wanted {
        if state.active(w.index) == w.enabled {
            if state.changeable(w.index) && state.requested(w.index) != w.enabled {
                problems.push(FeatureProblem::RequestedOtherwise {
                    feature: w.name.clone(),
                    wanted: w.enabled,
                });
            }
            continue;
        }
        if state.changeable(w.index) {
            problems.push(FeatureProblem::DidNotStick {
                feature: w.name.clone(),
                wanted: w.enabled,
            });
        } else if w.exact || !w.enabled {
            problems.push(FeatureProblem::Fixed {
                feature: w.name.clone(),
                wanted: w.enabled,
            });
        }
    }
    let mut aliases: Vec<&str> = wanted
        .iter()
        .filter_map(|w| w.alias_on.as_deref())
        .collect();
    aliases.dedup();
    for key in aliases {
        let mut members = wanted.iter().filter(|w| w.alias_on.as_deref() == Some(key));
        if members.all(|w| !state.active(w.index) && !state.changeable(w.index)) {
            problems.push(FeatureProblem::AllFixed {
                key: key.to_string(),
            });
        }
    }
    problems
}

/// What setting (or, verifying, reading) one interface found and did.
#[derive(Debug, Default)]
pub struct EndReport {
    /// Features this call turned on or off.
    pub changed: Vec<String>,
    /// Verifying: the features setting would change.
    pub pending: Vec<String>,
    /// Features the kernel changed as a consequence (e.g. TSO off after TX
    /// checksum off).
    pub side_effects: Vec<String>,
    pub problems: Vec<FeatureProblem>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Vec<String> {
        [
            "tx-checksum-ipv4",
            "tx-checksum-ip-generic",
            "tx-checksum-ipv6",
            "tx-checksum-sctp",
            "tx-tcp-segmentation",
            "rx-gro",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn settings(v: serde_json::Value) -> FeatureSettings {
        FeatureSettings::from_json(&v, "t").unwrap()
    }

    /// A veth-like device: ipv4/ipv6 csum fixed off, the rest changeable.
    fn veth(active: [bool; 6]) -> FeatureState {
        let changeable = [false, true, false, true, true, true];
        FeatureState::from_flags(
            &active
                .iter()
                .zip(changeable)
                .map(|(a, c)| (*a, c))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn tx_off_plans_every_checksum_member() {
        let (w, missing) = wanted_bits(&settings(json!({"tx": false})), &names());
        assert_eq!(w.iter().map(|w| w.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(w.iter().all(|w| !w.enabled && !w.exact));
        assert!(missing.is_empty());
    }

    #[test]
    fn false_wins_when_merged_settings_disagree() {
        // A partial overlap merge() keeps: tx on from one NIC, one of its
        // members off from another.
        let merged = FeatureSettings::merge([
            &settings(json!({"tx": true})),
            &settings(json!({"tx-checksum-ip-generic": false})),
        ]);
        let (w, _) = wanted_bits(&merged, &names());
        let generic = w.iter().find(|w| w.index == 1).unwrap();
        assert!(!generic.enabled);
        assert!(generic.exact);
        let sctp = w.iter().find(|w| w.index == 3).unwrap();
        assert!(sctp.enabled);
    }

    #[test]
    fn fixed_off_members_satisfy_tx_off() {
        let (w, m) = wanted_bits(&settings(json!({"tx": false})), &names());
        assert!(evaluate(&w, &m, &veth([false, false, false, false, true, true])).is_empty());
        let problems = evaluate(&w, &m, &veth([false, true, false, false, true, true]));
        assert_eq!(
            problems,
            [FeatureProblem::DidNotStick {
                feature: "tx-checksum-ip-generic".into(),
                wanted: false
            }]
        );
    }

    #[test]
    fn fixed_on_feature_is_reported_when_off_is_wanted() {
        let (w, m) = wanted_bits(&settings(json!({"tx": false})), &names());
        let state = FeatureState::from_flags(&[
            (true, false),
            (false, true),
            (false, false),
            (false, true),
        ]);
        assert_eq!(
            evaluate(&w, &m, &state),
            [FeatureProblem::Fixed {
                feature: "tx-checksum-ipv4".into(),
                wanted: false
            }]
        );
    }

    #[test]
    fn alias_on_tolerates_fixed_off_members_but_exact_names_do_not() {
        let state = veth([false, true, false, true, true, true]);
        let (w, m) = wanted_bits(&settings(json!({"tx": true})), &names());
        assert!(evaluate(&w, &m, &state).is_empty());
        let (w, m) = wanted_bits(&settings(json!({"tx-checksum-ipv4": true})), &names());
        assert_eq!(
            evaluate(&w, &m, &state),
            [FeatureProblem::Fixed {
                feature: "tx-checksum-ipv4".into(),
                wanted: true
            }]
        );
    }

    #[test]
    fn alias_on_with_every_member_fixed_off_is_reported() {
        // rx-gro is index 5; make it fixed off, then ask for "gro" on.
        let state = FeatureState::from_flags(&[(false, false); 6]);
        let (w, m) = wanted_bits(&settings(json!({"gro": true})), &names());
        assert_eq!(
            evaluate(&w, &m, &state),
            [FeatureProblem::AllFixed { key: "gro".into() }]
        );
        // One changeable member is enough for an alias.
        let (w, m) = wanted_bits(&settings(json!({"tx": true})), &names());
        let one_on = veth([false, true, false, false, true, true]);
        assert_eq!(
            evaluate(&w, &m, &one_on),
            [FeatureProblem::DidNotStick {
                feature: "tx-checksum-sctp".into(),
                wanted: true
            }]
        );
        // A false elsewhere (merged NICs) takes the feature out of the alias.
        let merged = FeatureSettings::merge([
            &settings(json!({"gro": true})),
            &settings(json!({"gro": false})),
        ]);
        let (w, m) = wanted_bits(&merged, &names());
        assert!(w.iter().all(|w| w.alias_on.is_none()));
        assert!(evaluate(&w, &m, &state).is_empty());
    }

    #[test]
    fn features_the_kernel_lacks() {
        let (w, m) = wanted_bits(&settings(json!({"lro": true, "ufo": false})), &names());
        assert!(w.is_empty());
        assert_eq!(m, ["lro"]);
        assert_eq!(
            evaluate(&w, &m, &veth([false; 6])),
            [FeatureProblem::Unsupported { key: "lro".into() }]
        );
    }

    #[test]
    fn problem_messages_name_the_feature() {
        assert_eq!(
            FeatureProblem::DidNotStick {
                feature: "tx-tcp-segmentation".into(),
                wanted: true
            }
            .to_string(),
            "tx-tcp-segmentation is off although on was requested"
        );
        assert_eq!(
            FeatureProblem::Fixed {
                feature: "tx-checksum-ipv4".into(),
                wanted: false
            }
            .to_string(),
            "tx-checksum-ipv4 is fixed on on this device, wanted off"
        );
    }
}
