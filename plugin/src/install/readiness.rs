//! Whether this node is covered: the DaemonSet's readiness probe
//! (`install --check`), and the same findings in the installer's log.
//!
//! A node is ready when the binary is in place, the file the runtime uses
//! holds exactly the current entry, nothing keeps the installer from
//! knowing which file that is, and the plugin can apply its policy here:
//! detection runs as the plugin runs it (`decide`, in the same netns: the
//! DaemonSet uses hostNetwork), so a node where the NIC cannot be found
//! shows as not ready with the reason, while the entry is still in place
//! (the plugin changes nothing on such a node, and starts working once
//! detection does).

use super::entry::{Entry, PLUGIN_TYPE};
use super::files;
use super::pass::Problem;
use super::pass::{self, Mode, PassOutcome};
use super::{load_entry, InstallError, Options};
use crate::offload::decision::{decide, Decision};
use crate::offload::uplink::DetectError;
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
    Problem(Problem),
    #[error("host NIC detection failed on this node: {}", with_hint(.0))]
    Detection(DetectError),
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
    let config = entry
        .config()
        .map_err(|e| NotReady::Blocked(format!("the entry does not parse: {e}")))?;
    decide(&config).map_err(NotReady::Detection)
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
        Err(e) => log::warn!(
            "{e} (the entry is still added: on this node the plugin passes pods through \
             unchanged until detection works, and the readiness check fails with this reason)"
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
    let pass = pass::reconcile(opts, &entry, Mode::DryRun)?;
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
    reasons.extend(pass.problems.into_iter().map(NotReady::Problem));
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
        let no_route = NotReady::Detection(DetectError::NoDefaultRoute).to_string();
        assert!(
            no_route.starts_with("host NIC detection failed on this node: "),
            "{no_route}"
        );
        assert_eq!(no_route.matches(DETECTION_HINT).count(), 1, "{no_route}");
        let missing = NotReady::Detection(DetectError::NoHostInterface("eth9".into())).to_string();
        assert!(
            missing.ends_with("; set hostInterface or hostDriver"),
            "{missing}"
        );
        let all = Unready(vec![
            NotReady::Blocked("a".into()),
            NotReady::Changing("b".into()),
        ]);
        assert_eq!(all.to_string(), "a; and: b");
    }
}
