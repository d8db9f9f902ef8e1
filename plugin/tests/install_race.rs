//! Lost updates: the installer never replaces content it has not read.
//!
//! A slowed primary CNI races the installer: it waits until the installer
//! has read the conflist and started writing its edit (its temp file
//! appears in the conf dir), then replaces the conflist with a new
//! version. The installer's edit of the old version must not land on top:
//! whatever the timing, the conflist ends up holding the new version (with
//! or without the entry, which the watch loop would add next), never the
//! old one. The conflist is padded to 600 KB so that the installer's write
//! and fsync take long enough for the writer to land inside them.

mod common;

use common::{in_empty_netns, output_within, InstallDirs};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde_json::Value;
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: usize = 6;

fn version(round: usize, tag: &str) -> Vec<u8> {
    let mut v = common::kindnet_conflist();
    v["x-generation"] = Value::from(format!("{tag}-{round}"));
    v["x-pad"] = Value::from("p".repeat(600 << 10));
    serde_json::to_vec(&v).unwrap()
}

fn generation(path: &Path) -> String {
    let v: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    v["x-generation"].as_str().unwrap_or_default().to_string()
}

/// Waits (bounded) for the installer's temp file in `dir`, then renames
/// `next` over `target`. Returns whether it did.
fn slowed_writer(dir: PathBuf, next: PathBuf, target: PathBuf) -> thread::JoinHandle<bool> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
    inotify.add_watch(&dir, AddWatchFlags::IN_CREATE).unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            let Ok(events) = inotify.read_events() else {
                continue;
            };
            let started = events.iter().any(|e| {
                e.name
                    .as_ref()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".csum-offload.tmp-"))
            });
            if started {
                fs::rename(&next, &target).unwrap();
                return true;
            }
        }
        false
    })
}

#[test]
fn a_rewrite_during_the_installers_write_is_never_lost() {
    let dirs = InstallDirs::new("race");
    let config = dirs.root.join("config.json");
    fs::write(&config, r#"{"hostDriver": "txgbe"}"#).unwrap();
    let target = dirs.conf().join("10-kindnet.conflist");
    let next = dirs.root.join("next.conflist");
    let mut replanned = 0;
    for round in 0..ROUNDS {
        fs::write(dirs.root.join("old"), version(round, "old")).unwrap();
        fs::rename(dirs.root.join("old"), &target).unwrap();
        fs::write(&next, version(round, "new")).unwrap();
        let writer = slowed_writer(dirs.conf(), next.clone(), target.clone());
        let mut cmd = dirs.command("install");
        cmd.args(["--once", "--config"]).arg(&config);
        in_empty_netns(&mut cmd);
        let out = output_within(&mut cmd, Duration::from_secs(60), "install --once");
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "round {round}: {log}");
        assert!(
            writer.join().unwrap(),
            "round {round}: the writer never saw the installer write"
        );
        assert_eq!(
            generation(&target),
            format!("new-{round}"),
            "round {round}: the installer wrote its edit of the old version over the new one\n{log}"
        );
        if log.contains("changed while being edited") {
            replanned += 1;
        }
    }
    eprintln!("replanned in {replanned} of {ROUNDS} rounds");
    // The writer must have landed inside the installer's write at least
    // once, or this test proved nothing.
    assert!(
        replanned > 0,
        "in {ROUNDS} rounds the writer never landed during the installer's write"
    );
}
