//! The one decision: which settings this node's pods get, and why. Every
//! front end (the CNI verbs, `detect`, the installer, the agent) calls
//! `decide`; none repeats its steps.

use super::detection::{self, DetectError, Nic, NicFacts, Uplink};
use super::features::FeatureSelector;
use super::policy::{Policy, PolicySource};
use super::probe::evidence::{self, Evidence};
use super::probe::Verdict;
use super::settings::{FeatureSetting, FeatureSettings};
use super::wanted::{Detection, Placement, Wanted};
use crate::kernel::netlink::RouteSocket;
use serde::Serialize;
use std::fmt;

/// One NIC, what it is, and what the policy says for it and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NicDecision {
    /// Empty when the driver comes from `hostDriver`.
    pub name: String,
    pub driver: String,
    pub driver_version: String,
    pub firmware_version: String,
    pub bus_info: String,
    pub pci_id: String,
    pub settings: String,
    /// The same settings, to apply (the uplink placement sets each NIC to
    /// its own).
    #[serde(skip)]
    pub wanted: FeatureSettings,
    /// Where the settings came from: a rule (and the facts it matched), the
    /// built-in or config table, or `default`.
    pub source: String,
    /// The index of the rule that matched, if one did.
    pub rule: Option<usize>,
}

/// What the node does: the uplink facts, each NIC's settings, and the
/// merged settings for the pods' veths.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The running kernel's release: rules may match on it.
    pub kernel: String,
    /// Where the walk started: the default route's device(s) or the
    /// configured hostInterface.
    pub start: Vec<String>,
    pub how: String,
    /// Human-readable edges, e.g. "bond0 (bond) -> enp1s0f0".
    pub chain: Vec<String>,
    pub nics: Vec<NicDecision>,
    /// Every device of the uplink (see `Uplink::devices`); empty with
    /// `hostDriver`.
    #[serde(skip)]
    pub devices: Vec<String>,
    #[serde(skip)]
    pub settings: FeatureSettings,
    #[serde(rename = "settings")]
    settings_text: String,
    /// Where the settings go (`apply`).
    #[serde(skip)]
    pub placement: Placement,
    /// Under `detection` "probe" or "both": the agent's last verdict and
    /// what it did to the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeView>,
}

/// The probe's part in a decision: the verdict beside the table's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeView {
    /// `Probe` (the verdict decides) or `Both` (the table decides).
    pub detection: Detection,
    pub target: String,
    /// The fresh verdict for this target; None: no usable one.
    pub verdict: Option<Verdict>,
    /// When the last verdict on file was taken (Unix seconds), fresh or not.
    pub at: Option<u64>,
    /// The verdict, its age, or why there is none: "broken, 12 s ago".
    pub status: String,
    /// What the table alone gives this node.
    pub table_settings: String,
    /// Under "probe": nothing changes because the verdict is not `broken`
    /// and not `ok` (unreachable, inconclusive, missing, stale).
    pub fallback: bool,
    /// Under "both": the table and the probe disagree, and how.
    pub disagreement: Option<String>,
}

/// Decides for this node under `config`: `hostDriver` if set (no
/// detection), else the NIC(s) detection finds from `hostInterface` or the
/// default route, in the netns the process runs in.
///
/// Under `detection` "probe" or "both" it reads the agent's last verdict
/// (`probe.verdictFile`): a read of one small file, never a probe.
pub fn decide<W: Wanted + ?Sized>(config: &W) -> Result<Decision, DetectError> {
    let found = match (config.detection(), config.probe()) {
        (Detection::Table, _) | (_, None) => None,
        (_, Some(spec)) => Some(Evidence::load(spec, config.node_name(), evidence::now())),
    };
    decide_with(config, found)
}

/// `decide` with the verdict already read (None under `detection`
/// "table").
pub fn decide_with<W: Wanted + ?Sized>(
    config: &W,
    found: Option<Evidence>,
) -> Result<Decision, DetectError> {
    let table = table_decision(config)?;
    Ok(match (config.detection(), found) {
        (Detection::Table, _) | (_, None) => table,
        (detection, Some(found)) => table.with_probe(detection, &found, config),
    })
}

/// The fix a `broken` verdict gives under `detection` "probe": TX
/// checksum off (ethtool's `tx`), as the built-in table gives txgbe.
pub fn probe_fix() -> FeatureSettings {
    FeatureSettings(
        FeatureSelector::parse("tx")
            .map(|selector| FeatureSetting {
                selector,
                enabled: false,
            })
            .into_iter()
            .collect(),
    )
}

fn table_decision<W: Wanted + ?Sized>(config: &W) -> Result<Decision, DetectError> {
    if let Some(driver) = config.host_driver() {
        let mut how = "hostDriver from config".to_string();
        if let Some(name) = config.host_interface() {
            log::warn!("hostInterface {name} is not inspected: hostDriver {driver} is set");
            how = format!("{how}; hostInterface {name} not inspected");
        }
        let nic = Nic {
            name: String::new(),
            facts: NicFacts::of_driver(driver),
        };
        return Ok(
            Decision::build(Vec::new(), how, Vec::new(), &[nic], config.policy())
                .placed(config.placement()),
        );
    }
    let mut socket = RouteSocket::open().map_err(DetectError::Socket)?;
    let uplink = detection::find_uplink(&mut socket, config.host_interface())?;
    Ok(Decision::from_uplink(uplink, config.policy()).placed(config.placement()))
}

impl Decision {
    pub fn from_uplink(uplink: Uplink, policy: &Policy) -> Self {
        let mut d = Self::build(uplink.start, uplink.how, uplink.chain, &uplink.nics, policy);
        d.devices = uplink.devices;
        d
    }

    fn placed(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The verdict's part: under "probe" it replaces the table's settings
    /// (the fix on `broken`, nothing otherwise); under "both" it is shown
    /// beside them, with any disagreement.
    fn with_probe<W: Wanted + ?Sized>(
        mut self,
        detection: Detection,
        found: &Evidence,
        config: &W,
    ) -> Self {
        // This node's target: the asker's, or (in ADD) the one of the node
        // the verdict was taken for; empty when it has none.
        let node = config
            .node_name()
            .or(found.record().and_then(|r| r.node.as_deref()));
        let target = config
            .probe()
            .and_then(|p| p.path_for(node).ok())
            .map(|p| p.target.to_string())
            .unwrap_or_else(|| "(none)".to_string());
        let verdict = found.verdict();
        let status = match found {
            Evidence::Fresh { record, age } => format!("{}, {age} s ago", record.verdict),
            Evidence::Stale { record, age } if *age < 0 => format!(
                "none (the last, {}, is dated {} s in the future)",
                record.verdict, -age
            ),
            Evidence::Stale { record, age } => format!(
                "none (the last, {}, is stale: {age} s old, more than {} s)",
                record.verdict,
                config.probe().map_or(0, |p| p.max_age().as_secs())
            ),
            Evidence::OtherTarget(record) => format!(
                "none (the last, {}, was for another path, {} from {}{})",
                record.verdict,
                record.target,
                record.source.as_deref().unwrap_or("an unrecorded source"),
                record
                    .node
                    .as_ref()
                    .map(|n| format!(" on node {n}"))
                    .unwrap_or_default()
            ),
            Evidence::NoPath(why) => format!("none ({why}: this node does not probe)"),
            Evidence::Missing(file) => format!("none yet ({file} does not exist)"),
            Evidence::Unreadable(why) => format!("none ({why})"),
        };
        let table_settings = self.settings.to_string();
        let mut view = ProbeView {
            detection,
            target,
            verdict,
            at: found.record().map(|r| r.at),
            status,
            table_settings,
            fallback: false,
            disagreement: None,
        };
        match detection {
            Detection::Table => return self,
            Detection::Probe => {
                let fix = verdict == Some(Verdict::Broken);
                view.fallback = !matches!(verdict, Some(Verdict::Broken | Verdict::Ok));
                let (settings, source) = if fix {
                    (probe_fix(), format!("probe: {}", view.status))
                } else {
                    (
                        FeatureSettings::default(),
                        format!("probe: {}; no change", view.status),
                    )
                };
                for nic in &mut self.nics {
                    nic.settings = settings.to_string();
                    nic.wanted = settings.clone();
                    nic.source = source.clone();
                    nic.rule = None;
                }
                self.settings_text = settings.to_string();
                self.settings = settings;
            }
            Detection::Both => {
                let fixes = self.settings.turns_checksum_off();
                let nics = self.nic_list();
                view.disagreement = match (verdict, fixes) {
                    (Some(Verdict::Ok), true) => Some(format!(
                        "the table turns TX checksum off for {nics}, but the probe finds the path healthy"
                    )),
                    (Some(Verdict::Broken), false) => Some(format!(
                        "the probe finds the path broken, but the table leaves TX checksum on for {nics}"
                    )),
                    _ => None,
                };
            }
        }
        self.probe = Some(view);
        self
    }

    /// The NICs that get settings of their own under the uplink placement:
    /// the detected leaves whose policy asks for something.
    pub fn nics_to_set(&self) -> impl Iterator<Item = &NicDecision> {
        self.nics
            .iter()
            .filter(|n| !n.name.is_empty() && !n.wanted.is_empty())
    }

    /// Whether the policy asks anything of this node under its placement.
    pub fn changes_nothing(&self) -> bool {
        match self.placement {
            Placement::Uplink => self.nics_to_set().next().is_none(),
            _ => self.settings.is_empty(),
        }
    }

    fn build(
        start: Vec<String>,
        how: String,
        chain: Vec<String>,
        nics: &[Nic],
        policy: &Policy,
    ) -> Self {
        // Each NIC on its own (a bond's slaves may differ); off wins.
        let decided: Vec<_> = nics.iter().map(|n| policy.decide_for(&n.facts)).collect();
        let settings = FeatureSettings::merge(decided.iter().map(|(s, _)| *s));
        let kernel = nics
            .first()
            .map(|n| n.facts.kernel.clone())
            .unwrap_or_default();
        let nics = nics
            .iter()
            .zip(decided)
            .map(|(n, (s, source))| NicDecision {
                name: n.name.clone(),
                driver: n.facts.driver.clone(),
                driver_version: n.facts.driver_version.clone(),
                firmware_version: n.facts.firmware_version.clone(),
                bus_info: n.facts.bus_info.clone(),
                pci_id: n.facts.pci_id.clone(),
                settings: s.to_string(),
                wanted: s.clone(),
                rule: match &source {
                    PolicySource::Rule { index, .. } => Some(*index),
                    _ => None,
                },
                source: source.to_string(),
            })
            .collect();
        let settings_text = settings.to_string();
        Self {
            kernel,
            start,
            how,
            chain,
            nics,
            devices: Vec::new(),
            settings,
            settings_text,
            placement: Placement::Both,
            probe: None,
        }
    }

    /// The NICs for a log line: "enp1s0 (txgbe)", or "hostDriver txgbe".
    pub fn nic_list(&self) -> String {
        self.nics
            .iter()
            .map(|n| {
                if n.name.is_empty() {
                    format!("hostDriver {}", n.driver)
                } else {
                    format!("{} ({})", n.name, n.driver)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The text `detect` prints and the installer logs.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start.is_empty() {
            writeln!(f, "uplink: not detected ({})", self.how)?;
        } else {
            writeln!(f, "uplink: {} (from {})", self.start.join(", "), self.how)?;
        }
        for edge in &self.chain {
            writeln!(f, "  {edge}")?;
        }
        for nic in &self.nics {
            let name = if nic.name.is_empty() {
                "(hostDriver)"
            } else {
                &nic.name
            };
            let facts: Vec<String> = [
                ("version", &nic.driver_version),
                ("firmware", &nic.firmware_version),
                ("bus", &nic.bus_info),
                ("pci", &nic.pci_id),
            ]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
            let facts = if facts.is_empty() {
                String::new()
            } else {
                format!(" ({})", facts.join(", "))
            };
            writeln!(
                f,
                "nic: {name} driver: {}{facts} -> {} [{}]",
                nic.driver, nic.settings, nic.source
            )?;
        }
        if !self.kernel.is_empty() {
            writeln!(f, "kernel: {}", self.kernel)?;
        }
        if let Some(p) = &self.probe {
            let role = match p.detection {
                Detection::Probe => "decides",
                _ => "reported; the table decides",
            };
            writeln!(
                f,
                "probe: {} (target {}; detection \"{}\": {role})",
                p.status,
                p.target,
                p.detection.name()
            )?;
            if p.detection == Detection::Probe {
                writeln!(f, "table would give: {}", p.table_settings)?;
            }
            if let Some(d) = &p.disagreement {
                writeln!(f, "probe disagrees: {d}")?;
            }
        }
        match self.placement {
            Placement::Uplink => {
                let nics: Vec<String> = self
                    .nics_to_set()
                    .map(|n| format!("{} ({})", n.name, n.settings))
                    .collect();
                if nics.is_empty() {
                    write!(f, "settings applied to the uplink NIC(s): (no change)")
                } else {
                    write!(
                        f,
                        "settings applied to the uplink NIC(s): {}",
                        nics.join(", ")
                    )
                }
            }
            _ => write!(f, "settings applied to pod veths: {}", self.settings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn settings_of_several_nics_merge() {
        let nic = |name: &str, driver: &str| Nic {
            name: name.into(),
            facts: NicFacts {
                driver: driver.into(),
                ..NicFacts::default()
            },
        };
        let nics = [nic("a", "i40e"), nic("b", "txgbe")];
        let d = Decision::build(vec![], String::new(), vec![], &nics, &Policy::built_in());
        assert_eq!(d.settings_text, "tx off");
        assert_eq!(d.nics[0].settings, "(no change)");
        assert_eq!(d.nic_list(), "a (i40e), b (txgbe)");
    }

    #[test]
    fn bond_slaves_are_matched_each_on_its_own_and_off_wins() {
        // Two txgbe slaves of one bond that differ only in firmware.
        let slave = |name: &str, firmware: &str| Nic {
            name: name.into(),
            facts: NicFacts {
                driver: "txgbe".into(),
                driver_version: "1.1.12".into(),
                firmware_version: firmware.into(),
                kernel: "6.18.44".into(),
                ..NicFacts::default()
            },
        };
        let bond = [
            slave("enp1s0f0", "0x00020004"),
            slave("enp1s0f1", "0x00030001"),
        ];
        let policy = |fixed: serde_json::Value| {
            let rules = serde_json::json!([
                { "driver": "txgbe", "firmwareVersion": "0x0003*", "settings": fixed }
            ]);
            Policy::built_in()
                .with_overrides(None, None, Some(&rules))
                .unwrap()
        };
        let build = |nics: &[Nic], p: &Policy| {
            Decision::build(vec![], String::new(), vec![], nics, p).placed(Placement::Uplink)
        };

        // The rule relieves the fixed firmware; the other slave falls to
        // the built-in table, and its tx off is what the pods get.
        let d = build(&bond, &policy(serde_json::json!({})));
        assert_eq!(d.nics[0].rule, None);
        assert_eq!(d.nics[0].source, "built-in table");
        assert_eq!(d.nics[0].settings, "tx off");
        assert_eq!(d.nics[1].rule, Some(0));
        assert_eq!(
            d.nics[1].source,
            "rules[0]: driver \"txgbe\" matches \"txgbe\", firmwareVersion \"0x00030001\" matches \"0x0003*\""
        );
        assert_eq!(d.nics[1].settings, "(no change)");
        assert_eq!(d.settings_text, "tx off");
        // Under apply: uplink each slave gets its own: only the broken one
        // is set.
        let set: Vec<&str> = d.nics_to_set().map(|n| n.name.as_str()).collect();
        assert_eq!(set, ["enp1s0f0"]);

        // A rule that turns tx back on for one slave does not beat the
        // other slave's tx off.
        let on = policy(serde_json::json!({"tx": true}));
        let d = build(&bond, &on);
        assert_eq!(
            (d.nics[0].settings.as_str(), d.nics[1].settings.as_str()),
            ("tx off", "tx on")
        );
        assert_eq!(d.settings_text, "tx off");
        // Control: with both slaves on the fixed firmware the rule decides
        // for both, and the merge is theirs.
        let fixed = [
            slave("enp1s0f0", "0x00030001"),
            slave("enp1s0f1", "0x00030002"),
        ];
        let d = build(&fixed, &on);
        assert_eq!(
            d.nics.iter().map(|n| n.rule).collect::<Vec<_>>(),
            [Some(0), Some(0)]
        );
        assert_eq!(d.settings_text, "tx on");
    }

    /// hostDriver (no detection), a probe spec, and the verdict given.
    fn with_verdict(driver: &str, detection: Detection, verdict: Option<Verdict>) -> Decision {
        use crate::offload::probe::evidence::VerdictRecord;
        use crate::offload::wanted::ProbeSpec;
        let spec = ProbeSpec {
            target: Some("10.0.0.1:5201".parse().unwrap()),
            source: Some("10.244.0.9".parse().unwrap()),
            nodes: Default::default(),
            interval: std::time::Duration::from_secs(300),
            verdict_file: "/nonexistent/v.json".into(),
        };
        let config = Config {
            host_driver: Some(driver.into()),
            detection,
            probe: Some(spec.clone()),
            ..Config::default()
        };
        let found = match verdict {
            Some(verdict) => Evidence::judge(
                VerdictRecord {
                    verdict,
                    at: 1000,
                    target: "10.0.0.1:5201".into(),
                    source: Some("10.244.0.9".into()),
                    node: None,
                    path: String::new(),
                    attempts: Vec::new(),
                    millis: 1,
                },
                &spec,
                None,
                1003,
            ),
            None => Evidence::Missing("/nonexistent/v.json".into()),
        };
        decide_with(&config, Some(found)).unwrap()
    }

    #[test]
    fn a_node_without_a_probe_path_changes_nothing_and_says_why() {
        use crate::offload::wanted::{NoProbePath, ProbeSpec};
        let config = Config {
            host_driver: Some("txgbe".into()),
            detection: Detection::Probe,
            probe: Some(ProbeSpec {
                target: Some("10.0.0.1:5201".parse().unwrap()),
                source: None,
                nodes: Default::default(),
                interval: std::time::Duration::from_secs(300),
                verdict_file: "/nonexistent/v.json".into(),
            }),
            node_name: Some("node-c".into()),
            ..Config::default()
        };
        // decide itself finds the missing path (the file is never read).
        let d = decide(&config).unwrap();
        assert!(d.changes_nothing());
        let p = d.probe.as_ref().unwrap();
        assert!(p.fallback && p.verdict.is_none());
        assert_eq!(
            p.status,
            format!(
                "none ({}: this node does not probe)",
                NoProbePath::Source("node-c".into())
            )
        );
        assert!(
            d.to_string()
                .contains("probe: none (node \"node-c\" has no probe source"),
            "{d}"
        );
    }

    #[test]
    fn under_probe_only_broken_fixes_and_the_table_is_not_consulted() {
        use Verdict::*;
        let d = with_verdict("veth", Detection::Probe, Some(Broken));
        assert_eq!(d.settings.to_string(), "tx off");
        assert!(!d.changes_nothing());
        assert_eq!(d.nics[0].source, "probe: broken, 3 s ago");
        let p = d.probe.as_ref().unwrap();
        assert_eq!(
            (p.fallback, p.table_settings.as_str()),
            (false, "(no change)")
        );
        // txgbe is in the table; under "probe" only the verdict counts.
        for (verdict, fallback) in [
            (Some(Ok), false),
            (Some(Unreachable), true),
            (Some(Inconclusive), true),
            (None, true),
        ] {
            let d = with_verdict("txgbe", Detection::Probe, verdict);
            assert!(d.changes_nothing(), "{verdict:?}");
            let p = d.probe.as_ref().unwrap();
            assert_eq!(
                (p.fallback, p.table_settings.as_str()),
                (fallback, "tx off")
            );
            assert!(p.disagreement.is_none());
        }
        let text = with_verdict("txgbe", Detection::Probe, None).to_string();
        assert!(
            text.contains(
                "probe: none yet (/nonexistent/v.json does not exist) (target 10.0.0.1:5201; detection \"probe\": decides)\n\
                 table would give: tx off\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("settings applied to pod veths: (no change)"),
            "{text}"
        );
        assert!(probe_fix().turns_checksum_off());
    }

    #[test]
    fn under_both_the_table_decides_and_disagreement_is_reported() {
        use Verdict::*;
        let cases = [
            ("txgbe", Some(Ok), "tx off", true),
            ("veth", Some(Broken), "(no change)", true),
            ("txgbe", Some(Broken), "tx off", false),
            ("veth", Some(Ok), "(no change)", false),
            ("txgbe", Some(Unreachable), "tx off", false),
            ("veth", Some(Inconclusive), "(no change)", false),
            ("veth", None, "(no change)", false),
        ];
        for (driver, verdict, settings, disagrees) in cases {
            let d = with_verdict(driver, Detection::Both, verdict);
            assert_eq!(d.settings.to_string(), settings, "{driver} {verdict:?}");
            let p = d.probe.as_ref().unwrap();
            assert_eq!(p.disagreement.is_some(), disagrees, "{driver} {verdict:?}");
            assert!(!p.fallback);
        }
        let text = with_verdict("veth", Detection::Both, Some(Broken)).to_string();
        assert!(
            text.contains("probe disagrees: the probe finds the path broken, but the table leaves TX checksum on for hostDriver veth\n"),
            "{text}"
        );
    }

    #[test]
    fn host_driver_skips_detection_and_says_so() {
        let config = Config {
            host_driver: Some("txgbe".into()),
            host_interface: Some("nope0".into()),
            ..Config::default()
        };
        let d = decide(&config).unwrap();
        assert_eq!(
            d.how,
            "hostDriver from config; hostInterface nope0 not inspected"
        );
        assert_eq!(d.nic_list(), "hostDriver txgbe");
        assert_eq!(
            d.to_string(),
            format!(
                "uplink: not detected (hostDriver from config; hostInterface nope0 not inspected)\n\
                 nic: (hostDriver) driver: txgbe -> tx off [built-in table]\n\
                 kernel: {}\n\
                 settings applied to pod veths: tx off",
                crate::kernel::system::kernel_release()
            )
        );
    }
}
