//! The watch loop never exits on trouble at run time (the DaemonSet would
//! crash-loop): with no inotify instance left it polls the conf dir, and a
//! read-only conf dir means waiting and saying why until it is writable.
//!
//! The inotify limit is set to 0 in a user namespace of the installer's
//! own (fs.inotify instances are counted per user namespace,
//! /proc/sys/user/max_inotify_instances); the read-only conf dir is a
//! read-only bind mount in a mount namespace of its own. Neither touches
//! the machine's settings or mounts.

mod common;

use common::{in_empty_netns, wait_until, Daemon, InstallDirs, BIN};
use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::Duration;

const KINDNET: &str = "10-kindnet.conflist";
const WAIT: Duration = Duration::from_secs(20);

fn setup(tag: &str) -> (InstallDirs, std::path::PathBuf) {
    let dirs = InstallDirs::new(tag);
    fs::write(
        dirs.conf().join(KINDNET),
        common::kindnet_conflist().to_string(),
    )
    .unwrap();
    let config = dirs.root.join("config.json");
    fs::write(&config, r#"{"hostDriver": "txgbe"}"#).unwrap();
    (dirs, config)
}

fn has_entry(dirs: &InstallDirs) -> bool {
    fs::read(dirs.conf().join(KINDNET))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| {
            v["plugins"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["type"] == "csum-offload"))
        })
}

/// `csum-offload install` on `dirs`, run through `sh -c PRELUDE`, which
/// then execs it (so the daemon's pid is the installer's).
fn installer_after(
    dirs: &InstallDirs,
    config: &std::path::Path,
    wrapper: &[&str],
    prelude: &str,
) -> Daemon {
    let mut cmd = Command::new(wrapper[0]);
    cmd.args(&wrapper[1..])
        .arg("sh")
        .arg("-c")
        .arg(format!("{prelude} && exec \"$@\""))
        .arg("sh")
        .arg(BIN)
        .arg("install")
        .arg("--cni-conf-dir")
        .arg(dirs.conf())
        .arg("--cni-bin-dir")
        .arg(dirs.bin())
        .arg("--config")
        .arg(config)
        .env_remove("CNI_COMMAND");
    in_empty_netns(&mut cmd);
    Daemon::spawn(&mut cmd, dirs.root.join("installer.log"))
}

#[test]
fn no_inotify_instance_left_means_polling_not_exiting() {
    let (dirs, config) = setup("no-inotify");
    let installer = installer_after(
        &dirs,
        &config,
        &["unshare", "--user", "--map-root-user"],
        "echo 0 >/proc/sys/user/max_inotify_instances",
    );
    wait_until("the entry", WAIT, || has_entry(&dirs));
    let log = installer.log();
    assert!(
        log.contains("inotify is not available") && log.contains("polling"),
        "{log}"
    );
    // The primary CNI rewrites its file: polling notices.
    fs::write(
        dirs.root.join("tmp"),
        common::kindnet_conflist().to_string(),
    )
    .unwrap();
    fs::rename(dirs.root.join("tmp"), dirs.conf().join(KINDNET)).unwrap();
    assert!(!has_entry(&dirs));
    wait_until("the entry back without inotify", WAIT, || has_entry(&dirs));
    assert!(installer.terminate().success());
    assert!(!has_entry(&dirs));
}

#[test]
fn a_read_only_conf_dir_means_waiting_and_saying_why() {
    let (dirs, config) = setup("read-only");
    let conf = dirs.conf();
    let conf = conf.to_str().unwrap();
    let installer = installer_after(
        &dirs,
        &config,
        &["unshare", "--mount", "--propagation", "private"],
        &format!("mount --bind -o ro {conf} {conf}"),
    );
    wait_until("the reason in the log", WAIT, || {
        installer.log().contains("Read-only file system")
    });
    // Still running, still waiting: nothing written.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has_entry(&dirs));
    assert_eq!(
        // SAFETY: signal 0 only asks whether our own child still exists.
        unsafe { libc::kill(installer.pid(), 0) },
        0,
        "the installer exited:\n{}",
        installer.log()
    );
    // Writable again (in the installer's mount namespace): it goes on.
    let pid = installer.pid().to_string();
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-m", "mount", "-o", "remount,bind,rw", conf])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the entry once writable", WAIT, || has_entry(&dirs));
    assert!(installer.terminate().success());
    assert!(!has_entry(&dirs));
}
