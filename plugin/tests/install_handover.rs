//! Two installers on one node, as during a rolling update or a rollback
//! (`maxSurge: 1`): whichever is deleted first, the node keeps its entry;
//! a standby installer resumes when the active one is gone, deleted or
//! killed; and when both stop at once (the DaemonSet is deleted) the entry
//! ends removed. Real binaries on temp dirs, each in a netns of its own.

mod common;

use common::{in_empty_netns, wait_until, Daemon, InstallDirs};
use serde_json::Value;
use std::fs;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const KINDNET: &str = "10-kindnet.conflist";
const WAIT: Duration = Duration::from_secs(20);

fn setup(tag: &str) -> InstallDirs {
    let dirs = InstallDirs::new(tag);
    fs::write(
        dirs.conf().join(KINDNET),
        common::kindnet_conflist().to_string(),
    )
    .unwrap();
    dirs
}

/// An installer whose entry says `level`, so the tests can tell whose
/// entry is in place.
fn installer(dirs: &InstallDirs, name: &str, level: &str) -> Daemon {
    let config = dirs.root.join(format!("{name}.json"));
    fs::write(
        &config,
        format!(r#"{{"hostDriver": "txgbe", "logLevel": "{level}"}}"#),
    )
    .unwrap();
    let mut cmd = dirs.command("install");
    cmd.arg("--config").arg(config);
    in_empty_netns(&mut cmd);
    Daemon::spawn(&mut cmd, dirs.root.join(format!("{name}.log")))
}

/// The logLevel of the entry in place (None: no entry; "" if unreadable).
fn entry_level(dirs: &InstallDirs) -> Option<String> {
    let bytes = fs::read(dirs.conf().join(KINDNET)).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["type"] == "csum-offload")
        .map(|p| p["logLevel"].as_str().unwrap_or_default().to_string())
}

fn leftovers(dirs: &InstallDirs) -> Vec<String> {
    fs::read_dir(dirs.conf())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".csum-offload"))
        .collect()
}

/// Counts the samples of the conflist without the entry until stopped.
fn sample_gaps(dirs: &InstallDirs, stop: Arc<AtomicBool>) -> thread::JoinHandle<(u32, u32)> {
    let path = dirs.conf().join(KINDNET);
    thread::spawn(move || {
        let (mut samples, mut gaps) = (0u32, 0u32);
        while !stop.load(Ordering::Relaxed) && samples < 1_000_000 {
            if let Ok(bytes) = fs::read(&path) {
                samples += 1;
                let has = serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| {
                    v["plugins"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["type"] == "csum-offload"))
                });
                gaps += u32::from(!has);
            }
            thread::sleep(Duration::from_millis(2));
        }
        (samples, gaps)
    })
}

/// `old` runs, then `new` starts next to it and takes over.
fn surge(dirs: &InstallDirs) -> (Daemon, Daemon) {
    let old = installer(dirs, "old", "info");
    wait_until("the old installer's entry", WAIT, || {
        entry_level(dirs).as_deref() == Some("info")
    });
    let new = installer(dirs, "new", "debug");
    wait_until("the new installer's entry", WAIT, || {
        entry_level(dirs).as_deref() == Some("debug")
    });
    wait_until("the old installer standing by", WAIT, || {
        old.log().contains("standing by")
    });
    (old, new)
}

#[test]
fn rollback_the_surge_pod_deleted_and_the_old_installer_resumes() {
    let dirs = setup("rollback");
    let (old, new) = surge(&dirs);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_gaps(&dirs, stop.clone());
    // Rolled back: the surge pod is deleted while the old one runs.
    let status = new.terminate();
    assert!(status.success());
    wait_until("the old installer's entry again", WAIT, || {
        entry_level(&dirs).as_deref() == Some("info")
    });
    stop.store(true, Ordering::Relaxed);
    let (samples, gaps) = sampler.join().unwrap();
    assert_eq!(
        gaps, 0,
        "the conflist had no entry in {gaps} of {samples} samples"
    );
    assert!(samples > 10, "only {samples} samples");
    let log = old.log();
    assert!(log.contains("takes over"), "{log}");
    // The old installer is fully in charge again: a rewrite by the primary
    // CNI gets its entry back, and its SIGTERM (the last one) removes it.
    fs::write(
        dirs.conf().join(KINDNET),
        common::kindnet_conflist().to_string(),
    )
    .unwrap();
    wait_until("the entry back after a rewrite", WAIT, || {
        entry_level(&dirs).as_deref() == Some("info")
    });
    assert!(old.terminate().success());
    assert_eq!(entry_level(&dirs), None);
    assert!(leftovers(&dirs).is_empty(), "{:?}", leftovers(&dirs));
}

#[test]
fn a_killed_holder_is_replaced_by_the_standby() {
    let dirs = setup("crash");
    let (old, new) = surge(&dirs);
    // The active installer dies without a word (OOM, SIGKILL).
    new.send(libc::SIGKILL);
    let _ = new.wait(Duration::from_secs(10));
    assert_eq!(
        entry_level(&dirs).as_deref(),
        Some("debug"),
        "nothing ran its exit path"
    );
    wait_until("the standby taking over", WAIT, || {
        entry_level(&dirs).as_deref() == Some("info")
    });
    assert!(
        old.log().contains("is gone without handing over"),
        "{}",
        old.log()
    );
    assert!(old.terminate().success());
    assert_eq!(entry_level(&dirs), None);
    assert!(leftovers(&dirs).is_empty(), "{:?}", leftovers(&dirs));
}

#[test]
fn deleting_the_daemonset_mid_rollout_removes_the_entry() {
    for round in 0..3 {
        let dirs = setup(&format!("delete-{round}"));
        let (old, new) = surge(&dirs);
        // Both pods get SIGTERM at once.
        old.send(libc::SIGTERM);
        new.send(libc::SIGTERM);
        let logs = [old.log.clone(), new.log.clone()];
        assert!(old.wait(Duration::from_secs(10)).success());
        assert!(new.wait(Duration::from_secs(10)).success());
        let lasts = logs
            .iter()
            .filter(|l| {
                fs::read_to_string(l)
                    .unwrap()
                    .contains("the last installer on this node")
            })
            .count();
        assert_eq!(lasts, 1, "round {round}: exactly one must remove the entry");
        assert_eq!(entry_level(&dirs), None, "round {round}: the entry stayed");
        let v: Value =
            serde_json::from_slice(&fs::read(dirs.conf().join(KINDNET)).unwrap()).unwrap();
        assert_eq!(v, common::kindnet_conflist());
        assert!(
            leftovers(&dirs).is_empty(),
            "round {round}: {:?}",
            leftovers(&dirs)
        );
    }
}

#[test]
fn a_killed_installers_temp_files_go_at_the_next_start() {
    let dirs = setup("stale");
    // Left by installers killed mid-write, in both dirs...
    let stale = [
        dirs.conf().join(".csum-offload.tmp-4242-0"),
        dirs.bin().join(".csum-offload.tmp-4242-1"),
    ];
    for path in &stale {
        fs::write(path, "half a file").unwrap();
    }
    // ...and one an installer still writes: it holds the lock.
    let live = dirs.conf().join(".csum-offload.tmp-4343-0");
    fs::write(&live, "in flight").unwrap();
    let held = fs::File::open(&live).unwrap();
    // SAFETY: flock(2) on a descriptor we own.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    // Long enough for "just swapped out" to be over (2 s), far below the
    // minute the installer used to wait.
    thread::sleep(Duration::from_millis(2300));
    let mut cmd = dirs.command("install");
    cmd.args(["--once", "--config"])
        .arg(dirs.root.join("none.json"));
    fs::write(dirs.root.join("none.json"), r#"{"hostDriver": "txgbe"}"#).unwrap();
    in_empty_netns(&mut cmd);
    let out = common::output_within(&mut cmd, WAIT, "install --once");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for path in &stale {
        assert!(!path.exists(), "{} is still there", path.display());
    }
    assert!(live.exists(), "a temp file someone holds was removed");
    drop(held);
}

#[test]
fn an_upgrade_from_an_installer_without_the_mark_adopts_its_entry() {
    // What an installer from before the managedBy mark leaves: its token
    // (it runs next to the new one during the rollout) and an unmarked
    // entry.
    let dirs = InstallDirs::new("legacy");
    let mut list = common::kindnet_conflist();
    let old_entry = serde_json::json!({"type": "csum-offload", "logLevel": "warn"});
    list["plugins"].as_array_mut().unwrap().push(old_entry);
    fs::write(dirs.conf().join(KINDNET), list.to_string()).unwrap();
    fs::write(
        dirs.conf().join(".csum-offload.active"),
        "pid 1 started 1795681663210277127 id 919a24cfe826516e\n",
    )
    .unwrap();
    let new = installer(&dirs, "new", "debug");
    wait_until("the adopted entry", WAIT, || {
        entry_level(&dirs).as_deref() == Some("debug")
    });
    let v: Value = serde_json::from_slice(&fs::read(dirs.conf().join(KINDNET)).unwrap()).unwrap();
    let ours: Vec<&Value> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "csum-offload")
        .collect();
    assert_eq!(ours.len(), 1, "updated in place, not duplicated: {v}");
    assert_eq!(ours[0]["managedBy"], "csum-offload-installer");
    assert!(new.terminate().success());
    assert_eq!(entry_level(&dirs), None, "marked now, so removed");
}
