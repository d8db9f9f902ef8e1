//! The DaemonSet's main loop: keep the entry in the primary config while
//! the primary CNI rewrites it, and take it out on SIGTERM/SIGINT when
//! this is the last installer on the node (see handover.rs).
//!
//! One thread, one `poll` over a signalfd and an inotify fd (conf dir and
//! config dir): no signal handler races, and a SIGTERM that arrives during
//! an edit waits until that edit is complete. Once running, nothing ends
//! the loop but a signal, because an exit would only make the DaemonSet
//! crash-loop: when inotify instances or watches run out it polls the conf
//! dir every second instead (and says so); a conf dir it cannot read or
//! write means retrying and saying why; a binary that cannot be copied
//! means retrying, and the entry never goes in while the binary is missing.

use super::commit;
use super::edit::{Owned, BACKUP_SUFFIX};
use super::entry::{Entry, PLUGIN_TYPE};
use super::files;
use super::handover::{self, Claim, Holder, JoinError, Leave, Presence, Role, TOKEN_FILE};
use super::pass::{self, remove_entries, PassMode, PassOutcome};
use super::select::is_config_name;
use super::throttle::Throttle;
use super::{copy_binary, load_entry, remove_binary, InstallError, Options};
use crate::service::{self, KeepLast, Offer, Timers};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Events arriving together (write + rename + chmod) make one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A full pass even without events: covers missed events on odd
/// filesystems, lets the throttle see a settled file, and removes temp
/// files a killed installer left.
const RESYNC: Duration = Duration::from_secs(10);
/// How often the conf dir is looked at without a watch on it, and how
/// often a standby installer checks that the active one is still there (a
/// killed installer leaves no event behind).
const POLL: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(300);
const ERROR_RETRY: Duration = Duration::from_secs(2);
const JOIN_RETRY: Duration = Duration::from_millis(100);

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

/// What an inotify read said.
#[derive(Default)]
struct Events {
    conf: bool,
    config: bool,
}

/// The inotify side, or its absence: without an instance or a watch, the
/// loop polls.
struct Watcher {
    inotify: Option<Inotify>,
    conf_wd: Option<WatchDescriptor>,
    /// Where the conf dir's path led when `conf_wd` was added: inotify
    /// watches that directory, not the path, so when a symlink on the
    /// path is re-pointed the watch stays on the old directory.
    conf_target: Option<PathBuf>,
    config_wd: Option<WatchDescriptor>,
    warned: bool,
}

impl Watcher {
    fn new(opts: &Options) -> Self {
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(i) => Some(i),
            Err(e) => {
                log::warn!(
                    "inotify is not available ({e}; fs.inotify.max_user_instances counts per user, \
                     shared by every root daemon on the node): polling {} every {}s instead",
                    opts.conf_dir.display(),
                    POLL.as_secs()
                );
                None
            }
        };
        let mut w = Watcher {
            inotify,
            conf_wd: None,
            conf_target: None,
            config_wd: None,
            warned: false,
        };
        // The config file is a ConfigMap volume: kubelet swaps a `..data`
        // symlink in its directory when the ConfigMap changes.
        let dir = opts
            .config
            .as_deref()
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty());
        if let (Some(inotify), Some(dir)) = (&w.inotify, dir) {
            let flags = AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CREATE;
            w.config_wd = inotify
                .add_watch(dir, flags)
                .map_err(|e| {
                    log::warn!(
                        "cannot watch {} for config changes ({e}); it is read again every {}s",
                        dir.display(),
                        RESYNC.as_secs()
                    )
                })
                .ok();
        }
        w
    }

    /// Watches the conf dir if it is not watched yet; false if it cannot.
    fn watch_conf_dir(&mut self, dir: &Path) -> bool {
        if self.conf_wd.is_some() {
            return true;
        }
        let Some(inotify) = &self.inotify else {
            return false;
        };
        match inotify.add_watch(dir, conf_dir_events()) {
            Ok(wd) => {
                if self.warned {
                    log::info!("watching {} again", dir.display());
                    self.warned = false;
                }
                self.conf_wd = Some(wd);
                self.conf_target = std::fs::canonicalize(dir).ok();
                true
            }
            Err(e) => {
                if !self.warned {
                    log::warn!(
                        "cannot watch {} ({e}): polling it every {}s",
                        dir.display(),
                        POLL.as_secs()
                    );
                    self.warned = true;
                }
                false
            }
        }
    }

    fn polling(&self) -> bool {
        self.conf_wd.is_none()
    }

    /// Whether the watched directory is reached through a symlink (or
    /// `..`): then the path is resolved again every `POLL` (`retarget`).
    fn follows_link(&self, dir: &Path) -> bool {
        self.conf_target.as_deref().is_some_and(|t| t != dir)
    }

    /// Drops the watch if the conf dir's path now leads to another
    /// directory than the watched one (a re-pointed symlink: nothing
    /// happens in the watched directory, so no event says so); the next
    /// pass writes to the new directory and watches it. True if it did.
    fn retarget(&mut self, dir: &Path) -> bool {
        if self.conf_wd.is_none() || !self.follows_link(dir) {
            return false;
        }
        let now = std::fs::canonicalize(dir).ok();
        if now == self.conf_target {
            return false;
        }
        log::info!(
            "{} now leads to {} (was {}): watching that directory instead",
            dir.display(),
            now.as_deref()
                .map_or("nothing".into(), |p| p.display().to_string()),
            self.conf_target
                .as_deref()
                .map_or(String::new(), |p| p.display().to_string()),
        );
        if let (Some(inotify), Some(wd)) = (&self.inotify, self.conf_wd.take()) {
            // The old directory may be gone already (and its watch with
            // it): nothing to undo then.
            let _ = inotify.rm_watch(wd);
        }
        self.conf_target = None;
        true
    }

    fn read(&mut self, conf_dir: &Path) -> Events {
        let mut seen = Events::default();
        let Some(inotify) = &self.inotify else {
            return seen;
        };
        let events = match inotify.read_events() {
            Ok(e) => e,
            Err(nix::errno::Errno::EAGAIN) => return seen,
            Err(e) => {
                log::warn!("inotify: {e}; polling {} instead", conf_dir.display());
                self.inotify = None;
                self.conf_wd = None;
                self.conf_target = None;
                self.config_wd = None;
                seen.conf = true;
                return seen;
            }
        };
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                seen.conf = true;
                seen.config = self.config_wd.is_some();
            } else if Some(ev.wd) == self.conf_wd {
                if ev.mask.intersects(
                    AddWatchFlags::IN_IGNORED
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF,
                ) {
                    log::warn!(
                        "{} was removed or moved; watching for it again",
                        conf_dir.display()
                    );
                    if let Some(wd) = self.conf_wd.take() {
                        let _ = inotify.rm_watch(wd);
                    }
                    self.conf_target = None;
                    seen.conf = true;
                    continue;
                }
                let name = ev.name.as_ref().map(|n| n.to_string_lossy().into_owned());
                seen.conf |= name.is_some_and(|n| {
                    is_config_name(&n) || n.ends_with(BACKUP_SUFFIX) || n == TOKEN_FILE
                });
            } else if Some(ev.wd) == self.config_wd {
                seen.config = true;
            }
        }
        seen
    }
}

/// The loop's kinds of work, each with its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    /// A pass over the conf dir.
    Pass,
    /// The periodic pass that also sweeps temps and reads the config.
    Resync,
    /// A wake-up only to resolve the conf dir's link again.
    Look,
}

pub fn run(opts: &Options, entry: Entry) -> Result<String, InstallError> {
    // Signals first, so a SIGTERM during start-up still takes the exit path.
    let signals = crate::kernel::signals::stop_signals()
        .map_err(|(what, source)| InstallError::System { what, source })?;
    let conf_dir = opts.conf_dir.as_path();
    let mut status = StatusLog::default();
    let mut watcher = Watcher::new(opts);

    // Present on the node (see handover.rs), waiting while the installer
    // that exited last is still taking the entry out.
    let mut presence = loop {
        if let Err(e) = std::fs::create_dir_all(conf_dir) {
            status.set(
                log::Level::Warn,
                format!("{}: {e}; retrying", conf_dir.display()),
            );
        }
        let wait = match handover::join(conf_dir) {
            Ok(p) => break p,
            Err(e @ JoinError::Busy) => {
                status.set(log::Level::Info, format!("{e}; waiting"));
                JOIN_RETRY
            }
            Err(JoinError::Fs(e)) => {
                status.set(log::Level::Warn, format!("{e}; retrying"));
                ERROR_RETRY
            }
        };
        if let Some(name) = service::pause(&signals, wait) {
            log::info!("{name} received before start-up finished");
            return Ok("csum-offload installer stopped before it started".into());
        }
    };
    commit::remove_stale_temps(conf_dir);
    commit::remove_stale_temps(&opts.bin_dir);

    // Newest installer wins: claim the node. An installer from before the
    // entry's mark wrote unmarked entries: the first pass adopts them.
    let token = handover::new_token();
    let mut adopt =
        matches!(handover::holder(conf_dir), Holder::Alive(t) if handover::is_legacy(&t));
    let mut claim: Option<Claim> = None;
    // Until the first claim succeeds, this installer claims whatever is on
    // disk (it is the newest); after that, only a free node.
    let mut claimed_once = false;
    let mut active = false;
    let mut entry = KeepLast::new(entry);
    let mut throttle = Throttle::default();
    let mut timers = Timers::default();
    timers.set(Work::Pass, Instant::now());
    timers.set(Work::Resync, Instant::now() + RESYNC);
    let mut reload = false;
    // After the conf dir's link moved: presence is joined again there.
    let mut rejoin = false;
    loop {
        let now = Instant::now();
        timers.take(Work::Look, now);
        if watcher.retarget(conf_dir) {
            timers.set(Work::Pass, now);
            rejoin = true;
        }
        if rejoin {
            // Presence lives in the directory, so after a re-point an
            // installer started since (joined in the new one) would be
            // invisible to this one, which at its exit would then take the
            // entry out from under it. Until the join succeeds (a last
            // installer may still be leaving there), the old one is kept.
            match handover::join(conf_dir) {
                Ok(new) => {
                    // Leaving the old directory last removes its file.
                    drop(std::mem::replace(&mut presence, new).leave());
                    rejoin = false;
                }
                Err(e) => log::debug!("presence in {}: {e}; retrying", conf_dir.display()),
            }
        }
        let resync = timers.take(Work::Resync, now);
        if timers.take(Work::Pass, now) || resync {
            // A pass now is also the one that was due later.
            timers.cancel(Work::Pass);
            if resync {
                timers.set(Work::Resync, now + RESYNC);
                commit::remove_stale_temps(conf_dir);
                commit::remove_stale_temps(&opts.bin_dir);
                reload |= watcher.config_wd.is_none() && opts.config.is_some();
            }
            if reload {
                reload = false;
                match entry.offer(load_entry(opts.config.as_deref())) {
                    Offer::Changed => {
                        log::info!("config changed; new entry {}", entry.value.as_value())
                    }
                    Offer::Refused(why) => log::error!("{why}; keeping the previous entry (the readiness check fails until the config is fixed)"),
                    Offer::Same | Offer::StillRefused => {}
                }
            }
            watcher.watch_conf_dir(conf_dir);

            let holder = handover::holder(conf_dir);
            let role = match claimed_once {
                false => Role::Claim,
                true => handover::role(&token, &holder),
            };
            match role {
                Role::Active => {}
                Role::Standby => {
                    if active {
                        log::info!(
                            "a newer installer took over this node ({}); standing by: no edits \
                             until it is gone",
                            match &holder {
                                Holder::Alive(t) | Holder::Gone(t) => t.as_str(),
                                Holder::Nobody => "",
                            }
                        );
                    }
                    active = false;
                    claim = None;
                }
                Role::Claim => match handover::claim(conf_dir, &token) {
                    Ok(c) => {
                        match &holder {
                            _ if !claimed_once => {
                                log::info!("active installer on this node ({token})")
                            }
                            Holder::Gone(t) => log::warn!(
                                "the active installer ({t}) is gone without handing over; \
                                 this one ({token}) takes over"
                            ),
                            _ => log::warn!(
                                "{TOKEN_FILE} was removed; this installer ({token}) takes over"
                            ),
                        }
                        claim = Some(c);
                        claimed_once = true;
                        active = true;
                        // Our own binary, whatever the one before put there.
                        if let Err(e) = copy_binary(&opts.bin_dir) {
                            status.set(log::Level::Error, format!("{e}; retrying"));
                        }
                    }
                    Err(e) => {
                        status.set(
                            log::Level::Warn,
                            format!("cannot claim the node: {e}; retrying"),
                        );
                        active = false;
                        timers.set(Work::Pass, now + ERROR_RETRY);
                    }
                },
            }
            if !active {
                // Standing by, or not able to claim: the active installer
                // does the work; the poll below checks that it is there.
            } else if !files::binary_present(&opts.bin_dir, PLUGIN_TYPE)
                && copy_binary(&opts.bin_dir)
                    .map_err(|e| status.set(log::Level::Error, format!("{e}; retrying")))
                    .is_err()
            {
                // The entry must never name a missing binary.
                timers.set(Work::Pass, now + ERROR_RETRY);
            } else if let Some(t) = throttle.not_before(now) {
                timers.set(Work::Pass, t);
            } else {
                let owned = if adopt {
                    Owned::AlsoUnmarked
                } else {
                    Owned::Marked
                };
                let outcome =
                    pass::run_as(opts, &entry.value, PassMode::Write, owned).map(|pass| {
                        let mut notes = pass.notes;
                        notes.extend(pass.problems.iter().map(|p| format!("not ready: {p}")));
                        status.notes(notes);
                        pass.outcome
                    });
                match outcome {
                    Ok(PassOutcome::Installed { file, wrote }) => {
                        adopt = false;
                        if wrote {
                            log::info!(
                                "csum-offload entry written to {}",
                                conf_dir.join(&file).display()
                            );
                            status.last = format!("entry in place in {file}");
                            if let Some(warning) = throttle.record(now) {
                                log::warn!("{}: {warning}", conf_dir.join(&file).display());
                            }
                        } else {
                            throttle.settled(now);
                            status.set(log::Level::Info, format!("entry in place in {file}"));
                        }
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
                        timers.set(Work::Pass, now + RETRY);
                    }
                    Err(e) => {
                        status.set(log::Level::Warn, format!("{e}; retrying"));
                        timers.set(Work::Pass, now + ERROR_RETRY);
                    }
                }
            }
        }

        if watcher.polling() || !active {
            timers.by(Work::Pass, Instant::now() + POLL);
        } else if watcher.follows_link(conf_dir) {
            // Only to resolve the path again: a pass runs if it changed.
            timers.by(Work::Look, Instant::now() + POLL);
        }
        let inotify: Vec<BorrowedFd> = watcher.inotify.iter().map(|i| i.as_fd()).collect();
        let woken = service::wait(&signals, &inotify, timers.next()).map_err(|source| {
            InstallError::System {
                what: "poll",
                source,
            }
        })?;
        if let Some(name) = woken.stop {
            log::info!("{name} received");
            return shut_down(opts, presence, &token, claim);
        }
        if woken.ready(0) {
            let seen = watcher.read(conf_dir);
            let soon = Instant::now() + DEBOUNCE;
            if seen.config {
                reload = true;
            }
            if seen.conf || seen.config {
                timers.by(Work::Pass, soon);
            }
        }
    }
}

/// The SIGTERM path. The last installer on the node takes the entry out
/// (the original `.conf` restored) and keeps the binary unless asked: pods
/// that exist still need it for their DEL. Any other leaves the entry to
/// the installers still running, which reclaim the node if it was theirs.
fn shut_down(
    opts: &Options,
    presence: Presence,
    token: &str,
    claim: Option<Claim>,
) -> Result<String, InstallError> {
    let conf_dir = opts.conf_dir.as_path();
    let last = match presence.leave() {
        Leave::Others => {
            handover::release(conf_dir, Some(token));
            drop(claim);
            log::info!("another installer runs on this node; leaving the entry to it");
            return Ok("csum-offload installer stopped; entry left to the other installer".into());
        }
        Leave::Last(last) => last,
    };
    log::info!("the last installer on this node: removing the csum-offload entry");
    let mut done =
        remove_entries(conf_dir).inspect_err(|e| log::error!("cannot remove the entry: {e}"))?;
    if opts.remove_binary {
        done.push(remove_binary(conf_dir, &opts.bin_dir)?);
    } else {
        log::info!(
            "keeping {} for the DEL of pods created with it",
            opts.bin_dir.join(PLUGIN_TYPE).display()
        );
    }
    done.extend(super::restore_uplink());
    // Nobody else is alive: whoever's token it is goes.
    handover::release(conf_dir, None);
    drop(claim);
    drop(last);
    for line in &done {
        log::info!("{line}");
    }
    Ok("csum-offload installer stopped; entry removed".to_string())
}
