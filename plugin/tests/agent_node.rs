//! The node agent against changes of the node and against the plugin
//! (root, real netns and veths): a default route that appears while the
//! daemon runs is detected again and the pairs get its NIC's policy; a
//! pair that cannot be set makes `--once` exit 1; the plugin and the
//! agent take the same decision for the same pair, so neither undoes the
//! other.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// `agent --once` over the labs' netns files only (no /proc scan).
fn once(config: &str, state: &str) -> (i32, String, String) {
    agent(&[
        "--once",
        "--no-proc",
        "--netns-dir",
        "/run/netns",
        "--config",
        config,
        "--state-file",
        state,
    ])
}

#[test]
fn a_default_route_that_appears_is_detected_and_its_policy_applied() {
    let lab = Lab::with_pods("anr", 1);
    let w = Scratch::new("redetect");
    // The lab's NIC will be up0, driver "veth": that driver gets the fix.
    let config = w.config(json!({"drivers": {"veth": {"tx": false}}}));
    let state = w.state();
    let log = w.0.join("agent.log");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "agent",
        "--config",
        &config,
        "--state-file",
        &state,
        "--no-proc",
        "--netns-dir",
        "/run/netns",
    ])
    .env_remove("CNI_COMMAND");
    let daemon = Daemon::spawn(&mut cmd, log);
    daemon.wait_log("host NIC detection failed");
    // Without a NIC it changes nothing (half a second of it here).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.tx(0), (true, true), "{}", daemon.log());
    lab.add_uplink();
    wait_until(
        "the pair getting the new NIC's policy",
        Duration::from_secs(10),
        || lab.tx(0) == (false, false),
    );
    daemon.send(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(5)).success());
}

#[test]
fn once_exits_1_when_a_pair_cannot_be_set_and_says_which() {
    let lab = Lab::with_pods("anf", 2);
    let w = Scratch::new("fail");
    // netns-local is [fixed] on a veth: asking for it cannot succeed.
    let config = w.config(json!({
        "hostDriver": "txgbe",
        "drivers": {"txgbe": {"tx": false, "netns-local": true}}
    }));
    let (code, out, err) = once(&config, &w.state());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("2 failed"), "{out}");
    assert!(out.contains("netns-local"), "names the feature: {out}");
    assert!(
        out.contains(&lab.host_if_of(0)) && out.contains(&lab.host_if_of(1)),
        "{out}"
    );
    // The negative control: the same pairs with a policy that can be set.
    let config = w.config(json!({"hostDriver": "txgbe"}));
    let (code, out, err) = once(&config, &w.state());
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!((lab.tx(0), lab.tx(1)), ((false, false), (false, false)));
}

#[test]
fn the_plugin_and_the_agent_take_the_same_decision() {
    let lab = Lab::with_pods("ans", 2);
    let w = Scratch::new("agree");
    let entry = json!({"hostDriver": "txgbe", "drivers": {"txgbe": {"tx": false, "tso": false}}});
    let config = w.config(entry.clone());
    let pass = || once(&config, &w.state());
    // Pod 0 through the plugin's ADD; then the agent finds it set and
    // changes only pod 1.
    let add = |i: usize| {
        let mut env = lab.env("ADD");
        for (k, v) in env.iter_mut() {
            if k == "CNI_NETNS" {
                *v = lab.netns_path_of(i);
            }
        }
        let c = conf(
            "1.0.0",
            entry.clone(),
            Some(prev_result("1.0.0", &lab.netns_path_of(i))),
        );
        exec(&env, c.to_string().as_bytes())
    };
    add(0).expect_ok();
    let (code, out, err) = pass();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2 container veth pairs: 1 changed, 0 would change, 1 already set, 0 failed"),
        "{out}"
    );
    // And the plugin's CHECK passes on the pair the agent set.
    let mut env = lab.env("CHECK");
    for (k, v) in env.iter_mut() {
        if k == "CNI_NETNS" {
            *v = lab.netns_path_of(1);
        }
    }
    let c = conf(
        "1.0.0",
        entry.clone(),
        Some(prev_result("1.0.0", &lab.netns_path_of(1))),
    );
    exec(&env, c.to_string().as_bytes()).expect_ok();
    // A second pass changes nothing: no fight, no flapping.
    let (code, out, _) = pass();
    assert_eq!(code, 0);
    assert!(
        out.contains("2 container veth pairs: 0 changed, 0 would change, 2 already set, 0 failed"),
        "{out}"
    );
}
