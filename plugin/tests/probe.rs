//! `csum-offload probe` on real netns, on the topology of
//! `common::wire`: the node's uplink cabled to a peer through brokennic,
//! a bridge (a clean path) or nothing.
//!
//! Every verdict is checked against a control on the same topology that
//! gives another verdict, so none can pass by accident.

mod common;

use common::wire::{Cable, Net, SOURCE, TARGET};
use common::{output_within, run, BIN, POD_IF};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn verdict_of(stdout: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(stdout).expect(stdout);
    v["verdict"].as_str().unwrap().to_string()
}

/// Links of the node whose name starts with "csprobe".
fn probe_links() -> Vec<String> {
    run("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("csprobe"))
        .collect()
}

#[test]
fn throwaway_pod_behind_brokennic_is_broken_and_on_a_bridge_ok() {
    let mut net = Net::new("prbt", Cable::BrokenNic);
    net.listen();
    let (code, out, err) = net.probe(&["--source", SOURCE, "--json"]);
    assert_eq!(
        (code, verdict_of(&out).as_str()),
        (1, "broken"),
        "{out}{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "2 tries, off and on");
    for a in attempts {
        let delivered = a["bytesAcked"] == a["bytes"] && a["error"].is_null();
        assert_eq!(delivered, a["mode"] == "off", "{a}");
    }
    assert_eq!(v["uplink"]["nics"][0]["name"], "up0", "{out}");
    assert_eq!(v["uplink"]["nics"][0]["driver"], "veth", "{out}");
    assert!(v["millis"].as_u64().unwrap() < 10_000);
    assert!(probe_links().is_empty(), "the throwaway veth is gone");
    assert!(!run("ip", &["route"]).contains(SOURCE), "its route is gone");
    drop(net);

    // Control: the same path with a bridge instead of the broken NIC.
    let mut net = Net::new("prbt", Cable::Bridge);
    net.listen();
    let (code, out, err) = net.probe(&["--source", SOURCE]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok\n"), "{out}");
}

#[test]
fn netns_mode_is_broken_behind_brokennic_and_puts_features_back() {
    let mut net = Net::new("prbn", Cable::BrokenNic);
    net.wire_pod();
    net.listen();
    let netns = net.lab.netns_path();
    let before = net.pod_ethtool_k();
    assert!(before.contains("tx-checksumming: on"), "{before}");
    let (code, out, err) = net.probe(&["--netns", &netns, "--json"]);
    assert_eq!(
        (code, verdict_of(&out).as_str()),
        (1, "broken"),
        "{out}{err}"
    );
    assert_eq!(net.pod_ethtool_k(), before, "features exactly as before");
    assert!(
        !net.state.exists(),
        "the record is removed after a clean run"
    );

    // Again from a pod whose TX checksum is already off (as the plugin
    // leaves it): the probe turns it on for the "on" transfers, then off.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.lab.pod,
            "ethtool",
            "-K",
            POD_IF,
            "tx",
            "off",
        ],
    );
    let before = net.pod_ethtool_k();
    let (code, out, err) = net.probe(&["--netns", &netns]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(net.pod_ethtool_k(), before, "features exactly as before");
    drop(net);

    // Control: the same pod on a clean path is ok.
    let mut net = Net::new("prbn", Cable::Bridge);
    net.wire_pod();
    net.listen();
    let (code, out, err) = net.probe(&["--netns", &net.lab.netns_path()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn no_listener_and_a_dead_path_are_unreachable() {
    // Clean path, nobody listening: refused, both ways.
    let mut net = Net::new("prbu", Cable::Bridge);
    let (code, out, err) = net.probe(&["--source", SOURCE, "--json"]);
    assert_eq!(
        (code, verdict_of(&out).as_str()),
        (3, "unreachable"),
        "{out}{err}"
    );
    // Control: the same path with a listener.
    net.listen();
    let (code, out, err) = net.probe(&["--source", SOURCE]);
    assert_eq!(code, 0, "{out}{err}");
    drop(net);

    // A wire that forwards nothing, with a listener: every transfer times out.
    let mut net = Net::new("prbu", Cable::Nothing);
    net.listen();
    let t0 = Instant::now();
    let (code, out, err) = net.probe(&["--source", SOURCE, "--timeout-ms", "300"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("timed out"), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// A target that refuses every third connection (the peer's firewall,
/// iptables' nth counter: deterministic, no timing involved): try 1's off
/// and on get through, try 2's off is refused and its on gets through, so
/// the tries disagree.
#[test]
fn a_flapping_target_is_inconclusive() {
    let mut net = Net::new("prbf", Cable::Bridge);
    net.listen();
    // Control first: the same path and listener, no rule.
    let (code, out, err) = net.probe(&["--source", SOURCE]);
    assert_eq!(code, 0, "{out}{err}");
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.peer,
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "5001",
            "--syn",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "3",
            "--packet",
            "2",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    );
    let (code, out, err) = net.probe(&["--source", SOURCE, "--json"]);
    assert_eq!(
        (code, verdict_of(&out).as_str()),
        (4, "inconclusive"),
        "{out}{err}"
    );
}

/// The netns inodes ("net:[...]") a process holds as fds.
fn netns_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.display().to_string())
                .filter(|l| l.starts_with("net:["))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether any process has `ns` ("net:[...]") as its netns or an fd.
fn netns_alive(ns: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        let dir = p.path();
        std::fs::read_link(dir.join("ns/net")).is_ok_and(|l| l.display().to_string() == ns)
            || std::fs::read_dir(dir.join("fd")).is_ok_and(|d| {
                d.flatten().any(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|l| l.display().to_string() == ns)
                })
            })
    })
}

#[test]
fn sigkill_mid_probe_leaves_no_netns_veth_or_route() {
    let mut net = Net::new("prbk", Cable::BrokenNic);
    net.listen();
    let netns_before = run("ip", &["netns", "list"]);
    let own: Vec<String> = netns_fds(std::process::id());
    let mut child = Command::new(BIN)
        .args(net.probe_args(&["--source", SOURCE, "--tries", "3"]))
        .env_remove("CNI_COMMAND")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Mid-probe: the pair exists (the "on" transfers wait 1.5 s each).
    let mut held = Vec::new();
    common::wait_until("the throwaway veth", Duration::from_secs(10), || {
        held = netns_fds(child.id());
        !probe_links().is_empty() && held.len() >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        run("ip", &["route"]).contains(SOURCE),
        "control: its route is there"
    );
    // Not the node's netns (this thread's, the probe's home), nor one this
    // test holds.
    let node = std::fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let throwaway: Vec<String> = held
        .into_iter()
        .filter(|n| !own.contains(n) && *n != node)
        .collect();
    assert!(!throwaway.is_empty(), "the probe holds its netns by fd");
    assert!(netns_alive(&throwaway[0]), "control: the netns is seen");
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel frees the netns asynchronously; bounded wait.
    common::wait_until("the veth to go", Duration::from_secs(10), || {
        probe_links().is_empty()
    });
    assert!(!run("ip", &["route"]).contains(SOURCE), "the route is gone");
    for ns in &throwaway {
        assert!(!netns_alive(ns), "{ns} is still held");
    }
    assert_eq!(
        run("ip", &["netns", "list"]),
        netns_before,
        "no named netns"
    );
}

#[test]
fn sigkill_in_netns_mode_is_put_back_by_the_next_probe() {
    let mut net = Net::new("prbs", Cable::BrokenNic);
    net.wire_pod();
    net.listen();
    let netns = net.lab.netns_path();
    // As the plugin leaves a pod: TX checksum off. The probe turns it on
    // for its "on" transfers, which hang on this path.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.lab.pod,
            "ethtool",
            "-K",
            POD_IF,
            "tx",
            "off",
        ],
    );
    let before = net.pod_ethtool_k();
    let mut child = Command::new(BIN)
        .args(net.probe_args(&["--netns", &netns, "--tries", "3"]))
        .env_remove("CNI_COMMAND")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until("offload on in the pod", Duration::from_secs(10), || {
        net.pod_ethtool_k().contains("tx-checksumming: on")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // Control: the kill left the change, and the record of it.
    assert_ne!(net.pod_ethtool_k(), before);
    assert!(net.state.exists());
    // The next probe (here a quick one, to a port nobody listens on)
    // puts it back before anything else.
    let out = output_within(
        Command::new(BIN)
            .args([
                "probe",
                "--target",
                "10.241.1.2:5002",
                "--netns",
                &netns,
                "--tries",
                "1",
                "--state-file",
                &net.state.display().to_string(),
            ])
            .env_remove("CNI_COMMAND"),
        Duration::from_secs(30),
        "probe",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("put back the TX checksum features a killed probe"),
        "{text}"
    );
    assert_eq!(net.pod_ethtool_k(), before, "features exactly as before");
    assert!(!net.state.exists());
}

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    let cases: &[&[&str]] = &[
        &["probe"],
        &["probe", "--target", "nope"],
        &["probe", "--target", TARGET],
        &[
            "probe", "--target", TARGET, "--netns", "/x", "--source", SOURCE,
        ],
        &[
            "probe", "--target", TARGET, "--source", SOURCE, "--ifname", "eth1",
        ],
        &[
            "probe", "--target", TARGET, "--source", SOURCE, "--tries", "0",
        ],
        &[
            "probe", "--target", TARGET, "--source", SOURCE, "--bytes", "x",
        ],
        &["probe", "--target", "[::1]:80", "--source", SOURCE],
        &["probe", "--target", TARGET, "--source", "fe80::1"],
    ];
    for args in cases {
        let (code, out, err) = common::operator(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            out.is_empty() && err.starts_with("csum-offload: "),
            "{args:?}: {err}"
        );
    }
}
