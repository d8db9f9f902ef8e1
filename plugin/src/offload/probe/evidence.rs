//! The node agent's last verdict, kept for every `decide` under
//! `detection` "probe" or "both" (ADD included: one small read of a
//! root-only file, never a probe). The agent writes it after each probe
//! (`probe.verdictFile`, through `kernel::private`); what `decide` makes
//! of it is an `Evidence`: a fresh verdict for this node's configured
//! path (target and source), or why there is none (then nothing is
//! changed).
//!
//! Which path is this node's: the agent knows its node's name and so its
//! path (`ProbeSpec::path_for`); the plugin's ADD runs with no node name.
//! The record names the node the agent probed for, and ADD takes that
//! node's path from its own config and requires the record's target and
//! source to be exactly it. That is safe because the file is this node's
//! own (root-only, written by this node's agent only), so the name in it
//! is the agent's, and because a verdict only counts for the path the
//! current config gives that name: a changed target or source, a node
//! entry removed, or a record without a source makes it count for
//! nothing (no change). A wrong `--node-name` cannot make a fix out of
//! nothing either: the agent would probe with another node's source,
//! whose replies the cluster routes to that node (`unreachable`).

use super::{Attempt, Verdict};
use crate::kernel::private::{self, PrivateError};
use crate::offload::wanted::{NoProbePath, ProbeSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// `probe.verdictFile` when not set.
pub const VERDICT_FILE: &str = "/run/csum-offload/probe-verdict.json";

/// A verdict file larger than this is not one (a record of 10 tries is
/// about 2 KiB).
const MAX_BYTES: u64 = 64 * 1024;

/// One probe's outcome, as the agent wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictRecord {
    pub verdict: Verdict,
    /// When the probe ended (Unix seconds).
    pub at: u64,
    /// The target it was taken for: a verdict for another target does
    /// not count.
    pub target: String,
    /// The throwaway pod's address it was taken from (absent in records
    /// of agents before per-node paths: those count for no path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The node the agent was told it runs on (`--node-name`,
    /// `NODE_NAME`); None when it was not told. ADD, which does not know
    /// its node, takes this node's path from it (see `Evidence::judge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub path: String,
    /// The figures of every transfer.
    pub attempts: Vec<Attempt>,
    pub millis: u64,
}

/// Why the verdict file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: PrivateError,
    },
    #[error("{path}: not a verdict record: {source}")]
    Format {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Replaces the verdict file with `record` (0600 in a 0700 directory,
/// synced, renamed over the old one).
pub fn write(path: &Path, record: &VerdictRecord) -> Result<(), EvidenceError> {
    let err = |source| EvidenceError::File {
        path: path.display().to_string(),
        source,
    };
    private::make_dir_of(path).map_err(|e| err(e.into()))?;
    private::check_path(path).map_err(err)?;
    let bytes = serde_json::to_vec(record).map_err(|e| err(std::io::Error::from(e).into()))?;
    private::replace(path, &bytes).map_err(|e| err(e.into()))
}

/// The record in the verdict file; None when there is none.
pub fn read(path: &Path) -> Result<Option<VerdictRecord>, EvidenceError> {
    let shown = || path.display().to_string();
    let Some(bytes) = private::read_own(path, MAX_BYTES).map_err(|source| EvidenceError::File {
        path: shown(),
        source,
    })?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| EvidenceError::Format {
            path: shown(),
            source,
        })
}

/// What the verdict file says for `decide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A verdict for the configured target, at most `max_age` old.
    Fresh { record: VerdictRecord, age: u64 },
    /// Older than `max_age` (the agent stopped probing), or dated in the
    /// future (a clock that jumped back).
    Stale { record: VerdictRecord, age: i64 },
    /// Taken for another target or source, or for a node the config no
    /// longer gives a path (the config changed since).
    OtherTarget(VerdictRecord),
    /// This node has no probe path in the config (no source or target
    /// for it): it does not probe. The reason.
    NoPath(NoProbePath),
    /// No verdict yet (the agent has not probed, or is not running).
    Missing(String),
    /// The file is not a verdict record of ours: the reason.
    Unreadable(String),
}

/// A clock skew this large (seconds) between the verdict and now is not
/// taken for "fresh".
const FUTURE_SLACK: i64 = 60;

impl Evidence {
    /// Reads `spec`'s verdict file and judges it for the node named
    /// `node` (None: not known, as in ADD) against `now` (Unix seconds).
    pub fn load(spec: &ProbeSpec, node: Option<&str>, now: u64) -> Self {
        if let Some(n) = node {
            if let Err(why) = spec.path_for(Some(n)) {
                return Self::NoPath(why);
            }
        }
        match read(&spec.verdict_file) {
            Ok(Some(record)) => Self::judge(record, spec, node, now),
            Ok(None) => Self::Missing(spec.verdict_file.display().to_string()),
            Err(e) => Self::Unreadable(e.to_string()),
        }
    }

    /// Fresh, stale or for another path (pure). A node that knows its
    /// name takes only a record for that name; ADD (`node` None) takes
    /// the path of the node the record names.
    pub fn judge(record: VerdictRecord, spec: &ProbeSpec, node: Option<&str>, now: u64) -> Self {
        let asker = node.or(record.node.as_deref());
        let path = match spec.path_for(asker) {
            Ok(p) => p,
            Err(why) if node.is_some() => return Self::NoPath(why),
            Err(_) => return Self::OtherTarget(record),
        };
        if (node.is_some() && record.node.as_deref() != node)
            || record.target != path.target.to_string()
            || record.source.as_deref() != Some(path.source.to_string().as_str())
        {
            return Self::OtherTarget(record);
        }
        let age = i64::try_from(now)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(record.at).unwrap_or(i64::MAX));
        let max = i64::try_from(spec.max_age().as_secs()).unwrap_or(i64::MAX);
        if age < -FUTURE_SLACK || age > max {
            return Self::Stale { record, age };
        }
        Self::Fresh {
            age: age.max(0) as u64,
            record,
        }
    }

    /// The verdict that counts: only a fresh one.
    pub fn verdict(&self) -> Option<Verdict> {
        match self {
            Self::Fresh { record, .. } => Some(record.verdict),
            _ => None,
        }
    }

    /// The record, fresh or not (for what `detect` shows).
    pub fn record(&self) -> Option<&VerdictRecord> {
        match self {
            Self::Fresh { record, .. } | Self::Stale { record, .. } | Self::OtherTarget(record) => {
                Some(record)
            }
            Self::Missing(_) | Self::Unreadable(_) | Self::NoPath(_) => None,
        }
    }
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(dir: &Path) -> ProbeSpec {
        ProbeSpec {
            target: Some("10.0.0.1:5201".parse().unwrap()),
            source: Some("10.244.1.250".parse().unwrap()),
            nodes: Default::default(),
            interval: Duration::from_secs(300),
            verdict_file: dir.join("v/verdict.json"),
        }
    }

    fn record(verdict: Verdict, at: u64) -> VerdictRecord {
        VerdictRecord {
            verdict,
            at,
            target: "10.0.0.1:5201".into(),
            source: Some("10.244.1.250".into()),
            node: None,
            path: "throwaway pod".into(),
            attempts: Vec::new(),
            millis: 5,
        }
    }

    #[test]
    fn only_a_fresh_verdict_for_this_target_counts() {
        let s = spec(Path::new("/nonexistent"));
        let now = 1_000_000;
        let fresh = Evidence::judge(record(Verdict::Broken, now - 10), &s, None, now);
        assert_eq!(fresh.verdict(), Some(Verdict::Broken));
        // max age: 2 x 300 + 60.
        let edge = Evidence::judge(record(Verdict::Broken, now - 660), &s, None, now);
        assert_eq!(edge.verdict(), Some(Verdict::Broken));
        let stale = Evidence::judge(record(Verdict::Broken, now - 661), &s, None, now);
        assert!(matches!(stale, Evidence::Stale { age: 661, .. }));
        assert_eq!(stale.verdict(), None);
        let future = Evidence::judge(record(Verdict::Broken, now + 3600), &s, None, now);
        assert!(matches!(future, Evidence::Stale { age: -3600, .. }));
        let mut other = record(Verdict::Broken, now);
        other.target = "10.0.0.2:5201".into();
        assert!(matches!(
            Evidence::judge(other, &s, None, now),
            Evidence::OtherTarget(_)
        ));
        // Extreme times never panic.
        let _ = Evidence::judge(record(Verdict::Ok, u64::MAX), &s, None, 0);
        let _ = Evidence::judge(record(Verdict::Ok, 0), &s, None, u64::MAX);
    }

    #[test]
    fn written_then_read_and_a_bad_file_is_unreadable() {
        let dir = crate::unit_dirs::fresh("evidence", "rw");
        let s = spec(&dir);
        assert!(matches!(Evidence::load(&s, None, 5), Evidence::Missing(_)));
        let r = record(Verdict::Ok, 5);
        write(&s.verdict_file, &r).unwrap();
        assert_eq!(read(&s.verdict_file).unwrap(), Some(r));
        assert_eq!(Evidence::load(&s, None, 6).verdict(), Some(Verdict::Ok));
        std::fs::write(&s.verdict_file, b"{}").unwrap();
        let e = Evidence::load(&s, None, 6);
        assert!(
            matches!(&e, Evidence::Unreadable(m) if m.contains("not a verdict record")),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// node-a and node-b with their own paths; node-c with the default
    /// target and no source of its own (and there is no default source).
    fn per_node(dir: &Path) -> ProbeSpec {
        use crate::offload::wanted::NodeProbe;
        let mut s = spec(dir);
        s.source = None;
        s.nodes.insert(
            "node-a".into(),
            NodeProbe {
                target: Some("10.0.2.1:80".parse().unwrap()),
                source: Some("10.244.1.250".parse().unwrap()),
            },
        );
        s.nodes.insert(
            "node-b".into(),
            NodeProbe {
                target: Some("10.0.1.1:80".parse().unwrap()),
                source: Some("10.244.2.250".parse().unwrap()),
            },
        );
        s.nodes.insert(
            "node-c".into(),
            NodeProbe {
                target: Some("10.0.1.1:80".parse().unwrap()),
                source: None,
            },
        );
        s
    }

    fn taken(node: Option<&str>, target: &str, source: Option<&str>) -> VerdictRecord {
        VerdictRecord {
            node: node.map(String::from),
            target: target.into(),
            source: source.map(String::from),
            ..record(Verdict::Broken, 100)
        }
    }

    #[test]
    fn a_verdict_counts_only_for_the_path_the_config_gives_its_node() {
        let s = per_node(Path::new("/nonexistent"));
        let judge = |r, node| Evidence::judge(r, &s, node, 110);
        let a = || taken(Some("node-a"), "10.0.2.1:80", Some("10.244.1.250"));
        // ADD (no node name) takes the path of the node the record names.
        assert_eq!(judge(a(), None).verdict(), Some(Verdict::Broken));
        // The agent on node-a too; on node-b the record is not its own.
        assert_eq!(judge(a(), Some("node-a")).verdict(), Some(Verdict::Broken));
        assert!(matches!(
            judge(a(), Some("node-b")),
            Evidence::OtherTarget(_)
        ));
        // Another node's target, or another source, for node-a: none.
        for r in [
            taken(Some("node-a"), "10.0.1.1:80", Some("10.244.1.250")),
            taken(Some("node-a"), "10.0.2.1:80", Some("10.244.2.250")),
            // a record without a source (an older agent's) counts for no path
            taken(Some("node-a"), "10.0.2.1:80", None),
            // a node the config does not list has only the defaults, and
            // there is no default source: no path
            taken(Some("node-x"), "10.0.0.1:5201", Some("10.244.1.250")),
            // no node and no default source: no path
            taken(None, "10.0.0.1:5201", Some("10.244.1.250")),
        ] {
            let shown = format!("{r:?}");
            assert!(
                matches!(judge(r, None), Evidence::OtherTarget(_)),
                "{shown}"
            );
        }
        // A node with no source of its own and no default: no path, and
        // even a record that claims to be its own does not count.
        let c = taken(Some("node-c"), "10.0.1.1:80", Some("10.244.3.250"));
        assert!(matches!(
            judge(c.clone(), Some("node-c")),
            Evidence::NoPath(NoProbePath::Source(ref n)) if n == "node-c"
        ));
        assert!(matches!(judge(c, None), Evidence::OtherTarget(_)));
        // Loading for node-c never reads the file: it has no path.
        let none = Evidence::load(&s, Some("node-c"), 110);
        assert!(matches!(none, Evidence::NoPath(_)), "{none:?}");
    }

    #[test]
    fn the_agent_s_record_without_node_counts_under_the_defaults() {
        // No probe.nodes, an agent not told its name: as before per-node
        // paths, the defaults are every node's path.
        let s = spec(Path::new("/nonexistent"));
        let r = taken(None, "10.0.0.1:5201", Some("10.244.1.250"));
        assert_eq!(
            Evidence::judge(r.clone(), &s, None, 110).verdict(),
            Some(Verdict::Broken)
        );
        // An agent that knows its name, with no entry of its own, takes
        // the defaults too, but only a record taken under its name.
        assert!(matches!(
            Evidence::judge(r, &s, Some("node-a"), 110),
            Evidence::OtherTarget(_)
        ));
        let named = taken(Some("node-a"), "10.0.0.1:5201", Some("10.244.1.250"));
        assert_eq!(
            Evidence::judge(named, &s, Some("node-a"), 110).verdict(),
            Some(Verdict::Broken)
        );
    }
}
