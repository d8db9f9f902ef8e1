//! A private lab per test: the test thread moves into its own netns (the
//! "host"), with a pod netns and a veth pair between them. Parallel tests
//! never see each other's devices or routes, and the real host is never
//! touched.
#![allow(dead_code)]

use csum_offload::{ethtool, netlink::RouteSocket, netns};
use nix::sched::{unshare, CloneFlags};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_csum-offload");
pub const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (feature name, active, changeable) for every kernel feature.
pub type FeatureTable = Vec<(String, bool, bool)>;

pub struct Lab {
    /// Name of the pod netns under /run/netns.
    pub pod: String,
    /// Host-side veth name (in the test thread's private netns).
    pub host_if: String,
}

#[allow(clippy::new_without_default)] // a Lab changes the thread's netns: not a "default"
impl Lab {
    /// Moves this thread into a fresh netns and builds pod netns + veth
    /// (container end "eth0").
    pub fn new() -> Self {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): tests must run as root");
        run("ip", &["link", "set", "lo", "up"]);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pod = format!("cso-{}-{n}", std::process::id());
        let host_if = format!("csoh{n}");
        run("ip", &["netns", "add", &pod]);
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &pod,
            ],
        );
        run("ip", &["link", "set", &host_if, "up"]);
        run("ip", &["-n", &pod, "link", "set", "eth0", "up"]);
        Lab { pod, host_if }
    }

    pub fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.pod)
    }

    /// Gives the private host netns a default route through a macvlan on a
    /// veth "uplink" (the far end parked in a second netns), so detection
    /// has a real stacked device to follow.
    pub fn add_uplink(&self) {
        let far = format!("{}-far", self.pod);
        run("ip", &["netns", "add", &far]);
        run(
            "ip",
            &[
                "link", "add", "up0", "type", "veth", "peer", "name", "far0", "netns", &far,
            ],
        );
        run("ip", &["link", "set", "up0", "up"]);
        run(
            "ip",
            &[
                "link", "add", "mv0", "link", "up0", "type", "macvlan", "mode", "bridge",
            ],
        );
        run("ip", &["addr", "add", "10.231.0.2/24", "dev", "mv0"]);
        run("ip", &["link", "set", "mv0", "up"]);
        run(
            "ip",
            &["route", "add", "default", "via", "10.231.0.1", "dev", "mv0"],
        );
    }

    /// A bridge "br-up" (10.232.0.2/24) whose only port is a veth: the
    /// walk treats veth ports as pods, so the bridge is its own NIC.
    /// Adds no route.
    pub fn add_bridge_uplink(&self) {
        run("ip", &["link", "add", "br-up", "type", "bridge"]);
        run(
            "ip",
            &["link", "add", "up1", "type", "veth", "peer", "name", "up1p"],
        );
        run("ip", &["link", "set", "up1", "master", "br-up"]);
        for dev in ["br-up", "up1", "up1p"] {
            run("ip", &["link", "set", dev, "up"]);
        }
        run("ip", &["addr", "add", "10.232.0.2/24", "dev", "br-up"]);
    }

    /// Replaces the pod's veth eth0 with a macvlan named eth0 (on it).
    pub fn make_eth0_a_macvlan(&self) {
        run(
            "ip",
            &["-n", &self.pod, "link", "set", "eth0", "name", "veth9"],
        );
        run(
            "ip",
            &[
                "-n", &self.pod, "link", "add", "eth0", "link", "veth9", "type", "macvlan",
            ],
        );
    }

    /// Runs the plugin binary exactly as a runtime does.
    pub fn cni(&self, command: &str, conf: &Value) -> Reply {
        self.cni_env(command, conf, &[("CNI_NETNS", &self.netns_path())])
    }

    pub fn cni_env(&self, command: &str, conf: &Value, extra: &[(&str, &str)]) -> Reply {
        let mut env: Vec<(&str, &str)> = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "ctr-0123456789"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k, v));
        }
        exec(&env, conf.to_string().as_bytes())
    }

    /// Active state of every feature, (container end, host end).
    pub fn features(&self) -> (FeatureTable, FeatureTable) {
        let pod_ns = netns::open(Path::new(&self.netns_path())).unwrap();
        let pod = netns::run_in(&pod_ns, &netns::current().unwrap(), RouteSocket::open)
            .unwrap()
            .unwrap();
        let host = RouteSocket::open().unwrap();
        (
            read_features(pod.fd(), "eth0"),
            read_features(host.fd(), &self.host_if),
        )
    }

    pub fn active(&self, side_host: bool, feature: &str) -> bool {
        let (c, h) = self.features();
        let list = if side_host { h } else { c };
        list.iter()
            .find(|(n, _, _)| n == feature)
            .unwrap_or_else(|| panic!("no feature {feature}"))
            .1
    }

    /// `ethtool -k` of (container end, host end).
    pub fn ethtool_k(&self) -> (String, String) {
        (
            run("ip", &["netns", "exec", &self.pod, "ethtool", "-k", "eth0"]),
            run("ethtool", &["-k", &self.host_if]),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [self.pod.clone(), format!("{}-far", self.pod)] {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// (name, active, changeable) per feature, via ETHTOOL_GFEATURES.
pub fn read_features(fd: i32, ifname: &str) -> FeatureTable {
    let names = ethtool::feature_names(fd, ifname).unwrap();
    let state = ethtool::features(fd, ifname, names.len()).unwrap();
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, state.active(i), state.changeable(i)))
        .collect()
}

/// The line `ethtool -k` prints for a feature, e.g. "on" or "off [fixed]".
pub fn ethtool_value(output: &str, feature: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{feature}: ")))
        .unwrap_or_else(|| panic!("{feature} not in ethtool -k output"))
        .to_string()
}

#[derive(Debug)]
pub struct Reply {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// Asserts a CNI error object with this code; returns its msg.
    pub fn expect_error(&self, code: u64) -> String {
        assert_ne!(
            self.code, 0,
            "expected failure, got success: {}",
            self.stdout
        );
        let v = self.json();
        assert_eq!(v["code"], code, "wrong code: {v}\nstderr: {}", self.stderr);
        v["msg"].as_str().unwrap().to_string()
    }

    pub fn expect_ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn exec(env: &[(&str, &str)], stdin: &[u8]) -> Reply {
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Reply {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A prevResult as a ptp/bridge plugin of that version would return it,
/// with an extra field no plugin knows, which must survive.
pub fn prev_result(version: &str, sandbox: &str) -> Value {
    let ip = if version.starts_with("0.") {
        serde_json::json!({"version": "4", "address": "10.230.0.5/24", "gateway": "10.230.0.1", "interface": 1})
    } else {
        serde_json::json!({"address": "10.230.0.5/24", "gateway": "10.230.0.1", "interface": 1})
    };
    serde_json::json!({
        "cniVersion": version,
        "interfaces": [
            {"name": "csoh0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": sandbox}
        ],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.230.0.1"}],
        "dns": {"nameservers": ["10.230.0.1"], "search": ["svc.cluster.local"]},
        "x-vendor-extension": {"keep": [1, 2.5, null, true]}
    })
}

pub fn conf(version: &str, extra: Value, prev: Option<Value>) -> Value {
    let mut c =
        serde_json::json!({"cniVersion": version, "name": "test-net", "type": "csum-offload"});
    let obj = c.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    if let Some(p) = prev {
        obj.insert("prevResult".into(), p);
    }
    c
}
