//! The installer runs the plugin's detection (same code, same netns) at
//! start and in every readiness check: on a node where the uplink NIC
//! cannot be found, the entry still goes in, and `install --check` fails
//! with the reason and what it does to pods there (under the default
//! `detectionFailure: "skip"` pods start unfixed; under "fail" every pod
//! start fails with 102), so the DaemonSet shows which nodes are not
//! covered and why.
//!
//! "A node without a default route" is a netns of its own with only `lo`;
//! the node that detects is a lab host netns with a default route through
//! a macvlan on a veth uplink (common::Lab).

mod common;

use common::{in_empty_netns, output_within, InstallDirs, Lab};
use std::fs;
use std::process::Command;
use std::time::Duration;

const NO_ROUTE: &str = "host NIC detection failed on this node: the host has no default route";
const HINT: &str = "set hostInterface or hostDriver";
const UNFIXED: &str = "pods on this node start without the fix";
const PODS_FAIL: &str = "every pod start on this node fails with code 102";

fn run(cmd: &mut Command) -> (bool, String) {
    let out = output_within(cmd, Duration::from_secs(20), "installer");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

fn setup(tag: &str, config: &str) -> (InstallDirs, std::path::PathBuf) {
    let dirs = InstallDirs::new(tag);
    fs::write(
        dirs.conf().join("10-kindnet.conflist"),
        common::kindnet_conflist().to_string(),
    )
    .unwrap();
    let path = dirs.root.join("config.json");
    fs::write(&path, config).unwrap();
    (dirs, path)
}

#[test]
fn no_default_route_installs_the_entry_and_fails_readiness_with_the_reason() {
    let (dirs, config) = setup("detect-none", r#"{"drivers": {"veth": {"tx": false}}}"#);
    let install = |verb_args: &[&str]| {
        let mut cmd = dirs.command("install");
        cmd.args(verb_args).arg("--config").arg(&config);
        in_empty_netns(&mut cmd);
        run(&mut cmd)
    };
    let (ok, log) = install(&["--once"]);
    assert!(ok, "the entry still goes in: {log}");
    assert!(log.contains(NO_ROUTE), "logged at start: {log}");
    let line = log.lines().find(|l| l.contains(NO_ROUTE)).unwrap();
    assert!(line.contains(" WARN ") && line.contains(UNFIXED), "{line}");
    assert!(!line.contains(PODS_FAIL), "{line}");
    let conflist = fs::read_to_string(dirs.conf().join("10-kindnet.conflist")).unwrap();
    assert!(conflist.contains("\"csum-offload\""), "{conflist}");
    let (ok, reason) = install(&["--check"]);
    assert!(!ok, "readiness must fail: {reason}");
    assert!(reason.contains(NO_ROUTE), "{reason}");
    let line = reason.lines().find(|l| l.contains(NO_ROUTE)).unwrap();
    assert_eq!(line.matches(HINT).count(), 1, "the hint once: {line}");
    assert!(line.contains(UNFIXED), "{line}");

    // hostDriver needs no detection: ready in the same netns.
    fs::write(&config, r#"{"hostDriver": "txgbe"}"#).unwrap();
    let (ok, _) = install(&["--once"]);
    assert!(ok);
    let (ok, out) = install(&["--check"]);
    assert!(ok, "{out}");
}

#[test]
fn a_node_that_detects_is_ready_and_a_missing_host_interface_is_not() {
    let lab = Lab::new("cdt");
    lab.add_uplink();
    let (dirs, config) = setup("detect-lab", r#"{"drivers": {"veth": {"tx": false}}}"#);
    // The commands inherit this thread's netns: the lab's host.
    let check = || {
        let mut cmd = dirs.command("install");
        cmd.arg("--check").arg("--config").arg(&config);
        run(&mut cmd)
    };
    let mut once = dirs.command("install");
    once.arg("--once").arg("--config").arg(&config);
    let (ok, log) = run(&mut once);
    assert!(ok, "{log}");
    assert!(
        log.contains("detect: nic: up0 driver: veth (version 1.0) -> tx off"),
        "{log}"
    );
    let (ok, out) = check();
    assert!(ok, "detection works here: {out}");

    fs::write(
        &config,
        r#"{"hostInterface": "nope0", "drivers": {"veth": {"tx": false}}}"#,
    )
    .unwrap();
    let (ok, reason) = check();
    assert!(!ok, "{reason}");
    assert!(
        reason.contains("host NIC detection failed on this node: hostInterface \"nope0\" does not exist on this host; set hostInterface or hostDriver"),
        "{reason}"
    );
    drop(lab);
}

/// Under `detectionFailure: "fail"` the operator chose no pod over an
/// unfixed pod: the entry goes in as written, the installer says at error
/// that every pod start on this node will fail, and readiness fails with
/// the same words (not the "skip" ones).
#[test]
fn under_detection_failure_fail_the_entry_goes_in_and_both_log_and_readiness_say_pods_fail() {
    let (dirs, config) = setup(
        "detect-fail",
        r#"{"detectionFailure": "fail", "drivers": {"veth": {"tx": false}}}"#,
    );
    let install = |verb_args: &[&str]| {
        let mut cmd = dirs.command("install");
        cmd.args(verb_args).arg("--config").arg(&config);
        in_empty_netns(&mut cmd);
        run(&mut cmd)
    };
    let (ok, log) = install(&["--once"]);
    assert!(ok, "the entry goes in: {log}");
    let line = log
        .lines()
        .find(|l| l.contains(NO_ROUTE))
        .unwrap_or_else(|| panic!("logged at start: {log}"));
    assert!(line.contains(" ERROR "), "said at error: {line}");
    assert!(
        line.contains(PODS_FAIL) && line.contains("code 50"),
        "{line}"
    );
    assert!(!line.contains(UNFIXED), "not the skip words: {line}");
    let conflist: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dirs.conf().join("10-kindnet.conflist")).unwrap())
            .unwrap();
    let ours: Vec<&serde_json::Value> = conflist["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "csum-offload")
        .collect();
    assert_eq!(ours.len(), 1, "{conflist}");
    assert_eq!(ours[0]["detectionFailure"], "fail", "{conflist}");
    let (ok, reason) = install(&["--check"]);
    assert!(!ok, "readiness must fail: {reason}");
    let line = reason.lines().find(|l| l.contains(NO_ROUTE)).unwrap();
    assert!(line.contains(PODS_FAIL), "{line}");
    assert!(!line.contains(UNFIXED), "{line}");
}
