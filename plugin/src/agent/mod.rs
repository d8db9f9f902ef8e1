//! The node agent, a front end over the same core as the plugin: it finds
//! every container veth pair in the host netns (Docker, containerd, CRI-O,
//! Podman, LXC: any runtime) and gives both ends the policy the node's NIC
//! needs, at start, whenever a pair appears, and whenever a feature drifts.
//!
//! - `scan`: which host interfaces are containers' veths, the scope, and
//!   where the peers' netns are.
//! - `reconcile`: one pair, or a full pass, through the core.
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

mod metrics;
mod probing;
mod reconcile;
mod restore;
mod scan;
mod state;

use crate::args::{Args, ArgsError};
use crate::config::{self, Config, DetectionFailure, LoadError};
use crate::glob::{Glob, GlobError};
use crate::json;
use crate::kernel::monitor::{Event, Monitor};
use crate::kernel::presence::{JoinError, Leave, Presence};
use crate::kernel::signals::{stop_signals, wait_for_stop};
use crate::logger::{self, LevelError};
use crate::offload::nic_record::RECORD_FILE;
use crate::offload::nics;
use crate::service::{self, KeepLast, Offer, Timers};
use nix::sys::signalfd::SignalFd;
use reconcile::{Agent, Checked};
use scan::{Scope, DEFAULT_NETNS_DIRS};
use state::{StateError, StateFile, DEFAULT_STATE_FILE};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// After a routing or uplink event, wait this long for the rest of the
/// burst before detecting again.
const REDETECT_DELAY: Duration = Duration::from_millis(200);

/// How often a daemon waiting for another agent's lock tries again.
const LOCK_RETRY: Duration = Duration::from_millis(500);
/// How often a daemon tries to join while the last one out cleans up (a
/// NIC restore: milliseconds).
const PRESENCE_RETRY: Duration = Duration::from_millis(100);

/// `--resync` when not given, in seconds.
const RESYNC_DEFAULT: u64 = 300;

/// The longest `--resync`: a day. A longer period is no different from
/// "events only" (0) in practice, and a bound keeps every deadline the
/// daemon computes from it far from `Instant`'s limits (an unbounded
/// value overflowed `now + resync` and took the daemon down).
const RESYNC_MAX: u64 = 86_400;

/// Why an agent command failed; printed after "csum-offload: ".
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("--log-level {0}")]
    LogLevel(#[from] LevelError),
    #[error("--node-name or NODE_NAME: {0}")]
    NodeName(#[from] config::NodeNameError),
    #[error("--resync must be a whole number of seconds from 0 (events only) to {RESYNC_MAX}, got {0:?}")]
    Resync(String),
    #[error("--metrics-address must be an IP address and port (\"127.0.0.1:9981\", \"[::1]:9981\"), got {0:?}")]
    MetricsAddress(String),
    #[error("{flag} {pattern:?}: {source}; see docs/configuration.md#globs")]
    Glob {
        flag: &'static str,
        pattern: String,
        #[source]
        source: GlobError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Locked(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    System {
        what: &'static str,
        source: nix::errno::Errno,
    },
    #[error("host NIC detection failed: {0} (detectionFailure \"fail\")")]
    Detection(String),
    /// `--once` or `restore` ran, and something is not as it should be:
    /// the summary, for stdout, and exit code 1.
    #[error("{0}")]
    Unmet(String),
}

impl AgentError {
    /// The process's exit code: 1 when the work ran and something could
    /// not be done, 2 when the command could not run.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Unmet(_) => 1,
            _ => 2,
        }
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Io { what, source }
}

/// The agent's settings from the command line.
struct Options {
    config: Config,
    /// Where `config` came from: watched, and read again when it changes
    /// (a ConfigMap update swaps kubelet's `..data` link in its directory).
    config_path: Option<PathBuf>,
    once: bool,
    dry_run: bool,
    scope: Scope,
    netns_dirs: Vec<PathBuf>,
    scan_processes: bool,
    state_file: PathBuf,
    metrics_address: Option<SocketAddr>,
    textfile: Option<PathBuf>,
    resync: Option<Duration>,
    /// Put the uplink NICs back when this agent stops and no other agent
    /// runs on the node (the DaemonSet's deletion, never its surge update).
    restore_uplink_on_exit: bool,
}

/// Takes every `--name VALUE` given.
fn values(args: &mut Args, name: &str) -> Result<Vec<String>, ArgsError> {
    let mut all = Vec::new();
    while let Some(v) = args.value(name)? {
        all.push(v);
    }
    Ok(all)
}

/// Takes every `--name GLOB` given, each parsed: a pattern the syntax
/// does not cover is refused here, before anything is touched, rather
/// than matching nothing (an exclusion that excludes nothing).
fn globs(args: &mut Args, flag: &'static str) -> Result<Vec<Glob>, AgentError> {
    values(args, flag)?
        .into_iter()
        .map(|pattern| {
            Glob::parse(&pattern).map_err(|source| AgentError::Glob {
                flag,
                pattern: json::clip(&pattern),
                source,
            })
        })
        .collect()
}

/// `--resync SECONDS`: None is events only (0).
fn resync(value: Option<String>) -> Result<Option<Duration>, AgentError> {
    let Some(text) = value else {
        return Ok(Some(Duration::from_secs(RESYNC_DEFAULT)));
    };
    match text.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(n) if n <= RESYNC_MAX => Ok(Some(Duration::from_secs(n))),
        _ => Err(AgentError::Resync(json::clip(&text))),
    }
}

/// An address literal only: a host name would make the agent's start wait
/// on DNS (and link glibc's resolver into the static binary). An IPv6
/// address may come without brackets, as the DaemonSet's
/// `$(HOST_IP):9981` gives it on an IPv6 node.
fn metrics_address(value: Option<String>) -> Result<Option<SocketAddr>, AgentError> {
    let Some(text) = value else {
        return Ok(None);
    };
    let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
        let (ip, port) = text.rsplit_once(':')?;
        Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
    });
    parsed
        .map(Some)
        .ok_or_else(|| AgentError::MetricsAddress(json::clip(&text)))
}

fn netns_dirs(args: &mut Args) -> Result<Vec<PathBuf>, ArgsError> {
    let given = values(args, "--netns-dir")?;
    Ok(if given.is_empty() {
        DEFAULT_NETNS_DIRS.iter().map(PathBuf::from).collect()
    } else {
        given.into_iter().map(PathBuf::from).collect()
    })
}

fn state_file(args: &mut Args) -> Result<PathBuf, ArgsError> {
    Ok(PathBuf::from(
        args.value("--state-file")?
            .unwrap_or_else(|| DEFAULT_STATE_FILE.to_string()),
    ))
}

impl Options {
    fn parse(args: &mut Args) -> Result<Self, AgentError> {
        let config_path = args.value("--config")?.map(PathBuf::from);
        let mut config = match &config_path {
            Some(path) => config::load_file(path)?,
            None => Config::default(),
        };
        config.node_name = config::node_name_from(args.value("--node-name")?)?;
        let resync = resync(args.value("--resync")?)?;
        Ok(Self {
            config,
            config_path,
            once: args.flag("--once"),
            dry_run: args.flag("--dry-run"),
            scope: Scope {
                bridges: values(args, "--bridge")?,
                names: globs(args, "--ifname")?,
                exclude: globs(args, "--exclude-ifname")?,
            },
            netns_dirs: netns_dirs(args)?,
            scan_processes: !args.flag("--no-proc"),
            state_file: state_file(args)?,
            metrics_address: metrics_address(args.value("--metrics-address")?)?,
            textfile: args.value("--textfile")?.map(PathBuf::from),
            resync,
            restore_uplink_on_exit: args.flag("--restore-uplink-on-exit"),
        })
    }
}

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
            let stopped = daemon(agent, &opts, signals)?;
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
        if let Some(name) = wait_for_stop(signals, PRESENCE_RETRY) {
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
        if let Some(name) = wait_for_stop(signals, LOCK_RETRY) {
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
            Checked::Changed(t) => ("changed", Some(t.clone())),
            Checked::WouldChange(t) => ("would change", Some(t.clone())),
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

/// The daemon: a full pass, then events until SIGTERM or SIGINT.
/// The daemon's kinds of work, each with its deadline.
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

fn daemon(mut agent: Agent, opts: &Options, signals: SignalFd) -> Result<String, AgentError> {
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
        let mut check = BTreeSet::new();
        // Host ends whose peer entry must be read again.
        let mut refresh = BTreeSet::new();
        for event in events {
            match event {
                Event::Link { nsid: None, link } if scan::is_container_veth(&link) => {
                    peers.note(&link);
                    check.insert(link.index);
                    // A veth uplink (a kind node's eth0) looks like one.
                    if agent.config.placement == crate::config::Placement::Uplink
                        && agent.is_uplink_device(&link.name)
                    {
                        timers.unless_set(Job::FullPass, Instant::now());
                    }
                }
                Event::Link { nsid: None, link } => {
                    // Not a container's veth: maybe the uplink (a NIC
                    // plugged, renamed, enslaved).
                    if !link.is_veth() {
                        timers.unless_set(Job::Redetect, Instant::now() + REDETECT_DELAY);
                    }
                    // Under apply "uplink", a NIC's features changed (the
                    // kernel tells every feature change): look again.
                    if agent.config.placement == crate::config::Placement::Uplink
                        && agent.is_uplink_device(&link.name)
                    {
                        timers.unless_set(Job::FullPass, Instant::now());
                    }
                }
                Event::Link {
                    nsid: Some(nsid),
                    link,
                } => {
                    // A container end changed (a feature, a rename).
                    if let Some(host) = peers.host_of(nsid, link.index) {
                        check.insert(host);
                    }
                }
                Event::LinkGone {
                    nsid: None,
                    index,
                    peer_of_moved,
                } => {
                    peers.forget(index);
                    agent.forget(index);
                    match peer_of_moved {
                        // The container end went into its netns: the end
                        // that stayed is a container's veth now.
                        Some(host) => {
                            check.insert(host);
                            refresh.insert(host);
                        }
                        None => {
                            timers.unless_set(Job::Redetect, Instant::now() + REDETECT_DELAY);
                        }
                    }
                }
                Event::LinkGone { .. } => {}
                Event::Routing => {
                    timers.unless_set(Job::Redetect, Instant::now() + REDETECT_DELAY);
                }
            }
        }
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

/// Container ends by (netns id, ifindex), to find the pair of an event
/// from a container's netns. Rebuilt at every full pass and kept current
/// by the host's link events; an id is never trusted past its pair.
#[derive(Default)]
struct Peers(BTreeMap<(i32, u32), u32>);

impl Peers {
    fn rebuild(&mut self, agent: &mut Agent) {
        self.0.clear();
        if let Ok(pairs) = agent.pairs() {
            for link in pairs {
                self.note(&link);
            }
        }
    }

    fn note(&mut self, host_end: &crate::kernel::link::Link) {
        if let (Some(nsid), Some(peer)) = (host_end.link_netnsid, host_end.link) {
            self.0.retain(|_, h| *h != host_end.index);
            self.0.insert((nsid, peer), host_end.index);
        }
    }

    fn forget(&mut self, host_index: u32) {
        self.0.retain(|_, h| *h != host_index);
    }

    fn host_of(&self, nsid: i32, index: u32) -> Option<u32> {
        self.0.get(&(nsid, index)).copied()
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
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, AgentError> {
        Options::parse(&mut Args::new(args.iter().map(|s| s.to_string()).collect()))
    }

    fn refused(args: &[&str]) -> AgentError {
        match parse(args) {
            Ok(_) => panic!("{args:?} must be refused"),
            Err(e) => e,
        }
    }

    #[test]
    fn metrics_address_is_an_address_literal() {
        let address = |args: &[&str]| parse(args).map(|o| o.metrics_address).ok();
        assert_eq!(address(&[]), Some(None));
        assert_eq!(
            address(&["--metrics-address", "10.0.0.7:9981"]),
            Some(Some("10.0.0.7:9981".parse().unwrap()))
        );
        assert_eq!(
            address(&["--metrics-address=[::1]:0"]),
            Some(Some("[::1]:0".parse().unwrap()))
        );
        // $(HOST_IP):9981 on an IPv6 node.
        assert_eq!(
            address(&["--metrics-address", "fd00:10::7:9981"]),
            Some(Some("[fd00:10::7]:9981".parse().unwrap()))
        );
        // A name would be resolved through DNS at start.
        for bad in [
            "localhost:9981",
            "node-a:9981",
            "10.0.0.7",
            ":9981",
            "",
            "10.0.0.7:99999",
            "[::1]",
        ] {
            let e = refused(&["--metrics-address", bad]);
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(
                e.to_string()
                    .starts_with("--metrics-address must be an IP address and port"),
                "{e}"
            );
        }
    }

    #[test]
    fn resync_is_bounded_and_zero_means_events_only() {
        let resync = |args: &[&str]| parse(args).map(|o| o.resync).ok();
        assert_eq!(resync(&[]), Some(Some(Duration::from_secs(300))));
        assert_eq!(resync(&["--resync", "0"]), Some(None));
        assert_eq!(
            resync(&["--resync", "1"]),
            Some(Some(Duration::from_secs(1)))
        );
        assert_eq!(
            resync(&["--resync=86400"]),
            Some(Some(Duration::from_secs(86_400)))
        );
        // u64::MAX was taken, and overflowed `Instant::now() + resync`.
        for bad in [
            "18446744073709551615",
            "86401",
            "-1",
            "abc",
            "",
            "1.5",
            " 5",
        ] {
            let e = refused(&["--resync", bad]);
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert_eq!(
                e.to_string(),
                format!(
                    "--resync must be a whole number of seconds from 0 (events only) to 86400, got {bad:?}"
                )
            );
        }
    }

    #[test]
    fn ifname_flags_are_globs_parsed_up_front() {
        let opts = parse(&["--ifname", "hx*", "--exclude-ifname", "hxa[0-9]"]).ok();
        let scope = opts.map(|o| o.scope).unwrap();
        assert_eq!(scope.names[0].as_str(), "hx*");
        assert!(scope.exclude[0].matches("hxa7") && !scope.exclude[0].matches("hxab"));
        for (flag, pattern, why) in [
            ("--exclude-ifname", "hxa[0-9", "a '[' without its ']'"),
            (
                "--ifname",
                "hxa[9-0]",
                "the range '9-0' is reversed (write '0-9')",
            ),
            ("--exclude-ifname", "", "an empty pattern matches no name"),
        ] {
            let e = refused(&[flag, pattern]);
            assert_eq!(e.exit_code(), 2);
            assert_eq!(
                e.to_string(),
                format!("{flag} {pattern:?}: {why}; see docs/configuration.md#globs"),
            );
        }
    }
}
