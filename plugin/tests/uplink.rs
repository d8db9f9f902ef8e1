//! `apply: "uplink"` against real devices (root): the settings go to the
//! NIC detection finds (the lab's uplink: macvlan mv0 on veth up0, so the
//! NIC is up0, driver "veth"), never to a pod's veth; the NIC's original
//! state is recorded once, before the first change, in the node's record
//! (/run/csum-offload/uplink-state.json, entries per netns so parallel
//! labs do not meet), and `uninstall`, `agent restore` and the agent's
//! last exit put it back.
//!
//! Also here: the GRO guard (GRO on a host end with TX checksum off is
//! refused in one entry and reported whatever set it).

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

const RECORD: &str = "/run/csum-offload/uplink-state.json";
const GENERIC: &str = "tx-checksum-ip-generic";

fn uplink_conf(version: &str, lab: &Lab) -> Value {
    conf(
        version,
        json!({"apply": "uplink", "drivers": {"veth": {"tx": false}}}),
        Some(prev_result(version, &lab.netns_path())),
    )
}

/// The active state of `feature` on `ifname` in the lab's host netns.
fn active(ifname: &str, feature: &str) -> bool {
    read_features(None, ifname)
        .into_iter()
        .find(|(n, _, _)| n == feature)
        .unwrap_or_else(|| panic!("{ifname} has no {feature}"))
        .1
}

/// The record's entries for the lab's host netns.
fn records_of(lab: &Lab) -> Vec<Value> {
    let meta = std::fs::metadata(format!("/run/netns/{}", lab.host)).unwrap();
    let id = format!("{}:{}", meta.dev(), meta.ino());
    let text = match std::fs::read_to_string(RECORD) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{RECORD}: {e}"),
    };
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.into_iter().filter(|r| r["netns"] == id).collect()
}

/// `csum-offload agent ARGS` with its state file in `scratch`.
fn agent_in(scratch: &Scratch, args: &[&str]) -> (i32, String, String) {
    let state = scratch.path("agent-state.jsonl");
    let mut all = args.to_vec();
    all.extend(["--state-file", state.to_str().unwrap()]);
    agent(&all)
}

/// The record is one file for the node, shared by the labs of the tests
/// running in parallel: a test that asserts the file is not rewritten
/// holds it alone; the others share it.
static RECORD_USERS: RwLock<()> = RwLock::new(());

#[allow(dead_code)] // held for its drop
enum Hold {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

/// A hold on the node's record, with a scratch directory, and on drop the
/// lab's NIC records put back and forgotten (a lab's netns dies with the
/// test, its record must not stay).
struct RecordHold {
    dir: Scratch,
    _hold: Hold,
}

impl RecordHold {
    fn new(tag: &str) -> Self {
        // A failed test poisons the lock; the record is still usable.
        let hold = Hold::Shared(RECORD_USERS.read().unwrap_or_else(|e| e.into_inner()));
        Self::with(tag, hold)
    }

    /// No other test of this file writes the record while this one lives.
    fn alone(tag: &str) -> Self {
        let hold = Hold::Alone(RECORD_USERS.write().unwrap_or_else(|e| e.into_inner()));
        Self::with(tag, hold)
    }

    fn with(tag: &str, hold: Hold) -> Self {
        RecordHold {
            dir: Scratch::new(&format!("uplink-{tag}")),
            _hold: hold,
        }
    }
}

impl Drop for RecordHold {
    // The restore runs before the directory goes and the hold is released
    // (fields drop after this, in order: `dir`, then `_hold`).
    fn drop(&mut self) {
        let _ = agent_in(&self.dir, &["restore"]);
    }
}

#[test]
fn uplink_placement_sets_the_nic_records_it_once_and_leaves_the_veths() {
    for version in ["0.3.1", "1.1.0"] {
        let lab = Lab::new("upl");
        lab.add_uplink();
        // Alone: the file must not be rewritten by the second ADD.
        let s = RecordHold::alone(&format!("set-{version}"));
        assert!(active("up0", GENERIC), "the uplink starts with offload on");
        let c = uplink_conf(version, &lab);
        let reply = lab.cni("ADD", &c);
        assert_eq!(
            reply.expect_ok().json(),
            prev_result(version, &lab.netns_path()),
            "{version}: prevResult passes through"
        );
        assert!(
            !active("up0", GENERIC),
            "{version}: the NIC has TX checksum off"
        );
        // The pod's pair keeps its offload: on-node traffic is unchanged.
        assert!(lab.active(false, GENERIC) && lab.active(true, GENERIC));
        // The macvlan above it is not a NIC of its own: left to the kernel.
        let records = records_of(&lab);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["name"], "up0");
        assert_eq!(records[0]["features"][GENERIC], true, "the original state");
        let before = std::fs::read(RECORD).unwrap();
        // Every later ADD finds it set: nothing changes, nothing is written.
        lab.cni("ADD", &c).expect_ok();
        assert_eq!(std::fs::read(RECORD).unwrap(), before);
        if version != "0.3.1" {
            lab.cni("CHECK", &c).expect_ok();
        }
        drop(s);
        assert!(
            active("up0", GENERIC),
            "{version}: restore put the NIC back"
        );
        assert!(records_of(&lab).is_empty());
    }
}

#[test]
fn check_names_the_nic_that_drifted_and_add_repairs_it_keeping_the_original() {
    let lab = Lab::new("upc");
    lab.add_uplink();
    let _s = RecordHold::new("check");
    let c = uplink_conf("1.0.0", &lab);
    lab.cni("ADD", &c).expect_ok();
    run("ethtool", &["-K", "up0", "tx", "on"]);
    let msg = lab.cni("CHECK", &c).expect_error(101);
    assert!(
        msg.contains("uplink NIC up0: tx-checksum-ip-generic is on although off was requested"),
        "{msg}"
    );
    lab.cni("ADD", &c).expect_ok();
    assert!(!active("up0", GENERIC));
    lab.cni("CHECK", &c).expect_ok();
    // The record still holds the state from before the first change.
    assert_eq!(records_of(&lab)[0]["features"][GENERIC], true);
}

#[test]
fn concurrent_adds_record_the_state_from_before_any_of_them() {
    // Pods start at once on a fresh node: many ADDs find the NIC to change,
    // one at a time under the record's lock; each reads the NIC again
    // there, so only the first changes it. All succeed, and the record is
    // one entry with the state from before the first (a lost or torn
    // write would show as a missing entry or a parse error).
    let lab = Lab::with_pods("upr", 8);
    lab.add_uplink();
    let _s = RecordHold::new("race");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let netns = lab.netns_path_of(i);
            let c = conf(
                "1.0.0",
                json!({"apply": "uplink", "drivers": {"veth": {"tx": false}}}),
                Some(prev_result("1.0.0", &netns)),
            );
            let mut env = lab.env("ADD");
            env.retain(|(k, _)| k != "CNI_NETNS");
            env.push(("CNI_NETNS".into(), netns));
            std::thread::spawn(move || exec(&env, c.to_string().as_bytes()))
        })
        .collect();
    // The threads' children inherit the spawning thread's netns: the lab's.
    for t in threads {
        t.join().unwrap().expect_ok();
    }
    assert!(!active("up0", GENERIC));
    let records = records_of(&lab);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["features"][GENERIC], true, "{records:?}");
}

#[test]
fn uninstall_and_agent_restore_put_the_nic_back() {
    let lab = Lab::new("upu");
    lab.add_uplink();
    let s = RecordHold::new("uninstall");
    let c = uplink_conf("1.0.0", &lab);
    lab.cni("ADD", &c).expect_ok();
    let dirs = InstallDirs::new("upu");
    let out = dirs.command("uninstall").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("uplink NIC up0: restored [tx-checksum-ip-generic on"),
        "{stdout}"
    );
    assert!(active("up0", GENERIC));
    assert!(records_of(&lab).is_empty());
    // Without CAP_NET_ADMIN (the DaemonSet's installer) nothing can be put
    // back: it says so, and the record stays for whoever can.
    lab.cni("ADD", &c).expect_ok();
    const CAP_NET_ADMIN: u32 = 12;
    let out = without_caps(&mut dirs.command("uninstall"), &[CAP_NET_ADMIN])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED uplink NIC up0"), "{stdout}");
    assert!(!active("up0", GENERIC));
    assert_eq!(records_of(&lab).len(), 1);
    let (code, out, err) = agent_in(&s.dir, &["restore"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("uplink NIC up0: restored"), "{out}");
    // The summary counts the NIC it put back (it said 0 before).
    assert!(
        out.ends_with("1 restored, 0 gone, 0 failed, 0 unreadable; 0 records left\n"),
        "{out}"
    );
    assert!(active("up0", GENERIC));
    assert!(records_of(&lab).is_empty());
}

#[test]
fn a_policy_that_asks_nothing_of_the_nic_changes_and_records_nothing() {
    let lab = Lab::new("upn");
    lab.add_uplink();
    let _s = RecordHold::new("nothing");
    let c = conf(
        "1.0.0",
        json!({"apply": "uplink", "drivers": {"veth": {}}}),
        Some(prev_result("1.0.0", &lab.netns_path())),
    );
    lab.cni("ADD", &c).expect_ok();
    lab.cni("CHECK", &c).expect_ok();
    assert!(active("up0", GENERIC));
    assert!(records_of(&lab).is_empty());
}

#[test]
fn uplink_with_host_driver_is_refused_and_changes_nothing() {
    let lab = Lab::new("uph");
    lab.add_uplink();
    let c = conf(
        "1.0.0",
        json!({"apply": "uplink", "hostDriver": "txgbe"}),
        Some(prev_result("1.0.0", &lab.netns_path())),
    );
    let msg = lab.cni("ADD", &c).expect_error(7);
    assert!(msg.contains("needs detection"), "{msg}");
    assert!(active("up0", GENERIC));
    assert!(lab.active(false, GENERIC) && lab.active(true, GENERIC));
    assert!(records_of(&lab).is_empty());
}

#[test]
fn the_agent_sets_the_nic_repairs_it_and_puts_it_back_when_it_stops_last() {
    let lab = Lab::new("upa");
    lab.add_uplink();
    let s = RecordHold::new("agent");
    let config = s.dir.path("config.json");
    std::fs::write(
        &config,
        r#"{"apply": "uplink", "drivers": {"veth": {"tx": false}}}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // --once --dry-run says what it would do and does nothing.
    let (code, out, _) = agent_in(&s.dir, &["--once", "--dry-run", "--config", config]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("uplink NIC up0: -> tx off; would change [tx-checksum-ip-generic off"),
        "{out}"
    );
    assert!(active("up0", GENERIC));
    // The daemon sets it, and repairs it when it is turned back on.
    let start = |log: &str| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "agent",
            "--config",
            config,
            "--resync",
            "0",
            "--restore-uplink-on-exit",
        ])
        .arg("--state-file")
        .arg(s.dir.path("agent-state.jsonl"))
        .env_remove("CNI_COMMAND");
        Daemon::spawn(&mut cmd, s.dir.path(log))
    };
    let first = start("first.log");
    wait_until("the agent setting up0", Duration::from_secs(10), || {
        !active("up0", GENERIC)
    });
    assert!(
        lab.active(false, GENERIC) && lab.active(true, GENERIC),
        "veths untouched"
    );
    run("ethtool", &["-K", "up0", "tx", "on"]);
    wait_until("the drift repaired", Duration::from_secs(10), || {
        first.log().contains(
            "uplink NIC up0: -> tx off (apply \"uplink\"); changed [tx-checksum-ip-generic off",
        ) && first.log().contains("(drift repaired)")
    });
    assert!(!active("up0", GENERIC));
    // A second agent (a DaemonSet's surge pod) waits; the first stops and
    // leaves the NIC to it.
    let second = start("second.log");
    wait_until("the second waiting", Duration::from_secs(10), || {
        second.log().contains("waiting for it to stop")
    });
    let log = first.log.clone();
    assert!(first.terminate().success());
    let first_log = std::fs::read_to_string(log).unwrap();
    assert!(
        first_log.contains("leaving the uplink NICs to it"),
        "{first_log}"
    );
    assert!(!active("up0", GENERIC), "the surge: the NIC stays set");
    // The last agent stopping (the DaemonSet deleted) puts it back.
    wait_until("the second taking over", Duration::from_secs(10), || {
        second.log().contains("taking over")
    });
    let log = second.log.clone();
    assert!(second.terminate().success());
    let second_log = std::fs::read_to_string(log).unwrap();
    assert!(
        second_log.contains("uplink NIC up0: restored [tx-checksum-ip-generic on"),
        "{second_log}"
    );
    assert!(active("up0", GENERIC));
    assert!(records_of(&lab).is_empty());
}

#[test]
fn gro_on_a_host_end_with_checksum_off_is_refused_or_reported() {
    let lab = Lab::new("upg");
    let with = |extra: Value| {
        conf(
            "1.0.0",
            extra,
            Some(prev_result("1.0.0", &lab.netns_path())),
        )
    };
    // One entry asking for both on the host end: a config error.
    let msg = lab
        .cni(
            "ADD",
            &with(json!({"hostDriver": "txgbe", "drivers": {"txgbe": {"tx": false, "gro": true}}})),
        )
        .expect_error(7);
    assert!(
        msg.contains("drivers.txgbe turns TX checksum off and GRO on"),
        "{msg}"
    );
    assert!(lab.active(true, GENERIC), "refused: nothing changed");
    // On the container end it is fine (it serves the pod's own stack).
    lab.cni(
        "ADD",
        &with(json!({"hostDriver": "txgbe", "apply": "container", "drivers": {"txgbe": {"tx": false, "gro": true}}})),
    )
    .expect_ok();
    assert!(!lab.active(false, GENERIC) && lab.active(false, "rx-gro"));
    // Two entries of a chain: the fix on both ends, then GRO on the host
    // end. The entry that turns GRO on reports it.
    lab.cni("ADD", &with(json!({"hostDriver": "txgbe"})))
        .expect_ok();
    let msg = lab
        .cni(
            "ADD",
            &with(json!({"hostDriver": "txgbe", "apply": "host", "drivers": {"txgbe": {"gro": true}}})),
        )
        .expect_error(100);
    assert!(
        msg.contains(&format!("host {}: GRO is on", lab.host_if)),
        "{msg}"
    );
    // The helper's chain: TX checksum off on the container end only, then
    // GRO on the host end. The host end's own TX is on, and it still merges
    // the pod's segments into partial packets (the wire check showed 113
    // partial at the NIC): reported.
    let lab3 = Lab::new("upg3");
    let with3 = |extra: Value| {
        conf(
            "1.0.0",
            extra,
            Some(prev_result("1.0.0", &lab3.netns_path())),
        )
    };
    lab3.cni(
        "ADD",
        &with3(json!({"hostDriver": "txgbe", "apply": "container"})),
    )
    .expect_ok();
    let msg = lab3
        .cni(
            "ADD",
            &with3(json!({"hostDriver": "txgbe", "apply": "host", "drivers": {"txgbe": {"gro": true}}})),
        )
        .expect_error(100);
    assert!(
        msg.contains(&format!("host {}: GRO is on", lab3.host_if)),
        "{msg}"
    );
    // A GRO flag the entry did not ask for is not judged (older kernels
    // have it on by default on veths that do not merge): ADD succeeds.
    let lab4 = Lab::new("upg4");
    run("ethtool", &["-K", &lab4.host_if, "gro", "on"]);
    lab4.cni(
        "ADD",
        &conf(
            "1.0.0",
            json!({"hostDriver": "txgbe"}),
            Some(prev_result("1.0.0", &lab4.netns_path())),
        ),
    )
    .expect_ok();
    // The negative control: GRO on a host end of a pair that carries no
    // fix merges nothing the NIC cannot handle.
    let lab2 = Lab::new("upg2");
    lab2.cni(
        "ADD",
        &conf(
            "1.0.0",
            json!({"hostDriver": "txgbe", "apply": "host", "drivers": {"txgbe": {"gro": true}}}),
            Some(prev_result("1.0.0", &lab2.netns_path())),
        ),
    )
    .expect_ok();
}
