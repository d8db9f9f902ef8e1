//! The requested bits are part of the policy (issue 9, section 10): a
//! feature that is off only because a feature it depends on is off ("off
//! [requested on]") comes back on with that dependency, so CHECK calls it
//! drift and ADD sends it again. Root, on a real veth pair (common::Lab).
//! (`cni_netns::every_wanted_bit_is_sent_so_the_policy_sticks` covers ADD
//! on a pair that starts that way.)

mod common;

use common::*;
use serde_json::{json, Value};

fn tx_and_tso_off() -> Value {
    conf(
        "1.0.0",
        json!({"hostDriver": "x", "drivers": {"x": {"tx": false, "tso": false}}}),
        Some(prev_result("1.0.0", "/x")),
    )
}

#[test]
fn a_feature_requested_against_the_policy_is_drift_that_add_repairs() {
    let lab = Lab::new("rqb");
    let c = tx_and_tso_off();
    let tso = |lab: &Lab| {
        ethtool_value(
            &run("ethtool", &["-k", &lab.host_if]),
            "tx-tcp-segmentation",
        )
    };
    lab.cni("ADD", &c).expect_ok();
    assert_eq!(tso(&lab), "off");
    // The control: right after ADD, CHECK passes.
    lab.cni("CHECK", &c).expect_ok();

    // Someone asks for TSO again while TX checksum is off: the kernel keeps
    // the request and leaves TSO off until TX checksum is on.
    run("ethtool", &["-K", &lab.host_if, "tso", "on"]);
    assert_eq!(tso(&lab), "off [requested on]");
    let msg = lab.cni("CHECK", &c).expect_error(101);
    assert!(
        msg.contains(&format!(
            "host {}: tx-tcp-segmentation is off but requested on",
            lab.host_if
        )),
        "{msg}"
    );
    assert!(
        !msg.contains("container"),
        "only the end that drifted is named: {msg}"
    );

    // ADD sends the wanted bit again; CHECK then passes, and TX checksum
    // turned back on no longer brings TSO with it.
    lab.cni("ADD", &c).expect_ok();
    assert_eq!(tso(&lab), "off");
    lab.cni("CHECK", &c).expect_ok();
    run("ethtool", &["-K", &lab.host_if, "tx", "on"]);
    assert_eq!(tso(&lab), "off");
}

/// The agent sees the same drift: its dry run names the request it would
/// send (instead of calling the pair conforming, or failed), and its real
/// run sends it.
#[test]
fn the_agent_dry_run_names_a_request_to_repair_and_its_run_repairs_it() {
    let lab = Lab::new("rqa");
    let dir = std::env::temp_dir().join(format!("rqa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({"hostDriver": "x", "drivers": {"x": {"tx": false, "tso": false}}}).to_string(),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let state = dir.join("agent.jsonl");
    let state = state.to_str().unwrap();
    let agent = |args: &[&str]| {
        let out = output_within(
            std::process::Command::new(BIN)
                .arg("agent")
                .args(args)
                .args(["--config", config, "--state-file", state, "--no-proc"])
                .env_remove("CNI_COMMAND"),
            HANG,
            "agent",
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    lab.cni("ADD", &tx_and_tso_off()).expect_ok();
    run("ethtool", &["-K", &lab.host_if, "tso", "on"]);
    let tso = || {
        ethtool_value(
            &run("ethtool", &["-k", &lab.host_if]),
            "tx-tcp-segmentation",
        )
    };
    assert_eq!(tso(), "off [requested on]");
    let (code, out) = agent(&["--once", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "would change host {} [tx-tcp-segmentation requested off,",
            lab.host_if
        )),
        "{out}"
    );
    assert_eq!(tso(), "off [requested on]", "a dry run changes nothing");
    let (code, out) = agent(&["--once"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(tso(), "off");
    let _ = std::fs::remove_dir_all(&dir);
}
