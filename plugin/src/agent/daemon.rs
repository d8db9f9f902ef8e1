//! The daemon: a full pass, then the kernel's events, the config file's
//! changes, the probe's and the resync's timers, until SIGTERM or SIGINT.
//! Which events mean which work is `events`; what one pair or a full pass
//! does is `reconcile`.

use super::error::{io, AgentError};
use super::events::{self, Peers};
use super::options::Options;
use super::outcome::Failure;
use super::reconcile::{Agent, Checked};
use super::{metrics, probing, write_textfile};
use crate::config::{self, Config};
use crate::kernel::monitor::Monitor;
use crate::service::{self, KeepLast, Offer, Timers};
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// After a routing or uplink event, wait this long for the rest of the
/// burst before detecting again.
const REDETECT_DELAY: Duration = Duration::from_millis(200);

/// The daemon's kinds of work, each with its deadline (`service::Timers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    /// Read the config again (after its directory went quiet).
    Reload,
    /// Detect the uplink again (after routes or NICs changed).
    Redetect,
    Probe,
    /// Look at every pair.
    FullPass,
    /// The periodic full pass (`--resync`).
    Resync,
}

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
            metrics::serve(*address, agent.metrics.clone()).map_err(io("metrics address"))?;
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
    let mut peers = Peers::default();
    let mut timers = Timers::default();
    timers.set(Job::FullPass, Instant::now());
    timers.put(Job::Resync, resync.map(|r| Instant::now() + r));
    // Under detection "probe" or "both": at start, every interval, and
    // when the uplink changes (the loop waits for the probe, a few s).
    timers.put(Job::Probe, probing_now(&agent));
    loop {
        let now = Instant::now();
        if timers.take(Job::Reload, now) {
            if let (Some(path), Some(watch)) = (&opts.config_path, &mut config_watch) {
                if watch.reload(&mut agent, path) {
                    timers.set(Job::FullPass, now);
                    timers.put(Job::Probe, probing_now(&agent));
                }
            }
        }
        if timers.take(Job::Redetect, now) {
            let uplink = agent.uplink_key();
            if agent.redecide() {
                timers.set(Job::FullPass, now);
            }
            if agent.uplink_key() != uplink {
                timers.put(Job::Probe, probing_now(&agent));
            }
        }
        if timers.take(Job::Probe, now) {
            let (_, changed) = probing::run(&mut agent);
            if changed {
                timers.set(Job::FullPass, Instant::now());
            }
            let interval = agent.config.probe.as_ref().map(|p| p.interval);
            timers.put(Job::Probe, interval.map(|i| Instant::now() + i));
        }
        if timers.take(Job::Resync, now) {
            timers.set(Job::FullPass, now);
        }
        if timers.take(Job::FullPass, now) {
            timers.put(Job::Resync, resync.map(|r| now + r));
            match agent.full_pass() {
                Ok(results) => {
                    peers.rebuild(&mut agent);
                    let failed: Vec<&Failure> = results
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
                    timers.set(Job::FullPass, now + Duration::from_secs(2));
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
        let mut fds = vec![monitor.as_fd()];
        fds.extend(config_watch.as_ref().map(|w| w.inotify.as_fd()));
        let woken = service::wait(&signals, &fds, timers.next()).map_err(system("poll"))?;
        if let Some(name) = woken.stop {
            log::info!("{name} received; stopping");
            return Ok("csum-offload agent stopped".into());
        }
        if woken.ready(1) {
            if let Some(watch) = &config_watch {
                // Events arrive in bursts (kubelet's swap): wait for quiet.
                let _ = watch.inotify.read_events();
                timers.set(Job::Reload, Instant::now() + REDETECT_DELAY);
            }
        }
        if !woken.ready(0) {
            continue;
        }
        let events = match monitor.read() {
            Ok(events) => events,
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                log::warn!("the kernel dropped events (a burst larger than the socket buffer); looking at every pair");
                timers.set(Job::FullPass, Instant::now());
                continue;
            }
            Err(e) => return Err(io("reading events")(e)),
        };
        let work = events::classify(events, &mut agent, &mut peers);
        if work.full_pass {
            timers.unless_set(Job::FullPass, Instant::now());
        }
        if work.redetect {
            timers.unless_set(Job::Redetect, Instant::now() + REDETECT_DELAY);
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
    /// The config in force and the text it came from, so that an event
    /// that changed nothing is nothing.
    applied: KeepLast<Applied>,
}

/// A config and its text; the same config is the same text.
struct Applied {
    text: String,
    config: Option<Config>,
}

impl PartialEq for Applied {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
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
        let text = config::read_file(path).unwrap_or_default();
        Some(Self {
            inotify,
            applied: KeepLast::new(Applied { text, config: None }),
        })
    }

    /// Reads the config again; applies it when it is valid and new (an
    /// invalid one is refused, and the last valid one kept, as the
    /// installer does). Returns whether the agent's config changed.
    fn reload(&mut self, agent: &mut Agent, path: &Path) -> bool {
        let read = config::read_file(path)
            .map_err(|e| e.to_string())
            .and_then(|text| match Config::from_json(&text) {
                Ok(config) => Ok(Applied {
                    text,
                    config: Some(config),
                }),
                Err(e) => Err(format!("{}: {e}", path.display())),
            });
        match self.applied.offer(read) {
            Offer::Changed => {
                log::info!("{} changed; applying it", path.display());
                if let Some(mut config) = self.applied.value.config.take() {
                    // The node's name comes from the command line, not the file.
                    config.node_name = agent.config.node_name.take();
                    agent.config = config;
                }
                agent.redecide();
                true
            }
            Offer::Refused(why) => {
                log::error!("{why}; keeping the previous config");
                false
            }
            Offer::Same | Offer::StillRefused => false,
        }
    }
}
