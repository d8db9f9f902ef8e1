//! CNI spec versions: which ones we speak, which verbs each allows, and how
//! a result moves between the 0.x and 1.x formats.

use crate::json;
use serde_json::{Map, Value};

/// The list and the version type live below the front ends, so that the
/// installer reads the same list without importing the protocol.
pub use crate::spec_versions::{Version, SUPPORTED};
/// The version this plugin reports as its own in VERSION and errors
/// raised before a config version is known.
pub const CURRENT: &str = "1.1.0";

/// A version the plugin cannot speak, or a verb its version does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("config has no cniVersion; supported versions: {supported}", supported = SUPPORTED.join(", "))]
    Missing,
    #[error("config cniVersion {0:?} is not supported; supported versions: {supported}", supported = SUPPORTED.join(", "))]
    Unsupported(String),
    #[error("config version {version} does not allow {verb}; it needs cniVersion {min} or later")]
    VerbNotAllowed {
        verb: &'static str,
        version: String,
        min: Version,
    },
    #[error("prevResult cniVersion {0:?} is not supported")]
    PrevResult(String),
}

/// A result object that cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("prevResult cniVersion must be a string, got {0}")]
    VersionNotString(String),
    #[error(transparent)]
    Version(#[from] VersionError),
}

impl Version {
    /// Results before 1.0.0 carry `ips[].version`; from 1.0.0 on they do not.
    fn has_ip_version_field(self) -> bool {
        self < Version(1, 0, 0)
    }
}

/// Checks that a config version is one we support.
pub fn check_supported(cni_version: &str) -> Result<Version, VersionError> {
    crate::spec_versions::supported(cni_version)
        .ok_or_else(|| VersionError::Unsupported(json::clip(cni_version)))
}

/// The minimum config version for a verb, as the reference dispatcher
/// enforces it (CHECK from 0.4.0, GC and STATUS from 1.1.0).
pub fn check_verb_allowed(
    verb: &'static str,
    version: Version,
    raw: &str,
) -> Result<(), VersionError> {
    let min = match verb {
        "CHECK" => Version(0, 4, 0),
        "GC" | "STATUS" => Version(1, 1, 0),
        _ => return Ok(()),
    };
    if version < min {
        return Err(VersionError::VerbNotAllowed {
            verb,
            version: json::clip(raw),
            min,
        });
    }
    Ok(())
}

/// Converts a result object to `target`, the way libcni converts results
/// between formats; fields this plugin does not know are kept as they are.
pub fn convert_result(
    mut result: Map<String, Value>,
    target: &str,
) -> Result<Map<String, Value>, ConvertError> {
    let to = check_supported(target)?;
    let from_raw = match result.get("cniVersion") {
        None => target.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ConvertError::VersionNotString(json::clip(
                &other.to_string(),
            )))
        }
    };
    let from = Version::parse(&from_raw)
        .filter(|_| SUPPORTED.contains(&from_raw.as_str()))
        .ok_or(VersionError::PrevResult(json::clip(&from_raw)))?;
    if from.has_ip_version_field() != to.has_ip_version_field() {
        if let Some(Value::Array(ips)) = result.get_mut("ips") {
            for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                if to.has_ip_version_field() {
                    let family = match ip.get("address").and_then(Value::as_str) {
                        Some(a) if a.contains(':') => "6",
                        Some(_) => "4",
                        None => continue,
                    };
                    // Insert right after "address"'s position would need a
                    // rebuild; libcni puts version first, so do the same.
                    let mut rebuilt = Map::with_capacity(ip.len() + 1);
                    rebuilt.insert("version".into(), Value::from(family));
                    rebuilt.extend(std::mem::take(ip));
                    *ip = rebuilt;
                } else {
                    ip.shift_remove("version");
                }
            }
        }
    }
    match result.get_mut("cniVersion") {
        Some(v) => *v = Value::from(target),
        None => {
            let mut rebuilt = Map::with_capacity(result.len() + 1);
            rebuilt.insert("cniVersion".into(), Value::from(target));
            rebuilt.extend(result);
            result = rebuilt;
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(e: VersionError) -> u32 {
        crate::cni::Error::from(e).code()
    }

    #[test]
    fn parses_versions() {
        assert_eq!(Version::parse("1.1.0"), Some(Version(1, 1, 0)));
        assert_eq!(Version::parse("0.4"), None);
        assert_eq!(Version::parse("1.0.0.0"), None);
        assert_eq!(Version::parse("x.0.0"), None);
        assert!(Version(0, 4, 0) < Version(1, 0, 0));
    }

    #[test]
    fn only_supported_versions_pass() {
        for v in SUPPORTED {
            assert!(check_supported(v).is_ok());
        }
        for v in ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "", "1.0"] {
            assert_eq!(code(check_supported(v).unwrap_err()), 1, "{v}");
        }
    }

    #[test]
    fn verbs_follow_the_reference_dispatcher() {
        let v = |s| Version::parse(s).unwrap();
        assert!(check_verb_allowed("CHECK", v("0.3.1"), "0.3.1").is_err());
        assert!(check_verb_allowed("CHECK", v("0.4.0"), "0.4.0").is_ok());
        for verb in ["GC", "STATUS"] {
            assert_eq!(
                code(check_verb_allowed(verb, v("1.0.0"), "1.0.0").unwrap_err()),
                1
            );
            assert!(check_verb_allowed(verb, v("1.1.0"), "1.1.0").is_ok());
        }
        assert!(check_verb_allowed("ADD", v("0.3.0"), "0.3.0").is_ok());
        assert!(check_verb_allowed("DEL", v("0.3.0"), "0.3.0").is_ok());
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn converts_1x_to_0x_adding_ip_versions() {
        let r = obj(
            json!({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"},{"address":"fd00::2/64","gateway":"fd00::1"}],"x":1}),
        );
        let out = convert_result(r, "0.4.0").unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.2/24"},{"version":"6","address":"fd00::2/64","gateway":"fd00::1"}],"x":1})
        );
    }

    #[test]
    fn converts_0x_to_1x_dropping_ip_versions() {
        let r = obj(
            json!({"cniVersion":"0.3.1","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","address":"10.1.0.2/24","interface":0}]}),
        );
        let out = convert_result(r, "1.1.0").unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.1.0.2/24","interface":0}]})
        );
    }

    #[test]
    fn missing_version_is_stamped_first() {
        let out = convert_result(obj(json!({"ips":[]})), "1.0.0").unwrap();
        assert_eq!(out.keys().next().unwrap(), "cniVersion");
        assert_eq!(out["cniVersion"], "1.0.0");
    }

    #[test]
    fn unsupported_prev_version_is_an_error() {
        let e = convert_result(obj(json!({"cniVersion": "0.2.0"})), "1.0.0").unwrap_err();
        assert_eq!(crate::cni::Error::from(e).code(), 1);
    }
}
