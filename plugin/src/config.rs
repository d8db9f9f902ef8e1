//! The plugin's network configuration, as the runtime passes it on stdin.

use crate::cni::error::CniError;
use crate::cni::version::{self, Version};
use crate::policy::{json_kind, Policy};
use log::LevelFilter;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which end of the veth pair to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    Both,
    Container,
    Host,
}

impl ApplyTo {
    pub fn container(self) -> bool {
        self != ApplyTo::Host
    }
    pub fn host(self) -> bool {
        self != ApplyTo::Container
    }
}

/// What to do when a required setting cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// What to do when CNI_IFNAME is not a veth (macvlan, ipvlan, SR-IOV VF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonVeth {
    /// Log and pass through: such interfaces have no veth to fix.
    Skip,
    /// Fail the ADD: for clusters where every pod must be on a veth.
    Fail,
}

/// A validated configuration.
#[derive(Debug)]
pub struct PluginConfig {
    pub cni_version: String,
    pub version: Version,
    pub host_interface: Option<String>,
    pub host_driver: Option<String>,
    pub policy: Policy,
    pub apply: ApplyTo,
    pub failure_policy: FailurePolicy,
    pub non_veth: NonVeth,
    pub log_file: Option<PathBuf>,
    pub log_level: LevelFilter,
    /// Kept as the exact bytes the runtime sent, so ADD can hand it back
    /// unchanged.
    pub prev_result: Option<Box<RawValue>>,
}

/// Keys the CNI spec or runtimes put into any plugin's config; accepted
/// and ignored. Anything else that is not ours is rejected, so a typo such
/// as `hostInterfce` is an error rather than a silently ignored setting.
const SPEC_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "prevResult",
    "runtimeConfig",
    "capabilities",
    "args",
    "ipam",
    "dns",
    "disableCheck",
    "disableGC",
];
const OWN_KEYS: &[&str] = &[
    "hostInterface",
    "hostDriver",
    "drivers",
    "default",
    "apply",
    "failurePolicy",
    "nonVeth",
    "logFile",
    "logLevel",
];

/// The top-level object with each value still raw, so every field can be
/// validated with its own name in the message and prevResult kept verbatim.
pub type RawConfig = BTreeMap<String, Box<RawValue>>;

/// Reads only what every verb needs: the JSON object and its version.
pub fn parse_envelope(stdin: &[u8]) -> Result<(RawConfig, String), CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::Decode(
            "stdin is empty; expected the network configuration JSON".into(),
        ));
    }
    let raw: RawConfig =
        serde_json::from_slice(stdin).map_err(|e| CniError::Decode(e.to_string()))?;
    let cni_version = match raw.get("cniVersion") {
        None => {
            return Err(CniError::IncompatibleVersion(format!(
                "config has no cniVersion; supported versions: {}",
                version::SUPPORTED.join(", ")
            )))
        }
        Some(v) => serde_json::from_str::<String>(v.get()).map_err(|_| {
            CniError::Decode(format!("cniVersion must be a string, got {}", v.get()))
        })?,
    };
    Ok((raw, cni_version))
}

impl PluginConfig {
    /// Parses and validates the whole config. Errors: 6 for bytes that are
    /// not a JSON object, 1 for an unsupported version, 7 for everything
    /// else that is wrong.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let (raw, cni_version) = parse_envelope(stdin)?;
        Self::from_envelope(raw, cni_version)
    }

    /// The rest of `parse`, for callers that already read the envelope.
    pub fn from_envelope(raw: RawConfig, cni_version: String) -> Result<Self, CniError> {
        let version = version::check_supported(&cni_version)?;
        Self::from_raw(raw, cni_version, version).map_err(CniError::InvalidConfig)
    }

    fn from_raw(mut raw: RawConfig, cni_version: String, version: Version) -> Result<Self, String> {
        for key in raw.keys() {
            if !SPEC_KEYS.contains(&key.as_str())
                && !OWN_KEYS.contains(&key.as_str())
                && !key.starts_with("cni.dev/")
            {
                return Err(format!(
                    "unknown field {key:?}; csum-offload accepts {} (see docs/configuration.md)",
                    OWN_KEYS.join(", ")
                ));
            }
        }
        let value = |raw: &RawConfig, key: &str| -> Result<Option<Value>, String> {
            raw.get(key)
                .map(|r| serde_json::from_str::<Value>(r.get()).map_err(|e| format!("{key}: {e}")))
                .transpose()
                .map(|v| v.filter(|v| !v.is_null()))
        };
        let string = |raw: &RawConfig, key: &str| -> Result<Option<String>, String> {
            match value(raw, key)? {
                None => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Err(format!("{key} must not be empty")),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(format!("{key} must be a string, got {}", json_kind(&other))),
            }
        };

        let host_interface = string(&raw, "hostInterface")?;
        if let Some(name) = &host_interface {
            check_ifname(name).map_err(|e| format!("hostInterface: {e}"))?;
        }
        let host_driver = string(&raw, "hostDriver")?;
        let policy = Policy::built_in().with_overrides(
            value(&raw, "drivers")?.as_ref(),
            value(&raw, "default")?.as_ref(),
        )?;
        use ApplyTo::*;
        let apply = one_of(
            string(&raw, "apply")?,
            "apply",
            &[("both", Both), ("container", Container), ("host", Host)],
        )?;
        let failure_policy = one_of(
            string(&raw, "failurePolicy")?,
            "failurePolicy",
            &[
                ("fail", FailurePolicy::Fail),
                ("ignore", FailurePolicy::Ignore),
            ],
        )?;
        let non_veth = one_of(
            string(&raw, "nonVeth")?,
            "nonVeth",
            &[("skip", NonVeth::Skip), ("fail", NonVeth::Fail)],
        )?;
        let log_file = string(&raw, "logFile")?.map(PathBuf::from);
        if let Some(path) = &log_file {
            if !path.is_absolute() {
                return Err(format!(
                    "logFile must be an absolute path, got {:?}",
                    path.display()
                ));
            }
        }
        let log_level = match string(&raw, "logLevel")?.as_deref() {
            None | Some("info") => LevelFilter::Info,
            Some("off") => LevelFilter::Off,
            Some("error") => LevelFilter::Error,
            Some("warn") => LevelFilter::Warn,
            Some("debug") => LevelFilter::Debug,
            Some("trace") => LevelFilter::Trace,
            Some(other) => {
                return Err(format!(
                    "logLevel must be one of off, error, warn, info, debug, trace; got {other:?}"
                ))
            }
        };
        let prev_result = raw.remove("prevResult").filter(|r| r.get() != "null");
        if let Some(prev) = &prev_result {
            if !prev.get().trim_start().starts_with('{') {
                return Err(format!("prevResult must be an object, got {}", prev.get()));
            }
        }
        Ok(Self {
            cni_version,
            version,
            host_interface,
            host_driver,
            policy,
            apply,
            failure_policy,
            non_veth,
            log_file,
            log_level,
            prev_result,
        })
    }
}

/// A string field with a fixed set of values; the first is the default.
/// The message lists them all: `apply must be "both", "container" or
/// "host", got "pod"`.
fn one_of<T: Copy>(value: Option<String>, key: &str, options: &[(&str, T)]) -> Result<T, String> {
    let no_values = || format!("{key}: no values defined");
    let Some(value) = value else {
        return options.first().map(|(_, t)| *t).ok_or_else(no_values);
    };
    if let Some((_, t)) = options.iter().find(|(name, _)| *name == value) {
        return Ok(*t);
    }
    let names: Vec<String> = options
        .iter()
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    let (last, rest) = names.split_last().ok_or_else(no_values)?;
    Err(format!(
        "{key} must be {} or {last}, got {value:?}",
        rest.join(", ")
    ))
}

/// Linux interface names: 1-15 bytes, no '/', no whitespace, not "." or "..".
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name {name:?} must be 1 to 15 bytes long"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(format!(
            "interface name {name:?} is not a valid Linux interface name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<PluginConfig, CniError> {
        PluginConfig::parse(v.to_string().as_bytes())
    }

    fn err(v: Value) -> (u32, String) {
        let e = parse(v).unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "csum-offload"})).unwrap();
        assert_eq!(c.apply, ApplyTo::Both);
        assert_eq!(c.failure_policy, FailurePolicy::Fail);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert!(c.host_interface.is_none() && c.host_driver.is_none() && c.log_file.is_none());
        assert!(c.prev_result.is_none());
        assert_eq!(c.policy, Policy::built_in());
    }

    #[test]
    fn full_config_from_the_docs() {
        let c = parse(json!({
            "cniVersion": "1.1.0", "name": "kindnet", "type": "csum-offload",
            "hostInterface": "eth0", "hostDriver": "txgbe",
            "drivers": {"txgbe": {"tx": false}, "i40e": {}}, "default": {},
            "apply": "container", "failurePolicy": "ignore",
            "logFile": "/var/log/csum-offload.log", "logLevel": "debug",
            "runtimeConfig": {}, "capabilities": {}, "cni.dev/valid-attachments": []
        }))
        .unwrap();
        assert_eq!(c.host_interface.as_deref(), Some("eth0"));
        assert_eq!(c.host_driver.as_deref(), Some("txgbe"));
        assert_eq!(c.apply, ApplyTo::Container);
        assert_eq!(c.failure_policy, FailurePolicy::Ignore);
        assert_eq!(c.non_veth, NonVeth::Skip);
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(c.log_file, Some(PathBuf::from("/var/log/csum-offload.log")));
    }

    #[test]
    fn prev_result_is_kept_byte_for_byte() {
        let stdin = br#"{"cniVersion":"1.0.0","prevResult": {"cniVersion":"1.0.0", "zzz": 1,"aaa" : [1.50, "x"]}}"#;
        let c = PluginConfig::parse(stdin).unwrap();
        assert_eq!(
            c.prev_result.unwrap().get(),
            r#"{"cniVersion":"1.0.0", "zzz": 1,"aaa" : [1.50, "x"]}"#
        );
    }

    #[test]
    fn decode_errors_are_code_6() {
        for stdin in [
            &b""[..],
            b"   \n",
            b"{",
            b"[]",
            b"\"x\"",
            b"{\"cniVersion\": 1}",
            b"\xff\xfe",
        ] {
            let e = PluginConfig::parse(stdin).unwrap_err();
            assert_eq!(e.code(), 6, "{:?}: {e}", String::from_utf8_lossy(stdin));
        }
    }

    #[test]
    fn version_errors_are_code_1() {
        assert_eq!(err(json!({"name": "x"})).0, 1);
        assert_eq!(err(json!({"cniVersion": "0.2.0"})).0, 1);
        assert_eq!(err(json!({"cniVersion": "9.9.9"})).0, 1);
        assert!(err(json!({"cniVersion": "0.1.0"}))
            .1
            .contains("supported versions: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
    }

    #[test]
    fn config_errors_are_code_7_and_name_the_field() {
        let cases = [
            (
                json!({"hostInterfce": "eth0"}),
                "unknown field \"hostInterfce\"",
            ),
            (
                json!({"hostInterface": 3}),
                "hostInterface must be a string, got a number",
            ),
            (
                json!({"hostInterface": ""}),
                "hostInterface must not be empty",
            ),
            (
                json!({"hostInterface": "a-very-long-interface-name"}),
                "1 to 15 bytes",
            ),
            (
                json!({"hostInterface": "eth0/x"}),
                "not a valid Linux interface name",
            ),
            (
                json!({"hostDriver": false}),
                "hostDriver must be a string, got a boolean",
            ),
            (
                json!({"drivers": {"txgbe": {"txcsum": false}}}),
                "unknown offload feature \"txcsum\"",
            ),
            (
                json!({"drivers": {"txgbe": {"tx": 0}}}),
                "drivers.txgbe.tx must be true or false",
            ),
            (json!({"drivers": "txgbe"}), "drivers must be an object"),
            (
                json!({"default": {"gro": "yes"}}),
                "default.gro must be true or false",
            ),
            (json!({"default": []}), "default must be an object"),
            (
                json!({"apply": "pod"}),
                "apply must be \"both\", \"container\" or \"host\", got \"pod\"",
            ),
            (json!({"apply": true}), "apply must be a string"),
            (
                json!({"failurePolicy": "warn"}),
                "failurePolicy must be \"fail\" or \"ignore\"",
            ),
            (
                json!({"logFile": "relative.log"}),
                "logFile must be an absolute path",
            ),
            (
                json!({"nonVeth": "warn"}),
                "nonVeth must be \"skip\" or \"fail\"",
            ),
            (json!({"logLevel": "verbose"}), "logLevel must be one of"),
            (json!({"prevResult": [1]}), "prevResult must be an object"),
            (json!({"prevResult": "x"}), "prevResult must be an object"),
        ];
        for (mut conf, want) in cases {
            conf.as_object_mut()
                .unwrap()
                .insert("cniVersion".into(), json!("1.0.0"));
            let (code, msg) = err(conf.clone());
            assert_eq!(code, 7, "{conf}: {msg}");
            assert!(
                msg.contains(want),
                "{conf}: {msg:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn null_fields_mean_default() {
        let c = parse(
            json!({"cniVersion": "0.3.1", "apply": null, "prevResult": null, "drivers": null}),
        )
        .unwrap();
        assert_eq!(c.apply, ApplyTo::Both);
        assert!(c.prev_result.is_none());
    }

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("123456789012345").is_ok());
        for bad in ["", "1234567890123456", ".", "..", "a b", "a/b", "a:b"] {
            assert!(check_ifname(bad).is_err(), "{bad}");
        }
    }
}
