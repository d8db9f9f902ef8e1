//! The DaemonSet's main loop: keep the entry in the primary config while
//! the primary CNI rewrites it, and take it out on SIGTERM/SIGINT.
//!
//! One thread, one `poll` over an inotify fd (conf dir and config dir) and
//! a signalfd: no signal handler races, and a SIGTERM that arrives during
//! an edit waits until that edit is complete.

use super::edit::BACKUP_SUFFIX;
use super::entry::{Entry, PLUGIN_TYPE};
use super::files;
use super::handover::{self, Role, TOKEN_FILE};
use super::pass::{reconcile, remove_entries, Mode, PassOutcome};
use super::select::is_config_name;
use super::throttle::Throttle;
use super::{copy_binary, load_entry, remove_binary, InstallError, Options};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Events arriving together (write + rename + chmod) make one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A full pass even without events: covers missed events on odd
/// filesystems and lets the throttle see a settled file.
const RESYNC: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(300);
const ERROR_RETRY: Duration = Duration::from_secs(2);

fn conf_dir_events() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
}

/// Logs a state only when it changes, so a node waiting for its CNI says
/// so once, not every pass.
#[derive(Default)]
struct StatusLog {
    last: String,
    notes: Vec<String>,
}

impl StatusLog {
    fn set(&mut self, level: log::Level, status: String) {
        if status != self.last {
            log::log!(level, "{status}");
            self.last = status;
        }
    }

    fn notes(&mut self, notes: Vec<String>) {
        for n in notes.iter().filter(|n| !self.notes.contains(n)) {
            log::warn!("{n}");
        }
        self.notes = notes;
    }
}

fn watch_conf_dir(inotify: &Inotify, dir: &Path) -> Option<WatchDescriptor> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        log::warn!("{}: {e}", dir.display());
        return None;
    }
    match inotify.add_watch(dir, conf_dir_events()) {
        Ok(wd) => Some(wd),
        Err(e) => {
            log::warn!("cannot watch {}: {e}", dir.display());
            None
        }
    }
}

pub fn run(opts: &Options, mut entry: Entry) -> Result<String, InstallError> {
    // Signals first, so a SIGTERM during start-up still takes the exit path.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    let system = |what| move |source| InstallError::System { what, source };
    mask.thread_block()
        .map_err(system("cannot block signals"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(system("signalfd"))?;
    let inotify =
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(system("inotify"))?;
    let conf_dir = opts.conf_dir.as_path();
    let mut conf_wd = watch_conf_dir(&inotify, conf_dir);
    // The config file is a ConfigMap volume: kubelet swaps a `..data`
    // symlink in its directory when the ConfigMap changes.
    let config_wd = opts.config.as_deref().and_then(|path| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CREATE,
            )
            .map_err(|e| log::warn!("cannot watch {} for config changes: {e}", dir.display()))
            .ok()
    });

    // Newest installer wins: claim the node (see handover.rs).
    let token = handover::new_token();
    handover::claim(conf_dir, &token).map_err(InstallError::Claim)?;
    log::info!("active installer on this node ({token})");
    let mut active = true;
    let mut status = StatusLog::default();
    let mut config_error = String::new();
    let mut throttle = Throttle::default();
    let mut due = Some(Instant::now());
    let mut reload = false;
    let mut next_resync = Instant::now() + RESYNC;
    loop {
        let now = Instant::now();
        if due.is_some_and(|d| d <= now) || now >= next_resync {
            due = None;
            next_resync = now + RESYNC;
            if reload {
                reload = false;
                match load_entry(opts.config.as_deref()) {
                    Ok(new) if new != entry => {
                        log::info!("config changed; new entry {}", new.as_value());
                        entry = new;
                        config_error.clear();
                    }
                    Ok(_) => config_error.clear(),
                    Err(e) if e.to_string() != config_error => {
                        log::error!("{e}; keeping the previous entry (the readiness check fails until the config is fixed)");
                        config_error = e.to_string();
                    }
                    Err(_) => {}
                }
            }
            if conf_wd.is_none() {
                conf_wd = watch_conf_dir(&inotify, conf_dir);
            }
            match handover::role(active, &token, handover::holder(conf_dir).as_deref()) {
                Role::Active | Role::Standby => {}
                Role::Reclaim => {
                    log::warn!("{TOKEN_FILE} disappeared; claiming the node again");
                    if let Err(e) = handover::claim(conf_dir, &token) {
                        log::warn!("cannot claim the node: {e}");
                    }
                }
                Role::HandedOver => {
                    active = false;
                    log::info!(
                        "a newer installer took over this node ({}); standing by: \
                         no more edits, and the entry stays when this one exits",
                        handover::holder(conf_dir).unwrap_or_default()
                    );
                }
            }
            // The entry must never name a missing binary: put it back if
            // someone deleted it.
            if active && !files::binary_present(&opts.bin_dir, PLUGIN_TYPE) {
                log::warn!(
                    "{} is missing; copying it again",
                    opts.bin_dir.join(PLUGIN_TYPE).display()
                );
                if let Err(e) = copy_binary(&opts.bin_dir) {
                    log::error!("{e}");
                }
            }
            if !active {
                // Standing by: the newer installer does the work.
            } else if let Some(t) = throttle.not_before(now) {
                due = Some(t);
            } else {
                let outcome = reconcile(opts, &entry, Mode::Apply).map(|pass| {
                    let mut notes = pass.notes;
                    notes.extend(pass.problems.iter().map(|p| format!("not ready: {p}")));
                    status.notes(notes);
                    pass.outcome
                });
                match outcome {
                    Ok(PassOutcome::Installed { file, wrote: true }) => {
                        log::info!(
                            "csum-offload entry written to {}",
                            conf_dir.join(&file).display()
                        );
                        status.last = format!("entry in place in {file}");
                        if let Some(warning) = throttle.record(now) {
                            log::warn!("{}: {warning}", conf_dir.join(&file).display());
                        }
                    }
                    Ok(PassOutcome::Installed { file, wrote: false }) => {
                        throttle.settled(now);
                        status.set(log::Level::Info, format!("entry in place in {file}"));
                    }
                    Ok(PassOutcome::NoConfig) => status.set(
                        log::Level::Info,
                        match &opts.conf_file {
                            Some(name) => format!(
                                "waiting for a loadable {} (--conf-file)",
                                conf_dir.join(name).display()
                            ),
                            None => format!(
                                "waiting for a network config in {} (written by the primary CNI)",
                                conf_dir.display()
                            ),
                        },
                    ),
                    Ok(PassOutcome::Blocked(why)) => status.set(log::Level::Error, why),
                    Ok(PassOutcome::Retry(why) | PassOutcome::WouldWrite { file: why }) => {
                        log::debug!("{why}; looking again shortly");
                        due = Some(now + RETRY);
                    }
                    Err(e) => {
                        status.set(log::Level::Warn, format!("{e}; retrying"));
                        due = Some(now + ERROR_RETRY);
                    }
                }
            }
        }

        let wake = due.map_or(next_resync, |d| d.min(next_resync));
        let wait = wake.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(system("poll")(e)),
        }
        let signal_ready = fds[0].any().unwrap_or(false);
        let inotify_ready = fds[1].any().unwrap_or(false);
        if signal_ready {
            if let Ok(Some(info)) = signals.read_signal() {
                let name = Signal::try_from(info.ssi_signo as i32)
                    .map(|s| s.as_str())
                    .unwrap_or("signal");
                log::info!("{name} received");
                return shut_down(opts, active, &token);
            }
        }
        if inotify_ready {
            let events = match inotify.read_events() {
                Ok(e) => e,
                Err(nix::errno::Errno::EAGAIN) => Vec::new(),
                Err(e) => return Err(system("inotify")(e)),
            };
            let soon = Instant::now() + DEBOUNCE;
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    due = Some(due.map_or(soon, |d| d.min(soon)));
                    reload = config_wd.is_some();
                    continue;
                }
                if Some(ev.wd) == conf_wd {
                    if ev.mask.intersects(
                        AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF,
                    ) {
                        log::warn!(
                            "{} was removed or moved; watching for it again",
                            conf_dir.display()
                        );
                        let _ = conf_wd.take().map(|wd| inotify.rm_watch(wd));
                        due = Some(Instant::now() + ERROR_RETRY);
                        continue;
                    }
                    let name = ev.name.as_ref().map(|n| n.to_string_lossy().into_owned());
                    let relevant = name.is_some_and(|n| {
                        is_config_name(&n) || n.ends_with(BACKUP_SUFFIX) || n == TOKEN_FILE
                    });
                    if relevant {
                        due = Some(due.map_or(soon, |d| d.min(soon)));
                    }
                } else if Some(ev.wd) == config_wd {
                    reload = true;
                    due = Some(due.map_or(soon, |d| d.min(soon)));
                }
            }
        }
    }
}

/// The SIGTERM path: entry out (original `.conf` restored), binary kept
/// unless asked: pods that exist still need it for their DEL. An installer
/// that handed over leaves everything to its successor.
fn shut_down(opts: &Options, active: bool, token: &str) -> Result<String, InstallError> {
    let holder = handover::holder(&opts.conf_dir);
    if !active || holder.as_deref().is_some_and(|h| h != token) {
        log::info!("a newer installer is active on this node; leaving the entry to it");
        return Ok("csum-offload installer stopped; entry left to the newer installer".into());
    }
    log::info!("removing the csum-offload entry");
    let mut done = remove_entries(&opts.conf_dir)
        .inspect_err(|e| log::error!("cannot remove the entry: {e}"))?;
    if opts.remove_binary {
        done.push(remove_binary(&opts.bin_dir)?);
    } else {
        log::info!(
            "keeping {} for the DEL of pods created with it",
            opts.bin_dir.join(PLUGIN_TYPE).display()
        );
    }
    handover::release(&opts.conf_dir, Some(token));
    for line in &done {
        log::info!("{line}");
    }
    Ok("csum-offload installer stopped; entry removed".to_string())
}
