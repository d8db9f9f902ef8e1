//! The network configuration on stdin: the CNI envelope (cniVersion,
//! prevResult, the runtime's keys) around the csum-offload entry.

use super::error::CniError;
use super::input::{DecodeError, PrevResultError};
use super::version::{self, Version, VersionError};
use crate::config::{Config, RawConfig};
use crate::json;
use serde_json::value::RawValue;

/// What every verb reads first: the JSON object and its version.
pub struct Envelope {
    raw: RawConfig,
    pub cni_version: String,
}

impl Envelope {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        if stdin.iter().all(u8::is_ascii_whitespace) {
            return Err(DecodeError::Empty.into());
        }
        let raw: RawConfig = serde_json::from_slice(stdin).map_err(DecodeError::Json)?;
        let cni_version = match raw.get("cniVersion") {
            None => return Err(VersionError::Missing.into()),
            Some(v) => serde_json::from_str::<String>(v.get())
                .map_err(|_| DecodeError::VersionNotString(json::clip(v.get())))?,
        };
        Ok(Self { raw, cni_version })
    }
}

/// A validated network configuration.
#[derive(Debug)]
pub struct NetConf {
    pub cni_version: String,
    pub version: Version,
    /// Kept as the exact bytes the runtime sent, so ADD can hand it back
    /// unchanged.
    pub prev_result: Option<Box<RawValue>>,
    pub config: Config,
}

impl NetConf {
    /// Parses and validates the whole config. Errors: 6 for bytes that are
    /// not a JSON object, 1 for an unsupported version, 7 for everything
    /// else that is wrong.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        Self::from_envelope(Envelope::parse(stdin)?)
    }

    /// The rest of `parse`, for callers that already read the envelope.
    pub fn from_envelope(envelope: Envelope) -> Result<Self, CniError> {
        let Envelope {
            mut raw,
            cni_version,
        } = envelope;
        let version = version::check_supported(&cni_version)?;
        let config = Config::from_raw(&raw)?;
        let prev_result = raw.remove("prevResult").filter(|r| r.get() != "null");
        if let Some(prev) = &prev_result {
            if !prev.get().trim_start().starts_with('{') {
                return Err(PrevResultError::NotAnObject(json::clip(prev.get())).into());
            }
        }
        Ok(Self {
            cni_version,
            version,
            prev_result,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn err(v: Value) -> (u32, String) {
        let e = parse(v).unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse(json!({"cniVersion": "1.0.0", "name": "n", "type": "csum-offload"})).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.version, Version(1, 0, 0));
        assert!(c.prev_result.is_none());
        assert!(c.config.log_file.is_none());
    }

    #[test]
    fn prev_result_is_kept_byte_for_byte() {
        let stdin = br#"{"cniVersion":"1.0.0","prevResult": {"cniVersion":"1.0.0", "zzz": 1,"aaa" : [1.50, "x"]}}"#;
        let c = NetConf::parse(stdin).unwrap();
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
            let e = NetConf::parse(stdin).unwrap_err();
            assert_eq!(e.code(), 6, "{:?}: {e}", String::from_utf8_lossy(stdin));
        }
    }

    #[test]
    fn input_over_the_bound_is_code_6() {
        assert_eq!(CniError::from(DecodeError::TooLarge).code(), 6);
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
                json!({"drivers": {"txgbe": {"txcsum": false}}}),
                "unknown offload feature \"txcsum\"",
            ),
            (
                json!({"apply": "pod"}),
                "apply must be \"both\", \"container\", \"host\" or \"uplink\", got \"pod\"",
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
    fn null_prev_result_means_none() {
        let c = parse(json!({"cniVersion": "0.3.1", "prevResult": null})).unwrap();
        assert!(c.prev_result.is_none());
    }
}
