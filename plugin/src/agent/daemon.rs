//! The daemon: a full pass, then the kernel's events, the config file's
//! changes, the probe's and the resync's timers, until SIGTERM or SIGINT.
//! Which events mean which work is `events`; what one pair or a full pass
//! does is `reconcile`.

use super::error::{io, AgentError};
use super::events::{self, Peers};
use super::options::Options;
use super::reconcile::{Agent, Checked};
use super::{metrics, probing, write_textfile};
use crate::config::{self, Config};
use crate::kernel::monitor::Monitor;
use crate::kernel::signals::stop_requested;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// After a routing or uplink event, wait this long for the rest of the
/// burst before detecting again.
const REDETECT_DELAY: Duration = Duration::from_millis(200);

/// The daemon: a full pass, then events until SIGTERM or SIGINT.
pub(super) fn daemon(
    mut agent: Agent,
    opts: &Options,
    signals: SignalFd,
) -> Result<String, AgentError> {
    let system = |what| move |source| AgentError::System { what, source };
    // Subscribed before the first pass, so nothing between the two is missed.
    let mut monitor = Monitor::open().map_err(io("event socket"))?;
    // Events from containers' netns reach a listener only with
    // CAP_NET_BROADCAST; without it drift inside a container is seen by a
    // full pass alone, so make that frequent enough to keep the promise.
    let mut resync = opts.resync;
    if !monitor.hears_all_netns() {
        let bound = Duration::from_secs(5);
        resync = Some(resync.map_or(bound, |r| r.min(bound)));
        log::warn!(
            "no CAP_NET_BROADCAST: link events from containers' netns do not reach the agent; \
             drift inside a container is found by a full pass every {} s instead",
            bound.as_secs()
        );
    }
    if let Some(address) = &opts.metrics_address {
        let bound =
            metrics::serve(address, agent.metrics.clone()).map_err(io("metrics address"))?;
        log::info!("metrics on http://{bound}/metrics");
    }
    log::info!(
        "csum-offload {} agent: watching container veth pairs (netns in {}{}){}",
        env!("CARGO_PKG_VERSION"),
        opts.netns_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if opts.scan_processes {
            " and /proc"
        } else {
            ""
        },
        match resync {
            Some(r) => format!("; full pass every {} s", r.as_secs()),
            None => String::new(),
        }
    );
    let mut config_watch = ConfigWatch::new(opts.config_path.as_deref());
    let mut reload_at: Option<Instant> = None;
    let mut peers = Peers::default();
    let mut full_pass_due = Some(Instant::now());
    let mut redetect_at: Option<Instant> = None;
    let mut next_resync = resync.map(|r| Instant::now() + r);
    // Under detection "probe" or "both": at start, every interval, and
    // when the uplink changes (the loop waits for the probe, a few s).
    let mut probe_at = probing_now(&agent);
    loop {
        let now = Instant::now();
        if reload_at.is_some_and(|t| t <= now) {
            reload_at = None;
            if let (Some(path), Some(watch)) = (&opts.config_path, &mut config_watch) {
                if watch.reload(&mut agent, path) {
                    full_pass_due = Some(now);
                    probe_at = probing_now(&agent);
                }
            }
        }
        if redetect_at.is_some_and(|t| t <= now) {
            redetect_at = None;
            let uplink = agent.uplink_key();
            if agent.redecide() {
                full_pass_due = Some(now);
            }
            if agent.uplink_key() != uplink {
                probe_at = probing_now(&agent);
            }
        }
        if probe_at.is_some_and(|t| t <= now) {
            let (_, changed) = probing::run(&mut agent);
            if changed {
                full_pass_due = Some(Instant::now());
            }
            probe_at = agent
                .config
                .probe
                .as_ref()
                .map(|p| Instant::now() + p.interval);
        }
        if next_resync.is_some_and(|t| t <= now) {
            full_pass_due = Some(now);
        }
        if full_pass_due.is_some_and(|t| t <= now) {
            full_pass_due = None;
            next_resync = resync.map(|r| now + r);
            match agent.full_pass() {
                Ok(results) => {
                    peers.rebuild(&mut agent);
                    let failed: Vec<&String> = results
                        .iter()
                        .filter_map(|(_, c)| match c {
                            Checked::Failed(t) => Some(t),
                            _ => None,
                        })
                        .collect();
                    for f in &failed {
                        log::warn!("{f}");
                    }
                    log::debug!(
                        "full pass: {} pairs, {} failed",
                        results.len(),
                        failed.len()
                    );
                }
                Err(e) => {
                    log::warn!("cannot list host interfaces: {e}; trying again in 2 s");
                    full_pass_due = Some(now + Duration::from_secs(2));
                }
            }
            for (_, checked) in agent.uplink_pass() {
                if let Checked::Failed(why) = checked {
                    log::warn!("{why}");
                }
            }
            if let Some(path) = &opts.textfile {
                write_textfile(&agent, path);
            }
        }
        let wake = [full_pass_due, redetect_at, next_resync, reload_at, probe_at]
            .into_iter()
            .flatten()
            .min();
        let timeout = match wake {
            Some(t) => PollTimeout::try_from(t.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut fds = vec![
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(monitor.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(watch) = &config_watch {
            fds.push(PollFd::new(watch.inotify.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(system("poll")(e)),
        }
        if fds[0].any().unwrap_or(false) {
            if let Some(name) = stop_requested(&signals) {
                log::info!("{name} received; stopping");
                return Ok("csum-offload agent stopped".into());
            }
        }
        if fds.get(2).is_some_and(|f| f.any().unwrap_or(false)) {
            if let Some(watch) = &config_watch {
                // Events arrive in bursts (kubelet's swap): wait for quiet.
                let _ = watch.inotify.read_events();
                reload_at = Some(Instant::now() + REDETECT_DELAY);
            }
        }
        if !fds[1].any().unwrap_or(false) {
            continue;
        }
        let events = match monitor.read() {
            Ok(events) => events,
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                log::warn!("the kernel dropped events (a burst larger than the socket buffer); looking at every pair");
                full_pass_due = Some(Instant::now());
                continue;
            }
            Err(e) => return Err(io("reading events")(e)),
        };
        let work = events::classify(events, &mut agent, &mut peers);
        if work.full_pass {
            full_pass_due.get_or_insert(Instant::now());
        }
        if work.redetect {
            redetect_at.get_or_insert(Instant::now() + REDETECT_DELAY);
        }
        let (check, refresh) = (work.check, work.refresh);
        for index in refresh {
            if let Ok(Some(link)) = agent.host.link_by_index(index) {
                peers.note(&link);
            }
        }
        if check.is_empty() {
            continue;
        }
        for index in check {
            if let Checked::Failed(why) = agent.check(index) {
                log::warn!("{why}");
            }
        }
        if let Some(path) = &opts.textfile {
            write_textfile(&agent, path);
        }
    }
}

/// Now, when the config asks for probes; else never.
fn probing_now(agent: &Agent) -> Option<Instant> {
    match agent.config.detection {
        crate::config::Detection::Table => None,
        _ => Some(Instant::now()),
    }
}

/// The config file's directory, watched: the agent and the plugin must
/// decide alike, and both read the same ConfigMap.
struct ConfigWatch {
    inotify: nix::sys::inotify::Inotify,
    /// The text last applied, so that an event that changed nothing is
    /// nothing.
    applied: String,
}

impl ConfigWatch {
    fn new(path: Option<&Path>) -> Option<Self> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let path = path?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| log::warn!("cannot watch {} for changes: {e}", path.display()))
            .ok()?;
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE,
            )
            .map_err(|e| log::warn!("cannot watch {} for changes: {e}", dir.display()))
            .ok()?;
        let applied = config::read_file(path).unwrap_or_default();
        Some(Self { inotify, applied })
    }

    /// Reads the config again; applies it when it is valid and new (an
    /// invalid one is refused, and the last valid one kept, as the
    /// installer does). Returns whether the agent's config changed.
    fn reload(&mut self, agent: &mut Agent, path: &Path) -> bool {
        let text = match config::read_file(path) {
            Ok(t) => t,
            Err(e) => {
                log::error!("{e}; keeping the previous config");
                return false;
            }
        };
        if self.applied == text {
            return false;
        }
        match Config::from_json(&text) {
            Ok(config) => {
                log::info!("{} changed; applying it", path.display());
                agent.config = config;
                self.applied = text;
                agent.redecide();
                true
            }
            Err(e) => {
                log::error!("{}: {e}; keeping the previous config", path.display());
                false
            }
        }
    }
}
