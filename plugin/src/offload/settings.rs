//! Feature settings: what a policy asks of an interface, e.g. `tx: false`.

use super::features::{on_off, suggest, FeatureSelector, KERNEL_FEATURES};
use crate::json;
use serde_json::{Map, Value};
use std::fmt;

/// The receive-merging features whose merged TCP packets leave GRO
/// marked CHECKSUM_PARTIAL.
pub const GRO_FEATURES: &[&str] = &["rx-gro", "rx-gro-hw", "rx-gro-list"];

/// One requested feature state, e.g. `tx: false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSetting {
    pub selector: FeatureSelector,
    pub enabled: bool,
}

/// An ordered set of feature settings for one driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureSettings(pub Vec<FeatureSetting>);

/// Why a settings object is not valid. `context` names where it sits in
/// the config (`drivers.txgbe`, `default`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{context} must be an object of feature name -> true/false, got {got}")]
    NotAnObject { context: String, got: &'static str },
    #[error("{context}: unknown offload feature {key:?}{}; use a name `ethtool -k` prints or an ethtool alias (tx, rx, sg, tso, gso, gro, lro...)", hint.map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    UnknownFeature {
        context: String,
        key: String,
        hint: Option<&'static str>,
    },
    #[error("{context}.{key} must be true or false, got {got}")]
    NotBool {
        context: String,
        key: String,
        got: &'static str,
    },
    #[error(
        "{context}: {a:?}: {a_on} and {b:?}: {b_on} contradict each other on feature {feature:?}"
    )]
    Contradiction {
        context: String,
        a: String,
        a_on: bool,
        b: String,
        b_on: bool,
        feature: &'static str,
    },
}

impl FeatureSettings {
    /// Parses `{ "tx": false, ... }`.
    pub fn from_json(value: &Value, context: &str) -> Result<Self, SettingsError> {
        let map = value
            .as_object()
            .ok_or_else(|| SettingsError::NotAnObject {
                context: context.to_string(),
                got: json::kind(value),
            })?;
        Self::from_map(map, context)
    }

    fn from_map(map: &Map<String, Value>, context: &str) -> Result<Self, SettingsError> {
        let mut settings = Vec::with_capacity(map.len());
        for (key, value) in map {
            let selector =
                FeatureSelector::parse(key).ok_or_else(|| SettingsError::UnknownFeature {
                    context: context.to_string(),
                    key: json::clip(key),
                    hint: suggest(key),
                })?;
            let enabled = value.as_bool().ok_or_else(|| SettingsError::NotBool {
                context: context.to_string(),
                key: json::clip(key),
                got: json::kind(value),
            })?;
            settings.push(FeatureSetting { selector, enabled });
        }
        let parsed = Self(settings);
        parsed.check_consistent(context)?;
        Ok(parsed)
    }

    /// Rejects one object that asks for the same kernel feature both on and
    /// off (e.g. `tx: false` with `tx-checksum-ip-generic: true`).
    fn check_consistent(&self, context: &str) -> Result<(), SettingsError> {
        for (i, a) in self.0.iter().enumerate() {
            for b in &self.0[i + 1..] {
                if a.enabled == b.enabled {
                    continue;
                }
                if let Some(f) = KERNEL_FEATURES
                    .iter()
                    .find(|f| a.selector.matches(f) && b.selector.matches(f))
                {
                    return Err(SettingsError::Contradiction {
                        context: context.to_string(),
                        a: a.selector.key.clone(),
                        a_on: a.enabled,
                        b: b.selector.key.clone(),
                        b_on: b.enabled,
                        feature: f,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether these settings turn TX checksum off and receive merging
    /// (GRO) on together. On a veth's host end that combination undoes the
    /// fix: the host end merges the pod's valid segments into one packet
    /// the kernel marks CHECKSUM_PARTIAL (`tcp_gro_complete`), and the node
    /// forwards it to the NIC partial. The wire check shows it
    /// (docs/performance.md#cheaper-veth-settings).
    pub fn merges_over_checksum_off(&self) -> bool {
        self.turns_checksum_off() && self.turns_gro_on()
    }

    /// Whether these settings turn IP TX checksum offload off (the fix).
    pub fn turns_checksum_off(&self) -> bool {
        self.0
            .iter()
            .any(|s| !s.enabled && s.selector.matches("tx-checksum-ip-generic"))
    }

    /// Whether these settings turn any GRO feature on.
    pub fn turns_gro_on(&self) -> bool {
        GRO_FEATURES
            .iter()
            .any(|f| self.0.iter().any(|s| s.enabled && s.selector.matches(f)))
    }

    /// Combines the settings of several NICs (bond slaves, multipath
    /// uplinks). Where they disagree on a feature, `false` wins: checksum
    /// offload is off if any path needs it off. An `on` that every feature
    /// of is turned off by another NIC's settings is dropped here, so what
    /// `detect` and the log show is what is applied; a partial overlap is
    /// resolved per feature when applied (see `tune::FeaturePlan`).
    ///
    /// GRO asked on by one NIC is dropped where another NIC's settings turn
    /// TX checksum off: together they would have a host end merge over
    /// checksum off (see `merges_over_checksum_off`), which undoes the fix
    /// the other NIC needs. One NIC's own settings that ask for both (valid
    /// only for the container end) are kept as they are.
    pub fn merge<'a>(all: impl IntoIterator<Item = &'a FeatureSettings>) -> FeatureSettings {
        let all: Vec<&FeatureSettings> = all.into_iter().collect();
        let mut merged: Vec<FeatureSetting> = Vec::new();
        for s in all.iter().flat_map(|s| s.0.iter()) {
            if !merged.contains(s) {
                merged.push(s.clone());
            }
        }
        let across = FeatureSettings(merged.clone()).merges_over_checksum_off()
            && !all.iter().any(|s| s.merges_over_checksum_off());
        if across {
            merged.retain(|s| !(s.enabled && GRO_FEATURES.iter().any(|f| s.selector.matches(f))));
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
            .map(|s| format!("{} {}", s.selector.key, on_off(s.enabled)))
            .collect();
        f.write_str(&parts.join(", "))
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
    fn gro_with_checksum_off_is_recognised_by_any_name() {
        for v in [
            json!({"tx": false, "gro": true}),
            json!({"tx-checksum-ip-generic": false, "rx-gro-list": true}),
            json!({"tx-checksumming": false, "generic-receive-offload": true}),
        ] {
            assert!(settings(v.clone()).merges_over_checksum_off(), "{v}");
        }
        for v in [
            json!({"tx": false}),
            json!({"gro": true}),
            json!({"tx": false, "gro": false}),
            json!({"tx-checksum-sctp": false, "gro": true}),
        ] {
            assert!(!settings(v.clone()).merges_over_checksum_off(), "{v}");
        }
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
        assert_eq!(m.to_string(), "tx off, gro on", "b asks for both itself");
        // GRO from one NIC and TX checksum off from another: GRO is dropped.
        let gro = settings(json!({"gro": true}));
        assert_eq!(FeatureSettings::merge([&a, &gro]).to_string(), "tx off");
        assert_eq!(FeatureSettings::merge([&gro]).to_string(), "gro on");
        // An "on" entirely turned off by another NIC's settings is dropped.
        let m = FeatureSettings::merge([&c, &a]);
        assert_eq!(m.to_string(), "tx off");
        // A partial overlap stays; tune::FeaturePlan resolves it per feature.
        let tx_on = settings(json!({"tx": true}));
        let generic_off = settings(json!({"tx-checksum-ip-generic": false}));
        let m = FeatureSettings::merge([&tx_on, &generic_off]);
        assert_eq!(m.to_string(), "tx on, tx-checksum-ip-generic off");
    }
}
