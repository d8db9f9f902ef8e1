//! The churn soak: the node agent (`agent`, a daemon) and the plugin (CNI
//! ADD) under many container veth pairs created and deleted, netlink
//! bursts that overflow the agent's socket, config reloads and SIGKILLs
//! at random points, in a lab of its own (a private host netns and a pool
//! of private container netns; the real host is never touched).
//!
//! What it asserts, round after round:
//! - every pair in the lab ends fixed (the project's own read-back, `agent
//!   --once --dry-run`, finds nothing to change) or reported (a pair it
//!   cannot set is named in the daemon's log), and the agent sees all of
//!   them (the dry run counts exactly the pairs the lab holds);
//! - a forced overflow (the agent stopped with SIGSTOP while links flap,
//!   until the kernel's own drop counter for its socket moves) is
//!   answered by a full pass that fixes exactly the pairs made or
//!   drifted while the events were lost;
//! - config reloads (valid ones applied, an invalid one refused and the
//!   last valid one kept) in the middle of the churn;
//! - after each SIGKILL (at a seeded random delay into a batch), the
//!   journal holds a record for every end the agent changed, and `agent
//!   restore` puts back exactly those ends (the whole feature table equal
//!   to a fresh veth's, and `ethtool -k` agrees on a sample) and touches
//!   nothing else;
//! - the daemon's RSS and open fds stay flat (bounds below).
//!
//! The size comes from the environment, so `make soak` runs the long
//! version and `cargo test` this short one: SOAK_PAIRS (pairs created in
//! all), SOAK_LIVE (at most this many at once), SOAK_BATCH (made per
//! round), SOAK_KILLS, SOAK_BURSTS, SOAK_RELOADS, SOAK_SEED (printed, so a
//! failing run can be repeated). The figures are printed at the end
//! (`--nocapture`), as docs/performance.md quotes them. SOAK_BIN names
//! the binary to soak (default: the test build).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// RSS may end a daemon run at most this much above its first sample
/// (taken during its first round) before the soak calls it a leak. What
/// legitimately grows: the peer map, the netns index and the conforming
/// set, with the live pairs (up to SOAK_LIVE, so a run that starts with
/// the live set still filling grows most), and the heap glibc keeps after
/// an overflow's backlog is freed (once, whatever the number of
/// overflows). The full soak's runs ended at most 2.1 MiB up
/// (docs/performance.md); a leak of 650 bytes per pair churned would pass
/// 3 MiB over its 5000 pairs.
const RSS_SLACK_KB: u64 = 3072;
/// RSS may peak this much above the first sample: after an overflow the
/// agent reads the whole socket backlog (a 4 MiB buffer, the kernel
/// counting twice that) as events before it acts, and frees them after.
const RSS_PEAK_SLACK_KB: u64 = 8192;
/// Open fds may differ from the first sample by this many (a netns file
/// or a socket held across a sample).
const FD_SLACK: usize = 4;
/// The longest the agent may take to catch up with one round.
const SETTLE: Duration = Duration::from_secs(60);
/// Container netns that hold the churned pairs' container ends.
const POOL: usize = 16;

/// The binary under test: SOAK_BIN (`make soak` passes the static
/// release build it ships), else the one cargo built for the tests.
fn binary() -> String {
    std::env::var("SOAK_BIN").unwrap_or_else(|_| BIN.to_string())
}

struct Params {
    pairs: usize,
    live: usize,
    batch: usize,
    kills: usize,
    bursts: usize,
    reloads: usize,
    seed: u64,
}

impl Params {
    fn from_env() -> Self {
        let num = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
                Err(_) => default,
            }
        };
        let seed = num(
            "SOAK_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        );
        let p = Params {
            pairs: num("SOAK_PAIRS", 300) as usize,
            live: num("SOAK_LIVE", 100) as usize,
            batch: num("SOAK_BATCH", 50) as usize,
            kills: num("SOAK_KILLS", 1) as usize,
            bursts: num("SOAK_BURSTS", 1) as usize,
            reloads: num("SOAK_RELOADS", 2) as usize,
            seed,
        };
        assert!(p.batch > 0 && p.live >= p.batch && p.pairs >= p.batch);
        let rounds = p.pairs.div_ceil(p.batch);
        assert!(
            p.kills + p.bursts + p.reloads < rounds,
            "more events than rounds ({rounds})"
        );
        p
    }
}

/// splitmix64: a seeded sequence, so the kill points can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `count` distinct numbers from `range`, in order.
    fn pick(&mut self, count: usize, range: std::ops::Range<usize>) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        while out.len() < count {
            out.insert(range.start + self.below((range.end - range.start) as u64) as usize);
        }
        out
    }
}

/// Counts the link events the kernel sends to a listener like the
/// agent's (RTNLGRP_LINK, every netns with an id), with a buffer large
/// enough not to drop them; a drop is counted, not hidden.
struct EventCounter {
    events: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventCounter {
    /// Opens the socket in the calling thread's netns.
    fn start() -> Self {
        // SAFETY: socket(2); the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        assert!(
            raw >= 0,
            "netlink socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `raw` is a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
            // SAFETY: a c_int option value of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    level,
                    name,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
        };
        set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 256 << 20);
        // SAFETY: a zeroed sockaddr_nl is valid; the fields are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: bind(2) with a sockaddr_nl of its own size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        set(libc::SOL_NETLINK, libc::NETLINK_LISTEN_ALL_NSID, 1);
        let events = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, d, s) = (events.clone(), dropped.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while !s.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll(2) on one pollfd we own.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    continue;
                }
                // SAFETY: recv(2) into our own buffer, within its length.
                let n = unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                // Every netlink message in the datagram.
                let mut at = 0usize;
                let n = n as usize;
                while at + 16 <= n {
                    let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    if len < 16 {
                        break;
                    }
                    e.fetch_add(1, Ordering::Relaxed);
                    at += (len + 3) & !3;
                }
            }
        });
        EventCounter {
            events,
            dropped,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.events.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// VmRSS (kB) and open fds of a process.
fn footprint(pid: i32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// The kernel's count of messages dropped on `pid`'s netlink sockets
/// (the Drops column of /proc/PID/net/netlink, for the sockets among its
/// fds): the independent witness of ENOBUFS.
fn netlink_drops(pid: i32) -> u64 {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/netlink")).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            (cols.len() >= 10 && inodes.contains(cols[9])).then(|| cols[8].parse::<u64>().ok())?
        })
        .sum()
}

/// One run of the daemon and what was sampled of it: (VmRSS kB, fds).
struct Run {
    daemon: Daemon,
    samples: Vec<(u64, usize)>,
}

struct Soak {
    lab: Lab,
    scratch: Scratch,
    config: String,
    state: String,
    /// Churned pairs alive now, by number (host end `skc<n>`, container
    /// end `c<n>` in pool netns `n % POOL`).
    live: std::collections::VecDeque<usize>,
    /// Pairs the plugin's ADD set (not journaled by design).
    plugin_set: BTreeSet<usize>,
    reference: Vec<(String, bool, bool)>,
    reference_ethtool: String,
    /// The netns of the reference veth, deleted with the soak.
    _ref_netns: NamedNetns,
    /// The running daemon's run (one at a time; a Vec so a kill can take
    /// it out).
    runs: Vec<Run>,
    /// The samples of the runs that were killed.
    finished: Vec<Vec<(u64, usize)>>,
    /// The logs of the runs that were killed.
    logs: String,
}

fn host_of(n: usize) -> String {
    format!("skc{n}")
}

/// The host end's name in an agent log or output line
/// (`<host> / <ifname> in <netns>: ...`).
fn host_in(line: &str) -> Option<&str> {
    let msg = line.split_once("] agent: ").map_or(line, |(_, m)| m);
    let msg = msg.strip_prefix("FAILED ").unwrap_or(msg);
    msg.split_once(" / ").map(|(h, _)| h)
}

impl Soak {
    fn pool_netns(&self, n: usize) -> &str {
        &self.lab.pods[n % POOL]
    }

    /// Every pair the agent should see: the pool's own plus the churned.
    fn all_pairs(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = (0..POOL)
            .map(|i| {
                (
                    self.lab.host_if_of(i),
                    POD_IF.to_string(),
                    self.lab.pods[i].clone(),
                )
            })
            .collect();
        out.extend(
            self.live
                .iter()
                .map(|&n| (host_of(n), format!("c{n}"), self.pool_netns(n).to_string())),
        );
        out
    }

    fn start_agent(&mut self) {
        let log = self.scratch.path(&format!("agent-{}.log", self.runs.len()));
        let mut cmd = Command::new(binary());
        cmd.args([
            "agent",
            "--config",
            &self.config,
            "--state-file",
            &self.state,
            "--no-proc",
            "--log-level",
            "debug",
        ])
        .env_remove("CNI_COMMAND");
        let daemon = Daemon::spawn(&mut cmd, log);
        daemon.wait_log("full pass:");
        self.runs.push(Run {
            daemon,
            samples: Vec::new(),
        });
    }

    fn agent(&self) -> &Daemon {
        &self.runs.last().unwrap().daemon
    }

    fn sample(&mut self) {
        let run = self.runs.last_mut().unwrap();
        run.samples.push(footprint(run.daemon.pid()));
    }

    /// `agent --once --dry-run` over the lab: (pairs, would change,
    /// failed, the lines of failed pairs).
    fn dry_run(&self) -> (usize, usize, usize, Vec<String>) {
        let mut cmd = Command::new(binary());
        cmd.args([
            "agent",
            "--once",
            "--dry-run",
            "--config",
            &self.config,
            "--no-proc",
        ])
        .env_remove("CNI_COMMAND");
        let out = output_within(&mut cmd, HANG, "agent --once --dry-run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = text
            .lines()
            .find(|l| l.contains(" container veth pairs: "))
            .unwrap_or_else(|| panic!("no summary in the dry run:\n{text}"));
        let num = |after: &str| -> usize {
            let i = summary
                .find(after)
                .unwrap_or_else(|| panic!("{after} in {summary}"));
            summary[..i]
                .rsplit([' ', ','])
                .find(|w| !w.is_empty())
                .unwrap()
                .parse()
                .unwrap()
        };
        let pairs = summary.split(' ').next().unwrap().parse().unwrap();
        let failed: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("FAILED "))
            .map(String::from)
            .collect();
        (pairs, num(" would change"), num(" failed"), failed)
    }

    /// Waits until the read-back finds nothing to change, and checks that
    /// every pair is seen and every one that cannot be set is reported.
    /// Samples the daemon's footprint at every look, so the peaks while
    /// it works are in the figures.
    fn settle(&mut self, what: &str) {
        let deadline = Instant::now() + SETTLE;
        let want = self.all_pairs().len();
        loop {
            self.sample();
            let (pairs, would, failed, lines) = self.dry_run();
            if would == 0 && pairs == want {
                let log = self.agent().log();
                for line in &lines {
                    let host = host_in(line).unwrap_or(line);
                    assert!(
                        log.lines()
                            .any(|l| l.contains(" WARN ") && l.contains(host)),
                        "{what}: {line} is not reported by the agent"
                    );
                }
                assert_eq!(failed, lines.len());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: after {SETTLE:?}, {would} of {pairs} pairs (want {want}) still to change"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn create(&mut self, from: usize, count: usize) {
        let mut lines = Vec::new();
        for n in from..from + count {
            lines.push(format!(
                "link add {} type veth peer name c{n} netns {}",
                host_of(n),
                self.pool_netns(n)
            ));
            lines.push(format!("link set {} up", host_of(n)));
            self.live.push_back(n);
        }
        ip_batch(None, &lines);
    }

    fn delete_down_to(&mut self, keep: usize) {
        let mut lines = Vec::new();
        while self.live.len() > keep {
            let n = self.live.pop_front().unwrap();
            lines.push(format!("link del {}", host_of(n)));
        }
        if !lines.is_empty() {
            ip_batch(None, &lines);
        }
    }

    /// The plugin's ADD on pair `n`, as a runtime runs it.
    fn plugin_add(&mut self, n: usize) {
        let netns = format!("/run/netns/{}", self.pool_netns(n));
        let env = [
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", format!("soak-{n}")),
            ("CNI_NETNS", netns.clone()),
            ("CNI_IFNAME", format!("c{n}")),
            ("CNI_PATH", "/usr/lib/cni".to_string()),
        ];
        let conf = conf(
            "1.0.0",
            json!({"hostDriver": "txgbe"}),
            Some(prev_result("1.0.0", &netns)),
        );
        let mut child = Command::new(binary())
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the plugin");
        // The conf is small; the plugin reads it all before it writes.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = finish_within(child, HANG, &format!("ADD on pair {n}"));
        assert!(
            out.status.success(),
            "ADD on pair {n}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.plugin_set.insert(n);
    }

    fn write_config(&self, text: &str) {
        // As kubelet swaps a ConfigMap: a new file renamed over the old.
        let tmp = self.scratch.path("config.json.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Overflows the agent's socket and checks the full pass that follows
    /// fixes exactly the pairs whose events were lost. Returns how many it
    /// caught.
    fn burst(&mut self, next: &mut usize, rng: &mut Rng) -> usize {
        self.settle("before a burst");
        let pid = self.agent().pid();
        let warnings = |log: &str| log.matches("the kernel dropped events").count();
        let before_warnings = warnings(&self.agent().log());
        let drops_before = netlink_drops(pid);
        self.agent().send(libc::SIGSTOP);
        // While it sleeps: new pairs, and drift on pairs it had fixed
        // (outside the plugin's, so the full pass is what sets them).
        let fresh = 10.min(self.live.len());
        let new: Vec<usize> = (*next..*next + fresh).collect();
        self.create(*next, fresh);
        *next += fresh;
        let candidates: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|n| !self.plugin_set.contains(n) && !new.contains(n))
            .collect();
        let drifted: Vec<usize> = rng
            .pick(5.min(candidates.len()), 0..candidates.len())
            .into_iter()
            .map(|i| candidates[i])
            .collect();
        for &n in &drifted {
            run(
                "ethtool",
                &["-K", &host_of(n), "tx-checksum-ip-generic", "on"],
            );
        }
        // Link flaps until the kernel says it dropped messages for the
        // agent (bounded).
        let mut flaps = 0;
        while netlink_drops(pid) == drops_before {
            assert!(flaps < 100, "no overflow after {flaps} rounds of flaps");
            let mut lines = Vec::new();
            for state in ["down", "up"] {
                for n in &self.live {
                    lines.push(format!("link set {} {state}", host_of(*n)));
                }
            }
            ip_batch(None, &lines);
            flaps += 1;
        }
        let drops = netlink_drops(pid) - drops_before;
        self.agent().send(libc::SIGCONT);
        wait_until(
            "the agent's answer to the overflow",
            Duration::from_secs(30),
            || warnings(&self.agent().log()) > before_warnings,
        );
        // The change lines between the warning and the end of the full
        // pass it started (whose last pairs may still be being read when
        // the read-back already finds every pair set).
        let after_warning = |log: &str| -> Option<String> {
            let (i, _) = log
                .match_indices("the kernel dropped events")
                .nth(before_warnings)?;
            let after = &log[i..];
            Some(after[..after.find("full pass:")?].to_string())
        };
        wait_until(
            "the end of the full pass after the overflow",
            Duration::from_secs(30),
            || after_warning(&self.agent().log()).is_some(),
        );
        self.settle("after a burst");
        let pass = after_warning(&self.agent().log()).unwrap();
        let caught: BTreeSet<String> = pass
            .lines()
            .filter(|l| l.contains("; changed "))
            .filter_map(|l| host_in(l).map(String::from))
            .collect();
        let want: BTreeSet<String> = new.iter().chain(&drifted).map(|&n| host_of(n)).collect();
        assert_eq!(
            caught, want,
            "the full pass after the overflow fixes exactly the new and drifted pairs"
        );
        println!(
            "burst: agent stopped, {fresh} new and {} drifted pairs, {flaps} flap rounds, \
             kernel dropped {drops} messages; the full pass caught {}",
            drifted.len(),
            caught.len()
        );
        caught.len()
    }

    /// SIGKILL, then the journal and restore checks (`restore_exactly`);
    /// starts a new agent on the same journal.
    fn kill_and_restore(&mut self) -> Restored {
        self.sample();
        let killed = self.runs.pop().unwrap();
        killed.daemon.send(libc::SIGKILL);
        let log = killed.daemon.log.clone();
        let status = killed.daemon.wait(Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        self.logs.push_str(&std::fs::read_to_string(&log).unwrap());
        self.finished.push(killed.samples);
        let restored = self.restore_exactly();
        self.start_agent();
        restored
    }

    /// With no agent running: every end the agent changed has a journal
    /// record; `agent restore` puts back exactly the journaled ends and
    /// moves nothing else.
    fn restore_exactly(&mut self) -> Restored {
        // What the journal says was changed: (host end, "host"/"container").
        let text = std::fs::read_to_string(&self.state).unwrap();
        let records: Vec<Value> = text
            .lines()
            .skip(1)
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["end"].is_string())
            .collect();
        let journaled: BTreeSet<(String, String)> = records
            .iter()
            .map(|r| {
                (
                    r["host"].as_str().unwrap().to_string(),
                    r["end"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let cut = text
            .lines()
            .skip(1)
            .filter(|l| !serde_json::from_str::<Value>(l).is_ok_and(|v| v["end"].is_string()))
            .count();
        let pairs = self.all_pairs();
        let read = |(host, ifname, netns): &(String, String, String)| {
            let path = PathBuf::from(format!("/run/netns/{netns}"));
            (
                read_features(Some(&path), ifname),
                read_features(None, host),
            )
        };
        let before: Vec<_> = pairs.iter().map(read).collect();
        // Write-ahead: no end differs from a fresh veth without a record,
        // except the plugin's (it keeps no journal; its pods' pairs die
        // with them).
        for (pair, (c, h)) in pairs.iter().zip(&before) {
            let by_plugin = pair
                .0
                .strip_prefix("skc")
                .and_then(|n| n.parse().ok())
                .is_some_and(|n: usize| self.plugin_set.contains(&n));
            for (end, table) in [("container", c), ("host", h)] {
                if table != &self.reference && !by_plugin {
                    assert!(
                        journaled.contains(&(pair.0.clone(), end.to_string())),
                        "{end} end of {} was changed without a journal record",
                        pair.0
                    );
                }
            }
        }
        let mut cmd = Command::new(binary());
        cmd.args(["agent", "restore", "--state-file", &self.state, "--no-proc"])
            .env_remove("CNI_COMMAND");
        let out = output_within(&mut cmd, HANG, "agent restore");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let live: BTreeSet<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        let restored = records
            .iter()
            .filter(|r| live.contains(r["host"].as_str().unwrap()))
            .count();
        let gone = records.len() - restored;
        let summary = format!(
            "{restored} restored, {gone} gone, 0 failed, {cut} unreadable; {cut} records left"
        );
        assert!(
            stdout.contains(&summary),
            "want {summary:?}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(if cut > 0 { 1 } else { 0 }));
        // Exactly what was changed goes back; nothing else moves.
        let after: Vec<_> = pairs.iter().map(read).collect();
        for ((pair, (c0, h0)), (c1, h1)) in pairs.iter().zip(&before).zip(&after) {
            for (end, was, now) in [("container", c0, c1), ("host", h0, h1)] {
                let want = if journaled.contains(&(pair.0.clone(), end.to_string())) {
                    &self.reference
                } else {
                    was
                };
                assert_eq!(now, want, "{end} end of {} after restore", pair.0);
            }
        }
        // An independent reader agrees, on a sample of restored ends.
        for (host, end) in journaled
            .iter()
            .filter(|(h, _)| live.contains(h.as_str()))
            .take(8)
        {
            let (_, ifname, netns) = pairs.iter().find(|p| &p.0 == host).unwrap();
            let k = if end == "host" {
                run("ethtool", &["-k", host])
            } else {
                run("ip", &["netns", "exec", netns, "ethtool", "-k", ifname])
            };
            assert_eq!(
                strip_name(&k),
                strip_name(&self.reference_ethtool),
                "ethtool -k of the {end} end of {host}"
            );
        }
        println!(
            "restore: journal {} records ({cut} cut lines); {restored} restored, {gone} gone",
            records.len()
        );
        Restored {
            records: records.len(),
            restored,
            gone,
            journaled: journaled.into_iter().map(|(h, _)| h).collect(),
        }
    }
}

/// What one restore found and did.
#[derive(Default)]
struct Restored {
    records: usize,
    restored: usize,
    gone: usize,
    /// Host ends with a record.
    journaled: BTreeSet<String>,
}

/// `ethtool -k` output without its first line (which names the device).
fn strip_name(k: &str) -> String {
    k.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn churn_soak() {
    let p = Params::from_env();
    let started = Instant::now();
    let mut rng = Rng(p.seed);
    let rounds = p.pairs.div_ceil(p.batch);
    println!(
        "soak: seed {} (SOAK_SEED={} repeats it), {} pairs in {rounds} rounds of {}, at most {} live, \
         {} kills, {} bursts, {} reloads",
        p.seed, p.seed, p.pairs, p.batch, p.live, p.kills, p.bursts, p.reloads
    );
    // Every event its own round, after the first (the warm-up).
    let mut slots: Vec<usize> = rng
        .pick(p.kills + p.bursts + p.reloads, 1..rounds)
        .into_iter()
        .collect();
    // Shuffle which slot gets which event.
    for i in (1..slots.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        slots.swap(i, j);
    }
    let kills: BTreeSet<usize> = slots[..p.kills].iter().copied().collect();
    let bursts: BTreeSet<usize> = slots[p.kills..p.kills + p.bursts].iter().copied().collect();
    let reloads: BTreeSet<usize> = slots[p.kills + p.bursts..].iter().copied().collect();
    println!("soak: kills at rounds {kills:?}, bursts at {bursts:?}, reloads at {reloads:?}");

    // A fresh veth's features, in a netns of its own that no agent sees.
    let ref_guard = NamedNetns::add(format!("soakref-{}", std::process::id()));
    let ref_netns = ref_guard.0.clone();
    run(
        "ip",
        &[
            "-n", &ref_netns, "link", "add", "ref0", "type", "veth", "peer", "name", "ref1",
        ],
    );
    let reference = read_features(Some(Path::new(&format!("/run/netns/{ref_netns}"))), "ref0");
    let reference_ethtool = run(
        "ip",
        &["netns", "exec", &ref_netns, "ethtool", "-k", "ref0"],
    );

    let lab = Lab::with_pods("sk", POOL);
    let counter = EventCounter::start();
    let scratch = Scratch::new("soak");
    let config_a = json!({"hostDriver": "txgbe"}).to_string();
    let config_b = json!({"hostDriver": "txgbe", "detectionFailure": "skip"}).to_string();
    let config = scratch.config(serde_json::from_str(&config_a).unwrap());
    let state = scratch.state();
    let mut soak = Soak {
        lab,
        scratch,
        config,
        state,
        live: Default::default(),
        plugin_set: BTreeSet::new(),
        reference,
        reference_ethtool,
        _ref_netns: ref_guard,
        runs: Vec::new(),
        finished: Vec::new(),
        logs: String::new(),
    };
    soak.start_agent();
    // The number of the next pair: every pair made so far.
    let mut next = 0usize;
    let mut caught = 0usize;
    let mut journal = (0, 0, 0);
    let mut reloads_done = 0usize;
    let mut refused = 0usize;
    for round in 0..rounds {
        let count = p.batch.min(p.pairs.saturating_sub(next)).max(1);
        soak.create(next, count);
        let batch: Vec<usize> = (next..next + count).collect();
        next += count;
        if kills.contains(&round) {
            // A random point while the agent works through the batch
            // (about 0.5 ms a pair, docs/agent.md#cost).
            let delay = rng.below(count as u64 * 600);
            println!("round {round}: SIGKILL {delay} µs after a batch of {count}");
            std::thread::sleep(Duration::from_micros(delay));
            let r = soak.kill_and_restore();
            let recorded = batch
                .iter()
                .filter(|&&n| r.journaled.contains(&host_of(n)))
                .count();
            println!("round {round}: the kill came after {recorded} of the batch's {count} new pairs were recorded");
            journal = (
                journal.0 + r.records,
                journal.1 + r.restored,
                journal.2 + r.gone,
            );
        }
        // The plugin's ADD on every fourth new pair, beside the agent.
        for n in batch.iter().copied().filter(|n| n % 4 == 0) {
            soak.plugin_add(n);
        }
        if reloads.contains(&round) {
            // A valid change, then an invalid one (refused, the valid one
            // kept), both under churn.
            reloads_done += 1;
            let text = if reloads_done % 2 == 1 {
                &config_b
            } else {
                &config_a
            };
            let applied = |soak: &Soak| soak.agent().log().matches("changed; applying it").count();
            let kept = |soak: &Soak| {
                soak.agent()
                    .log()
                    .matches("keeping the previous config")
                    .count()
            };
            let before = applied(&soak);
            soak.write_config(text);
            wait_until("the new config applied", Duration::from_secs(10), || {
                applied(&soak) > before
            });
            let before = kept(&soak);
            soak.write_config(r#"{"hostDriver": 7}"#);
            wait_until(
                "the invalid config refused",
                Duration::from_secs(10),
                || kept(&soak) > before,
            );
            refused += 1;
            soak.write_config(text);
            println!("round {round}: config reloaded, an invalid one refused");
        }
        soak.settle(&format!("round {round}"));
        if bursts.contains(&round) {
            caught += soak.burst(&mut next, &mut rng);
        }
        soak.delete_down_to(p.live);
        soak.sample();
    }
    soak.settle("the end");
    // The agent's own log must show an overflow for each forced one.
    let mut log = std::mem::take(&mut soak.logs);
    log.push_str(&soak.agent().log());
    let overflow_lines = log.matches("the kernel dropped events").count();
    assert!(
        overflow_lines >= p.bursts,
        "{overflow_lines} overflow warnings"
    );
    let applied = log.matches("changed; applying it").count();
    assert!(applied >= reloads_done, "{applied} reloads applied");
    let final_pid = soak.agent().pid();
    soak.sample();
    let final_drops = netlink_drops(final_pid);
    let last = soak.runs.pop().unwrap();
    let status = last.daemon.terminate();
    assert!(status.success(), "the agent stops cleanly on SIGTERM");
    // The last journal goes back too, exactly.
    let last_restore = soak.restore_exactly();
    let (events, counter_drops) = counter.finish();
    let (mut worst_rss, mut worst_peak) = (0i64, 0i64);
    // Footprint: every run of the daemon, flat after its first sample.
    soak.finished.push(last.samples);
    for (i, samples) in soak.finished.iter().enumerate() {
        if samples.len() < 2 {
            continue;
        }
        let (rss0, fd0) = samples[0];
        let peak_rss = samples.iter().map(|s| s.0).max().unwrap();
        let peak_fd = samples.iter().map(|s| s.1).max().unwrap();
        let (rss1, fd1) = *samples.last().unwrap();
        println!(
            "agent run {i}: {} samples; RSS start {rss0} kB, peak {peak_rss} kB, end {rss1} kB; \
             fds start {fd0}, peak {peak_fd}, end {fd1}",
            samples.len()
        );
        assert!(
            rss1 <= rss0 + RSS_SLACK_KB && peak_rss <= rss0 + RSS_PEAK_SLACK_KB,
            "RSS went {rss0} -> peak {peak_rss} -> {rss1} kB"
        );
        assert!(
            peak_fd <= fd0 + FD_SLACK && fd1.abs_diff(fd0) <= FD_SLACK,
            "fds went {fd0} -> peak {peak_fd} -> {fd1}"
        );
        worst_rss = worst_rss.max(rss1 as i64 - rss0 as i64);
        worst_peak = worst_peak.max(peak_rss as i64 - rss0 as i64);
    }
    println!(
        "soak: {next} pairs created ({} by the plugin's ADD), {} live at the end; \
         {events} link events heard (by the test's own listener, {counter_drops} of its reads \
         dropped); the agent logged {overflow_lines} overflows (kernel drop count on its last \
         socket: {final_drops}); bursts caught {caught} pairs in the full pass; {reloads_done} \
         reloads applied and {refused} invalid configs refused; {} kills: journal {} records, \
         {} restored, {} gone; final restore: {} records, {} restored, {} gone; RSS at most {worst_rss} kB above a run's start at its end, {worst_peak} kB at its peak; {:.1} s",
        soak.plugin_set.len(),
        soak.live.len(),
        p.kills,
        journal.0,
        journal.1,
        journal.2,
        last_restore.records,
        last_restore.restored,
        last_restore.gone,
        started.elapsed().as_secs_f64()
    );
}
