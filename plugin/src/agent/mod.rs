//! The node agent, a front end over the same core as the plugin: it finds
//! every container veth pair in the host netns (Docker, containerd, CRI-O,
//! Podman, LXC: any runtime) and gives both ends the policy the node's NIC
//! needs, at start, whenever a pair appears, and whenever a feature drifts.
//!
//! This file: the command (`agent_command`), the lock and presence files,
//! and `--once`.
//!
//! - `error`: `AgentError`, below every other part.
//! - `options`: the command line, parsed and checked before anything is
//!   touched.
//! - `daemon`: the loop: events, the config file, timers, signals.
//! - `events`: which kernel events mean which work (pairs to check, a
//!   full pass, a new detection).
//! - `scan`: which host interfaces are containers' veths, the scope, and
//!   where the peers' netns are.
//! - `reconcile`: one pair, or a full pass, through the core.
//! - `outcome`: what a check came to, as values until printed.
//! - `state`: what the agent changed (the restore journal).
//! - `restore`: `agent restore`, putting it back.
//! - `metrics`: Prometheus text, on an endpoint and in a textfile.
//! - `probing`: under `detection` "probe" or "both", the probe, its
//!   verdict kept where ADD reads it, its evidence logged.
//!
//! Events come from one rtnetlink socket in the host netns that also hears
//! every netns with an id there (`kernel::monitor`), so a feature turned
//! back on inside a container is seen without polling, and no socket is
//! ever held in a container's netns.

mod daemon;
mod error;
mod events;
mod metrics;
mod options;
mod outcome;
mod probing;
mod reconcile;
mod restore;
mod scan;
mod state;

use crate::args::{Args, ArgsError};
use crate::config::DetectionFailure;
use crate::kernel::presence::{JoinError, Leave, Presence};
use crate::kernel::signals::stop_signals;
use crate::logger;
use crate::offload::nic_record::RECORD_FILE;
use crate::offload::nics;
use crate::service;
use error::io;
pub use error::AgentError;
use nix::sys::signalfd::SignalFd;
use options::Options;
use reconcile::{Agent, Checked};
use state::{StateError, StateFile};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a daemon waiting for another agent's lock tries again.
const LOCK_RETRY: Duration = Duration::from_millis(500);
/// How often a daemon tries to join while the last one out cleans up (a
/// NIC restore: milliseconds).
const PRESENCE_RETRY: Duration = Duration::from_millis(100);

/// `csum-offload agent ...` and `csum-offload agent restore ...`.
pub fn agent_command(mut args: Args) -> Result<String, AgentError> {
    if args.flag("restore") {
        return restore::command(args);
    }
    let level = args.value("--log-level")?;
    let mut opts = Options::parse(&mut args)?;
    args.finish()?;
    let level = match level {
        Some(l) => logger::parse_level(Some(&l))?,
        // --once prints its own summary; its log says only what went wrong.
        None if opts.once => opts.config.log_level.min(log::LevelFilter::Warn),
        None => opts.config.log_level,
    };
    logger::init(level, opts.config.log_file.as_deref(), "agent".into());
    if opts.dry_run && !opts.once {
        return Err(ArgsError::Conflict("--dry-run", "the daemon (use it with --once)").into());
    }
    // Only one agent acts at a time, and restore waits for none to run.
    // The daemon waits its turn (a DaemonSet's surge update runs the new
    // pod beside the old one); --once does not.
    if opts.restore_uplink_on_exit && opts.once {
        return Err(ArgsError::Conflict("--restore-uplink-on-exit", "--once").into());
    }
    let signals = if opts.once {
        None
    } else {
        Some(stop_signals().map_err(|(what, source)| AgentError::System { what, source })?)
    };
    // A --state-file that is not the agent's is refused before anything
    // is made beside it (lock, presence).
    if !opts.dry_run {
        state::check(&opts.state_file)?;
    }
    // Every daemon says it is there, waiting or acting, so that the one
    // that stops knows whether it is the last.
    let presence = match &signals {
        Some(signals) => match join_presence(&opts.state_file, signals)? {
            Some(presence) => Some(presence),
            None => return Ok("csum-offload agent stopped".into()),
        },
        None => None,
    };
    let lock = match (&signals, opts.dry_run) {
        (_, true) => None,
        (None, false) => Some(lock(&opts.state_file)?),
        (Some(signals), false) => match wait_for_lock(&opts.state_file, signals)? {
            Some(lock) => Some(lock),
            None => return Ok("csum-offload agent stopped".into()),
        },
    };
    let state = if opts.dry_run {
        None
    } else {
        Some(StateFile::open(&opts.state_file)?)
    };
    let mut agent = Agent::new(
        std::mem::take(&mut opts.config),
        opts.scope.clone(),
        opts.netns_dirs.clone(),
        opts.scan_processes,
        opts.dry_run,
        state,
    )
    .map_err(io("netlink socket"))?;
    match signals {
        None => once(&mut agent, opts.textfile.as_deref()),
        Some(signals) => {
            let stopped = daemon::daemon(agent, &opts, signals)?;
            drop(lock);
            if opts.restore_uplink_on_exit {
                if let Some(presence) = presence {
                    restore_uplink_if_last(presence);
                }
            }
            Ok(stopped)
        }
    }
}

/// Every daemon, waiting or acting, is present on the node
/// (`<state file>.presence`, `kernel::presence`), so that the one that
/// stops knows whether it is the last. While the last one out restores
/// the NICs, a new daemon waits; None when asked to stop meanwhile.
fn join_presence(state_file: &Path, signals: &SignalFd) -> Result<Option<Presence>, AgentError> {
    let path = state_file.with_extension("presence");
    let err = |e: crate::kernel::private::PrivateError| StateError::new(&path, e);
    let mut waiting = false;
    loop {
        let file = crate::kernel::private::open_lock(&path).map_err(err)?;
        match Presence::join(file, path.clone()) {
            Ok(presence) => return Ok(Some(presence)),
            Err(JoinError::Busy) if !waiting => {
                log::info!("the agent that stopped last is still restoring the NICs; waiting");
                waiting = true;
            }
            Err(JoinError::Busy) => {}
            Err(JoinError::Io { source, .. }) => return Err(err(source.into()).into()),
        }
        if let Some(name) = service::pause(signals, PRESENCE_RETRY) {
            log::info!("{name} received while waiting to join; stopping");
            return Ok(None);
        }
    }
}

/// `--restore-uplink-on-exit`: the DaemonSet is going (no agent waits to
/// take over), so the NICs `apply: "uplink"` changed go back as they were.
fn restore_uplink_if_last(presence: Presence) {
    let Leave::Last(_last) = presence.leave() else {
        log::info!("another agent runs on this node; leaving the uplink NICs to it");
        return;
    };
    match nics::restore(Path::new(RECORD_FILE)) {
        Ok(r) => {
            for line in &r.lines {
                log::info!("{line}");
            }
        }
        Err(e) => log::warn!("cannot restore the uplink NICs: {e}"),
    }
}

/// The daemon's lock, once the agent holding it stops; None when asked to
/// stop first.
fn wait_for_lock(state_file: &Path, signals: &SignalFd) -> Result<Option<File>, AgentError> {
    let mut waiting_since: Option<Instant> = None;
    loop {
        match lock(state_file) {
            Ok(file) => {
                if let Some(since) = waiting_since {
                    log::info!(
                        "the other agent stopped; taking over after {:.1} s",
                        since.elapsed().as_secs_f64()
                    );
                }
                return Ok(Some(file));
            }
            Err(AgentError::Locked(why)) => {
                if waiting_since.is_none() {
                    log::warn!("{why}; waiting for it to stop (as in a DaemonSet's surge update)");
                    waiting_since = Some(Instant::now());
                }
            }
            Err(e) => return Err(e),
        }
        if let Some(name) = service::pause(signals, LOCK_RETRY) {
            log::info!("{name} received while waiting for the other agent; stopping");
            return Ok(None);
        }
    }
}

/// `--once`: one full pass and a summary.
fn once(agent: &mut Agent, textfile: Option<&Path>) -> Result<String, AgentError> {
    // The verdict first: under detection "probe" it is what decides.
    let (mut out, _) = probing::run(agent);
    let decision = agent.decision().map(|d| d.to_string());
    match &decision {
        Ok(text) => out.extend(text.lines().map(String::from)),
        Err(e) => {
            if agent.config.detection_failure == DetectionFailure::Fail {
                return Err(AgentError::Detection(e.to_string()));
            }
            out.push(format!("host NIC detection failed: {e}; changing nothing"));
        }
    }
    let results = agent.full_pass().map_err(io("listing host interfaces"))?;
    let uplink = agent.uplink_pass();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, checked) in results.iter().chain(&uplink) {
        let (kind, line) = match checked {
            Checked::Conforming => ("already set", None),
            Checked::Changed(c) => ("changed", Some(c.to_string())),
            Checked::WouldChange(c) => ("would change", Some(c.to_string())),
            Checked::Failed(t) => ("failed", Some(format!("FAILED {t}"))),
            Checked::Skipped => ("skipped", None),
        };
        *count.entry(kind).or_default() += 1;
        out.extend(line);
    }
    if let Some(path) = textfile {
        write_textfile(agent, path);
    }
    let in_scope = results
        .iter()
        .filter(|(_, c)| !matches!(c, Checked::Skipped))
        .count();
    let parts: Vec<String> = ["changed", "would change", "already set", "failed"]
        .iter()
        .map(|k| format!("{} {k}", count.get(k).copied().unwrap_or(0)))
        .collect();
    let subject = if agent.config.placement == crate::config::Placement::Uplink {
        // The pairs are left as they are: say what was looked at.
        format!(
            "{} uplink NIC(s) (apply \"uplink\"; container veth pairs left as they are)",
            uplink.len()
        )
    } else {
        format!("{in_scope} container veth pairs")
    };
    out.push(format!("{subject}: {}", parts.join(", ")));
    let text = out.join("\n");
    if count.get("failed").copied().unwrap_or(0) > 0 {
        return Err(AgentError::Unmet(text));
    }
    Ok(text)
}

fn write_textfile(agent: &Agent, path: &Path) {
    let snapshot = agent.metrics.lock().map(|m| m.clone()).unwrap_or_default();
    if let Err(e) = metrics::write_textfile(path, &snapshot) {
        log::warn!("cannot write {}: {e}", path.display());
    }
}

/// An exclusive lock beside the state file, held while an agent runs, so
/// that two agents do not act at once and `restore` does not undo the work
/// of a running one (which would redo it at its next look).
fn lock(state_file: &Path) -> Result<File, AgentError> {
    let path = state_file.with_extension("lock");
    let file = crate::kernel::private::open_lock(&path).map_err(|e| StateError::new(&path, e))?;
    if crate::kernel::lock::flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
        return Err(AgentError::Locked(format!(
            "another csum-offload agent is running on this node (it holds {})",
            path.display()
        )));
    }
    Ok(file)
}
