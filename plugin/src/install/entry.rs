//! The csum-offload entry the installer puts into the primary config,
//! built from the `--config` file (a ConfigMap).

use super::select::netconf::{self, Members, Undecodable};
use crate::config::{Config, ConfigError, RawConfig};
use serde_json::{Map, Value};

/// The plugin type (and binary name) of our entry.
pub const PLUGIN_TYPE: &str = "csum-offload";
/// The field that marks an entry the installer wrote, and its value. The
/// plugin accepts and ignores it; the installer updates and removes only
/// entries that carry it, so one an operator wrote by hand (for example
/// through Cilium's customConf) is left alone.
pub const MANAGED_KEY: &str = "managedBy";
pub const MANAGED_BY: &str = "csum-offload-installer";

/// Why the installer's `--config` file (the ConfigMap) cannot be made
/// into the entry.
#[derive(Debug, thiserror::Error)]
pub enum InstallerConfigError {
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("must be a JSON object (one conflist entry)")]
    NotAnObject,
    #[error("\"type\" must be {PLUGIN_TYPE:?} (the binary the runtime runs), got {0}")]
    WrongType(String),
    #[error("\"prevResult\" is set by the runtime, not by config")]
    PrevResult,
    #[error("\"{MANAGED_KEY}\" is set by the installer on the entries it writes, not by config")]
    Managed,
    #[error("{0} (libcni could not load a conflist with this entry)")]
    Undecodable(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The entry to insert: validated, so every entry that exists is one the
/// plugin accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry(Map<String, Value>);

impl Entry {
    /// Parses and validates the config. `type` comes first and must be
    /// ours if given, then the installer's mark; `cniVersion` and `name`
    /// are dropped because the runtime injects the list's own;
    /// `prevResult` belongs to the runtime, `managedBy` to the installer.
    pub fn from_config(text: &str) -> Result<Self, InstallerConfigError> {
        let value: Value = serde_json::from_str(text).map_err(InstallerConfigError::Json)?;
        let Value::Object(obj) = value else {
            return Err(InstallerConfigError::NotAnObject);
        };
        let mut entry = Map::new();
        match obj.get("type") {
            None => {}
            Some(Value::String(t)) if t == PLUGIN_TYPE => {}
            Some(other) => return Err(InstallerConfigError::WrongType(other.to_string())),
        }
        if obj.contains_key("prevResult") {
            return Err(InstallerConfigError::PrevResult);
        }
        if obj.contains_key(MANAGED_KEY) {
            return Err(InstallerConfigError::Managed);
        }
        entry.insert("type".into(), Value::String(PLUGIN_TYPE.into()));
        entry.insert(MANAGED_KEY.into(), Value::String(MANAGED_BY.into()));
        for (k, v) in obj {
            if !matches!(k.as_str(), "type" | "cniVersion" | "name") {
                entry.insert(k, v);
            }
        }
        // The runtime must be able to decode the conflist we write it into.
        if let Err(Undecodable::Invalid(why)) = netconf::check(&Members(
            entry.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        )) {
            return Err(InstallerConfigError::Undecodable(why));
        }
        let entry = Entry(entry);
        entry.config()?;
        Ok(entry)
    }

    /// The default entry: the built-in driver policy.
    pub fn default_entry() -> Self {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(PLUGIN_TYPE.into()));
        m.insert(MANAGED_KEY.into(), Value::String(MANAGED_BY.into()));
        Entry(m)
    }

    /// The entry without the installer's mark: what a hand-written entry
    /// is compared with.
    pub fn unmarked(&self) -> Value {
        let mut m = self.0.clone();
        m.shift_remove(MANAGED_KEY);
        Value::Object(m)
    }

    pub fn as_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// The entry as the plugin will read it. Its fields do not depend on
    /// the chain's cniVersion, so one parse stands for every version.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = self
            .0
            .iter()
            .map(|(k, v)| {
                let raw =
                    serde_json::value::to_raw_value(v).map_err(|source| ConfigError::Json {
                        key: k.clone(),
                        source,
                    })?;
                Ok((k.clone(), raw))
            })
            .collect::<Result<_, ConfigError>>()?;
        Config::from_raw(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_file_validation() {
        let ok = [
            (
                "{}",
                json!({"type": "csum-offload", "managedBy": MANAGED_BY}),
            ),
            (
                r#"{"cniVersion":"0.4.0","name":"x","type":"csum-offload","drivers":{"veth":{"tx":false}}}"#,
                json!({"type": "csum-offload", "managedBy": MANAGED_BY, "drivers": {"veth": {"tx": false}}}),
            ),
        ];
        for (text, want) in ok {
            assert_eq!(Entry::from_config(text).unwrap().as_value(), want, "{text}");
        }
        let bad = [
            ("", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"type":"tuning"}"#, "\"type\" must be \"csum-offload\""),
            (r#"{"prevResult":{}}"#, "prevResult"),
            (r#"{"managedBy":"me"}"#, "set by the installer"),
            (
                r#"{"hostInterfce":"eth0"}"#,
                "unknown field \"hostInterfce\"",
            ),
            (
                r#"{"drivers":{"txgbe":{"txcsum":false}}}"#,
                "unknown offload feature",
            ),
            (r#"{"apply":"pod"}"#, "apply must be"),
            (r#"{"capabilities":{"x":1}}"#, "libcni could not load"),
            (
                r#"{"dns":{"nameservers":"10.0.0.1"}}"#,
                "libcni could not load",
            ),
        ];
        for (text, want) in bad {
            let e = Entry::from_config(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e:?} should contain {want:?}");
        }
        assert_eq!(
            Entry::default_entry().as_value(),
            json!({"type": "csum-offload", "managedBy": MANAGED_BY})
        );
        assert_eq!(
            Entry::default_entry().unmarked(),
            json!({"type": "csum-offload"})
        );
    }
}
