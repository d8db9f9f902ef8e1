//! One probe, in order: put back what a killed probe left (its record),
//! the uplink's facts, the path (a real pod's netns or a throwaway pod),
//! then per try one transfer with TX checksum offload off (the control)
//! and one with it on, the interface put back, the verdict.

use super::path::{PodNetns, Throwaway, POD_IF};
use super::toggle::{identity, Record, StateFile, TxToggle};
use super::{judge, Attempt, Mode, ProbeError, Verdict};
use crate::kernel::{netns, tcp};
use crate::offload::decision::{decide, Decision};
use crate::offload::wanted::Wanted;
use crate::offload::KernelError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Bytes per transfer when not given.
pub const DEFAULT_BYTES: u64 = 32 * 1024;
/// Tries when not given.
pub const DEFAULT_TRIES: u32 = 2;
/// Each transfer's bound when not given, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 1500;

/// What to probe, as the front end parsed it.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: SocketAddr,
    /// A real pod's netns; None: a throwaway pod with `source`.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// The throwaway pod's address (IPv4).
    pub source: Option<std::net::Ipv4Addr>,
    pub bytes: u64,
    pub tries: u32,
    /// Each transfer's bound.
    pub deadline: Duration,
    pub state_file: PathBuf,
}

/// What a probe found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub target: String,
    /// "throwaway pod 10.0.0.9 (csprobe123 / eth0)" or "eth0 in /run/netns/x".
    pub path: String,
    pub verdict: Verdict,
    pub meaning: &'static str,
    pub attempts: Vec<Attempt>,
    /// The interface's TX checksum bits before the probe (requested), as
    /// they were put back.
    pub features_before: BTreeMap<String, bool>,
    /// What this probe put back for a probe that had been killed.
    pub leftover_restored: Option<String>,
    /// The node's uplink NIC(s) and their facts.
    pub uplink: Option<Decision>,
    pub uplink_error: Option<String>,
    pub millis: u64,
}

/// Runs one probe. `config` only gives detection its `hostInterface`
/// (and `hostDriver`), as it does for `detect`.
pub fn probe<W: Wanted + ?Sized>(o: &Options, config: &W) -> Result<Report, ProbeError> {
    let started = Instant::now();
    let state = StateFile::lock(&o.state_file)?;
    let leftover_restored = state.restore_leftover()?;
    let (uplink, uplink_error) = match decide(config) {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let home = netns::current().map_err(|e| KernelError::new("opening this netns", e))?;
    let (mut path, shown) = match &o.netns {
        Some(file) => {
            let fd = netns::open(file).map_err(|e| {
                KernelError::new(&format!("opening the netns {}", file.display()), e)
            })?;
            let shown = format!("{} in {}", o.ifname, file.display());
            (Path::Pod(PodNetns::enter(fd, &home)?), shown)
        }
        None => {
            let (Some(source), IpAddr::V4(target)) = (o.source, o.target.ip()) else {
                return Err(ProbeError::NeedsSource);
            };
            let t = Throwaway::create(source, target, &home)?;
            let shown = format!("throwaway pod {source} ({} / {POD_IF})", t.host_if);
            (Path::Throwaway(t), shown)
        }
    };
    let ifname = match &o.netns {
        Some(_) => o.ifname.as_str(),
        None => POD_IF,
    };
    let pod = path.pod();
    let netns_shown = o
        .netns
        .as_ref()
        .map_or("the throwaway pod".to_string(), |p| p.display().to_string());
    let link = pod
        .socket
        .link_by_name(ifname)
        .map_err(|e| KernelError::new(&format!("looking up {ifname}"), e))?
        .ok_or_else(|| ProbeError::NoInterface {
            ifname: ifname.to_string(),
            netns: netns_shown.clone(),
        })?;
    let toggle = TxToggle::read(pod.socket.fd(), ifname, &netns_shown)?;
    if let Some(file) = &o.netns {
        // Written before the first change: a SIGKILL from here on leaves
        // a record the next probe puts back.
        let (dev, ino) = identity(&pod.fd)
            .map_err(|e| KernelError::new(&format!("stat {}", file.display()), e))?;
        state.write(&Record {
            netns: file.clone(),
            dev,
            ino,
            ifname: ifname.to_string(),
            ifindex: link.index,
            features: toggle.original().clone(),
        })?;
    }
    let measured = tries(o, &toggle, pod, &home);
    let put_back = toggle.restore();
    if put_back.is_ok() && o.netns.is_some() {
        state.clear()?;
    }
    put_back?;
    let attempts = measured?;
    let verdict = judge(&attempts);
    Ok(Report {
        target: o.target.to_string(),
        path: shown,
        verdict,
        meaning: verdict.meaning(),
        attempts,
        features_before: toggle.original().clone(),
        leftover_restored,
        uplink,
        uplink_error,
        millis: started.elapsed().as_millis() as u64,
    })
}

/// Where the transfers start from.
enum Path {
    Pod(PodNetns),
    /// Deletes its pod when dropped.
    Throwaway(Throwaway),
}

impl Path {
    fn pod(&mut self) -> &mut PodNetns {
        match self {
            Path::Pod(p) => p,
            Path::Throwaway(t) => &mut t.pod,
        }
    }
}

/// Every try: offload off (the control), then on; each transfer bounded
/// by `o.deadline`.
fn tries(
    o: &Options,
    toggle: &TxToggle<'_>,
    pod: &PodNetns,
    home: &std::os::fd::OwnedFd,
) -> Result<Vec<Attempt>, ProbeError> {
    let mut attempts = Vec::new();
    for try_number in 1..=o.tries {
        for mode in [Mode::Off, Mode::On] {
            toggle.set(mode)?;
            let began = Instant::now();
            let t = netns::run_in(&pod.fd, home, || {
                tcp::transfer(o.target, o.bytes, began + o.deadline)
            })
            .map_err(|e| KernelError::new("entering the pod's netns", e))?;
            attempts.push(Attempt {
                try_number,
                mode,
                bytes: o.bytes,
                bytes_acked: t.acked,
                millis: began.elapsed().as_millis() as u64,
                error: t.failure.map(|(stage, e)| format!("{}: {e}", stage.name())),
            });
        }
    }
    Ok(attempts)
}
