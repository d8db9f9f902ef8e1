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
