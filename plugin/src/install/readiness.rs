//! Whether this node is covered: the DaemonSet's readiness probe
//! (`install --check`), and the same findings in the installer's log.
//!
//! A node is ready when the binary is in place, the file the runtime uses
//! holds exactly the current entry, nothing keeps the installer from
//! knowing which file that is, and the plugin can apply its policy here:
//! detection runs as the plugin runs it (`decide`, in the same netns: the
//! DaemonSet uses hostNetwork), so a node where the NIC cannot be found
//! shows as not ready with the reason, while the entry is still in place.
//! What the entry then does on that node depends on its
//! `detectionFailure`: under "skip" the plugin changes nothing and pods
//! start unfixed; under "fail" every ADD fails (code 102) and STATUS too
//! (code 50). Either way it starts working once detection does.
//!
//! Why the entry still goes in under "fail": that value is the operator's
//! explicit choice of "no pod rather than an unfixed pod" for this entry.
//! Holding the entry back would start pods unfixed, which is the one
//! outcome the operator opted out of; and the installer's detection at
//! start is not the plugin's at ADD (a default route that comes up after
//! boot), so the installer would also have to re-judge and insert later.
//! Instead it inserts, says at error what will happen, and readiness
//! fails with the same words until detection works.

use super::entry::{Entry, PLUGIN_TYPE};
use super::files;
use super::pass::{self, PassMode, PassOutcome, PassProblem};
use super::{load_entry, InstallError, Options};
use crate::config::{self, Detection, DetectionFailure};
use crate::offload::decision::{decide, Decision};
use crate::offload::detection::DetectError;
use crate::offload::wanted::NoProbePath;
use std::fmt;
use std::path::PathBuf;

/// What detection failures say to do; added when the error does not.
const DETECTION_HINT: &str = "set hostInterface or hostDriver";

/// One reason the node is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("{} is missing", .0.display())]
    BinaryMissing(PathBuf),
    #[error("no network config in {} yet", .0.display())]
    NoConfig(PathBuf),
    #[error("{} does not have the current csum-offload entry", .0.display())]
    EntryMissing(PathBuf),
    /// The entry cannot go in, or the runtime's file is not known.
    #[error("{0}")]
    Blocked(String),
    #[error("{0}")]
    Changing(String),
    #[error(transparent)]
    Pass(PassProblem),
    #[error("host NIC detection failed on this node: {}; {}", with_hint(.error), consequence(*.on_failure))]
    Detection {
        error: DetectError,
        /// The entry's `detectionFailure`: what the failure does to pods.
        on_failure: DetectionFailure,
    },
    /// Under `detection` "probe" or "both", the entry gives this node no
    /// probe path: its agent does not probe, and the plugin never fixes
    /// its pods (nothing is changed).
    #[error("this node does not probe: {0}; pods on this node start without the fix (add this node to probe.nodes, or set probe.source)")]
    NoProbePath(NoProbePath),
}

/// What a failed detection does to this node's pods, under the entry's
/// `detectionFailure`.
fn consequence(on_failure: DetectionFailure) -> &'static str {
    match on_failure {
        DetectionFailure::Skip => {
            "until it works, pods on this node start without the fix \
             (detectionFailure \"skip\": the plugin changes nothing)"
        }
        DetectionFailure::Fail => {
            "until it works, every pod start on this node fails with code 102, \
             and STATUS, where the runtime calls it, with code 50 (detectionFailure \"fail\")"
        }
    }
}

fn with_hint(e: &DetectError) -> String {
    let text = e.to_string();
    match text.contains(DETECTION_HINT) {
        true => text,
        false => format!("{text}; {DETECTION_HINT}"),
    }
}

/// Every reason at once, so one probe message says all of it.
#[derive(Debug)]
pub struct Unready(pub Vec<NotReady>);

impl fmt::Display for Unready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; and: ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// What the plugin will decide on this node under `entry`.
pub fn detect(entry: &Entry) -> Result<Decision, NotReady> {
    // The entry was validated when it was made; its config always parses.
    let mut config = entry
        .config()
        .map_err(|e| NotReady::Blocked(format!("the entry does not parse: {e}")))?;
    // The DaemonSet gives every container NODE_NAME; one that is not a
    // node name is as good as none (the agent itself refuses it).
    config.node_name = config::node_name_from(None).ok().flatten();
    if let (Detection::Probe | Detection::Both, Some(spec)) = (config.detection, &config.probe) {
        if let Err(why) = spec.path_for(config.node_name.as_deref()) {
            return Err(NotReady::NoProbePath(why));
        }
    }
    decide(&config).map_err(|error| NotReady::Detection {
        error,
        on_failure: config.detection_failure,
    })
}

/// Logs what the plugin will find on this node, so `kubectl logs` on the
/// DaemonSet tells an operator what each node does.
pub fn log_detection(entry: &Entry) {
    match detect(entry) {
        Ok(d) => {
            for line in d.to_string().lines() {
                log::info!("detect: {line}");
            }
        }
        // Under "fail" this node is about to stop starting pods: error.
        Err(
            e @ NotReady::Detection {
                on_failure: DetectionFailure::Fail,
                ..
            },
        ) => log::error!(
            "{e}; the entry is still added, as detectionFailure \"fail\" asks, and the \
             readiness check fails with this reason"
        ),
        Err(e) => log::warn!(
            "{e}; the entry is still added, and the readiness check fails with this reason"
        ),
    }
}

/// The readiness check: every reason the node is not covered, or the line
/// that says it is.
pub fn check_installed(opts: &Options) -> Result<String, InstallError> {
    let entry = load_entry(opts.config.as_deref())?;
    let mut reasons = Vec::new();
    if !files::binary_present(&opts.bin_dir, PLUGIN_TYPE) {
        reasons.push(NotReady::BinaryMissing(opts.bin_dir.join(PLUGIN_TYPE)));
    }
    let pass = pass::run(opts, &entry, PassMode::DryRun)?;
    let mut ok = None;
    match pass.outcome {
        PassOutcome::Installed { file, .. } => ok = Some(opts.conf_dir.join(file)),
        PassOutcome::WouldWrite { file } => {
            reasons.push(NotReady::EntryMissing(opts.conf_dir.join(file)))
        }
        PassOutcome::NoConfig => reasons.push(NotReady::NoConfig(opts.conf_dir.clone())),
        PassOutcome::Blocked(why) => reasons.push(NotReady::Blocked(why)),
        PassOutcome::Retry(why) => reasons.push(NotReady::Changing(why)),
    }
    reasons.extend(pass.problems.into_iter().map(NotReady::Pass));
    if let Err(e) = detect(&entry) {
        reasons.push(e);
    }
    match (reasons.is_empty(), ok) {
        (true, Some(path)) => Ok(format!("ok: {} has the csum-offload entry", path.display())),
        _ => Err(InstallError::NotReady(Unready(reasons))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_is_said_once() {
        let failed = |error, on_failure| NotReady::Detection { error, on_failure }.to_string();
        let no_route = failed(DetectError::NoDefaultRoute, DetectionFailure::Skip);
        assert!(
            no_route.starts_with("host NIC detection failed on this node: "),
            "{no_route}"
        );
        assert_eq!(no_route.matches(DETECTION_HINT).count(), 1, "{no_route}");
        let missing = failed(
            DetectError::NoHostInterface("eth9".into()),
            DetectionFailure::Skip,
        );
        assert!(
            missing.contains("; set hostInterface or hostDriver; until it works"),
            "{missing}"
        );
        let all = Unready(vec![
            NotReady::Blocked("a".into()),
            NotReady::Changing("b".into()),
        ]);
        assert_eq!(all.to_string(), "a; and: b");
    }

    #[test]
    fn the_consequence_follows_detection_failure() {
        let said = |on_failure| {
            NotReady::Detection {
                error: DetectError::NoDefaultRoute,
                on_failure,
            }
            .to_string()
        };
        let skip = said(DetectionFailure::Skip);
        let fail = said(DetectionFailure::Fail);
        assert!(skip.contains("start without the fix"), "{skip}");
        assert!(!skip.contains("102"), "{skip}");
        assert!(
            fail.contains("every pod start on this node fails with code 102"),
            "{fail}"
        );
        assert!(fail.contains("code 50"), "{fail}");
        assert!(!fail.contains("without the fix"), "{fail}");
    }
}
