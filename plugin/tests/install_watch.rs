//! The installer's watch loop, run as the real binary on temp dirs: a
//! second writer keeps rewriting the primary conflist (as kindnet does at
//! start); the entry must come back, be there exactly once, every file a
//! reader sees must be complete JSON, and SIGTERM must take it out.

use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{kindnet_conflist as kindnet, wait_until as wait_for, Daemon, InstallDirs};

/// `csum-offload VERB` on these dirs in a netns of its own: detection
/// never depends on this machine's routes (configs that must be ready set
/// hostDriver).
fn command(dirs: &InstallDirs, verb: &str) -> Command {
    let mut cmd = dirs.command(verb);
    common::in_empty_netns(&mut cmd);
    cmd
}

/// The installer's log (its stderr, see `start`).
fn installer_log(dirs: &InstallDirs) -> String {
    fs::read_to_string(dirs.root.join("installer.log")).unwrap_or_default()
}

/// The watch loop (`install` without `--once`) with `config`, if any, as
/// its `--config`; its stderr goes to `log`.
fn start(dirs: &InstallDirs, config: Option<&Value>) -> Daemon {
    let mut cmd = command(dirs, "install");
    if let Some(config) = config {
        let path = dirs.root.join("config.json");
        fs::write(&path, config.to_string()).unwrap();
        cmd.arg("--config").arg(path);
    }
    Daemon::spawn(&mut cmd, dirs.root.join("installer.log"))
}

/// `signal`, then the exit status within 10 s.
fn stop_with(installer: Daemon, signal: i32) -> std::process::ExitStatus {
    installer.send(signal);
    installer.wait(Duration::from_secs(10))
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn our_entries(list: &Value) -> usize {
    list["plugins"].as_array().map_or(0, |p| {
        p.iter().filter(|p| p["type"] == "csum-offload").count()
    })
}

/// Replaces a file the way a careful CNI does: temp file, then rename.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(".writer-tmp");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn check(dir: &InstallDirs, config: &Value) -> bool {
    let path = dir.root.join("config.json");
    fs::write(&path, config.to_string()).unwrap();
    ready(dir, &path)
}

/// The DaemonSet's readiness probe: `install --check` with this config file.
fn ready(dir: &InstallDirs, config: &Path) -> bool {
    command(dir, "install")
        .arg("--check")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn entry_survives_a_rewriting_primary_cni_and_leaves_on_sigterm() {
    let dir = InstallDirs::new("watch-fight");
    let primary = dir.conf().join("10-kindnet.conflist");
    let original = serde_json::to_vec(&kindnet()).unwrap();
    fs::write(&primary, &original).unwrap();
    let config = json!({"hostDriver": "txgbe", "logLevel": "debug"});
    let installer = start(&dir, Some(&config));
    wait_for("the first insert", Duration::from_secs(20), || {
        read_json(&primary).is_some_and(|v| our_entries(&v) == 1)
    });
    assert!(dir.bin().join("csum-offload").exists(), "binary copied");
    assert!(check(&dir, &config), "readiness check passes once in place");

    // A reader samples every version of the directory while it changes.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, conf) = (stop.clone(), dir.conf());
        thread::spawn(move || {
            let (mut reads, mut problems) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) && reads < 200_000 {
                for e in fs::read_dir(&conf).unwrap().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let is_config = [".conf", ".conflist", ".json"]
                        .iter()
                        .any(|x| name.ends_with(x));
                    if !is_config {
                        continue;
                    }
                    if name != "10-kindnet.conflist" {
                        problems.push(format!("unexpected config file {name}"));
                        continue;
                    }
                    let Ok(bytes) = fs::read(e.path()) else {
                        continue;
                    };
                    reads += 1;
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v) if our_entries(&v) <= 1 => {}
                        Ok(v) => problems.push(format!("entry {} times: {v}", our_entries(&v))),
                        Err(err) => problems.push(format!(
                            "invalid JSON ({err}): {}",
                            String::from_utf8_lossy(&bytes)
                        )),
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
            (reads, problems)
        })
    };

    // The second writer: 40 rewrites without our entry, 25 ms apart.
    for _ in 0..40 {
        write_atomically(&primary, &original);
        thread::sleep(Duration::from_millis(25));
    }
    // After it stops, the entry is back (within the throttle's back-off).
    wait_for("the entry to come back", Duration::from_secs(40), || {
        read_json(&primary).is_some_and(|v| our_entries(&v) == 1)
    });
    stop.store(true, Ordering::Relaxed);
    let (reads, problems) = reader.join().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(reads > 50, "the reader saw only {reads} versions");

    let v = read_json(&primary).unwrap();
    let mut want = kindnet();
    want["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "csum-offload", "managedBy": "csum-offload-installer", "hostDriver": "txgbe", "logLevel": "debug"}));
    assert_eq!(v, want, "entry last, everything else kept");
    let log = installer_log(&dir);
    assert!(
        log.contains("another writer keeps"),
        "throttle warning missing:\n{log}"
    );
    let writes = log.matches("csum-offload entry written to").count();
    assert!(
        (2..=20).contains(&writes),
        "{writes} writes for 40 rewrites: the throttle did not hold back\n{log}"
    );
    assert!(
        log.contains("detect: settings applied to pod veths: tx off"),
        "{log}"
    );

    let status = installer.terminate();
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        installer_log(&dir)
    );
    let after = read_json(&primary).unwrap();
    assert_eq!(
        after,
        kindnet(),
        "SIGTERM removed the entry and nothing else"
    );
    assert!(
        dir.bin().join("csum-offload").exists(),
        "binary kept by default"
    );
    let leftovers: Vec<_> = fs::read_dir(dir.conf())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".csum-offload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn waits_for_a_config_converts_a_conf_follows_a_new_first_file_and_restores() {
    let dir = InstallDirs::new("watch-wait");
    let installer = start(&dir, None);
    wait_for("the waiting message", Duration::from_secs(20), || {
        installer_log(&dir).contains("waiting for a network config")
    });
    // An invalid file is left alone (and logged), not edited.
    let bad = dir.conf().join("05-broken.conflist");
    fs::write(&bad, b"{\"name\": \"x\", \"plugins\": [").unwrap();
    // The primary CNI writes a single-plugin .conf.
    let conf = dir.conf().join("10-bridge.conf");
    let conf_bytes = br#"{"cniVersion":"1.0.0","name":"mynet","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.99.0.0/24"}}"#;
    fs::write(&conf, conf_bytes).unwrap();
    let list = dir.conf().join("10-bridge.conflist");
    wait_for("the .conf converted", Duration::from_secs(20), || {
        read_json(&list).is_some_and(|v| our_entries(&v) == 1) && !conf.exists()
    });
    assert_eq!(fs::read(&bad).unwrap(), b"{\"name\": \"x\", \"plugins\": [");
    let log = installer_log(&dir);
    assert_eq!(
        log.matches("waiting for a network config").count(),
        1,
        "{log}"
    );
    assert!(log.contains("05-broken.conflist: skipped"), "{log}");

    // A new first file appears: the entry goes there too. Someone deleted
    // the binary just before: it comes back with that pass (the entry must
    // never name a missing plugin).
    fs::remove_file(dir.bin().join("csum-offload")).unwrap();
    let first = dir.conf().join("01-new.conflist");
    fs::write(&first, serde_json::to_vec(&kindnet()).unwrap()).unwrap();
    wait_for(
        "the entry in the new first file",
        Duration::from_secs(20),
        || read_json(&first).is_some_and(|v| our_entries(&v) == 1),
    );
    wait_for("the binary copied again", Duration::from_secs(20), || {
        dir.bin().join("csum-offload").exists()
    });
    // The primary CNI rewrites its file in place (`cp`, as flannel's
    // install-cni does): same inode, new content, entry back.
    fs::write(&first, serde_json::to_vec(&kindnet()).unwrap()).unwrap();
    wait_for(
        "the entry after an in-place rewrite",
        Duration::from_secs(20),
        || read_json(&first).is_some_and(|v| our_entries(&v) == 1),
    );

    // Ctrl-C (SIGINT) takes the same path as SIGTERM.
    let status = stop_with(installer, libc::SIGINT);
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        installer_log(&dir)
    );
    assert!(
        installer_log(&dir).contains("SIGINT received"),
        "{}",
        installer_log(&dir)
    );
    assert_eq!(
        fs::read(&conf).unwrap(),
        conf_bytes,
        "original .conf restored byte for byte"
    );
    assert!(!list.exists());
    assert_eq!(read_json(&first).unwrap(), kindnet());
    let mut names: Vec<_> = fs::read_dir(dir.conf())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["01-new.conflist", "05-broken.conflist", "10-bridge.conf"]
    );
}

#[test]
fn a_bad_config_is_refused_before_anything_is_written() {
    let dir = InstallDirs::new("watch-badconfig");
    let primary = dir.conf().join("10-kindnet.conflist");
    let original = serde_json::to_vec(&kindnet()).unwrap();
    fs::write(&primary, &original).unwrap();
    let path = dir.root.join("config.json");
    fs::write(&path, r#"{"drivers": {"txgbe": {"txcsum": false}}}"#).unwrap();
    let out = command(&dir, "install")
        .arg("--once")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown offload feature \"txcsum\""),
        "{stderr}"
    );
    assert_eq!(fs::read(&primary).unwrap(), original);
    assert!(!dir.bin().join("csum-offload").exists());
}

#[test]
fn multus_first_needs_conf_file_and_then_edits_the_delegate() {
    let dir = InstallDirs::new("multus");
    let multus = br#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim","socketDir":"/run/multus/"}"#;
    let calico = json!({"cniVersion": "0.3.1", "name": "k8s-pod-network", "plugins": [{"type": "calico"}, {"type": "portmap"}]});
    fs::write(dir.conf().join("00-multus.conf"), multus).unwrap();
    fs::write(dir.conf().join("10-calico.conflist"), calico.to_string()).unwrap();
    let run = |extra: &[&str]| {
        command(&dir, "install")
            .arg("--once")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("multus-shim") && stderr.contains("--conf-file"),
        "{stderr}"
    );
    assert_eq!(
        read_json(&dir.conf().join("10-calico.conflist")).unwrap(),
        calico
    );
    let out = run(&["--conf-file", "10-calico.conflist"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        our_entries(&read_json(&dir.conf().join("10-calico.conflist")).unwrap()),
        1
    );
    assert_eq!(fs::read(dir.conf().join("00-multus.conf")).unwrap(), multus);
    let out = run(&["--conf-file", "10-calico.conf"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be the name of a .conflist"));
}

#[test]
fn rolling_update_hands_over_without_a_gap_and_deletion_still_removes() {
    let dir = InstallDirs::new("handover");
    let primary = dir.conf().join("10-kindnet.conflist");
    fs::write(&primary, serde_json::to_vec(&kindnet()).unwrap()).unwrap();
    let entry = |v: &Value| {
        v["plugins"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["type"] == "csum-offload").cloned())
    };
    let old = start(&dir, Some(&json!({"logLevel": "info"})));
    wait_for("the old installer's entry", Duration::from_secs(20), || {
        read_json(&primary).and_then(|v| entry(&v))
            == Some(
                json!({"type": "csum-offload", "managedBy": "csum-offload-installer", "logLevel": "info"}),
            )
    });
    // The new version starts next to the old one (maxSurge) with a new
    // config: it takes over, and the old one stops editing.
    let new_dir = InstallDirs::new("handover-new");
    let new_config = new_dir.root.join("config.json");
    fs::write(&new_config, r#"{"logLevel": "debug"}"#).unwrap();
    let new = Daemon::spawn(
        command(&dir, "install").arg("--config").arg(&new_config),
        new_dir.root.join("installer.log"),
    );
    let want_new = Some(
        json!({"type": "csum-offload", "managedBy": "csum-offload-installer", "logLevel": "debug"}),
    );
    wait_for("the new installer's entry", Duration::from_secs(20), || {
        read_json(&primary).and_then(|v| entry(&v)) == want_new
    });
    wait_for(
        "the old installer to stand by",
        Duration::from_secs(20),
        || installer_log(&dir).contains("a newer installer took over this node"),
    );
    // No fight: the entry stays the new one while both run.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(read_json(&primary).and_then(|v| entry(&v)), want_new);
    assert!(
        !installer_log(&dir).contains("another writer keeps"),
        "{}",
        installer_log(&dir)
    );

    // The old pod is deleted: the entry stays for the new one, with no gap.
    let status = old.terminate();
    assert!(status.success());
    assert!(
        installer_log(&dir).contains("leaving the entry to it"),
        "{}",
        installer_log(&dir)
    );
    assert_eq!(read_json(&primary).and_then(|v| entry(&v)), want_new);

    // Deleting the DaemonSet: the active (new) installer removes it.
    let status = new.terminate();
    assert!(status.success());
    assert_eq!(read_json(&primary).unwrap(), kindnet());
    assert!(!dir.conf().join(".csum-offload.active").exists());
}

/// The directory as the runtime would load it: every config file must be
/// complete JSON, and the first one must be the bridge network.
fn assert_loadable(conf: &Path, when: &str) {
    let mut names: Vec<String> = fs::read_dir(conf)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|x| n.ends_with(x))
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "{when}: no config left");
    for name in &names {
        let v = read_json(&conf.join(name));
        assert!(v.is_some(), "{when}: {name} is not complete JSON");
    }
    let first = read_json(&conf.join(&names[0])).unwrap();
    let bridge = if names[0].ends_with(".conflist") {
        first["plugins"][0]["type"].clone()
    } else {
        first["type"].clone()
    };
    assert_eq!(
        bridge, "bridge",
        "{when}: first config {} is {first}",
        names[0]
    );
}

#[test]
fn killed_mid_edit_never_leaves_a_partial_config() {
    let dir = InstallDirs::new("sigkill");
    let conf = dir.conf().join("10-bridge.conf");
    let original = br#"{"cniVersion":"1.0.0","name":"mynet","type":"bridge","bridge":"cni0"}"#;
    fs::write(&conf, original).unwrap();
    let run = |verb: &str| {
        command(&dir, verb)
            .args(if verb == "install" {
                &["--once"][..]
            } else {
                &[][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Full runs first: they set the range of the kill delays, so kills
    // land before, during and after the edit on any machine.
    let timed = |verb: &str| {
        let start = Instant::now();
        assert!(run(verb).wait().unwrap().success());
        start.elapsed()
    };
    let install_time = timed("install");
    let uninstall_time = timed("uninstall");
    let mut seed = std::process::id() as u64;
    let mut states = std::collections::BTreeSet::new();
    for i in 0..40 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (verb, full) = if i % 2 == 0 {
            ("install", install_time)
        } else {
            ("uninstall", uninstall_time)
        };
        let delay = full.mul_f64(((seed >> 33) % 1000) as f64 / 800.0);
        let mut child = run(verb);
        thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        assert_loadable(&dir.conf(), &format!("{verb} killed after {delay:?}"));
        let mut names: Vec<String> = fs::read_dir(dir.conf())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".csum-offload.tmp-"))
            .collect();
        names.sort();
        states.insert(names.join(" "));
    }
    assert!(
        states.len() >= 2,
        "every kill left the same state ({states:?}): the kills did not reach the edit"
    );
    // Whatever state the kills left, a full run converges.
    assert!(run("install").wait().unwrap().success());
    assert_loadable(&dir.conf(), "after a full install");
    let list = read_json(&dir.conf().join("10-bridge.conflist")).unwrap();
    assert_eq!(our_entries(&list), 1);
    assert!(run("uninstall").wait().unwrap().success());
    assert_eq!(fs::read(&conf).unwrap(), original, "original restored");
}

/// Publishes `config` the way kubelet updates a ConfigMap volume: a new
/// timestamped dir, a `..data_tmp` symlink to it, renamed over `..data`;
/// `config.json` is a symlink through `..data`.
fn publish_configmap(dir: &Path, generation: u32, config: &str) {
    let data = dir.join(format!("..gen_{generation}"));
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("config.json"), config).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen_{generation}"), &tmp).unwrap();
    fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("config.json").exists() {
        std::os::unix::fs::symlink("..data/config.json", dir.join("config.json")).unwrap();
    }
}

#[test]
fn configmap_updates_reach_the_entry_and_bad_ones_do_not() {
    let dir = InstallDirs::new("configmap");
    let primary = dir.conf().join("10-kindnet.conflist");
    fs::write(&primary, serde_json::to_vec(&kindnet()).unwrap()).unwrap();
    let cm = dir.root.join("configmap");
    fs::create_dir_all(&cm).unwrap();
    publish_configmap(&cm, 1, r#"{"hostDriver": "txgbe", "apply": "both"}"#);
    let config = cm.join("config.json");
    let installer = Daemon::spawn(
        command(&dir, "install").arg("--config").arg(&config),
        dir.root.join("installer.log"),
    );
    let entry = || {
        read_json(&primary).and_then(|v| {
            v["plugins"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["type"] == "csum-offload").cloned())
        })
    };
    let ready = || ready(&dir, &config);
    wait_for("the first entry", Duration::from_secs(20), || {
        entry()
            == Some(
                json!({"type": "csum-offload", "managedBy": "csum-offload-installer", "hostDriver": "txgbe", "apply": "both"}),
            )
    });
    assert!(ready());

    // An edited ConfigMap reaches the entry.
    publish_configmap(&cm, 2, r#"{"hostDriver": "txgbe", "apply": "container"}"#);
    wait_for("the updated entry", Duration::from_secs(20), || {
        entry()
            == Some(
                json!({"type": "csum-offload", "managedBy": "csum-offload-installer", "hostDriver": "txgbe", "apply": "container"}),
            )
    });
    assert!(ready());

    // A broken one does not: the entry stays, the log says why, and the
    // readiness check fails until it is fixed.
    publish_configmap(&cm, 3, r#"{"hostDriver": "txgbe", "apply": "pod"}"#);
    wait_for(
        "the config error in the log",
        Duration::from_secs(20),
        || installer_log(&dir).contains("keeping the previous entry"),
    );
    assert_eq!(
        entry(),
        Some(
            json!({"type": "csum-offload", "managedBy": "csum-offload-installer", "hostDriver": "txgbe", "apply": "container"})
        )
    );
    assert!(!ready(), "readiness must fail while the config is invalid");
    publish_configmap(&cm, 4, r#"{"hostDriver": "txgbe", "apply": "host"}"#);
    wait_for("the fixed entry", Duration::from_secs(20), || {
        entry()
            == Some(
                json!({"type": "csum-offload", "managedBy": "csum-offload-installer", "hostDriver": "txgbe", "apply": "host"}),
            )
    });
    assert!(ready());
    assert!(installer.terminate().success());
    assert_eq!(read_json(&primary).unwrap(), kindnet());
}

#[test]
fn sigint_stops_an_installer_started_with_sigint_ignored() {
    // A shell's `&` starts its job with SIGINT ignored. The installer must
    // still stop on it: SIGINT is in its signalfd's mask, and the kernel
    // queues a blocked signal even when its disposition is "ignore".
    use std::os::unix::process::CommandExt;
    let dir = InstallDirs::new("sigign");
    fs::write(
        dir.conf().join("10-kindnet.conflist"),
        kindnet().to_string(),
    )
    .unwrap();
    let mut cmd = command(&dir, "install");
    // SAFETY: signal(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let installer = Daemon::spawn(&mut cmd, dir.root.join("installer.log"));
    let list = dir.conf().join("10-kindnet.conflist");
    wait_for("the entry", Duration::from_secs(10), || {
        read_json(&list).is_some_and(|v| our_entries(&v) == 1)
    });
    let status = stop_with(installer, libc::SIGINT);
    assert!(status.success(), "{status:?}\n{}", installer_log(&dir));
    assert_eq!(read_json(&list).unwrap(), kindnet(), "the entry is gone");
}
