//! Rules against this machine's real uplink: the plugin runs in the host
//! netns (as on a node) so that detection reads the real NIC's driver,
//! version, PCI id and the running kernel; the pod is a netns of the
//! test's own, its veth's other end parked in a second one, so that
//! `apply: container` touches only the pod's end. No interface of the host
//! is changed.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

/// A pod netns with eth0, whose peer lives in a netns of its own.
struct Pod {
    pod: String,
    far: String,
}

impl Pod {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let base = format!("rl-{}-{n}", std::process::id());
        let p = Pod {
            pod: format!("{base}-pod"),
            far: format!("{base}-far"),
        };
        run("ip", &["netns", "add", &p.pod]);
        run("ip", &["netns", "add", &p.far]);
        run(
            "ip",
            &[
                "-n", &p.far, "link", "add", "rlh0", "type", "veth", "peer", "name", "eth0",
                "netns", &p.pod,
            ],
        );
        p
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.pod)
    }
    fn tx(&self) -> bool {
        read_features(Some(Path::new(&self.path())), "eth0")
            .into_iter()
            .find(|(n, _, _)| n == "tx-checksum-ip-generic")
            .unwrap()
            .1
    }
    fn add(&self, extra: Value) -> Reply {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "rules0123"),
            ("CNI_NETNS", &self.path()),
            ("CNI_IFNAME", "eth0"),
        ];
        let mut c = conf("1.0.0", extra, Some(prev_result("1.0.0", &self.path())));
        c["apply"] = json!("container");
        exec(&env, c.to_string().as_bytes())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for ns in [&self.pod, &self.far] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

#[test]
fn rules_match_the_real_uplink_by_driver_version_kernel_and_pci_id() {
    let facts: Value = serde_json::from_str(&run(BIN, &["detect", "--json"])).unwrap();
    let Some(nic) = facts["nics"].as_array().and_then(|n| n.first()).cloned() else {
        panic!("this machine has no detectable uplink: {facts}");
    };
    let (driver, version, pci, kernel) = (
        nic["driver"].as_str().unwrap().to_string(),
        nic["driverVersion"].as_str().unwrap().to_string(),
        nic["pciId"].as_str().unwrap().to_string(),
        facts["kernel"].as_str().unwrap().to_string(),
    );
    eprintln!("the uplink: {nic}, kernel {kernel}");
    assert!(!kernel.is_empty());
    let mut rule = json!({"driver": driver, "kernel": format!("={}", kernel.split('-').next().unwrap()), "settings": {"tx": false}});
    if !version.is_empty() {
        rule["driverVersion"] = json!(format!("{}*", &version[..1]));
    }
    if !pci.is_empty() {
        rule["pciId"] = json!(pci);
    }
    // Matching on every fact the NIC has: the rule decides.
    let pod = Pod::new();
    assert!(pod.tx());
    let rules = json!({"rules": [rule.clone()]});
    pod.add(rules.clone()).expect_ok();
    assert!(!pod.tx(), "the rule matched {nic}");
    // detect says which rule matched, and on which facts.
    let entry = std::env::temp_dir().join(format!("rl-{}.json", std::process::id()));
    std::fs::write(&entry, rules.to_string()).unwrap();
    let d: Value = serde_json::from_str(&run(
        BIN,
        &["detect", "--json", "--config", entry.to_str().unwrap()],
    ))
    .unwrap();
    let text = run(BIN, &["detect", "--config", entry.to_str().unwrap()]);
    let _ = std::fs::remove_file(&entry);
    assert_eq!(d["nics"][0]["rule"], 0, "{d}");
    assert!(
        d["nics"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("rules[0]: driver"),
        "{d}"
    );
    assert!(
        text.contains(&format!("kernel: {kernel}")) && text.contains("[rules[0]: "),
        "{text}"
    );

    // One fact off (another PCI id, a newer kernel): no match, the table's
    // default for this driver (no change) applies.
    for (field, value) in [
        ("pciId", "ffff:ffff"),
        ("kernel", ">=999"),
        ("driverVersion", "0.0.0-none"),
    ] {
        let pod = Pod::new();
        let mut miss = rule.clone();
        miss[field] = json!(value);
        pod.add(json!({"rules": [miss]})).expect_ok();
        assert!(pod.tx(), "{field} {value} must not match {nic}");
    }
    // Order: the first rule that matches decides.
    let pod = Pod::new();
    let mut keep = rule.clone();
    keep["settings"] = json!({});
    pod.add(json!({"rules": [keep, rule.clone()]})).expect_ok();
    assert!(pod.tx(), "the first rule (change nothing) decided");
    // A bad rule is a config error naming the rule and the field; nothing
    // changes.
    let pod = Pod::new();
    let msg = pod
        .add(json!({"rules": [rule, {"driver": driver, "kernel": ">=six", "settings": {}}]}))
        .expect_error(7);
    assert!(
        msg.contains("rules[1].kernel: \">=six\" is not a comparison"),
        "{msg}"
    );
    assert!(pod.tx());
}
