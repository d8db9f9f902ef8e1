//! The one harness of the root integration tests: a private lab per test,
//! the plugin binary run the way a runtime runs it, and its reply.
//!
//! A lab is a "host" netns (`<tag>-<pid>-<n>-host`) the test thread moves
//! into, and one or more pod netns (`<tag>-<pid>-<n>-<i>`), each joined to
//! the host by a veth pair (container end `eth0`, host end `<tag>h<i>`).
//! The binary the test spawns inherits the thread's netns, so it runs in
//! the lab's host exactly as under a runtime on a node. Parallel tests
//! never see each other's devices or routes; the real host is never
//! touched, and dropping the lab deletes every netns it made and moves the
//! thread back.
#![allow(dead_code)]

pub mod wire;

use nix::sched::{setns, CloneFlags};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_csum-offload");
pub const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The container end of every lab pod.
pub const POD_IF: &str = "eth0";

static LABS: AtomicUsize = AtomicUsize::new(0);

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

/// `ip [-n NETNS] -batch -` with these lines: one process for many links.
pub fn ip_batch(netns: Option<&str>, lines: &[String]) {
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

/// (feature name, active, changeable) for every kernel feature.
pub type FeatureTable = Vec<(String, bool, bool)>;

pub struct Lab {
    /// Name of the host netns under /run/netns (the test thread is in it).
    pub host: String,
    /// Name of the first pod's netns under /run/netns.
    pub pod: String,
    /// Host-side veth of the first pod.
    pub host_if: String,
    /// Every pod netns, in order; `pod` is the first.
    pub pods: Vec<String>,
    tag: String,
    /// The netns the test thread came from, to return to on drop.
    home: File,
}

impl Lab {
    /// A lab with one pod.
    pub fn new(tag: &str) -> Self {
        Self::with_pods(tag, 1)
    }

    /// A lab with `count` pods, each on its own veth pair.
    pub fn with_pods(tag: &str, count: usize) -> Self {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let base = format!("{tag}-{}-{n}", std::process::id());
        let pods: Vec<String> = (0..count).map(|i| format!("{base}-{i}")).collect();
        let home = File::open("/proc/thread-self/ns/net").expect("own netns");
        // Built before anything can fail, so drop always cleans up.
        let lab = Lab {
            host: format!("{base}-host"),
            pod: pods[0].clone(),
            host_if: format!("{tag}h0"),
            pods,
            tag: tag.to_string(),
            home,
        };
        let mut add = vec![format!("netns add {}", lab.host)];
        add.extend(lab.pods.iter().map(|p| format!("netns add {p}")));
        ip_batch(None, &add);
        let mut links = vec!["link set lo up".to_string()];
        for (i, pod) in lab.pods.iter().enumerate() {
            let host_if = lab.host_if_of(i);
            links.push(format!(
                "link add {host_if} type veth peer name {POD_IF} netns {pod}"
            ));
            links.push(format!("link set {host_if} up"));
        }
        ip_batch(Some(&lab.host), &links);
        for pod in &lab.pods {
            ip_batch(Some(pod), &[format!("link set {POD_IF} up")]);
        }
        let host_ns = File::open(format!("/run/netns/{}", lab.host)).unwrap();
        setns(&host_ns, CloneFlags::CLONE_NEWNET).expect("setns: tests must run as root");
        lab
    }

    /// The host end of pod `i`.
    pub fn host_if_of(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    pub fn netns_path(&self) -> String {
        self.netns_path_of(0)
    }

    pub fn netns_path_of(&self, i: usize) -> String {
        format!("/run/netns/{}", self.pods[i])
    }

    /// Gives the host netns a default route through a macvlan on a veth
    /// "uplink" (the far end parked in a second netns), so detection has a
    /// real stacked device to follow.
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
        // Carrier on up0, which nexthop objects need.
        run("ip", &["-n", &far, "link", "set", "far0", "up"]);
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

    /// Replaces the first pod's veth eth0 with a macvlan named eth0 (on it).
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

    /// The environment a runtime sets for `command` on the first pod.
    pub fn env(&self, command: &str) -> Vec<(String, String)> {
        [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", "ctr-0123456789".to_string()),
            ("CNI_NETNS", self.netns_path()),
            ("CNI_IFNAME", POD_IF.to_string()),
            ("CNI_PATH", "/usr/lib/cni".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs the plugin binary exactly as a runtime does, on the first pod.
    pub fn cni(&self, command: &str, conf: &Value) -> Reply {
        self.cni_env(command, conf, &[])
    }

    /// As `cni`, with some variables replaced or added.
    pub fn cni_env(&self, command: &str, conf: &Value, extra: &[(&str, &str)]) -> Reply {
        let mut env = self.env(command);
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        exec(&env, conf.to_string().as_bytes())
    }

    /// Every feature of (container end, host end) of pod `i`.
    pub fn features_of(&self, i: usize) -> (FeatureTable, FeatureTable) {
        let pod_ns = self.netns_path_of(i);
        (
            read_features(Some(Path::new(&pod_ns)), POD_IF),
            read_features(None, &self.host_if_of(i)),
        )
    }

    /// Whether TX checksum offload (`tx-checksum-ip-generic`, the bit a
    /// veth has) is on at (container end, host end) of pod `i`.
    pub fn tx(&self, i: usize) -> (bool, bool) {
        let on = |t: FeatureTable| {
            t.into_iter()
                .find(|(n, _, _)| n == "tx-checksum-ip-generic")
                .expect("a veth has tx-checksum-ip-generic")
                .1
        };
        let (c, h) = self.features_of(i);
        (on(c), on(h))
    }

    /// Every feature of (container end, host end) of the first pod.
    pub fn features(&self) -> (FeatureTable, FeatureTable) {
        self.features_of(0)
    }

    pub fn active(&self, side_host: bool, feature: &str) -> bool {
        let (c, h) = self.features();
        let list = if side_host { h } else { c };
        list.iter()
            .find(|(n, _, _)| n == feature)
            .unwrap_or_else(|| panic!("no feature {feature}"))
            .1
    }

    /// `ethtool -k` of (container end, host end) of the first pod: the
    /// whole feature table, read by a tool independent of the plugin.
    pub fn ethtool_k(&self) -> (String, String) {
        (
            run("ip", &["netns", "exec", &self.pod, "ethtool", "-k", POD_IF]),
            run("ethtool", &["-k", &self.host_if]),
        )
    }
}

/// A named netns a test makes beside its `Lab`, deleted when dropped, a
/// failed assertion included (a leaked netns outlives the run).
pub struct NamedNetns(pub String);

impl NamedNetns {
    pub fn add(name: String) -> Self {
        run("ip", &["netns", "add", &name]);
        Self(name)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = setns(&self.home, CloneFlags::CLONE_NEWNET);
        let mut del = vec![format!("netns del {}", self.host)];
        for pod in &self.pods {
            del.push(format!("netns del {pod}"));
        }
        // Made by add_uplink; -force goes on past the ones that do not exist.
        del.push(format!("netns del {}-far", self.pod));
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

/// (name, active, changeable) per feature, via ETHTOOL_GFEATURES, of an
/// interface in `netns` (None: the thread's own).
pub fn read_features(netns: Option<&Path>, ifname: &str) -> FeatureTable {
    csum_offload::test_support::feature_table(netns, ifname)
        .unwrap_or_else(|e| panic!("features of {ifname}: {e}"))
}

/// The line `ethtool -k` prints for a feature, e.g. "on" or "off [fixed]".
pub fn ethtool_value(output: &str, feature: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{feature}: ")))
        .unwrap_or_else(|| panic!("{feature} not in ethtool -k output"))
        .to_string()
}

/// What the plugin process left: exit code (None: killed by a signal),
/// stdout, stderr.
#[derive(Debug)]
pub struct Reply {
    pub code: Option<i32>,
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
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected failure, got {:?}: {}",
            self.code,
            self.stdout
        );
        let v = self.json();
        assert_eq!(v["code"], code, "wrong code: {v}\nstderr: {}", self.stderr);
        v["msg"].as_str().unwrap().to_string()
    }

    pub fn expect_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// How long any plugin run may take before the test calls it a hang. Not
/// a speed assertion: a normal run takes milliseconds; this only turns
/// "blocked forever" into a failure that names the input.
pub const HANG: Duration = Duration::from_secs(20);

/// Runs the plugin with exactly this environment and stdin; a run that
/// does not end within `HANG` is killed and fails the test.
pub fn exec<K: AsRef<OsStr>, V: AsRef<OsStr>>(env: &[(K, V)], stdin: &[u8]) -> Reply {
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the plugin");
    let pid = child.id() as i32;
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // The plugin may reject the input before reading all of it, or not
    // read at all: feed it from a thread so neither side can block the other.
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let out = match result.recv_timeout(HANG) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid, which has not been
            // reaped (the waiting thread is still waiting for it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!(
                "the plugin did not finish within {HANG:?} (env {:?})",
                env.iter()
                    .map(|(k, v)| (k.as_ref().to_os_string(), v.as_ref().to_os_string()))
                    .collect::<Vec<_>>()
            );
        }
    };
    let _ = feeder.join();
    Reply {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
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

/// A temp dir for one test's state files, config and textfile; removed
/// on drop.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("csum-scratch-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// Writes `v` as `config.json`; its path.
    pub fn config(&self, v: Value) -> String {
        let path = self.path("config.json");
        std::fs::write(&path, v.to_string()).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// The agent's state file (not created: the agent makes its directory).
    pub fn state(&self) -> String {
        self.path("state/agent.jsonl").to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `csum-offload agent ARGS` run to the end; (exit code, stdout, stderr).
pub fn agent(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["agent"];
    all.extend(args);
    operator(&all)
}

/// `csum-offload ARGS` (an operator command) run to the end; (exit code,
/// stdout, stderr).
pub fn operator(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
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

/// A directory under /var/log (the only tree a `logFile` may be in) for
/// one test's log files; removed on drop.
pub struct LogDir(pub std::path::PathBuf);

impl LogDir {
    pub fn new(tag: &str) -> Self {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let dir = std::path::PathBuf::from(format!(
            "/var/log/csum-offload-test-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a directory under /var/log");
        LogDir(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for `child` until `timeout`, then kills it and panics: a hang
/// becomes a test failure instead of a stuck suite. Returns its output.
pub fn finish_within(
    mut child: std::process::Child,
    timeout: std::time::Duration,
    what: &str,
) -> std::process::Output {
    use std::io::Read;
    // Pipes are drained on their own threads, so a chatty child never
    // blocks on a full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?} (a hang)");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) as `finish_within`.
pub fn output_within(
    cmd: &mut Command,
    timeout: std::time::Duration,
    what: &str,
) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    finish_within(child, timeout, what)
}

/// A CNI conf dir and bin dir for installer tests, under the temp dir
/// (never the host's), removed on drop.
pub struct InstallDirs {
    pub root: std::path::PathBuf,
}

impl InstallDirs {
    pub fn new(tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!("csum-offload-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("net.d")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        InstallDirs { root }
    }

    pub fn conf(&self) -> std::path::PathBuf {
        self.root.join("net.d")
    }

    pub fn bin(&self) -> std::path::PathBuf {
        self.root.join("bin")
    }

    /// `BINARY VERB --cni-conf-dir .. --cni-bin-dir ..`, outside any CNI
    /// invocation.
    pub fn command_with(&self, binary: &Path, verb: &str) -> Command {
        let mut cmd = Command::new(binary);
        cmd.arg(verb)
            .arg("--cni-conf-dir")
            .arg(self.conf())
            .arg("--cni-bin-dir")
            .arg(self.bin())
            .env_remove("CNI_COMMAND");
        cmd
    }

    /// `csum-offload VERB` on these dirs.
    pub fn command(&self, verb: &str) -> Command {
        self.command_with(Path::new(BIN), verb)
    }
}

impl Drop for InstallDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// kindnet's conflist, as the primary CNI of most installer tests.
pub fn kindnet_conflist() -> Value {
    serde_json::json!({
        "cniVersion": "0.3.1",
        "name": "kindnet",
        "plugins": [
            {"type": "ptp", "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]}, "mtu": 1500},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

/// Runs `cmd` in a network namespace of its own (only `lo`, no routes),
/// as on a node without a default route: detection finds no uplink.
pub fn in_empty_netns(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: unshare(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| match libc::unshare(libc::CLONE_NEWNET) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        })
    }
}

/// Capabilities by number (linux/capability.h).
pub const CAP_CHOWN: u32 = 0;
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_DAC_READ_SEARCH: u32 = 2;

/// Runs `cmd` without `caps`, dropped from the bounding set so the exec
/// cannot get them back: the DaemonSet's `capabilities: drop: [ALL]`.
pub fn without_caps<'a>(cmd: &'a mut Command, caps: &'static [u32]) -> &'a mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &cap in caps {
                if libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
            libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0);
            Ok(())
        })
    }
}

/// Without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, root reads and
/// writes only what the mode bits let a file's owner do.
pub fn without_dac_override(cmd: &mut Command) -> &mut Command {
    without_caps(cmd, &[CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH])
}

/// A long-running process (`install` without `--once`, `agent` without
/// `--once`) with its stderr in a log file; killed on drop if the test did
/// not stop it.
pub struct Daemon {
    child: Option<std::process::Child>,
    pub log: std::path::PathBuf,
}

impl Daemon {
    pub fn spawn(cmd: &mut Command, log: std::path::PathBuf) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the daemon");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 10 s) until the log contains `what`; the log.
    pub fn wait_log(&self, what: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(what) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what:?} in the log:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `signal` and does not wait.
    pub fn send(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits for the exit (after a signal), at most `timeout`.
    pub fn wait(mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not exit within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status within 10 s.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.send(libc::SIGTERM);
        self.wait(std::time::Duration::from_secs(10))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `cond` every 20 ms; panics after `timeout` with `what`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
