//! 50 pods starting at once: 50 plugin processes run in parallel on 50
//! pod netns, all sharing one host netns and one log file. All must
//! succeed, all must hand back their prevResult, and every veth end must
//! end with the policy applied (read back with ETHTOOL_GFEATURES).
//!
//! The lab lives in netns of its own (`cc-<pid>-host`, `cc-<pid>-<n>`,
//! deleted on drop); the test thread moves into the host one so the
//! processes it spawns run there, as under a runtime.

use csum_offload::{ethtool, netlink::RouteSocket, netns};
use nix::sched::{setns, CloneFlags};
use serde_json::{json, Value};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_csum-offload");
const PODS: usize = 50;
const POD_IF: &str = "eth0";

fn ip_batch(netns: Option<&str>, lines: &[String]) {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Lab {
    host: String,
    pods: Vec<String>,
    home: File,
}

impl Lab {
    fn new() -> Self {
        let base = format!("cc-{}", std::process::id());
        let lab = Lab {
            host: format!("{base}-host"),
            pods: (0..PODS).map(|n| format!("{base}-{n}")).collect(),
            home: File::open("/proc/thread-self/ns/net").unwrap(),
        };
        let mut add: Vec<String> = vec![format!("netns add {}", lab.host)];
        add.extend(lab.pods.iter().map(|p| format!("netns add {p}")));
        ip_batch(None, &add);
        let mut links = vec!["link set lo up".to_string()];
        for (n, pod) in lab.pods.iter().enumerate() {
            links.push(format!(
                "link add {} type veth peer name {POD_IF} netns {pod}",
                host_if(n)
            ));
            links.push(format!("link set {} up", host_if(n)));
        }
        ip_batch(Some(&lab.host), &links);
        for pod in &lab.pods {
            ip_batch(Some(pod), &[format!("link set {POD_IF} up")]);
        }
        let host_ns = File::open(format!("/run/netns/{}", lab.host)).unwrap();
        setns(&host_ns, CloneFlags::CLONE_NEWNET).expect("setns: tests must run as root");
        lab
    }

    fn netns(&self, n: usize) -> String {
        format!("/run/netns/{}", self.pods[n])
    }

    /// TX checksum (tx-checksum-ip-generic) of (pod end, host end) of pod n.
    fn tx_checksum(&self, n: usize) -> (bool, bool) {
        let pod_ns = netns::open(Path::new(&self.netns(n))).unwrap();
        let pod = netns::run_in(&pod_ns, &netns::current().unwrap(), RouteSocket::open)
            .unwrap()
            .unwrap();
        let host = RouteSocket::open().unwrap();
        (
            active(pod.fd(), POD_IF, "tx-checksum-ip-generic"),
            active(host.fd(), &host_if(n), "tx-checksum-ip-generic"),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = setns(&self.home, CloneFlags::CLONE_NEWNET);
        let mut del = vec![format!("netns del {}", self.host)];
        del.extend(self.pods.iter().map(|p| format!("netns del {p}")));
        let _ = Command::new("ip")
            .args(["-force", "-batch", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(del.join("\n").as_bytes())?;
                c.wait()
            });
    }
}

fn host_if(n: usize) -> String {
    format!("cch{n}")
}

fn active(fd: i32, ifname: &str, feature: &str) -> bool {
    let names = ethtool::feature_names(fd, ifname).unwrap();
    let index = names
        .iter()
        .position(|n| n == feature)
        .unwrap_or_else(|| panic!("kernel has no feature {feature}"));
    ethtool::features(fd, ifname, names.len())
        .unwrap()
        .active(index)
}

#[test]
fn fifty_parallel_adds_all_apply_the_policy() {
    let lab = Lab::new();
    for n in 0..PODS {
        assert_eq!(
            lab.tx_checksum(n),
            (true, true),
            "pod {n} starts with TX checksum on"
        );
    }
    let log = std::env::temp_dir().join(format!("cc-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);

    // Start all 50 before waiting for any, so they really overlap.
    let mut running: Vec<(Child, Value)> = Vec::new();
    for n in 0..PODS {
        let netns = lab.netns(n);
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": host_if(n)},
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
            lab.tx_checksum(n),
            (false, false),
            "pod {n}: TX checksum must be off on both ends"
        );
    }

    // One whole line per end per pod in the shared log: concurrent writers
    // must not interleave inside a line.
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
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
