//! What each CNI verb does.

use super::env::{Attachment, Command};
use super::error::CniError;
use super::version;
use crate::config::{parse_envelope, FailurePolicy, NonVeth, PluginConfig};
use crate::detect::{self, Detection};
use crate::logger;
use crate::netlink::RouteSocket;
use crate::offload::{self, OpenError, Plan, PodSockets, Targets};

pub(super) fn dispatch(
    command: Command,
    stdin: &[u8],
    getenv: &dyn Fn(&str) -> Option<String>,
    reported_version: &mut String,
) -> Result<String, CniError> {
    match command {
        Command::Version => Ok(version_info()),
        Command::Del => del(stdin, getenv, reported_version),
        Command::Gc => gc(stdin, reported_version),
        Command::Status => {
            let conf = parse(stdin, reported_version)?;
            version::check_verb_allowed("STATUS", conf.version, &conf.cni_version)?;
            start_log(&conf, "STATUS".into());
            status(&conf)
        }
        Command::Add | Command::Check => add_or_check(command, stdin, getenv, reported_version),
    }
}

fn add_or_check(
    command: Command,
    stdin: &[u8],
    getenv: &dyn Fn(&str) -> Option<String>,
    reported_version: &mut String,
) -> Result<String, CniError> {
    let conf = parse(stdin, reported_version)?;
    version::check_verb_allowed(command.as_str(), conf.version, &conf.cni_version)?;
    let attachment = Attachment::from_env(command, getenv)?;
    start_log(
        &conf,
        format!(
            "{} {} {}",
            command.as_str(),
            attachment.short_id(),
            attachment.ifname
        ),
    );
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::InvalidConfig(format!(
            "{} requires prevResult: csum-offload is a chained plugin and must follow the plugin that creates the interface",
            command.as_str()
        ))
    })?;
    let output = prev_result_output(prev.get(), &conf.cni_version)?;
    pod_job(&conf, &attachment, command == Command::Check)?;
    Ok(if command == Command::Add {
        output
    } else {
        String::new()
    })
}

/// Parses stdin once; an error speaks the config's version when it has a
/// supported one.
fn parse(stdin: &[u8], reported_version: &mut String) -> Result<PluginConfig, CniError> {
    parse_envelope(stdin)
        .and_then(|(raw, v)| {
            if version::check_supported(&v).is_ok() {
                reported_version.clone_from(&v);
            }
            PluginConfig::from_envelope(raw, v)
        })
        .inspect_err(|_| logger::init(log::LevelFilter::Info, None, "config".into()))
}

fn start_log(conf: &PluginConfig, context: String) {
    logger::init(conf.log_level, conf.log_file.as_deref(), context);
}

fn version_info() -> String {
    serde_json::json!({ "cniVersion": version::CURRENT, "supportedVersions": version::SUPPORTED })
        .to_string()
}

/// ADD's output: prevResult exactly as received when it is already in the
/// config's version (the normal case: runtimes hand every plugin of a
/// chain the same version), else converted as libcni would.
fn prev_result_output(raw: &str, cni_version: &str) -> Result<String, CniError> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
        .map_err(|e| CniError::InvalidConfig(format!("prevResult: {e}")))?;
    if map.get("cniVersion").and_then(|v| v.as_str()) == Some(cni_version) {
        return Ok(raw.to_string());
    }
    let converted = version::convert_result(map, cni_version)?;
    serde_json::to_string(&converted).map_err(|e| CniError::Internal(e.to_string()))
}

/// DEL has nothing to undo: the veth pair dies with the pod's netns. It
/// still rejects input it cannot read, but never fails on a plugin setting:
/// a failing DEL stops the runtime's DEL of the whole chain, which would
/// leak the IPAM allocation of the plugins before us.
fn del(
    stdin: &[u8],
    getenv: &dyn Fn(&str) -> Option<String>,
    reported_version: &mut String,
) -> Result<String, CniError> {
    let (raw, v) = parse_envelope(stdin)?;
    version::check_supported(&v)?;
    reported_version.clone_from(&v);
    let attachment = Attachment::from_env(Command::Del, getenv)?;
    match PluginConfig::from_envelope(raw, v) {
        Ok(conf) => {
            start_log(
                &conf,
                format!("DEL {} {}", attachment.short_id(), attachment.ifname),
            );
            log::debug!("nothing to undo");
        }
        Err(e) => {
            logger::init(
                log::LevelFilter::Info,
                None,
                format!("DEL {}", attachment.short_id()),
            );
            log::warn!("ignoring invalid config on DEL: {e}");
        }
    }
    Ok(String::new())
}

/// GC: nothing is kept between invocations, so there is nothing to
/// collect. Like DEL it does not fail on a plugin setting it would reject.
fn gc(stdin: &[u8], reported_version: &mut String) -> Result<String, CniError> {
    let (raw, v) = parse_envelope(stdin)?;
    let parsed = version::check_supported(&v)?;
    reported_version.clone_from(&v);
    version::check_verb_allowed("GC", parsed, &v)?;
    if let Err(e) = PluginConfig::from_envelope(raw, v) {
        logger::init(log::LevelFilter::Info, None, "GC".into());
        log::warn!("ignoring invalid config on GC: {e}");
    }
    Ok(String::new())
}

/// The host NIC's settings: from `hostDriver` if set, else detected.
fn detection(conf: &PluginConfig) -> Result<Detection, CniError> {
    if let Some(driver) = &conf.host_driver {
        return Ok(Detection::from_driver(&conf.policy, driver)
            .ignoring_interface(conf.host_interface.as_deref()));
    }
    let mut socket =
        RouteSocket::open().map_err(|e| CniError::Internal(format!("netlink socket: {e}")))?;
    detect::detect(&mut socket, conf.host_interface.as_deref(), &conf.policy)
        .map_err(CniError::Detection)
}

/// STATUS: ready when the host NIC can be read (or is configured).
fn status(conf: &PluginConfig) -> Result<String, CniError> {
    match detection(conf) {
        Ok(_) => Ok(String::new()),
        Err(e) if conf.failure_policy == FailurePolicy::Ignore => {
            log::warn!("{e} (failurePolicy ignore: reporting ready)");
            Ok(String::new())
        }
        Err(e) => Err(CniError::NotAvailable(e.to_string())),
    }
}

/// Maps a kernel call's failure: transient errnos ask the runtime to retry.
fn io_error(what: &str, e: std::io::Error) -> CniError {
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::EINTR) => {
            CniError::TryAgain(format!("{what}: {e}"))
        }
        _ => CniError::Internal(format!("{what}: {e}")),
    }
}

/// Applies (ADD) or verifies (CHECK) the policy on the pod's veth pair.
/// Errors after the config and environment were accepted obey
/// failurePolicy; a wrong CNI_NETNS or CNI_IFNAME is the caller's error and
/// always fails.
fn pod_job(conf: &PluginConfig, attachment: &Attachment, check: bool) -> Result<(), CniError> {
    let result = PodSockets::open(&attachment.netns)
        .map_err(|e| match e {
            OpenError::Netns { .. } | OpenError::SameAsHost(_) => {
                CniError::InvalidEnv(e.to_string())
            }
            OpenError::Socket(io) => io_error("netlink socket", io),
        })
        .and_then(|mut sockets| settle(conf, attachment, check, &mut sockets));
    match result {
        Err(e)
            if conf.failure_policy == FailurePolicy::Ignore
                && !matches!(e, CniError::InvalidEnv(_)) =>
        {
            log::warn!("{e} (failurePolicy ignore: passing through)");
            Ok(())
        }
        other => other,
    }
}

fn settle(
    conf: &PluginConfig,
    attachment: &Attachment,
    check: bool,
    sockets: &mut PodSockets,
) -> Result<(), CniError> {
    let (targets, unreachable) = match offload::targets(sockets, &attachment.ifname, conf.apply)
        .map_err(|e| io_error("reading the pod's interface", e))?
    {
        Targets::Missing => {
            return Err(CniError::InvalidEnv(format!(
                "CNI_IFNAME {} does not exist in {}",
                attachment.ifname, attachment.netns
            )))
        }
        Targets::NotVeth(what) if conf.non_veth == NonVeth::Fail => {
            return Err(CniError::NotApplied(format!(
                "{what} is not a veth and nonVeth is \"fail\""
            )))
        }
        Targets::NotVeth(what) => {
            log::info!("{what} is not a veth; nothing to do");
            return Ok(());
        }
        Targets::Veth {
            targets,
            unreachable,
        } => (targets, unreachable),
    };
    let host = detection(conf)?;
    if let (Some(name), Some(driver)) = (&conf.host_interface, &conf.host_driver) {
        log::warn!("hostInterface {name} is not inspected: hostDriver {driver} is set");
    }
    let nics: Vec<String> = host
        .nics
        .iter()
        .map(|n| {
            if n.name.is_empty() {
                format!("hostDriver {}", n.driver)
            } else {
                format!("{} ({})", n.name, n.driver)
            }
        })
        .collect();
    if host.settings.is_empty() {
        log::info!("host NIC {}: policy changes nothing", nics.join(", "));
        return Ok(());
    }
    // A host end the policy covers but that cannot be found is never
    // "drift": it is reported as not applied.
    let unreached: Vec<String> = unreachable
        .iter()
        .map(|why| format!("host end: {why}"))
        .collect();
    let mut problems: Vec<String> = Vec::new();
    if let Some(first) = targets.first() {
        let plan =
            Plan::new(&host.settings, first).map_err(|e| io_error("reading feature names", e))?;
        for target in &targets {
            let label = format!("{} {}", target.side, target.ifname);
            if check {
                let found = plan.verify(target).map_err(|e| io_error(&label, e))?;
                problems.extend(found.iter().map(|p| format!("{label}: {p}")));
            } else {
                let outcome = plan.apply(target).map_err(|e| io_error(&label, e))?;
                log::info!(
                    "{label}: host NIC {} -> {}; changed: [{}]; kernel also changed: [{}]",
                    nics.join(", "),
                    host.settings,
                    outcome.changed.join(", "),
                    outcome.side_effects.join(", ")
                );
                problems.extend(outcome.problems.iter().map(|p| format!("{label}: {p}")));
            }
        }
    }
    if problems.is_empty() && unreached.is_empty() {
        return Ok(());
    }
    let drifted = check && !problems.is_empty();
    let text = problems
        .into_iter()
        .chain(unreached)
        .collect::<Vec<_>>()
        .join("; ");
    Err(if drifted {
        CniError::Drifted(text)
    } else {
        CniError::NotApplied(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A result with every field a main plugin may return plus fields no
    /// plugin knows, in the shape of `version`.
    fn result(version: &str) -> Value {
        let mut ip = json!({"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 2});
        if version.starts_with("0.") {
            ip = json!({"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 2});
        }
        json!({
            "cniVersion": version,
            "interfaces": [{"name": "cni0", "mac": "0a:58:0a:01:02:01"}, {"name": "veth1", "mac": "1e:2f:00:00:00:01"},
                           {"name": "eth0", "mac": "0a:58:0a:01:02:03", "sandbox": "/var/run/netns/cni-1", "mtu": 1450, "socketPath": "/x"}],
            "ips": [ip],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1", "mtu": 1400, "advmss": 1360, "table": 100, "scope": 0}],
            "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["default.svc.cluster.local"], "options": ["ndots:5"]},
            "unknownTopLevel": {"nested": [1, -2, 3.25, "é", null, {"deep": true}]}
        })
    }

    #[test]
    fn prev_result_passes_through_unchanged_for_every_version() {
        for version in version::SUPPORTED {
            let prev = result(version);
            // Whitespace and key order as a runtime may send them.
            let raw = serde_json::to_string_pretty(&prev).unwrap();
            let out = prev_result_output(&raw, version).unwrap();
            assert_eq!(out, raw, "{version}: byte for byte");
            assert_eq!(
                serde_json::from_str::<Value>(&out).unwrap(),
                prev,
                "{version}"
            );
        }
    }

    #[test]
    fn prev_result_across_formats_keeps_every_other_field() {
        let out: Value = serde_json::from_str(
            &prev_result_output(&result("1.1.0").to_string(), "0.3.1").unwrap(),
        )
        .unwrap();
        let mut want = result("0.3.1");
        assert_eq!(out, want);
        let out: Value =
            serde_json::from_str(&prev_result_output(&want.to_string(), "1.0.0").unwrap()).unwrap();
        want = result("1.0.0");
        assert_eq!(out, want);
    }

    #[test]
    fn prev_result_that_is_not_a_result_object() {
        assert_eq!(
            prev_result_output("{\"cniVersion\": 7}", "1.0.0")
                .unwrap_err()
                .code(),
            7
        );
        assert_eq!(
            prev_result_output("{\"cniVersion\": \"0.1.0\"}", "1.0.0")
                .unwrap_err()
                .code(),
            1
        );
    }

    #[test]
    fn version_info_lists_every_supported_version() {
        let v: Value = serde_json::from_str(&version_info()).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
    }
}
