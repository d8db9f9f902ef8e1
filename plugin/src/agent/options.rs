//! The agent's command line: every option, parsed and checked before
//! anything is touched.

use super::error::AgentError;
use super::scan::{Scope, DEFAULT_NETNS_DIRS};
use super::state::DEFAULT_STATE_FILE;
use crate::args::{Args, ArgsError};
use crate::config::{self, Config};
use crate::glob::Glob;
use crate::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `--resync` when not given, in seconds.
const RESYNC_DEFAULT: u64 = 300;

/// The longest `--resync`: a day. A longer period is no different from
/// "events only" (0) in practice, and a bound keeps every deadline the
/// daemon computes from it far from `Instant`'s limits (an unbounded
/// value overflowed `now + resync` and took the daemon down).
const RESYNC_MAX: u64 = 86_400;

/// The agent's settings from the command line.
pub(super) struct Options {
    pub config: Config,
    /// Where `config` came from: watched, and read again when it changes
    /// (a ConfigMap update swaps kubelet's `..data` link in its directory).
    pub config_path: Option<PathBuf>,
    pub once: bool,
    pub dry_run: bool,
    pub scope: Scope,
    pub netns_dirs: Vec<PathBuf>,
    pub scan_processes: bool,
    pub state_file: PathBuf,
    pub metrics_address: Option<SocketAddr>,
    pub textfile: Option<PathBuf>,
    pub resync: Option<Duration>,
    /// Put the uplink NICs back when this agent stops and no other agent
    /// runs on the node (the DaemonSet's deletion, never its surge update).
    pub restore_uplink_on_exit: bool,
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
        _ => Err(AgentError::Resync {
            value: json::clip(&text),
            max: RESYNC_MAX,
        }),
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

pub(super) fn netns_dirs(args: &mut Args) -> Result<Vec<PathBuf>, ArgsError> {
    let given = values(args, "--netns-dir")?;
    Ok(if given.is_empty() {
        DEFAULT_NETNS_DIRS.iter().map(PathBuf::from).collect()
    } else {
        given.into_iter().map(PathBuf::from).collect()
    })
}

pub(super) fn state_file(args: &mut Args) -> Result<PathBuf, ArgsError> {
    Ok(PathBuf::from(
        args.value("--state-file")?
            .unwrap_or_else(|| DEFAULT_STATE_FILE.to_string()),
    ))
}

impl Options {
    pub(super) fn parse(args: &mut Args) -> Result<Self, AgentError> {
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
