//! Two rules for the files the installer manages, on the real binary and
//! temp dirs (each installer in a netns of its own, as in
//! install_watch.rs):
//! - a conf dir reached through a symlink that is re-pointed elsewhere is
//!   followed within seconds, not at the next resync (10 s);
//! - `--remove-binary` never removes the binary while a config the
//!   runtime would load still names the plugin.

use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{kindnet_conflist as kindnet, wait_until, Daemon, InstallDirs};

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn our_entries(path: &Path) -> usize {
    read_json(path).map_or(0, |v| {
        v["plugins"].as_array().map_or(0, |p| {
            p.iter().filter(|p| p["type"] == "csum-offload").count()
        })
    })
}

/// The watch loop on `dirs` with `args`, its stderr in installer.log.
fn start(dirs: &InstallDirs, args: &[&str]) -> Daemon {
    start_logged(dirs, args, "installer.log")
}

fn start_logged(dirs: &InstallDirs, args: &[&str], log: &str) -> Daemon {
    // In a directory of its own, as the DaemonSet's ConfigMap volume: the
    // installer watches the config's directory too, and an event there
    // (the conf dir's link is in root/) would start a pass by itself.
    let config = dirs.root.join("cfg/config.json");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(&config, json!({"hostDriver": "txgbe"}).to_string()).unwrap();
    let mut cmd: Command = dirs.command("install");
    cmd.arg("--config").arg(&config).args(args);
    common::in_empty_netns(&mut cmd);
    Daemon::spawn(&mut cmd, dirs.root.join(log))
}

/// Points the link `link` at `target` in one rename, as `ln -sfn` and
/// kubelet's `..data` swap do.
fn repoint(link: &Path, target: &str) {
    let tmp = link.with_file_name("net.d.tmp-link");
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).unwrap();
    fs::rename(&tmp, link).unwrap();
}

/// Install dirs whose conf dir `net.d` is a symlink to `a/` (to be
/// re-pointed to `b/`), and kindnet's conflist as bytes.
fn relinked(tag: &str) -> (InstallDirs, PathBuf, PathBuf, Vec<u8>) {
    let dirs = InstallDirs::new(tag);
    let (a, b) = (dirs.root.join("a"), dirs.root.join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::remove_dir(dirs.conf()).unwrap();
    symlink("a", dirs.conf()).unwrap();
    let primary = serde_json::to_vec(&kindnet()).unwrap();
    (dirs, a, b, primary)
}

#[test]
fn a_re_pointed_conf_dir_symlink_is_followed_within_seconds() {
    let (dirs, a, b, primary) = relinked("files-relink");
    let (in_a, in_b) = (a.join("10-kindnet.conflist"), b.join("10-kindnet.conflist"));
    fs::write(&in_a, &primary).unwrap();
    fs::write(&in_b, &primary).unwrap();

    let installer = start(&dirs, &[]);
    wait_until("the entry in a/", Duration::from_secs(20), || {
        our_entries(&in_a) == 1
    });
    // Control: b/ is not where the link leads, so it is not edited.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(our_entries(&in_b), 0, "b/ edited before the link led there");

    repoint(&dirs.conf(), "b");
    let moved = Instant::now();
    // Well under the 10 s resync: a pass at the resync would also find
    // b/, so only a bound below it shows that the change was noticed.
    wait_until(
        "the entry in b/ within 3 s of the re-point",
        Duration::from_secs(3),
        || our_entries(&in_b) == 1,
    );
    let took = moved.elapsed();
    // The watch moved with the link: a rewrite in b/ is answered at once
    // (by inotify), and one in a/ no longer is.
    fs::write(&in_b, &primary).unwrap();
    fs::write(&in_a, &primary).unwrap();
    wait_until(
        "the entry back in b/ after a rewrite, within 2 s",
        Duration::from_secs(2),
        || our_entries(&in_b) == 1,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(our_entries(&in_a), 0, "a/ edited after the link left it");
    installer.wait_log("now leads to");

    let status = installer.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(our_entries(&in_b), 0, "SIGTERM takes the entry out of b/");
    eprintln!("entry in the new target {took:?} after the re-point");
}

/// Presence follows the link too: an installer whose conf dir was
/// re-pointed, stopping while a newer one runs in the new directory (a
/// surge update after the move), is not the last one out and leaves the
/// entry there. It used to stay present in the old directory only, find
/// itself alone, and take the entry out from under the new installer.
#[test]
fn a_re_pointed_installer_is_not_the_last_one_out_of_the_new_dir() {
    let (dirs, a, b, primary) = relinked("files-relink-presence");
    let in_b = b.join("10-kindnet.conflist");
    fs::write(a.join("10-kindnet.conflist"), &primary).unwrap();
    fs::write(&in_b, &primary).unwrap();

    let old = start_logged(&dirs, &[], "old.log");
    wait_until("the entry in a/", Duration::from_secs(20), || {
        our_entries(&a.join("10-kindnet.conflist")) == 1
    });
    repoint(&dirs.conf(), "b");
    wait_until("the entry in b/", Duration::from_secs(3), || {
        our_entries(&in_b) == 1
    });
    old.wait_log("now leads to");
    // The old installer joins presence in b/ within a poll of the move;
    // without that (the bug) the file never appears, and the check that
    // matters is the entry below, so this wait only bounds the race.
    let joined = Instant::now();
    while !b.join(".csum-offload.lock").exists() && joined.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let new = start_logged(&dirs, &[], "new.log");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(our_entries(&in_b), 1);

    // Sampled every 5 ms from the old one's SIGTERM until 1 s after its
    // exit: the entry is never out (the new installer would put it back
    // within ~0.1 s, so only sampling shows a removal).
    let stopping = std::thread::spawn(move || old.terminate());
    let mut missing = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !stopping.is_finished() && Instant::now() < deadline {
        missing += usize::from(our_entries(&in_b) != 1);
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = stopping.join().unwrap();
    assert!(status.success(), "{status:?}");
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(1) {
        missing += usize::from(our_entries(&in_b) != 1);
        std::thread::sleep(Duration::from_millis(5));
    }
    let log = fs::read_to_string(dirs.root.join("old.log")).unwrap();
    assert!(
        log.contains("another installer runs on this node; leaving the entry to it"),
        "{log}"
    );
    assert_eq!(missing, 0, "samples without the entry in b/");
    let status = new.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(our_entries(&in_b), 0, "the last one out takes it out of b/");
}

#[test]
fn remove_binary_keeps_it_while_a_loadable_config_names_the_plugin() {
    let hand = json!({"cniVersion": "1.0.0", "name": "other", "plugins": [
        {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.7.0.0/24"}},
        {"type": "csum-offload"}
    ]});
    /// A second config file: its name and bytes.
    type Extra<'a> = Option<(&'a str, Vec<u8>)>;
    // (case, extra file, whether the binary must stay)
    let cases: &[(&str, Extra, bool)] = &[
        // Control: only the installer's own entry, which SIGTERM takes
        // out: the binary goes.
        ("files-binary-goes", None, false),
        // A second network, hand-written, names the plugin: it stays.
        (
            "files-binary-stays",
            Some(("20-other.conflist", serde_json::to_vec(&hand).unwrap())),
            true,
        ),
        // Names the plugin, but libcni cannot load it (no name): it goes.
        (
            "files-binary-unloadable",
            Some((
                "20-other.conflist",
                br#"{"plugins":[{"type":"csum-offload"}]}"#.to_vec(),
            )),
            false,
        ),
    ];
    for (tag, extra, stays) in cases {
        let dirs = InstallDirs::new(tag);
        let primary = dirs.conf().join("10-kindnet.conflist");
        fs::write(&primary, serde_json::to_vec(&kindnet()).unwrap()).unwrap();
        if let Some((name, bytes)) = extra {
            fs::write(dirs.conf().join(name), bytes).unwrap();
        }
        let installer = start(&dirs, &["--remove-binary"]);
        wait_until("the entry", Duration::from_secs(20), || {
            our_entries(&primary) == 1
        });
        assert!(dirs.bin().join("csum-offload").exists(), "{tag}: copied");
        let log_path = installer.log.clone();
        let status = installer.terminate();
        assert!(status.success(), "{tag}: {status:?}");
        let log = fs::read_to_string(log_path).unwrap_or_default();
        assert_eq!(our_entries(&primary), 0, "{tag}: entry removed\n{log}");
        assert_eq!(
            dirs.bin().join("csum-offload").exists(),
            *stays,
            "{tag}\n{log}"
        );
        if *stays {
            assert!(
                log.contains("keeping") && log.contains("20-other.conflist"),
                "{tag}: the log names the file\n{log}"
            );
        }
    }
}
