//! The one decision: which settings this node's pods get, and why. Every
//! front end (the CNI verbs, `detect`, the installer, the agent) calls
//! `decide`; none repeats its steps.

use super::policy::Policy;
use super::settings::FeatureSettings;
use super::uplink::{self, DetectError, NicFacts, Uplink};
use crate::config::Config;
use crate::kernel::netlink::RouteSocket;
use serde::Serialize;
use std::fmt;

/// One NIC, its driver and what the policy says for it.
#[derive(Debug, Clone, Serialize)]
pub struct NicDecision {
    /// Empty when the driver comes from `hostDriver`.
    pub name: String,
    pub driver: String,
    pub settings: String,
    pub source: String,
}

/// What the node does: the uplink facts, each NIC's settings, and the
/// merged settings for the pods' veths.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
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
}

/// Decides for this node under `config`: `hostDriver` if set (no
/// detection), else the NIC(s) detection finds from `hostInterface` or the
/// default route, in the netns the process runs in.
pub fn decide(config: &Config) -> Result<Decision, DetectError> {
    if let Some(driver) = &config.host_driver {
        let mut how = "hostDriver from config".to_string();
        if let Some(name) = &config.host_interface {
            log::warn!("hostInterface {name} is not inspected: hostDriver {driver} is set");
            how = format!("{how}; hostInterface {name} not inspected");
        }
        let nic = NicFacts {
            name: String::new(),
            driver: driver.clone(),
        };
        return Ok(Decision::build(
            Vec::new(),
            how,
            Vec::new(),
            &[nic],
            &config.policy,
        ));
    }
    let mut socket = RouteSocket::open().map_err(DetectError::Socket)?;
    let uplink = uplink::detect(&mut socket, config.host_interface.as_deref())?;
    Ok(Decision::from_uplink(uplink, &config.policy))
}

impl Decision {
    pub fn from_uplink(uplink: Uplink, policy: &Policy) -> Self {
        Self::build(uplink.start, uplink.how, uplink.chain, &uplink.nics, policy)
    }

    fn build(
        start: Vec<String>,
        how: String,
        chain: Vec<String>,
        nics: &[NicFacts],
        policy: &Policy,
    ) -> Self {
        let settings =
            FeatureSettings::merge(nics.iter().map(|n| policy.settings_for(&n.driver).0));
        let nics = nics
            .iter()
            .map(|n| {
                let (s, source) = policy.settings_for(&n.driver);
                NicDecision {
                    name: n.name.clone(),
                    driver: n.driver.clone(),
                    settings: s.to_string(),
                    source: source.to_string(),
                }
            })
            .collect();
        let settings_text = settings.to_string();
        Self {
            start,
            how,
            chain,
            nics,
            devices: Vec::new(),
            settings,
            settings_text,
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
            writeln!(
                f,
                "nic: {name} driver: {} -> {} [{}]",
                nic.driver, nic.settings, nic.source
            )?;
        }
        write!(f, "settings applied to pod veths: {}", self.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_of_several_nics_merge() {
        let nics = [
            NicFacts {
                name: "a".into(),
                driver: "i40e".into(),
            },
            NicFacts {
                name: "b".into(),
                driver: "txgbe".into(),
            },
        ];
        let d = Decision::build(vec![], String::new(), vec![], &nics, &Policy::built_in());
        assert_eq!(d.settings_text, "tx off");
        assert_eq!(d.nics[0].settings, "(no change)");
        assert_eq!(d.nic_list(), "a (i40e), b (txgbe)");
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
            "uplink: not detected (hostDriver from config; hostInterface nope0 not inspected)\n\
             nic: (hostDriver) driver: txgbe -> tx off [built-in table]\n\
             settings applied to pod veths: tx off"
        );
    }
}
