//! The `detection` and `probe` fields: whether the table or the node
//! agent's probe verdict decides, and what the agent probes.

use super::{json, ConfigError, Fields};
use crate::offload::probe::evidence::VERDICT_FILE;
use crate::offload::wanted::{Detection, ProbeSpec};
use serde_json::{Map, Value};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// `probe.interval` when not set, and its bounds (seconds): a probe
/// takes up to ~6 s, so more often than every 10 s would be mostly probing.
pub const INTERVAL_DEFAULT: u64 = 300;
pub const INTERVAL_MIN: u64 = 10;
pub const INTERVAL_MAX: u64 = 86_400;

/// The fields of `probe`.
const KEYS: &[&str] = &["target", "source", "interval", "verdictFile"];

/// Why `detection` or `probe` is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFieldError {
    #[error("probe must be an object, got {0}")]
    NotAnObject(&'static str),
    #[error("probe: unknown field {0:?}; probe has target, source, interval and verdictFile")]
    UnknownField(String),
    #[error("detection {0:?} needs probe.target and probe.source (the node agent probes from a throwaway pod)")]
    Missing(&'static str),
    #[error("probe is set but detection is \"table\" (the default), which never reads it: set detection to \"probe\" or \"both\", or remove probe")]
    Unused,
    #[error("probe.target must be an IPv4 address and port (\"10.0.3.15:5201\"), got {0}")]
    Target(String),
    #[error(
        "probe.source must be an IPv4 address (an unused one of this node's pod CIDR), got {0}"
    )]
    Source(String),
    #[error("probe.interval must be a whole number of seconds from {INTERVAL_MIN} to {INTERVAL_MAX}, got {0}")]
    Interval(String),
    #[error("probe.verdictFile must be an absolute path, got {0}")]
    VerdictFile(String),
}

/// `detection` and `probe`, checked together.
pub fn parse(fields: &Fields<'_>) -> Result<(Detection, Option<ProbeSpec>), ConfigError> {
    use Detection::*;
    let detection = fields.one_of(
        "detection",
        &["table", "probe", "both"],
        &[Table, Probe, Both],
    )?;
    let probe = match fields.value("probe")? {
        None => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => return Err(ProbeFieldError::NotAnObject(json::kind(&other)).into()),
    };
    match (detection, probe) {
        (Table, None) => Ok((Table, None)),
        (Table, Some(_)) => Err(ProbeFieldError::Unused.into()),
        (d, None) => Err(ProbeFieldError::Missing(d.name()).into()),
        (d, Some(map)) => Ok((d, Some(spec(d, &map)?))),
    }
}

/// A value as its JSON text, clipped, for a message.
fn shown(v: &Value) -> String {
    json::clip(&v.to_string())
}

fn spec(detection: Detection, map: &Map<String, Value>) -> Result<ProbeSpec, ProbeFieldError> {
    if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ProbeFieldError::UnknownField(json::clip(key)));
    }
    let get = |k: &str| map.get(k).filter(|v| !v.is_null());
    let (Some(target), Some(source)) = (get("target"), get("source")) else {
        return Err(ProbeFieldError::Missing(detection.name()));
    };
    let target = target
        .as_str()
        .and_then(|t| t.parse::<SocketAddrV4>().ok())
        .filter(|t| t.port() != 0 && !t.ip().is_unspecified())
        .ok_or_else(|| ProbeFieldError::Target(shown(target)))?;
    let source = source
        .as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        .filter(|s| !s.is_unspecified() && !s.is_loopback() && !s.is_multicast())
        .ok_or_else(|| ProbeFieldError::Source(shown(source)))?;
    let interval = match get("interval") {
        None => INTERVAL_DEFAULT,
        Some(v) => v
            .as_u64()
            .filter(|n| (INTERVAL_MIN..=INTERVAL_MAX).contains(n))
            .ok_or_else(|| ProbeFieldError::Interval(shown(v)))?,
    };
    let verdict_file = match get("verdictFile") {
        None => PathBuf::from(VERDICT_FILE),
        Some(v) => v
            .as_str()
            .filter(|p| p.starts_with('/') && p.len() > 1 && !p.ends_with('/'))
            .map(PathBuf::from)
            .ok_or_else(|| ProbeFieldError::VerdictFile(shown(v)))?,
    };
    Ok(ProbeSpec {
        target,
        source,
        interval: Duration::from_secs(interval),
        verdict_file,
    })
}
