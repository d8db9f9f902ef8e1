//! The driver policy: which offload settings each host NIC driver needs.

use crate::features::{suggest, FeatureSelector, KERNEL_FEATURES};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// One requested feature state, e.g. `tx: false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSetting {
    pub selector: FeatureSelector,
    pub enabled: bool,
}

/// An ordered set of feature settings for one driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureSettings(pub Vec<FeatureSetting>);

impl FeatureSettings {
    /// Parses `{ "tx": false, ... }`. `context` names where the object sits
    /// in the config, for messages.
    pub fn from_json(value: &Value, context: &str) -> Result<Self, String> {
        let map = value.as_object().ok_or_else(|| {
            format!(
                "{context} must be an object of feature name -> true/false, got {}",
                json_kind(value)
            )
        })?;
        Self::from_map(map, context)
    }

    fn from_map(map: &Map<String, Value>, context: &str) -> Result<Self, String> {
        let mut settings = Vec::with_capacity(map.len());
        for (key, value) in map {
            let selector = FeatureSelector::parse(key).ok_or_else(|| {
                let hint = suggest(key).map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default();
                format!("{context}: unknown offload feature {key:?}{hint}; use a name `ethtool -k` prints or an ethtool alias (tx, rx, sg, tso, gso, gro, lro...)")
            })?;
            let enabled = value.as_bool().ok_or_else(|| {
                format!(
                    "{context}.{key} must be true or false, got {}",
                    json_kind(value)
                )
            })?;
            settings.push(FeatureSetting { selector, enabled });
        }
        let parsed = Self(settings);
        parsed.check_consistent(context)?;
        Ok(parsed)
    }

    /// Rejects one object that asks for the same kernel feature both on and
    /// off (e.g. `tx: false` with `tx-checksum-ip-generic: true`).
    fn check_consistent(&self, context: &str) -> Result<(), String> {
        for (i, a) in self.0.iter().enumerate() {
            for b in &self.0[i + 1..] {
                if a.enabled == b.enabled {
                    continue;
                }
                if let Some(f) = KERNEL_FEATURES
                    .iter()
                    .find(|f| a.selector.matches(f) && b.selector.matches(f))
                {
                    return Err(format!(
                        "{context}: {:?}: {} and {:?}: {} contradict each other on feature {f:?}",
                        a.selector.key, a.enabled, b.selector.key, b.enabled
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Combines the settings of several NICs (bond slaves, multipath
    /// uplinks). Where they disagree on a feature, `false` wins: checksum
    /// offload is off if any path needs it off. An `on` that every feature
    /// of is turned off by another NIC's settings is dropped here, so what
    /// `detect` and the log show is what is applied; a partial overlap is
    /// resolved per feature when applied (see `apply::plan`).
    pub fn merge<'a>(all: impl IntoIterator<Item = &'a FeatureSettings>) -> FeatureSettings {
        let mut merged: Vec<FeatureSetting> = Vec::new();
        for s in all.into_iter().flat_map(|s| s.0.iter()) {
            if !merged.contains(s) {
                merged.push(s.clone());
            }
        }
        let overridden = |on: &FeatureSetting| {
            let mut members = KERNEL_FEATURES
                .iter()
                .filter(|f| on.selector.matches(f))
                .peekable();
            members.peek().is_some()
                && members.all(|f| {
                    merged
                        .iter()
                        .any(|off| !off.enabled && off.selector.matches(f))
                })
        };
        let keep: Vec<bool> = merged
            .iter()
            .map(|s| !s.enabled || !overridden(s))
            .collect();
        FeatureSettings(
            merged
                .into_iter()
                .zip(keep)
                .filter_map(|(s, k)| k.then_some(s))
                .collect(),
        )
    }
}

impl fmt::Display for FeatureSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(no change)");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.selector.key,
                    if s.enabled { "on" } else { "off" }
                )
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Where a driver's settings came from, for `detect` and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    BuiltIn,
    Config,
    Default,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BuiltIn => "built-in table",
            Self::Config => "config drivers table",
            Self::Default => "default (driver not in table)",
        })
    }
}

/// The driver table plus the fallback for drivers not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
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
            drivers,
            default: FeatureSettings::default(),
        }
    }

    /// Applies the config's `drivers` (each entry replaces the built-in
    /// entry of the same driver) and `default`.
    pub fn with_overrides(
        mut self,
        drivers: Option<&Value>,
        default: Option<&Value>,
    ) -> Result<Self, String> {
        if let Some(drivers) = drivers {
            let map = drivers.as_object().ok_or_else(|| {
                format!(
                    "drivers must be an object of driver name -> settings, got {}",
                    json_kind(drivers)
                )
            })?;
            for (driver, settings) in map {
                if driver.is_empty() {
                    return Err("drivers: driver name must not be empty".into());
                }
                let parsed = FeatureSettings::from_json(settings, &format!("drivers.{driver}"))?;
                self.drivers
                    .insert(driver.clone(), (parsed, PolicySource::Config));
            }
        }
        if let Some(default) = default {
            self.default = FeatureSettings::from_json(default, "default")?;
        }
        Ok(self)
    }

    pub fn settings_for(&self, driver: &str) -> (&FeatureSettings, PolicySource) {
        match self.drivers.get(driver) {
            Some((s, src)) => (s, *src),
            None => (&self.default, PolicySource::Default),
        }
    }
}

pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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
            .with_overrides(Some(&json!({"txgbe": {}})), None)
            .unwrap();
        assert!(p.settings_for("txgbe").0.is_empty());
    }

    #[test]
    fn default_applies_to_unknown_drivers() {
        let p = Policy::built_in()
            .with_overrides(None, Some(&json!({"gro": true})))
            .unwrap();
        assert_eq!(
            p.settings_for("mlx5_core").0,
            &settings(json!({"gro": true}))
        );
        assert_eq!(p.settings_for("mlx5_core").1, PolicySource::Default);
        assert!(p.settings_for("i40e").0.is_empty());
    }

    #[test]
    fn bad_settings_are_rejected_with_the_path() {
        let err = |d: Value| {
            Policy::built_in()
                .with_overrides(Some(&d), None)
                .unwrap_err()
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
            .with_overrides(None, Some(&json!({"tso": 1})))
            .unwrap_err();
        assert!(
            e.contains("default.tso must be true or false, got a number"),
            "{e}"
        );
    }

    #[test]
    fn agreeing_overlaps_are_fine() {
        settings(json!({"tx": false, "tx-checksum-ip-generic": false}));
    }

    #[test]
    fn merge_keeps_every_distinct_setting_once() {
        let a = settings(json!({"tx": false}));
        let b = settings(json!({"tx": false, "gro": true}));
        let c = settings(json!({"tx-checksum-ip-generic": true}));
        let m = FeatureSettings::merge([&a, &b, &a]);
        assert_eq!(m.to_string(), "tx off, gro on");
        // An "on" entirely turned off by another NIC's settings is dropped.
        let m = FeatureSettings::merge([&c, &a]);
        assert_eq!(m.to_string(), "tx off");
        // A partial overlap stays; apply::plan resolves it per feature.
        let tx_on = settings(json!({"tx": true}));
        let generic_off = settings(json!({"tx-checksum-ip-generic": false}));
        let m = FeatureSettings::merge([&tx_on, &generic_off]);
        assert_eq!(m.to_string(), "tx on, tx-checksum-ip-generic off");
    }
}
