//! `csum-offload probe`: parses the options, runs the core's probe
//! (`offload::probe::run`) and prints its report; the verdict is the exit
//! code (docs/probe.md).

use super::CliError;
use crate::args::{Args, ArgsError};
use crate::config::{self, Config};
use crate::offload::probe::run::{
    probe, Options, Report, DEFAULT_BYTES as BYTES, DEFAULT_TIMEOUT_MS as TIMEOUT_MS,
    DEFAULT_TRIES as TRIES,
};
use crate::offload::probe::toggle::STATE_FILE;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAX_BYTES: u64 = 16 * 1024 * 1024;
const MAX_TRIES: u32 = 10;

/// Runs `probe`; the text to print and the exit code (the verdict's).
pub fn probe_command(mut args: Args) -> Result<(String, i32), CliError> {
    let target = args
        .value("--target")?
        .ok_or(ArgsError::Missing("--target IP:PORT"))?;
    let target: SocketAddr = target
        .parse()
        .map_err(|_| CliError::Invalid("--target", format!("{target:?} is not IP:PORT")))?;
    let netns = args.value("--netns")?.map(PathBuf::from);
    let ifname = args.value("--ifname")?;
    let source =
        match args.value("--source")? {
            Some(s) => Some(s.parse().map_err(|_| {
                CliError::Invalid("--source", format!("{s:?} is not an IPv4 address"))
            })?),
            None => None,
        };
    let bytes = number(&mut args, "--bytes", BYTES, 1, MAX_BYTES)?;
    let tries = number(&mut args, "--tries", TRIES.into(), 1, MAX_TRIES.into())? as u32;
    let timeout = number(&mut args, "--timeout-ms", TIMEOUT_MS, 100, 10_000)?;
    let state_file = args
        .value("--state-file")?
        .map_or_else(|| PathBuf::from(STATE_FILE), PathBuf::from);
    let config = match args.value("--config")? {
        Some(path) => config::load_file(Path::new(&path))?,
        None => Config::default(),
    };
    let as_json = args.flag("--json");
    args.finish()?;
    match (&netns, &ifname, &source) {
        (Some(_), _, Some(_)) => return Err(ArgsError::Conflict("--netns", "--source").into()),
        (None, Some(_), _) => return Err(ArgsError::Conflict("--ifname", "a throwaway pod").into()),
        (None, None, None) => return Err(ArgsError::Missing("--netns PATH or --source IP").into()),
        _ => {}
    }
    if netns.is_none() && !target.is_ipv4() {
        return Err(CliError::Invalid(
            "--target",
            "a throwaway pod is IPv4 only; use --netns for an IPv6 target".into(),
        ));
    }
    if let Some(name) = &ifname {
        crate::kernel::link::check_ifname(name)
            .map_err(|e| CliError::Invalid("--ifname", e.to_string()))?;
    }
    let options = Options {
        target,
        netns,
        ifname: ifname.unwrap_or_else(|| "eth0".into()),
        source,
        bytes,
        tries,
        deadline: Duration::from_millis(timeout),
        state_file,
    };
    let report = probe(&options, &config)?;
    let code = report.verdict.exit_code();
    let text = if as_json {
        serde_json::to_string_pretty(&report)?
    } else {
        text_of(&report)
    };
    Ok((text, code))
}

fn number(
    args: &mut Args,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, CliError> {
    let Some(text) = args.value(name)? else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(CliError::Invalid(
            name,
            format!("{text:?} is not a number from {min} to {max}"),
        )),
    }
}

fn text_of(r: &Report) -> String {
    let mut t = format!(
        "probe {} from {}: {}\n  {}\n",
        r.target, r.path, r.verdict, r.meaning
    );
    for a in &r.attempts {
        let _ = write!(
            t,
            "  try {} offload {:>3}: {}/{} bytes acknowledged in {} ms",
            a.try_number, a.mode, a.bytes_acked, a.bytes, a.millis
        );
        if let Some(e) = &a.error {
            let _ = write!(t, " ({e})");
        }
        t.push('\n');
    }
    if let Some(done) = &r.leftover_restored {
        let _ = writeln!(t, "  before probing: {done}");
    }
    match (&r.uplink, &r.uplink_error) {
        (Some(d), _) => {
            for n in &d.nics {
                let _ = writeln!(
                    t,
                    "  uplink NIC {}: driver {} {} firmware {} pci {} bus {}, kernel {}",
                    or_dash(&n.name),
                    n.driver,
                    or_dash(&n.driver_version),
                    or_dash(&n.firmware_version),
                    or_dash(&n.pci_id),
                    or_dash(&n.bus_info),
                    d.kernel
                );
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(t, "  uplink NIC not detected: {e}");
        }
        (None, None) => {}
    }
    let _ = write!(
        t,
        "  took {} ms; the interface was put back as it was",
        r.millis
    );
    t
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}
