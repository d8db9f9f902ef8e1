//! 50 pods starting at once: 50 plugin processes run in parallel on 50
//! pod netns, all sharing one host netns and one log file. All must
//! succeed, all must hand back their prevResult, and every veth end must
//! end with the policy applied (read back with ETHTOOL_GFEATURES).
//!
//! The lab lives in netns of its own (`cc-<pid>-0-host`, `cc-<pid>-0-<n>`,
//! deleted on drop); the test thread moves into the host one so the
//! processes it spawns run there, as under a runtime.

mod common;

use common::{Lab, LogDir, BIN, POD_IF};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Child, Command, Stdio};

const PODS: usize = 50;

/// TX checksum (tx-checksum-ip-generic) of (pod end, host end) of pod n.
#[test]
fn fifty_parallel_adds_all_apply_the_policy() {
    let lab = Lab::with_pods("cc", PODS);
    for n in 0..PODS {
        assert_eq!(
            lab.tx(n),
            (true, true),
            "pod {n} starts with TX checksum on"
        );
    }
    let logs = LogDir::new("cc");
    let log = logs.path("cni.log");

    // Start all 50 before waiting for any, so they really overlap.
    let mut running: Vec<(Child, Value)> = Vec::new();
    for n in 0..PODS {
        let netns = lab.netns_path_of(n);
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": lab.host_if_of(n)},
                {"name": POD_IF, "sandbox": netns}
            ],
            "ips": [{"address": format!("10.252.{n}.2/24"), "interface": 1}]
        });
        let config = json!({
            "cniVersion": "1.0.0",
            "name": "concurrency",
            "type": "csum-offload",
            "hostDriver": "txgbe",
            "logFile": log,
            "prevResult": prev
        });
        let mut child = Command::new(BIN)
            .env_clear()
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("cc{n:04}"))
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", POD_IF)
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the plugin");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(config.to_string().as_bytes()).unwrap();
        drop(stdin);
        running.push((child, prev));
    }

    let mut failures = Vec::new();
    for (n, (child, prev)) in running.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            failures.push(format!(
                "pod {n}: exit {:?}: {stdout} {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        } else if serde_json::from_str::<Value>(&stdout).ok().as_ref() != Some(&prev) {
            failures.push(format!("pod {n}: result {stdout} is not its prevResult"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    for n in 0..PODS {
        assert_eq!(
            lab.tx(n),
            (false, false),
            "pod {n}: TX checksum must be off on both ends"
        );
    }

    // One whole line per end per pod in the shared log: concurrent writers
    // must not interleave inside a line.
    let text = std::fs::read_to_string(&log).unwrap();
    let applied: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("; changed: ["))
        .collect();
    assert_eq!(applied.len(), 2 * PODS, "log:\n{text}");
    for n in 0..PODS {
        let id = format!("cc{n:04}");
        let lines = applied.iter().filter(|l| l.contains(&id)).count();
        assert_eq!(lines, 2, "pod {n} logged {lines} apply lines:\n{text}");
    }
}
