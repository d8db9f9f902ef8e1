//! The probe's topology (tests/probe.rs, tests/agent_probe.rs): the lab's
//! host is the node, its uplink `up0` (10.241.1.1/24, forwarding on) is
//! cabled to a "peer" netns (10.241.1.2, a healthy NIC: TX checksum off)
//! through a "wire" netns that holds either brokennic (frames moved
//! verbatim, partial checksums left partial), a bridge (a clean path) or
//! nothing (drops everything). The peer routes the pods' 10.241.9.0/24
//! back through the node and can run a listener that reads and discards.

use super::{ip_batch, output_within, run, Lab, BIN, POD_IF};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PEER_IP: &str = "10.241.1.2";
pub const TARGET: &str = "10.241.1.2:5001";
pub const SOURCE: &str = "10.241.9.7";
pub const POD_IP: &str = "10.241.9.5";

/// brokennic from e2e/wire, beside the binary under test (`cargo test
/// --workspace` builds it there); built once if it is not.
pub fn brokennic() -> PathBuf {
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
pub enum Cable {
    BrokenNic,
    Bridge,
    Nothing,
}

/// The node (the lab's host), the wire and the peer, and what runs there.
pub struct Net {
    pub lab: Lab,
    pub wire: String,
    pub peer: String,
    nic: Option<std::process::Child>,
    listener: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    pub state: PathBuf,
}

impl Net {
    pub fn new(tag: &str, cable: Cable) -> Self {
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
                super::wait_until("brokennic ready", Duration::from_secs(10), || {
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
    pub fn listen(&mut self) {
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
    pub fn wire_pod(&self) {
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

    pub fn probe_args(&self, extra: &[&str]) -> Vec<String> {
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
    pub fn probe(&self, extra: &[&str]) -> (i32, String, String) {
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

    pub fn pod_ethtool_k(&self) -> String {
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
