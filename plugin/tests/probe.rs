//! `csum-offload probe` on real netns: the lab's host is the node, its
//! uplink `up0` (10.241.1.1/24, forwarding on) is cabled to a "peer" netns
//! (10.241.1.2, a healthy NIC: TX checksum off) through a "wire" netns
//! that holds either brokennic (frames moved verbatim, partial checksums
//! left partial), a bridge (a clean path) or nothing (drops everything).
//! The peer routes the pods' 10.241.9.0/24 back through the node and runs
//! a listener that reads and discards.
//!
//! Every verdict is checked against a control on the same topology that
//! gives another verdict, so none can pass by accident.

mod common;

use common::{ip_batch, output_within, run, Lab, BIN, POD_IF};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEER_IP: &str = "10.241.1.2";
const TARGET: &str = "10.241.1.2:5001";
const SOURCE: &str = "10.241.9.7";
const POD_IP: &str = "10.241.9.5";

/// brokennic from e2e/wire, beside the binary under test (`cargo test
/// --workspace` builds it there); built once if it is not.
fn brokennic() -> PathBuf {
    let dir = Path::new(BIN).parent().unwrap();
    let path = dir.join("brokennic");
    if !path.exists() {
        let target_dir = dir.parent().unwrap();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--locked", "-p", "csum-offload-wire"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build brokennic");
        assert!(status.success(), "building brokennic");
    }
    path
}

/// What sits in the wire netns between the node and the peer.
#[derive(Clone, Copy, PartialEq)]
enum Cable {
    BrokenNic,
    Bridge,
    Nothing,
}

/// The node (the lab's host), the wire and the peer, and what runs there.
struct Net {
    lab: Lab,
    wire: String,
    peer: String,
    nic: Option<std::process::Child>,
    listener: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    state: PathBuf,
}

impl Net {
    fn new(tag: &str, cable: Cable) -> Self {
        let lab = Lab::new(tag);
        let (wire, peer) = (format!("{}-w", lab.pod), format!("{}-p", lab.pod));
        let state = std::env::temp_dir().join(format!("{}-probe-state.json", lab.pod));
        let mut net = Net {
            lab,
            wire,
            peer,
            nic: None,
            listener: None,
            state,
        };
        ip_batch(
            None,
            &[
                format!("netns add {}", net.wire),
                format!("netns add {}", net.peer),
            ],
        );
        let (w, p) = (net.wire.clone(), net.peer.clone());
        ip_batch(
            None,
            &[
                format!("link add up0 type veth peer name nica netns {w}"),
                "addr add 10.241.1.1/24 dev up0".into(),
                "link set up0 up".into(),
                format!("route add default via {PEER_IP}"),
            ],
        );
        run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        ip_batch(
            Some(&p),
            &[
                format!("link add eth0 type veth peer name nicb netns {w}"),
                "link set lo up".into(),
                format!("addr add {PEER_IP}/24 dev eth0"),
                "link set eth0 up".into(),
                "route add 10.241.9.0/24 via 10.241.1.1".into(),
            ],
        );
        // The remote host's NIC is healthy: it sends complete checksums.
        run(
            "ip",
            &["netns", "exec", &p, "ethtool", "-K", "eth0", "tx", "off"],
        );
        ip_batch(
            Some(&w),
            &["link set nica up".into(), "link set nicb up".into()],
        );
        match cable {
            Cable::Bridge => ip_batch(
                Some(&w),
                &[
                    "link add br0 type bridge".into(),
                    "link set nica master br0".into(),
                    "link set nicb master br0".into(),
                    "link set br0 up".into(),
                ],
            ),
            Cable::BrokenNic => {
                let ready = std::env::temp_dir().join(format!("{w}.ready"));
                let _ = std::fs::remove_file(&ready);
                let child = Command::new("ip")
                    .args(["netns", "exec", &w])
                    .arg(brokennic())
                    .args(["--a", "nica", "--b", "nicb", "--seconds", "120"])
                    .arg("--ready-file")
                    .arg(&ready)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start brokennic");
                net.nic = Some(child);
                common::wait_until("brokennic ready", Duration::from_secs(10), || {
                    ready.exists()
                });
                let _ = std::fs::remove_file(&ready);
            }
            Cable::Nothing => {}
        }
        net
    }

    /// A listener on the peer's port 5001 that reads and discards, in a
    /// thread inside the peer netns, for at most 60 s.
    fn listen(&mut self) {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.peer)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind("0.0.0.0:5001").unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut conns = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok((c, _)) = listener.accept() {
                    c.set_nonblocking(true).unwrap();
                    conns.push(c);
                }
                conns.retain_mut(|c| match c.read(&mut buf) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                });
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("listener up");
        self.listener = Some((stop, handle));
    }

    /// The lab's pod wired like the ptp plugin: eth0 10.241.9.5/32, the
    /// host end 10.241.9.1/32 as its gateway, a host route to the pod.
    fn wire_pod(&self) {
        ip_batch(
            Some(&self.lab.pod),
            &[
                format!("addr add {POD_IP}/32 dev {POD_IF}"),
                format!("route add 10.241.9.1 dev {POD_IF} scope link"),
                "route add default via 10.241.9.1".into(),
            ],
        );
        ip_batch(
            None,
            &[
                format!("addr add 10.241.9.1/32 dev {}", self.lab.host_if),
                format!("route add {POD_IP}/32 dev {}", self.lab.host_if),
            ],
        );
    }

    fn probe_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "probe".into(),
            "--target".into(),
            TARGET.into(),
            "--state-file".into(),
            self.state.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Runs a probe to the end (at most 30 s); (exit code, stdout, stderr).
    fn probe(&self, extra: &[&str]) -> (i32, String, String) {
        let out = output_within(
            Command::new(BIN)
                .args(self.probe_args(extra))
                .env_remove("CNI_COMMAND"),
            Duration::from_secs(30),
            "probe",
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn pod_ethtool_k(&self) -> String {
        run(
            "ip",
            &["netns", "exec", &self.lab.pod, "ethtool", "-k", POD_IF],
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut c) = self.nic.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some((stop, handle)) = self.listener.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
        for ns in [&self.wire, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_file(&self.state);
        let mut lock = self.state.as_os_str().to_owned();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
    }
}

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
