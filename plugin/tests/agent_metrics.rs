//! The agent's metrics as node_exporter and Prometheus meet them, run as
//! the real binary in a lab (its host netns stands for the node; all
//! traffic is on that netns' loopback): the textfile in a directory other
//! collectors share, where a link or FIFO may be planted.

mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `agent --once` writing `textfile`, under umask 077 (the file must still
/// be 0644: node_exporter reads it as another user); its output.
fn once_writing(s: &Scratch, textfile: &Path) -> std::process::Output {
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "umask 077 && exec \"$0\" \"$@\"",
        BIN,
        "agent",
        "--once",
    ])
    .args(["--config", &config, "--state-file", &s.state()])
    .args(["--textfile", textfile.to_str().unwrap()])
    .env_remove("CNI_COMMAND");
    // A FIFO opened for writing blocks until a reader comes: a hang here
    // is what the test is about, so it is bounded.
    output_within(&mut cmd, Duration::from_secs(10), "agent --once --textfile")
}

fn is_metrics_file(path: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(meta.file_type().is_file(), "{path:?} is a regular file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{path:?}");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("\ncsum_offload_detection_ok 1\n"), "{text}");
}

#[test]
fn the_textfile_replaces_links_and_fifos_and_never_writes_through_them() {
    // The lab's host netns is where the agent runs, with one pod.
    let _lab = Lab::with_pods("mt", 1);
    let s = Scratch::new("textfile");
    let dir = s.path("collector");
    std::fs::create_dir(&dir).unwrap();
    let textfile = dir.join("csum_offload.prom");
    let victim = s.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    // Other collectors' files, and one shaped like our temp files but for
    // another target: never touched.
    let others = [
        ("node.prom", "node_thing 1\n"),
        (".node.prom.77.0123456789abcdef.tmp", "half\n"),
        ("csum_offload.prom.bak", "mine? no\n"),
    ];
    for (name, text) in others {
        std::fs::write(dir.join(name), text).unwrap();
    }
    // A crashed agent's temp file is ours and goes; a link of that shape is
    // not ours and stays, pointing where it pointed.
    let leftover = dir.join(".csum_offload.prom.999999.00112233445566ff.tmp");
    std::fs::write(&leftover, "crashed\n").unwrap();
    let planted_leftover = dir.join(".csum_offload.prom.999998.00112233445566ff.tmp");
    std::os::unix::fs::symlink(&victim, &planted_leftover).unwrap();
    // The temp name the agent used to use, predictable: a link to the
    // victim, then a FIFO.
    let old_tmp = dir.join("csum_offload.prom.tmp");
    std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
    // First a link at the target itself.
    std::os::unix::fs::symlink(&victim, &textfile).unwrap();
    let out = once_writing(&s, &textfile);
    assert!(out.status.success(), "{out:?}");
    is_metrics_file(&textfile);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!leftover.exists(), "our crashed temp file is removed");
    assert!(std::fs::symlink_metadata(&planted_leftover)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(&old_tmp)
        .unwrap()
        .file_type()
        .is_symlink());
    // Then a FIFO at the target, and one at the old temp name.
    std::fs::remove_file(&textfile).unwrap();
    std::fs::remove_file(&old_tmp).unwrap();
    for fifo in [&textfile, &old_tmp] {
        nix::unistd::mkfifo(
            fifo.as_path(),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
    }
    let out = once_writing(&s, &textfile);
    assert!(out.status.success(), "{out:?}");
    is_metrics_file(&textfile);
    assert!(std::fs::symlink_metadata(&old_tmp)
        .unwrap()
        .file_type()
        .is_fifo());
    for (name, text) in others {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), text);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    // Nothing of ours is left beside it but the textfile.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".csum_offload.prom.999998.00112233445566ff.tmp",
            ".node.prom.77.0123456789abcdef.tmp",
            "csum_offload.prom",
            "csum_offload.prom.bak",
            "csum_offload.prom.tmp",
            "node.prom",
        ]
    );
}
