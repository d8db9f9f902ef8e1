//! The driver policy: which offload settings each host NIC driver needs.

use super::detection::NicFacts;
use super::features::FeatureSelector;
use super::rules::{self, Rule, RuleError};
use super::settings::{FeatureSetting, FeatureSettings, SettingsError};
use crate::json;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Why the config's `drivers` or `default` is not a valid policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("drivers must be an object of driver name -> settings, got {0}")]
    DriversNotAnObject(&'static str),
    #[error("drivers: driver name must not be empty")]
    EmptyDriverName,
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Rules(#[from] RuleError),
}

/// Where a NIC's settings came from, for `detect` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `rules[index]` matched; `why` says on which facts.
    Rule {
        index: usize,
        why: String,
    },
    BuiltIn,
    Config,
    Default,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule { index, why } => write!(f, "rules[{index}]: {why}"),
            Self::BuiltIn => f.write_str("built-in table"),
            Self::Config => f.write_str("config drivers table"),
            Self::Default => f.write_str("default (driver not in table)"),
        }
    }
}

/// The rules, the driver table, and the fallback for drivers in neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Checked first, in order; the first that matches decides.
    rules: Vec<Rule>,
    drivers: BTreeMap<String, (FeatureSettings, PolicySource)>,
    default: FeatureSettings,
}

impl Default for Policy {
    fn default() -> Self {
        Self::built_in()
    }
}

impl Policy {
    /// The built-in table. `txgbe`: TX checksum offload through this NIC
    /// leaves segments with partial checksums (the field failure this
    /// plugin exists for). `i40e`: offload works; listed so that its
    /// decision is explicit in `detect` output.
    pub fn built_in() -> Self {
        let tx_off = FeatureSettings(vec![FeatureSetting {
            selector: FeatureSelector::parse("tx").expect("tx is a known alias"),
            enabled: false,
        }]);
        let mut drivers = BTreeMap::new();
        drivers.insert("txgbe".to_string(), (tx_off, PolicySource::BuiltIn));
        drivers.insert(
            "i40e".to_string(),
            (FeatureSettings::default(), PolicySource::BuiltIn),
        );
        Self {
            rules: Vec::new(),
            drivers,
            default: FeatureSettings::default(),
        }
    }

    /// Applies the config's `rules`, `drivers` (each entry replaces the
    /// built-in entry of the same driver) and `default`.
    pub fn with_overrides(
        mut self,
        drivers: Option<&Value>,
        default: Option<&Value>,
        rules: Option<&Value>,
    ) -> Result<Self, PolicyError> {
        if let Some(rules) = rules {
            self.rules = rules::parse(rules)?;
        }
        if let Some(drivers) = drivers {
            let map = drivers
                .as_object()
                .ok_or_else(|| PolicyError::DriversNotAnObject(json::kind(drivers)))?;
            for (driver, settings) in map {
                if driver.is_empty() {
                    return Err(PolicyError::EmptyDriverName);
                }
                let context = format!("drivers.{}", json::clip(driver));
                let parsed = FeatureSettings::from_json(settings, &context)?;
                self.drivers
                    .insert(driver.clone(), (parsed, PolicySource::Config));
            }
        }
        if let Some(default) = default {
            self.default = FeatureSettings::from_json(default, "default")?;
        }
        Ok(self)
    }

    /// Every settings object of the policy, with where it sits in the
    /// config (`rules[0]`, `drivers.txgbe`, `default`).
    pub fn every_settings(&self) -> Vec<(String, &FeatureSettings)> {
        let mut all: Vec<(String, &FeatureSettings)> = self
            .rules
            .iter()
            .map(|r| (format!("rules[{}]", r.index), &r.settings))
            .collect();
        all.extend(
            self.drivers
                .iter()
                .map(|(d, (s, _))| (format!("drivers.{}", json::clip(d)), s)),
        );
        all.push(("default".into(), &self.default));
        all
    }

    /// The settings a NIC gets: the first rule that matches its facts,
    /// else its driver's table entry, else `default`.
    pub fn decide_for(&self, facts: &NicFacts) -> (&FeatureSettings, PolicySource) {
        for rule in &self.rules {
            if let Some(why) = rule.matches(facts) {
                return (
                    &rule.settings,
                    PolicySource::Rule {
                        index: rule.index,
                        why,
                    },
                );
            }
        }
        self.settings_for(&facts.driver)
    }

    /// The driver table's entry (or `default`) for a driver name.
    pub fn settings_for(&self, driver: &str) -> (&FeatureSettings, PolicySource) {
        match self.drivers.get(driver) {
            Some((s, src)) => (s, src.clone()),
            None => (&self.default, PolicySource::Default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: Value) -> FeatureSettings {
        FeatureSettings::from_json(&v, "test").unwrap()
    }

    #[test]
    fn built_in_table() {
        let p = Policy::built_in();
        assert_eq!(p.settings_for("txgbe").0, &settings(json!({"tx": false})));
        assert_eq!(p.settings_for("txgbe").1, PolicySource::BuiltIn);
        assert!(p.settings_for("i40e").0.is_empty());
        assert_eq!(
            p.settings_for("virtio_net"),
            (&FeatureSettings::default(), PolicySource::Default)
        );
    }

    #[test]
    fn user_entry_replaces_built_in_entry() {
        let p = Policy::built_in()
            .with_overrides(
                Some(&json!({"txgbe": {"tx": false, "tso": false}, "veth": {"tx": false}})),
                None,
                None,
            )
            .unwrap();
        assert_eq!(
            p.settings_for("txgbe").0,
            &settings(json!({"tx": false, "tso": false}))
        );
        assert_eq!(p.settings_for("txgbe").1, PolicySource::Config);
        assert_eq!(p.settings_for("veth").0, &settings(json!({"tx": false})));
        // i40e keeps its built-in entry.
        assert_eq!(p.settings_for("i40e").1, PolicySource::BuiltIn);
        // An empty entry disables the built-in fix for that driver.
        let p = Policy::built_in()
            .with_overrides(Some(&json!({"txgbe": {}})), None, None)
            .unwrap();
        assert!(p.settings_for("txgbe").0.is_empty());
    }

    #[test]
    fn default_applies_to_unknown_drivers() {
        let p = Policy::built_in()
            .with_overrides(None, Some(&json!({"gro": true})), None)
            .unwrap();
        assert_eq!(
            p.settings_for("mlx5_core").0,
            &settings(json!({"gro": true}))
        );
        assert_eq!(p.settings_for("mlx5_core").1, PolicySource::Default);
        assert!(p.settings_for("i40e").0.is_empty());
    }

    fn facts(driver: &str, firmware: &str, kernel: &str) -> NicFacts {
        NicFacts {
            driver: driver.into(),
            firmware_version: firmware.into(),
            kernel: kernel.into(),
            ..NicFacts::default()
        }
    }

    #[test]
    fn the_first_matching_rule_decides_then_drivers_then_default() {
        let rules = json!([
            { "driver": "txgbe", "firmwareVersion": "0x0002000*", "settings": { "tx": false } },
            { "driver": "txgbe", "kernel": ">=6.15", "settings": {} }
        ]);
        let policy = |rules: &Value| {
            Policy::built_in()
                .with_overrides(
                    Some(&json!({"txgbe": {"tso": false}})),
                    Some(&json!({"gro": true})),
                    Some(rules),
                )
                .unwrap()
        };
        let p = policy(&rules);
        // Both rules match this NIC: the first one decides.
        let broken = facts("txgbe", "0x00020004", "6.18.44-fc");
        assert!(p.rules.iter().all(|r| r.matches(&broken).is_some()));
        let (s, src) = p.decide_for(&broken);
        assert_eq!(s, &settings(json!({"tx": false})));
        assert_eq!(
            src,
            PolicySource::Rule {
                index: 0,
                why: "driver \"txgbe\" matches \"txgbe\", firmwareVersion \"0x00020004\" matches \"0x0002000*\"".into()
            }
        );
        // The same rules the other way round: now the kernel rule is first
        // and decides, so the order above was what chose.
        let reversed = policy(&json!([rules[1], rules[0]]));
        let (s, src) = reversed.decide_for(&broken);
        assert!(s.is_empty());
        assert!(matches!(src, PolicySource::Rule { index: 0, ref why } if why.contains("kernel")));
        // Only the second rule matches.
        let (s, src) = p.decide_for(&facts("txgbe", "0x00030001", "6.18.44-fc"));
        assert!(s.is_empty());
        assert!(matches!(src, PolicySource::Rule { index: 1, .. }), "{src}");
        // No rule matches: the config's drivers entry, not the built-in one.
        let (s, src) = p.decide_for(&facts("txgbe", "0x00030001", "6.1.0"));
        assert_eq!(s, &settings(json!({"tso": false})));
        assert_eq!(src, PolicySource::Config);
        // A driver no rule names: the built-in table, then default.
        assert_eq!(
            p.decide_for(&facts("i40e", "", "6.18.44")),
            (&FeatureSettings::default(), PolicySource::BuiltIn)
        );
        let (s, src) = p.decide_for(&facts("mlx5_core", "0x00020004", "6.18.44"));
        assert_eq!(s, &settings(json!({"gro": true})));
        assert_eq!(src, PolicySource::Default);
    }

    #[test]
    fn bad_settings_are_rejected_with_the_path() {
        let err = |d: Value| {
            Policy::built_in()
                .with_overrides(Some(&d), None, None)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({"txgbe": {"txx": false}}))
            .contains("drivers.txgbe: unknown offload feature \"txx\""));
        assert!(err(json!({"txgbe": {"tx": "off"}}))
            .contains("drivers.txgbe.tx must be true or false, got a string"));
        assert!(err(json!({"txgbe": []})).contains("drivers.txgbe must be an object"));
        assert!(err(json!([])).contains("drivers must be an object"));
        assert!(err(json!({"": {}})).contains("must not be empty"));
        assert!(
            err(json!({"x": {"tx": false, "tx-checksum-ip-generic": true}})).contains("contradict")
        );
        let e = Policy::built_in()
            .with_overrides(None, Some(&json!({"tso": 1})), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("default.tso must be true or false, got a number"),
            "{e}"
        );
    }
}
