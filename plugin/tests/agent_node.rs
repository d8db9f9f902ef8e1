//! The node agent against changes of the node and against the plugin
//! (root, real netns and veths): a default route that appears while the
//! daemon runs is detected again and the pairs get its NIC's policy; a
//! pair that cannot be set makes `--once` exit 1; the plugin and the
//! agent take the same decision for the same pair, so neither undoes the
//! other.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const GENERIC: &str = "tx-checksum-ip-generic";

/// A directory for one test's config and state file.
struct Work(PathBuf);

impl Work {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("csum-agent-node-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Work(dir)
    }
    fn config(&self, value: Value) -> String {
        let path = self.0.join("config.json");
        std::fs::write(&path, value.to_string()).unwrap();
        path.display().to_string()
    }
    fn state(&self) -> String {
        self.0.join("state.jsonl").display().to_string()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `csum-offload agent ARGS` run in the lab's host netns (the calling
/// thread's); (exit code, stdout, stderr).
fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("agent")
        .args(args)
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// TX checksum of pod `i`'s (container end, host end).
fn tx(lab: &Lab, i: usize) -> (bool, bool) {
    let on = |t: FeatureTable| t.into_iter().find(|(n, _, _)| n == GENERIC).unwrap().1;
    let (c, h) = lab.features_of(i);
    (on(c), on(h))
}

/// Polls `check` every 20 ms for at most `bound`; whether it held.
fn within(bound: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_default_route_that_appears_is_detected_and_its_policy_applied() {
    let lab = Lab::with_pods("anr", 1);
    let w = Work::new("redetect");
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
    assert!(
        within(Duration::from_secs(10), || daemon
            .log()
            .contains("host NIC detection failed")),
        "the agent did not report the failed detection:\n{}",
        daemon.log()
    );
    // Without a NIC it changes nothing, however long it runs.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tx(&lab, 0), (true, true), "{}", daemon.log());
    lab.add_uplink();
    assert!(
        within(Duration::from_secs(10), || tx(&lab, 0) == (false, false)),
        "the pair did not get the new NIC's policy:\n{}",
        daemon.log()
    );
    daemon.send(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(5)).success());
}

#[test]
fn once_exits_1_when_a_pair_cannot_be_set_and_says_which() {
    let lab = Lab::with_pods("anf", 2);
    let w = Work::new("fail");
    // netns-local is [fixed] on a veth: asking for it cannot succeed.
    let config = w.config(json!({
        "hostDriver": "txgbe",
        "drivers": {"txgbe": {"tx": false, "netns-local": true}}
    }));
    let (code, out, err) = agent(&[
        "--once",
        "--no-proc",
        "--netns-dir",
        "/run/netns",
        "--config",
        &config,
        "--state-file",
        &w.state(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("2 failed"), "{out}");
    assert!(out.contains("netns-local"), "names the feature: {out}");
    assert!(
        out.contains(&lab.host_if_of(0)) && out.contains(&lab.host_if_of(1)),
        "{out}"
    );
    // The negative control: the same pairs with a policy that can be set.
    let config = w.config(json!({"hostDriver": "txgbe"}));
    let (code, out, err) = agent(&[
        "--once",
        "--no-proc",
        "--netns-dir",
        "/run/netns",
        "--config",
        &config,
        "--state-file",
        &w.state(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!((tx(&lab, 0), tx(&lab, 1)), ((false, false), (false, false)));
}

#[test]
fn the_plugin_and_the_agent_take_the_same_decision() {
    let lab = Lab::with_pods("ans", 2);
    let w = Work::new("agree");
    let entry = json!({"hostDriver": "txgbe", "drivers": {"txgbe": {"tx": false, "tso": false}}});
    let config = w.config(entry.clone());
    let once = || {
        agent(&[
            "--once",
            "--no-proc",
            "--netns-dir",
            "/run/netns",
            "--config",
            &config,
            "--state-file",
            &w.state(),
        ])
    };
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
    let (code, out, err) = once();
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
    let (code, out, _) = once();
    assert_eq!(code, 0);
    assert!(
        out.contains("2 container veth pairs: 0 changed, 0 would change, 2 already set, 0 failed"),
        "{out}"
    );
}
