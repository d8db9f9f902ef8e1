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
use std::path::Path;
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
    // In a directory of its own, as the DaemonSet's ConfigMap volume: the
    // installer watches the config's directory too, and an event there
    // (the conf dir's link is in root/) would start a pass by itself.
    let config = dirs.root.join("cfg/config.json");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(&config, json!({"hostDriver": "txgbe"}).to_string()).unwrap();
    let mut cmd: Command = dirs.command("install");
    cmd.arg("--config").arg(&config).args(args);
    common::in_empty_netns(&mut cmd);
    Daemon::spawn(&mut cmd, dirs.root.join("installer.log"))
}

/// Points the link `link` at `target` in one rename, as `ln -sfn` and
/// kubelet's `..data` swap do.
fn repoint(link: &Path, target: &str) {
    let tmp = link.with_file_name("net.d.tmp-link");
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).unwrap();
    fs::rename(&tmp, link).unwrap();
}

#[test]
fn a_re_pointed_conf_dir_symlink_is_followed_within_seconds() {
    let dirs = InstallDirs::new("files-relink");
    // net.d is a symlink to a/, later re-pointed to b/.
    let (a, b) = (dirs.root.join("a"), dirs.root.join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::remove_dir(dirs.conf()).unwrap();
    symlink("a", dirs.conf()).unwrap();
    let primary = serde_json::to_vec(&kindnet()).unwrap();
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
