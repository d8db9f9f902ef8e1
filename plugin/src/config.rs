//! The csum-offload entry: the fields an operator writes (in a conflist
//! entry, the installer's ConfigMap, the agent's file), validated into what
//! every front end needs. The CNI envelope around it (cniVersion,
//! prevResult) is the protocol layer's (`cni::netconf`).

use crate::fsread::{self, ReadError};
use crate::json;
use crate::kernel::link::{check_ifname, IfnameError};
use crate::logfile::{self, LogPathError};
use crate::logger::{self, LevelError};
use crate::offload::policy::{Policy, PolicyError};
use crate::offload::wanted::{ProbeSpec, Wanted};
use log::LevelFilter;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod probe;

// Defined in the core, which never names this module; re-exported because
// every front end reads them as fields of `Config`.
pub use crate::offload::wanted::{Detection, NonVeth, Placement};
pub use probe::ProbeFieldError;

/// What to do when a required setting cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// What to do when the host NIC cannot be detected (no default route, an
/// unreadable driver): the plugin does not know whether a fix is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectionFailure {
    /// Change nothing, pass the result through, say so at warn.
    Skip,
    /// Fail the ADD and CHECK (code 102) and STATUS (code 50): for
    /// operators who would rather not start a pod than start it unfixed.
    Fail,
}

/// A validated entry.
#[derive(Debug)]
pub struct Config {
    pub host_interface: Option<String>,
    pub host_driver: Option<String>,
    pub policy: Policy,
    /// The `apply` field.
    pub placement: Placement,
    pub failure_policy: FailurePolicy,
    pub non_veth: NonVeth,
    pub detection_failure: DetectionFailure,
    /// Whether the table or the agent's probe verdict decides.
    pub detection: Detection,
    /// What the agent probes (set whenever `detection` is not `Table`).
    pub probe: Option<ProbeSpec>,
    /// Not a field of the entry: the name of the node that reads it, set
    /// by the front ends that know it (`node_name_from`); picks this
    /// node's `probe.nodes` entry. None in the plugin's ADD.
    pub node_name: Option<String>,
    pub log_file: Option<PathBuf>,
    pub log_level: LevelFilter,
}

impl Default for Config {
    /// The entry with no field set: the built-in table, both ends.
    fn default() -> Self {
        Self {
            host_interface: None,
            host_driver: None,
            policy: Policy::built_in(),
            placement: Placement::Both,
            failure_policy: FailurePolicy::Fail,
            non_veth: NonVeth::Skip,
            detection_failure: DetectionFailure::Skip,
            detection: Detection::Table,
            probe: None,
            node_name: None,
            log_file: None,
            log_level: LevelFilter::Info,
        }
    }
}

impl Wanted for Config {
    fn host_interface(&self) -> Option<&str> {
        self.host_interface.as_deref()
    }
    fn host_driver(&self) -> Option<&str> {
        self.host_driver.as_deref()
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }
    fn placement(&self) -> Placement {
        self.placement
    }
    fn non_veth(&self) -> NonVeth {
        self.non_veth
    }
    fn detection(&self) -> Detection {
        self.detection
    }
    fn probe(&self) -> Option<&ProbeSpec> {
        self.probe.as_ref()
    }
    fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }
}

/// The environment variable the DaemonSet sets to `spec.nodeName`.
pub const NODE_NAME_ENV: &str = "NODE_NAME";

/// This node's name: `flag` (`--node-name`) if given, else `NODE_NAME`
/// if set and not empty, else None.
pub fn node_name_from(flag: Option<String>) -> Result<Option<String>, NodeNameError> {
    let name = match flag {
        Some(n) => n,
        None => match std::env::var(NODE_NAME_ENV) {
            Ok(n) if !n.is_empty() => n,
            _ => return Ok(None),
        },
    };
    if probe::is_node_name(&name) {
        Ok(Some(name))
    } else {
        Err(NodeNameError(json::clip(&name)))
    }
}

/// A `--node-name` or `NODE_NAME` that no node can have.
#[derive(Debug, thiserror::Error)]
#[error("node name {0:?} is not a Kubernetes node name (lowercase letters, digits, '-' and '.', at most 253)")]
pub struct NodeNameError(String);

/// Why an entry is not valid; each names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown field {0:?}; csum-offload accepts {accepted} (see docs/configuration.md)", accepted = OWN_KEYS.join(", "))]
    UnknownField(String),
    #[error("{key}: {source}")]
    Json {
        key: String,
        source: serde_json::Error,
    },
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{key} must be a string, got {got}")]
    NotAString {
        key: &'static str,
        got: &'static str,
    },
    #[error("{key}: {source}")]
    Ifname {
        key: &'static str,
        source: IfnameError,
    },
    #[error("{key} must be {}, got {got:?}", list_or(options))]
    NotOneOf {
        key: &'static str,
        options: &'static [&'static str],
        got: String,
    },
    #[error("{0} turns TX checksum off and GRO on, and apply puts it on the host end of the veth: there GRO merges the pod's segments into packets with partial checksums that the node forwards to the NIC, the failure the fix is for; turn GRO on only for the container end, with a second entry (apply \"container\"; see docs/performance.md#cheaper-veth-settings)")]
    GroOnHostEnd(String),
    #[error("apply \"uplink\" sets the NIC itself, so it needs detection to find the device; hostDriver {0:?} skips detection: remove it (hostInterface chooses where detection starts)")]
    UplinkNeedsDetection(String),
    #[error(transparent)]
    Probe(#[from] ProbeFieldError),
    #[error(transparent)]
    LogFile(#[from] LogPathError),
    #[error("logLevel {0}")]
    LogLevel(#[from] LevelError),
    /// Boxed: rules, drivers and settings errors carry several names, and
    /// every front end's error type holds this one.
    #[error(transparent)]
    Policy(Box<PolicyError>),
}

impl From<PolicyError> for ConfigError {
    fn from(e: PolicyError) -> Self {
        Self::Policy(Box::new(e))
    }
}

/// `"a", "b" or "c"`.
fn list_or(options: &[&str]) -> String {
    let names: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Keys the CNI spec or runtimes put into any plugin's config; accepted
/// and ignored (`cni.dev/...` too). Anything else that is not ours is
/// rejected, so a typo such as `hostInterfce` is an error rather than a
/// silently ignored setting.
pub const SPEC_KEYS: &[&str] = &[
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
/// The fields of the entry itself.
pub const OWN_KEYS: &[&str] = &[
    "hostInterface",
    "hostDriver",
    "rules",
    "drivers",
    "default",
    "apply",
    "failurePolicy",
    "nonVeth",
    "detectionFailure",
    "detection",
    "probe",
    "logFile",
    "logLevel",
    // Set by the installer on the entries it writes; nothing reads it.
    "managedBy",
];

/// A JSON object with each value still raw, so every field can be
/// validated with its own name in the message (and the CNI layer can keep
/// prevResult verbatim).
pub type RawConfig = BTreeMap<String, Box<RawValue>>;

impl Config {
    /// Validates an entry's fields. Keys of the CNI envelope are skipped;
    /// the caller has read the ones it needs.
    pub fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        for key in raw.keys() {
            if !SPEC_KEYS.contains(&key.as_str())
                && !OWN_KEYS.contains(&key.as_str())
                && !key.starts_with("cni.dev/")
            {
                return Err(ConfigError::UnknownField(json::clip(key)));
            }
        }
        let fields = Fields(raw);
        let host_interface = fields.string("hostInterface")?;
        if let Some(name) = &host_interface {
            check_ifname(name).map_err(|source| ConfigError::Ifname {
                key: "hostInterface",
                source,
            })?;
        }
        let host_driver = fields.string("hostDriver")?;
        let policy = Policy::built_in().with_overrides(
            fields.value("drivers")?.as_ref(),
            fields.value("default")?.as_ref(),
            fields.value("rules")?.as_ref(),
        )?;
        use Placement::*;
        let placement = fields.one_of(
            "apply",
            &["both", "container", "host", "uplink"],
            &[Both, Container, Host, Uplink],
        )?;
        if placement.host() {
            if let Some((context, _)) = policy
                .every_settings()
                .into_iter()
                .find(|(_, s)| s.merges_over_checksum_off())
            {
                return Err(ConfigError::GroOnHostEnd(context));
            }
        }
        // The uplink placement changes the NIC itself: it needs the device,
        // which only detection finds; hostDriver skips detection.
        if placement == Uplink {
            if let Some(driver) = &host_driver {
                return Err(ConfigError::UplinkNeedsDetection(json::clip(driver)));
            }
        }
        let failure_policy = fields.one_of(
            "failurePolicy",
            &["fail", "ignore"],
            &[FailurePolicy::Fail, FailurePolicy::Ignore],
        )?;
        let non_veth = fields.one_of(
            "nonVeth",
            &["skip", "fail"],
            &[NonVeth::Skip, NonVeth::Fail],
        )?;
        let detection_failure = fields.one_of(
            "detectionFailure",
            &["skip", "fail"],
            &[DetectionFailure::Skip, DetectionFailure::Fail],
        )?;
        let (detection, probe) = probe::parse(&fields)?;
        let log_file = fields.string("logFile")?.map(PathBuf::from);
        if let Some(path) = &log_file {
            logfile::check_path(path)?;
        }
        let log_level = logger::parse_level(fields.string("logLevel")?.as_deref())?;
        Ok(Self {
            host_interface,
            host_driver,
            policy,
            placement,
            failure_policy,
            non_veth,
            detection_failure,
            detection,
            probe,
            node_name: None,
            log_file,
            log_level,
        })
    }

    /// Parses an entry from JSON text (a file: the installer's ConfigMap,
    /// the agent's config, `detect --config`).
    pub fn from_json(text: &str) -> Result<Self, EntryError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(EntryError::Json)?;
        Ok(Self::from_raw(&raw)?)
    }
}

/// An entry file larger than this is not an entry (the whole built-in
/// policy is a few hundred bytes).
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// The text of an entry file (`--config` of every command): a regular
/// file, never a FIFO or device, at most `MAX_ENTRY_BYTES`.
pub fn read_file(path: &Path) -> Result<String, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = fsread::read_regular(path, MAX_ENTRY_BYTES).map_err(read_err)?;
    String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8(path.to_path_buf()))
}

/// Reads an entry from a file (`detect --config`, the agent's `--config`).
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    Config::from_json(&read_file(path)?).map_err(|source| LoadError::Entry {
        path: path.to_path_buf(),
        source,
    })
}

/// Why an entry could not be loaded from a file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: ReadError },
    #[error("{}: not UTF-8 text", .0.display())]
    NotUtf8(PathBuf),
    #[error("{}: {source}", path.display())]
    Entry { path: PathBuf, source: EntryError },
}

/// Why a file does not hold a valid entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Typed access to the raw fields; JSON null means "not set".
struct Fields<'a>(&'a RawConfig);

impl Fields<'_> {
    fn value(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        self.0
            .get(key)
            .map(|r| {
                serde_json::from_str::<Value>(r.get()).map_err(|source| ConfigError::Json {
                    key: key.to_string(),
                    source,
                })
            })
            .transpose()
            .map(|v| v.filter(|v| !v.is_null()))
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.value(key)? {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(ConfigError::Empty(key)),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ConfigError::NotAString {
                key,
                got: json::kind(&other),
            }),
        }
    }

    /// A string field with a fixed set of values; the first is the default.
    fn one_of<T: Copy>(
        &self,
        key: &'static str,
        names: &'static [&'static str],
        values: &[T],
    ) -> Result<T, ConfigError> {
        let Some(value) = self.string(key)? else {
            return Ok(values[0]);
        };
        names
            .iter()
            .position(|n| *n == value)
            .map(|i| values[i])
            .ok_or_else(|| ConfigError::NotOneOf {
                key,
                options: names,
                got: json::clip(&value),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Config, ConfigError> {
        Config::from_raw(&serde_json::from_value::<RawConfig>(v).unwrap())
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse(json!({"name": "n", "type": "csum-offload"})).unwrap();
        assert_eq!(c.placement, Placement::Both);
        assert_eq!(c.failure_policy, FailurePolicy::Fail);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert!(c.host_interface.is_none() && c.host_driver.is_none() && c.log_file.is_none());
        assert_eq!(c.policy, Policy::built_in());
        let d = Config::default();
        assert_eq!(
            (d.placement, d.failure_policy, d.non_veth, d.log_level),
            (c.placement, c.failure_policy, c.non_veth, c.log_level)
        );
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
        assert_eq!(c.placement, Placement::Container);
        assert_eq!(c.failure_policy, FailurePolicy::Ignore);
        assert_eq!(c.non_veth, NonVeth::Skip);
        assert_eq!(c.detection_failure, DetectionFailure::Skip);
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(c.log_file, Some(PathBuf::from("/var/log/csum-offload.log")));
    }

    #[test]
    fn config_errors_name_the_field() {
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
                "apply must be \"both\", \"container\", \"host\" or \"uplink\", got \"pod\"",
            ),
            (
                json!({"apply": "uplink", "hostDriver": "txgbe"}),
                "apply \"uplink\" sets the NIC itself, so it needs detection",
            ),
            (
                json!({"drivers": {"txgbe": {"tx": false, "gro": true}}}),
                "drivers.txgbe turns TX checksum off and GRO on, and apply puts it on the host end",
            ),
            (
                json!({"apply": "host", "default": {"tx": false, "rx-gro-list": true}}),
                "default turns TX checksum off and GRO on",
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
            (
                json!({"detectionFailure": "ignore"}),
                "detectionFailure must be \"skip\" or \"fail\", got \"ignore\"",
            ),
            (
                json!({"detection": "guess"}),
                "detection must be \"table\", \"probe\" or \"both\", got \"guess\"",
            ),
            (
                json!({"detection": "probe"}),
                "detection \"probe\" needs probe.target and probe.source",
            ),
            (
                json!({"detection": "both", "probe": {"target": "10.0.0.1:80"}}),
                "detection \"both\" needs probe.target and probe.source",
            ),
            (
                json!({"probe": {"target": "10.0.0.1:80", "source": "10.244.0.9"}}),
                "probe is set but detection is \"table\"",
            ),
            (json!({"detection": "probe", "probe": "10.0.0.1:80"}), "probe must be an object, got a string"),
            (
                json!({"detection": "probe", "probe": {"targt": "x"}}),
                "probe: unknown field \"targt\"",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "10.0.0.1", "source": "10.244.0.9"}}),
                "probe.target must be an IPv4 address and port (\"10.0.3.15:5201\"), got \"10.0.0.1\"",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "[::1]:80", "source": "10.244.0.9"}}),
                "probe.target must be an IPv4 address and port",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "10.0.0.1:0", "source": "10.244.0.9"}}),
                "probe.target must be an IPv4 address and port",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "10.0.0.1:80", "source": 7}}),
                "probe.source must be an IPv4 address (an unused one of this node's pod CIDR), got 7",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "10.0.0.1:80", "source": "127.0.0.1"}}),
                "probe.source must be an IPv4 address",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "10.0.0.1:80", "source": "10.244.0.9", "interval": 5}}),
                "probe.interval must be a whole number of seconds from 10 to 86400, got 5",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "10.0.0.1:80", "source": "10.244.0.9", "interval": 1e30}}),
                "probe.interval must be a whole number of seconds from 10 to 86400",
            ),
            (
                json!({"detection": "probe", "probe": {"target": "10.0.0.1:80", "source": "10.244.0.9", "verdictFile": "v.json"}}),
                "probe.verdictFile must be an absolute path, got \"v.json\"",
            ),
        ];
        assert_refused(&cases);
    }

    /// Each config is refused with a message holding its text.
    fn assert_refused(cases: &[(serde_json::Value, &str)]) {
        for (conf, want) in cases {
            let msg = parse(conf.clone()).unwrap_err().to_string();
            assert!(
                msg.contains(want),
                "{conf}: {msg:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn probe_nodes_are_checked_strictly() {
        let probe = |p: serde_json::Value| json!({"detection": "probe", "probe": p});
        let cases = [
            (
                probe(json!({"target": "10.0.0.1:80", "source": "10.244.0.9", "nodes": []})),
                "probe.nodes must be an object of node name -> {\"source\", \"target\"}, got an array",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {"": {"source": "10.244.1.9"}}})),
                "probe.nodes: \"\" is not a Kubernetes node name",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {"Node_A": {"source": "10.244.1.9"}}})),
                "probe.nodes: \"Node_A\" is not a Kubernetes node name",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {"node-a": "10.244.1.9"}})),
                "probe.nodes.node-a must be an object with source and/or target, got a string",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {"node-a": {"src": "10.244.1.9"}}})),
                "probe.nodes.node-a: unknown field \"src\"; a node has target and source",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {"node-a": {}}})),
                "probe.nodes.node-a is empty",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {"node-a": {"source": "10.244.1.300"}}})),
                "probe.nodes.node-a.source must be an IPv4 address (an unused one of this node's pod CIDR), got \"10.244.1.300\"",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {"node-a": {"source": "10.244.1.9", "target": "10.0.0.2"}}})),
                "probe.nodes.node-a.target must be an IPv4 address and port (\"10.0.3.15:5201\"), got \"10.0.0.2\"",
            ),
            (
                probe(json!({"nodes": {"node-a": {"source": "10.244.1.9"}}})),
                "probe.nodes.node-a has no target and there is no default probe.target",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "nodes": {
                    "node-a": {"source": "10.244.1.9"}, "node-b": {"source": "10.244.1.9"}}})),
                "probe.source 10.244.1.9 is given to probe.nodes.node-a and probe.nodes.node-b: two nodes cannot own one address",
            ),
            (
                probe(json!({"target": "10.0.0.1:80", "source": "10.244.1.9", "nodes": {
                    "node-a": {"source": "10.244.1.9"}}})),
                "probe.source 10.244.1.9 is given to the default probe.source and probe.nodes.node-a",
            ),
            (
                // Every node would lack a source: nothing could ever probe.
                probe(json!({"target": "10.0.0.1:80", "nodes": {"node-a": {"target": "10.0.0.2:80"}}})),
                "detection \"probe\" needs probe.target and probe.source",
            ),
        ];
        assert_refused(&cases);
    }

    #[test]
    fn probe_nodes_give_each_node_its_path() {
        use crate::offload::wanted::{NoProbePath, ProbePath};
        let c = parse(json!({"detection": "probe", "probe": {
            "target": "10.0.0.1:80",
            "nodes": {
                "node-a": {"source": "10.244.1.250", "target": "10.0.2.1:80"},
                "node-b": {"source": "10.244.2.250"},
                "node-c.example": {"target": "10.0.3.1:80"},
            }
        }}))
        .unwrap();
        let p = c.probe.unwrap();
        let path = |t: &str, s: &str| ProbePath {
            target: t.parse().unwrap(),
            source: s.parse().unwrap(),
        };
        assert_eq!(
            p.path_for(Some("node-a")),
            Ok(path("10.0.2.1:80", "10.244.1.250"))
        );
        assert_eq!(
            p.path_for(Some("node-b")),
            Ok(path("10.0.0.1:80", "10.244.2.250"))
        );
        assert_eq!(
            p.path_for(Some("node-c.example")),
            Err(NoProbePath::Source("node-c.example".into()))
        );
        assert_eq!(
            p.path_for(Some("node-z")),
            Err(NoProbePath::Source("node-z".into()))
        );
        assert_eq!(p.path_for(None), Err(NoProbePath::Unnamed));
        // With a default source, a node not listed uses the defaults.
        let c = parse(json!({"detection": "both", "probe": {
            "target": "10.0.0.1:80", "source": "10.244.0.9",
            "nodes": {"node-a": {"source": "10.244.1.250"}, "node-b": null}
        }}));
        let msg = c.unwrap_err().to_string();
        assert!(
            msg.contains("probe.nodes.node-b must be an object"),
            "{msg}"
        );
        let c = parse(json!({"detection": "both", "probe": {
            "target": "10.0.0.1:80", "source": "10.244.0.9",
            "nodes": {"node-a": {"source": "10.244.1.250"}}
        }}))
        .unwrap();
        let p = c.probe.unwrap();
        assert_eq!(
            p.path_for(Some("node-z")),
            Ok(path("10.0.0.1:80", "10.244.0.9"))
        );
        assert_eq!(p.path_for(None), Ok(path("10.0.0.1:80", "10.244.0.9")));
        // Without a default target, a node not listed has none.
        let c = parse(json!({"detection": "probe", "probe": {
            "nodes": {"node-a": {"source": "10.244.1.250", "target": "10.0.2.1:80"}}
        }}))
        .unwrap();
        let p = c.probe.unwrap();
        assert_eq!(
            p.path_for(Some("node-z")),
            Err(NoProbePath::Target("node-z".into()))
        );
        assert_eq!(p.path_for(None), Err(NoProbePath::UnnamedNoTarget));
    }

    #[test]
    fn the_node_name_comes_from_the_flag_and_must_be_one() {
        assert_eq!(
            node_name_from(Some("node-a".into())).unwrap(),
            Some("node-a".into())
        );
        for bad in ["", "Node-A", "-a", "a..b", &"x".repeat(254)] {
            let e = node_name_from(Some(bad.into())).unwrap_err().to_string();
            assert!(e.contains("is not a Kubernetes node name"), "{bad}: {e}");
        }
    }

    #[test]
    fn probe_fields_take_defaults() {
        let c = parse(json!({"detection": "probe", "probe": {"target": "10.0.0.1:5201", "source": "10.244.0.9"}})).unwrap();
        assert_eq!(c.detection, Detection::Probe);
        let p = c.probe.unwrap();
        assert_eq!(p.interval, std::time::Duration::from_secs(300));
        assert_eq!(
            p.verdict_file,
            PathBuf::from("/run/csum-offload/probe-verdict.json")
        );
        assert_eq!(p.target, Some("10.0.0.1:5201".parse().unwrap()));
        assert!(p.nodes.is_empty());
        let c = parse(json!({"detection": null, "probe": null})).unwrap();
        assert_eq!((c.detection, c.probe), (Detection::Table, None));
    }

    #[test]
    fn null_fields_mean_default() {
        let c = parse(json!({"apply": null, "drivers": null})).unwrap();
        assert_eq!(c.placement, Placement::Both);
    }

    #[test]
    fn entries_from_files() {
        let c = Config::from_json(r#"{"hostDriver": "txgbe"}"#).unwrap();
        assert_eq!(c.host_driver.as_deref(), Some("txgbe"));
        assert!(Config::from_json("[]")
            .unwrap_err()
            .to_string()
            .starts_with("not valid JSON"));
    }
}
