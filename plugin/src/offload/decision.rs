//! The one decision: which settings this node's pods get, and why. Every
//! front end (the CNI verbs, `detect`, the installer, the agent) calls
//! `decide`; none repeats its steps.

use super::policy::{Policy, PolicySource};
use super::settings::FeatureSettings;
use super::uplink::{self, DetectError, Nic, NicFacts, Uplink};
use super::wanted::{Placement, Wanted};
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
}

/// Decides for this node under `config`: `hostDriver` if set (no
/// detection), else the NIC(s) detection finds from `hostInterface` or the
/// default route, in the netns the process runs in.
pub fn decide<W: Wanted + ?Sized>(config: &W) -> Result<Decision, DetectError> {
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
    let uplink = uplink::detect(&mut socket, config.host_interface())?;
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
