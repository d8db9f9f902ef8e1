//! One pass over the conf dir: which file the runtime uses, what must
//! change in it, and what keeps the node from being covered. The watch
//! loop, `--once` and the readiness check all run this one pass (the check
//! without writing), so they never disagree about the node.

use super::commit::FsError;
use super::edit::{self, EditError, Owned, Step};
use super::entry::Entry;
use super::entry::MANAGED_KEY;
use super::select::{self, SelectProblem, SkipReason};
use super::snapshot::Snapshot;
use super::Options;
use std::path::Path;
use std::time::Duration;

/// A file before the primary that is invalid and younger than this is
/// probably being written right now (non-atomically): wait for it instead
/// of editing the next file.
const FRESH: Duration = Duration::from_secs(2);

/// What one pass over the conf dir found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// The entry is in `file`; `wrote` says whether this pass put it there.
    Installed { file: String, wrote: bool },
    /// A dry run: `file` needs this write.
    WouldWrite { file: String },
    /// No loadable network config yet.
    NoConfig,
    /// The entry cannot go in (e.g. an unsupported cniVersion, a file the
    /// installer cannot judge before the primary); nothing was written.
    /// Retried when the directory changes.
    Blocked(String),
    /// Something is mid-write; look again shortly.
    Retry(String),
}

/// What keeps the node from being covered as the ConfigMap says, although
/// the pass did what it could.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassProblem {
    #[error(transparent)]
    Select(#[from] SelectProblem),
    #[error("{file} holds a csum-offload entry the installer did not write (no \"{MANAGED_KEY}\") that differs from the installer's entry; it stays as it is and applies instead (remove it, or make it the same, to have the ConfigMap's policy)")]
    HandWritten { file: String },
}

/// A pass's findings.
#[derive(Debug)]
pub struct Pass {
    pub outcome: PassOutcome,
    /// One line per file the runtime skips.
    pub notes: Vec<String>,
    /// What makes the node not ready although the pass did what it could.
    pub problems: Vec<PassProblem>,
}

/// Whether a pass may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    Write,
    DryRun,
}

/// One pass: find the primary config under the runtime's rule and make it
/// hold `entry` (in `PassMode::DryRun`, only say whether it does).
pub fn run(opts: &Options, entry: &Entry, mode: PassMode) -> Result<Pass, FsError> {
    run_as(opts, entry, mode, Owned::Marked)
}

/// `run`, with `owned` saying which entries are the installer's.
pub fn run_as(
    opts: &Options,
    entry: &Entry,
    mode: PassMode,
    owned: Owned,
) -> Result<Pass, FsError> {
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let outcome = decide_and_edit(opts, entry, mode, owned, &mut notes, &mut problems)?;
    Ok(Pass {
        outcome,
        notes,
        problems,
    })
}

fn decide_and_edit(
    opts: &Options,
    entry: &Entry,
    mode: PassMode,
    owned: Owned,
    notes: &mut Vec<String>,
    problems: &mut Vec<PassProblem>,
) -> Result<PassOutcome, FsError> {
    let conf_dir = opts.conf_dir.as_path();
    let snap = Snapshot::read(conf_dir)?;
    let selection = match &opts.conf_file {
        Some(name) => select::select_named(&snap.files, name),
        None => select::select(&snap.files, opts.runtime),
    };
    for (file, why) in &selection.skipped {
        let fresh = snap.age(&file.name).is_some_and(|age| age < FRESH);
        if fresh && matches!(why, SkipReason::Empty | SkipReason::Invalid(_)) {
            return Ok(PassOutcome::Retry(format!(
                "{} is being written ({why})",
                file.name
            )));
        }
        notes.push(format!(
            "{}: skipped, as the runtime skips it: {why}",
            file.name
        ));
    }
    problems.extend(selection.problems.iter().cloned().map(PassProblem::from));
    if let Some(problem) = &selection.blocking {
        return Ok(PassOutcome::Blocked(problem.to_string()));
    }
    let Some(primary) = selection.primary else {
        return Ok(PassOutcome::NoConfig);
    };
    if opts.conf_file.is_none() {
        if let Some(meta) = select::delegating_plugin(primary) {
            return Ok(PassOutcome::Blocked(format!(
                "{}: the runtime's first config is {meta}, which runs other configs for the pod; \
                 run the installer with --conf-file set to the default network's .conflist \
                 (docs/install.md, Multus)",
                primary.name
            )));
        }
    }
    let plan = match edit::insert_as(&snap.files, primary, entry, owned) {
        Ok(plan) => plan,
        Err(e @ EditError::Unreadable { .. }) => return Ok(PassOutcome::Retry(e.to_string())),
        Err(e) => return Ok(PassOutcome::Blocked(e.to_string())),
    };
    let file = match plan.first() {
        Some(Step::Write { name, .. }) => name.clone(),
        _ => primary.name.clone(),
    };
    if snap.dirs.contains(&file) {
        // A conversion's target name is taken by a directory (found by the
        // conf dir fuzz run): no write can replace it, so retrying would
        // only end in "files kept changing".
        return Ok(PassOutcome::Blocked(format!(
            "{}: cannot convert it to {file}: that name is a directory; move it away",
            primary.name
        )));
    }
    let hand = match owned {
        Owned::Marked => edit::hand_written(primary),
        Owned::AlsoUnmarked => Vec::new(),
    };
    if !hand.is_empty() {
        notes.push(format!(
            "{}: has a csum-offload entry the installer did not write (no \"{MANAGED_KEY}\"); \
             it stays as it is, and no second entry is added",
            primary.name
        ));
        if !hand.contains(&entry.unmarked()) {
            problems.push(PassProblem::HandWritten {
                file: primary.name.clone(),
            });
        }
    }
    if plan.is_empty() {
        return Ok(PassOutcome::Installed { file, wrote: false });
    }
    if mode == PassMode::DryRun {
        return Ok(PassOutcome::WouldWrite { file });
    }
    match snap.execute(conf_dir, &plan) {
        Ok(()) => Ok(PassOutcome::Installed { file, wrote: true }),
        Err(FsError::Changed(path)) => Ok(PassOutcome::Retry(format!(
            "{} changed while being edited",
            path.display()
        ))),
        Err(e @ FsError::Owner { .. }) => Ok(PassOutcome::Blocked(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Takes our entry out of every config file; returns what it did.
pub fn remove_entries(conf_dir: &Path) -> Result<Vec<String>, FsError> {
    let mut last = None;
    for _ in 0..20 {
        let snap = match Snapshot::read(conf_dir) {
            Ok(s) => s,
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        let plan = edit::remove_all(&snap.files);
        match snap.execute(conf_dir, &plan) {
            Ok(()) => {
                let mut done: Vec<String> =
                    plan.iter().map(|s| describe_step(conf_dir, s)).collect();
                for file in &snap.files {
                    if !edit::hand_written(file).is_empty() {
                        done.push(format!(
                            "left the csum-offload entry in {} in place: the installer did not write it (no \"{MANAGED_KEY}\")",
                            conf_dir.join(&file.name).display()
                        ));
                    }
                }
                return Ok(done);
            }
            Err(e @ FsError::Changed(_)) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(FsError::Changed(conf_dir.to_path_buf())))
}

fn describe_step(dir: &Path, step: &Step) -> String {
    match step {
        Step::Write { name, .. } => {
            format!(
                "removed the csum-offload entry from {}",
                dir.join(name).display()
            )
        }
        Step::Rename { from, to } => format!(
            "restored {} (from {})",
            dir.join(to).display(),
            dir.join(from).display()
        ),
        Step::Remove { name } => format!("removed {}", dir.join(name).display()),
    }
}
