//! The `detection` and `probe` fields: whether the table or the node
//! agent's probe verdict decides, and what the agent probes.

use super::{json, ConfigError, Fields};
use crate::offload::probe::evidence::VERDICT_FILE;
use crate::offload::wanted::{Detection, NodeProbe, ProbeSpec};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// `probe.interval` when not set, and its bounds (seconds): a probe
/// takes up to ~6 s, so more often than every 10 s would be mostly probing.
pub const INTERVAL_DEFAULT: u64 = 300;
pub const INTERVAL_MIN: u64 = 10;
pub const INTERVAL_MAX: u64 = 86_400;

/// The fields of `probe`.
const KEYS: &[&str] = &["target", "source", "nodes", "interval", "verdictFile"];

/// The fields of one `probe.nodes` entry.
const NODE_KEYS: &[&str] = &["target", "source"];

/// Why `detection` or `probe` is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFieldError {
    #[error("probe must be an object, got {0}")]
    NotAnObject(&'static str),
    #[error(
        "probe: unknown field {0:?}; probe has target, source, nodes, interval and verdictFile"
    )]
    UnknownField(String),
    #[error("detection {0:?} needs probe.target and probe.source (the node agent probes from a throwaway pod), or probe.nodes giving each node its own")]
    Missing(&'static str),
    #[error("probe is set but detection is \"table\" (the default), which never reads it: set detection to \"probe\" or \"both\", or remove probe")]
    Unused,
    #[error("{0} must be an IPv4 address and port (\"10.0.3.15:5201\"), got {1}")]
    Target(String, String),
    #[error("{0} must be an IPv4 address (an unused one of this node's pod CIDR), got {1}")]
    Source(String, String),
    #[error("probe.interval must be a whole number of seconds from {INTERVAL_MIN} to {INTERVAL_MAX}, got {0}")]
    Interval(String),
    #[error("probe.verdictFile must be an absolute path, got {0}")]
    VerdictFile(String),
    #[error("probe.nodes must be an object of node name -> {{\"source\", \"target\"}}, got {0}")]
    NodesNotAnObject(&'static str),
    #[error("probe.nodes: {0:?} is not a Kubernetes node name (lowercase letters, digits, '-' and '.', at most 253)")]
    NodeName(String),
    #[error("probe.nodes.{0} must be an object with source and/or target, got {1}")]
    NodeNotAnObject(String, &'static str),
    #[error("probe.nodes.{0}: unknown field {1:?}; a node has target and source")]
    NodeUnknownField(String, String),
    #[error("probe.nodes.{0} is empty: give it a source or a target, or remove it")]
    NodeEmpty(String),
    #[error("probe.nodes.{0} has no target and there is no default probe.target")]
    NodeNoTarget(String),
    #[error("probe.source {0} is given to {1}: two nodes cannot own one address (each node needs its own unused address of its own pod CIDR)")]
    SharedSource(Ipv4Addr, String),
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

/// A value that is absent or null is not set.
fn get<'a>(map: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    map.get(k).filter(|v| !v.is_null())
}

fn target(v: &Value, field: &str) -> Result<SocketAddrV4, ProbeFieldError> {
    v.as_str()
        .and_then(|t| t.parse::<SocketAddrV4>().ok())
        .filter(|t| t.port() != 0 && !t.ip().is_unspecified())
        .ok_or_else(|| ProbeFieldError::Target(field.to_string(), shown(v)))
}

fn source(v: &Value, field: &str) -> Result<Ipv4Addr, ProbeFieldError> {
    v.as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        .filter(|s| {
            !s.is_unspecified() && !s.is_loopback() && !s.is_multicast() && !s.is_broadcast()
        })
        .ok_or_else(|| ProbeFieldError::Source(field.to_string(), shown(v)))
}

/// A Kubernetes node name (an RFC 1123 subdomain): what `spec.nodeName`
/// can hold, so a key that is not one can never match a node.
pub(super) fn is_node_name(name: &str) -> bool {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(ok_label)
}

/// `probe.nodes`: each node's overrides, checked against the defaults.
fn nodes(
    v: &Value,
    default_target: Option<SocketAddrV4>,
    default_source: Option<Ipv4Addr>,
) -> Result<BTreeMap<String, NodeProbe>, ProbeFieldError> {
    let Value::Object(map) = v else {
        return Err(ProbeFieldError::NodesNotAnObject(json::kind(v)));
    };
    let mut out = BTreeMap::new();
    // Who holds each address: the default's holders are every node
    // without its own, so a node's own source may not be the default.
    let mut owners: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    if let Some(s) = default_source {
        owners.insert(s, "the default probe.source".to_string());
    }
    for (name, entry) in map {
        if !is_node_name(name) {
            return Err(ProbeFieldError::NodeName(json::clip(name)));
        }
        let Value::Object(entry) = entry else {
            return Err(ProbeFieldError::NodeNotAnObject(
                name.clone(),
                json::kind(entry),
            ));
        };
        if let Some(key) = entry.keys().find(|k| !NODE_KEYS.contains(&k.as_str())) {
            return Err(ProbeFieldError::NodeUnknownField(
                name.clone(),
                json::clip(key),
            ));
        }
        let node = NodeProbe {
            target: get(entry, "target")
                .map(|t| target(t, &format!("probe.nodes.{name}.target")))
                .transpose()?,
            source: get(entry, "source")
                .map(|s| source(s, &format!("probe.nodes.{name}.source")))
                .transpose()?,
        };
        if node == NodeProbe::default() {
            return Err(ProbeFieldError::NodeEmpty(name.clone()));
        }
        if node.target.or(default_target).is_none() {
            return Err(ProbeFieldError::NodeNoTarget(name.clone()));
        }
        if let Some(s) = node.source {
            if let Some(other) = owners.insert(s, format!("probe.nodes.{name}")) {
                return Err(ProbeFieldError::SharedSource(
                    s,
                    format!("{other} and probe.nodes.{name}"),
                ));
            }
        }
        out.insert(name.clone(), node);
    }
    Ok(out)
}

fn spec(detection: Detection, map: &Map<String, Value>) -> Result<ProbeSpec, ProbeFieldError> {
    if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ProbeFieldError::UnknownField(json::clip(key)));
    }
    let default_target = get(map, "target")
        .map(|t| target(t, "probe.target"))
        .transpose()?;
    let default_source = get(map, "source")
        .map(|s| source(s, "probe.source"))
        .transpose()?;
    let nodes = match get(map, "nodes") {
        None => BTreeMap::new(),
        Some(v) => nodes(v, default_target, default_source)?,
    };
    // Without nodes the defaults are every node's path, so both are
    // needed; with nodes, a node without a source of its own (or one not
    // listed, without a default) does not probe.
    let some_source = default_source.is_some() || nodes.values().any(|n| n.source.is_some());
    if default_target.is_none() && nodes.is_empty() || !some_source {
        return Err(ProbeFieldError::Missing(detection.name()));
    }
    let interval = match get(map, "interval") {
        None => INTERVAL_DEFAULT,
        Some(v) => v
            .as_u64()
            .filter(|n| (INTERVAL_MIN..=INTERVAL_MAX).contains(n))
            .ok_or_else(|| ProbeFieldError::Interval(shown(v)))?,
    };
    let verdict_file = match get(map, "verdictFile") {
        None => PathBuf::from(VERDICT_FILE),
        Some(v) => v
            .as_str()
            .filter(|p| p.starts_with('/') && p.len() > 1 && !p.ends_with('/'))
            .map(PathBuf::from)
            .ok_or_else(|| ProbeFieldError::VerdictFile(shown(v)))?,
    };
    Ok(ProbeSpec {
        target: default_target,
        source: default_source,
        nodes,
        interval: Duration::from_secs(interval),
        verdict_file,
    })
}
