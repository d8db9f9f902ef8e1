//! The node agent's last verdict, kept for every `decide` under
//! `detection` "probe" or "both" (ADD included: one small read of a
//! root-only file, never a probe). The agent writes it after each probe
//! (`probe.verdictFile`, through `kernel::private`); what `decide` makes
//! of it is an `Evidence`: a fresh verdict for the configured target, or
//! why there is none (then nothing is changed).

use super::{Attempt, Verdict};
use crate::kernel::private::{self, PrivateError};
use crate::offload::wanted::ProbeSpec;
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
    /// Taken for another target (the config changed since).
    OtherTarget(VerdictRecord),
    /// No verdict yet (the agent has not probed, or is not running).
    Missing(String),
    /// The file is not a verdict record of ours: the reason.
    Unreadable(String),
}

/// A clock skew this large (seconds) between the verdict and now is not
/// taken for "fresh".
const FUTURE_SLACK: i64 = 60;

impl Evidence {
    /// Reads `spec`'s verdict file and judges it against `now` (Unix
    /// seconds).
    pub fn load(spec: &ProbeSpec, now: u64) -> Self {
        match read(&spec.verdict_file) {
            Ok(Some(record)) => Self::judge(record, spec, now),
            Ok(None) => Self::Missing(spec.verdict_file.display().to_string()),
            Err(e) => Self::Unreadable(e.to_string()),
        }
    }

    /// Fresh, stale or for another target (pure).
    pub fn judge(record: VerdictRecord, spec: &ProbeSpec, now: u64) -> Self {
        if record.target != spec.target.to_string() {
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
            Self::Missing(_) | Self::Unreadable(_) => None,
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
            target: "10.0.0.1:5201".parse().unwrap(),
            source: "10.244.1.250".parse().unwrap(),
            interval: Duration::from_secs(300),
            verdict_file: dir.join("v/verdict.json"),
        }
    }

    fn record(verdict: Verdict, at: u64) -> VerdictRecord {
        VerdictRecord {
            verdict,
            at,
            target: "10.0.0.1:5201".into(),
            path: "throwaway pod".into(),
            attempts: Vec::new(),
            millis: 5,
        }
    }

    #[test]
    fn only_a_fresh_verdict_for_this_target_counts() {
        let s = spec(Path::new("/nonexistent"));
        let now = 1_000_000;
        let fresh = Evidence::judge(record(Verdict::Broken, now - 10), &s, now);
        assert_eq!(fresh.verdict(), Some(Verdict::Broken));
        // max age: 2 x 300 + 60.
        let edge = Evidence::judge(record(Verdict::Broken, now - 660), &s, now);
        assert_eq!(edge.verdict(), Some(Verdict::Broken));
        let stale = Evidence::judge(record(Verdict::Broken, now - 661), &s, now);
        assert!(matches!(stale, Evidence::Stale { age: 661, .. }));
        assert_eq!(stale.verdict(), None);
        let future = Evidence::judge(record(Verdict::Broken, now + 3600), &s, now);
        assert!(matches!(future, Evidence::Stale { age: -3600, .. }));
        let mut other = record(Verdict::Broken, now);
        other.target = "10.0.0.2:5201".into();
        assert!(matches!(
            Evidence::judge(other, &s, now),
            Evidence::OtherTarget(_)
        ));
        // Extreme times never panic.
        let _ = Evidence::judge(record(Verdict::Ok, u64::MAX), &s, 0);
        let _ = Evidence::judge(record(Verdict::Ok, 0), &s, u64::MAX);
    }

    #[test]
    fn written_then_read_and_a_bad_file_is_unreadable() {
        let dir = crate::unit_dirs::fresh("evidence", "rw");
        let s = spec(&dir);
        assert!(matches!(Evidence::load(&s, 5), Evidence::Missing(_)));
        let r = record(Verdict::Ok, 5);
        write(&s.verdict_file, &r).unwrap();
        assert_eq!(read(&s.verdict_file).unwrap(), Some(r));
        assert_eq!(Evidence::load(&s, 6).verdict(), Some(Verdict::Ok));
        std::fs::write(&s.verdict_file, b"{}").unwrap();
        let e = Evidence::load(&s, 6);
        assert!(
            matches!(&e, Evidence::Unreadable(m) if m.contains("not a verdict record")),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
