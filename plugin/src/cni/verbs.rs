//! What each CNI verb does. Each parses its input, calls the core, and
//! turns the outcome into the reply; codes come from `CniError` only.

use super::env::{Attachment, Command};
use super::error::CniError;
use super::input::PrevResultError;
use super::netconf::{Envelope, NetConf};
use super::version;
use crate::config::{DetectionFailure, FailurePolicy};
use crate::logger;
use crate::offload::decision::decide;
use crate::offload::pod::{self, Mode, PodOutcome};
use std::ffi::OsString;

pub(super) fn dispatch(
    command: Command,
    stdin: &[u8],
    getenv: &dyn Fn(&str) -> Option<OsString>,
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
    getenv: &dyn Fn(&str) -> Option<OsString>,
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
    let prev = conf.prev_result.as_ref().ok_or(PrevResultError::Missing {
        verb: command.as_str(),
    })?;
    let output = prev_result_output(prev.get(), &conf.cni_version)?;
    let mode = if command == Command::Check {
        Mode::Verify
    } else {
        Mode::Set
    };
    pod_job(&conf, &attachment, mode)?;
    Ok(if command == Command::Add {
        output
    } else {
        String::new()
    })
}

/// Parses stdin once; an error speaks the config's version when it has a
/// supported one.
fn parse(stdin: &[u8], reported_version: &mut String) -> Result<NetConf, CniError> {
    Envelope::parse(stdin)
        .and_then(|envelope| {
            if version::check_supported(&envelope.cni_version).is_ok() {
                reported_version.clone_from(&envelope.cni_version);
            }
            NetConf::from_envelope(envelope)
        })
        .inspect_err(|_| logger::init(log::LevelFilter::Info, None, "config".into()))
}

fn start_log(conf: &NetConf, context: String) {
    logger::init(
        conf.config.log_level,
        conf.config.log_file.as_deref(),
        context,
    );
}

fn version_info() -> String {
    serde_json::json!({ "cniVersion": version::CURRENT, "supportedVersions": version::SUPPORTED })
        .to_string()
}

/// ADD's output: prevResult exactly as received when it is already in the
/// config's version (the normal case: runtimes hand every plugin of a
/// chain the same version), else converted as libcni would.
fn prev_result_output(raw: &str, cni_version: &str) -> Result<String, CniError> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(PrevResultError::Json)?;
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
    getenv: &dyn Fn(&str) -> Option<OsString>,
    reported_version: &mut String,
) -> Result<String, CniError> {
    let envelope = Envelope::parse(stdin)?;
    version::check_supported(&envelope.cni_version)?;
    reported_version.clone_from(&envelope.cni_version);
    let attachment = Attachment::from_env(Command::Del, getenv)?;
    match NetConf::from_envelope(envelope) {
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
    let envelope = Envelope::parse(stdin)?;
    let parsed = version::check_supported(&envelope.cni_version)?;
    reported_version.clone_from(&envelope.cni_version);
    version::check_verb_allowed("GC", parsed, &envelope.cni_version)?;
    if let Err(e) = NetConf::from_envelope(envelope) {
        logger::init(log::LevelFilter::Info, None, "GC".into());
        log::warn!("ignoring invalid config on GC: {e}");
    }
    Ok(String::new())
}

/// STATUS: ready unless the plugin truly cannot serve ADD under the
/// operator's choices. A runtime turns a STATUS error into
/// NetworkReady=false, and kubelet then takes the node NotReady; so a node
/// whose NIC cannot be detected is ready unless `detectionFailure` is
/// "fail" (where ADD fails too).
fn status(conf: &NetConf) -> Result<String, CniError> {
    match decide(&conf.config) {
        Ok(_) => Ok(String::new()),
        Err(e) if conf.config.detection_failure == DetectionFailure::Skip => {
            log::debug!("host NIC detection failed: {e}; pods pass through unchanged (detectionFailure \"skip\")");
            Ok(String::new())
        }
        Err(e) => Err(CniError::NotAvailable(Box::new(e.into()))),
    }
}

/// Applies (ADD) or verifies (CHECK) the policy on the pod's veth pair.
/// A node whose NIC cannot be detected passes through unchanged unless
/// `detectionFailure` is "fail". Other errors after the config and
/// environment were accepted obey failurePolicy; a wrong CNI_NETNS or
/// CNI_IFNAME is the caller's error and always fails.
fn pod_job(conf: &NetConf, attachment: &Attachment, mode: Mode) -> Result<(), CniError> {
    let result = match pod::conform(&conf.config, &attachment.netns, &attachment.ifname, mode) {
        Ok(PodOutcome::Undetected(e)) => {
            return match conf.config.detection_failure {
                DetectionFailure::Fail => Err(e.into()),
                DetectionFailure::Skip => {
                    log::warn!(
                        "host NIC detection failed: {e}; changing nothing (detectionFailure \"skip\")"
                    );
                    Ok(())
                }
            }
        }
        Ok(PodOutcome::Tuned(problems)) if problems.is_empty() => Ok(()),
        Ok(PodOutcome::Tuned(problems)) => {
            Err(if mode == Mode::Verify && problems.has_feature_problems() {
                CniError::Drifted(problems)
            } else {
                CniError::NotApplied(problems)
            })
        }
        Ok(PodOutcome::NotVeth | PodOutcome::NoChange) => Ok(()),
        Err(e) => Err(CniError::from(e)),
    };
    match result {
        Err(e)
            if conf.config.failure_policy == FailurePolicy::Ignore
                && !matches!(e, CniError::Env(_)) =>
        {
            log::warn!("{e} (failurePolicy ignore: passing through)");
            Ok(())
        }
        other => other,
    }
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
