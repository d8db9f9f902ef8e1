//! The agent's restore journal and state files (root, real netns and
//! veths): a write cut by a crash never swallows the next record; restore
//! reports every record it could not read, apply or may not apply (the
//! uplink, a host-only pair) and exits 1 while any remain; a state, lock
//! or presence path that is not the agent's own file (foreign content, a
//! link, a FIFO, a loose mode, another owner) is refused with exit 2 and
//! left as it is, without any command waiting on it; a journal of the
//! previous format (no header) still restores.
//!
//! Every run of the binary is bounded (`HANG`): a hang fails the test.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const HEADER: &str = r#"{"journal":"csum-offload agent journal","version":1}"#;

/// `csum-offload agent ARGS`, killed and failed if it runs past `HANG`.
fn agent_within(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("agent").args(args).env_remove("CNI_COMMAND");
    let out = output_within(&mut cmd, HANG, &format!("agent {args:?}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The ifindex of `name`, in `netns` (None: the test's own).
fn ifindex(netns: Option<&str>, name: &str) -> u64 {
    let mut args = vec![];
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-j", "link", "show", "dev", name]);
    let out: serde_json::Value = serde_json::from_str(&run("ip", &args)).unwrap();
    out[0]["ifindex"].as_u64().unwrap()
}

fn tx_of(name: &str) -> bool {
    read_features(None, name)
        .into_iter()
        .find(|(n, _, _)| n == "tx-checksum-ip-generic")
        .unwrap()
        .1
}

/// A journal record line, as the agent writes them.
fn record(host_index: u64, host: &str, peer_index: u64, end: &str, tx: bool) -> String {
    json!({"host_index": host_index, "host": host, "peer_index": peer_index, "end": end,
           "features": {"tx-checksum-ip-generic": tx}})
    .to_string()
}

fn write_private(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_cut_line_never_swallows_the_next_record_and_restore_reports_it() {
    let lab = Lab::with_pods("jt", 2);
    let s = Scratch::new("jtorn");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    let only = |exclude: &str| {
        agent_within(&[
            "--once",
            "--config",
            &config,
            "--state-file",
            &state,
            "--exclude-ifname",
            exclude,
        ])
    };
    // The first pair is recorded and changed; then a crash cuts a write.
    let (code, out, err) = only(&lab.host_if_of(1));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!((lab.tx(0), lab.tx(1)), ((false, false), (true, true)));
    let cut = r#"{"host_index": 4242, "host": "jtgone", "peer_in"#;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&state)
        .unwrap()
        .write_all(cut.as_bytes())
        .unwrap();
    // The next run records the second pair after it.
    let (code, out, err) = only("none-excluded");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lab.tx(1), (false, false));
    let text = std::fs::read_to_string(&state).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], HEADER, "{text}");
    assert!(text.ends_with('\n'), "{text:?}");
    assert!(
        lines.contains(&cut),
        "the cut line is kept as it was: {text}"
    );
    let records = lines
        .iter()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["end"].is_string())
        })
        .count();
    assert_eq!(
        records, 4,
        "both ends of both pairs, each on its own line: {text}"
    );
    let (code, out, err) = agent_within(&["restore", "--state-file", &state]);
    assert_eq!(code, 1, "an unreadable line is reported: {out}{err}");
    assert!(out.contains("UNREADABLE line "), "{out}");
    assert!(
        out.contains("4 restored, 0 gone, 0 failed, 1 unreadable; 1 records left"),
        "{out}"
    );
    assert_eq!((lab.tx(0), lab.tx(1)), ((true, true), (true, true)));
    let left = std::fs::read_to_string(&state).unwrap();
    assert_eq!(
        left,
        format!("{HEADER}\n{cut}\n"),
        "only the cut line is left"
    );
}

#[test]
fn restore_refuses_the_uplink_and_host_only_pairs_and_reports_what_it_cannot_apply() {
    let lab = Lab::with_pods("jr", 2);
    lab.add_uplink();
    run(
        "ip",
        &[
            "link", "add", "jrho0", "type", "veth", "peer", "name", "jrho1",
        ],
    );
    run("ip", &["link", "set", "jrho0", "up"]);
    let s = Scratch::new("jrefuse");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    // Pod 1 is changed and recorded by the agent itself.
    let (code, out, err) = agent_within(&[
        "--once",
        "--config",
        &config,
        "--state-file",
        &state,
        "--ifname",
        &lab.host_if_of(1),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lab.tx(1), (false, false));
    // A journal that lies: "restore" would turn TX checksum off on the
    // uplink (a veth whose peer is in another netns, as on a kind node)
    // and on a pair with both ends in the host; pod 0's container end was
    // never changed and its netns will not be found.
    let far = format!("{}-far", lab.pod);
    let forged = [
        record(
            ifindex(None, "up0"),
            "up0",
            ifindex(Some(&far), "far0"),
            "host",
            false,
        ),
        record(
            ifindex(None, "jrho0"),
            "jrho0",
            ifindex(None, "jrho1"),
            "host",
            false,
        ),
        record(
            ifindex(None, &lab.host_if_of(0)),
            &lab.host_if_of(0),
            ifindex(Some(&lab.pod), "eth0"),
            "container",
            false,
        ),
    ];
    let mut text = std::fs::read_to_string(&state).unwrap();
    for r in &forged {
        text.push_str(r);
        text.push('\n');
    }
    write_private(Path::new(&state), &text);
    let empty = s.path("no-netns");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, out, err) = agent_within(&[
        "restore",
        "--state-file",
        &state,
        "--no-proc",
        "--netns-dir",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED host end of up0: refused: up0 is a device of the node's uplink"),
        "{out}"
    );
    assert!(
        out.contains("FAILED host end of jrho0: refused: jrho0 is a veth whose peer is in the host netns too"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "FAILED container end of {}: the netns of its peer",
            lab.host_if_of(0)
        )),
        "{out}"
    );
    assert!(tx_of("up0"), "the uplink is left as it is");
    assert!(tx_of("jrho0"), "the host-only pair is left as it is");
    assert_eq!(lab.tx(0), (true, true));
    // Pod 1's host end is restored (no netns needed); its container end
    // is not (its netns is not in the empty dir): 4 failed in all.
    assert_eq!(lab.tx(1), (false, true));
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with("1 restored, 0 gone, 4 failed, 0 unreadable; 4 records left"),
        "{out}"
    );
    // What could not be applied stays in the journal; with the netns
    // found, the pod's end is put back and only the refusals remain.
    let (code, out, err) = agent_within(&["restore", "--state-file", &state]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(lab.tx(1), (true, true));
    // Pod 0's pair is a container's: the (forged) record is applied.
    assert_eq!(lab.tx(0), (false, true), "{out}");
    assert!(
        out.ends_with("2 restored, 0 gone, 2 failed, 0 unreadable; 2 records left\n"),
        "{out}"
    );
    assert!(tx_of("up0") && tx_of("jrho0"));
}

#[test]
fn restore_exits_0_only_when_every_record_is_applied_or_gone() {
    let lab = Lab::with_pods("jz", 2);
    let s = Scratch::new("jzero");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    let (code, out, err) = agent_within(&["--once", "--config", &config, "--state-file", &state]);
    assert_eq!(code, 0, "{out}{err}");
    // Pod 1's pair goes away with its container.
    run("ip", &["link", "del", &lab.host_if_of(1)]);
    let (code, out, err) = agent_within(&["restore", "--state-file", &state]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with("2 restored, 2 gone, 0 failed, 0 unreadable; 0 records left\n"),
        "{out}"
    );
    assert_eq!(lab.tx(0), (true, true));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{HEADER}\n")
    );
}

#[test]
fn a_journal_of_the_previous_format_still_restores_and_is_upgraded() {
    let lab = Lab::with_pods("ju", 2);
    let s = Scratch::new("jupgrade");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    let (code, out, err) = agent_within(&["--once", "--config", &config, "--state-file", &state]);
    assert_eq!(code, 0, "{out}{err}");
    // As the previous version wrote it: the same records, no header.
    let text = std::fs::read_to_string(&state).unwrap();
    let old = text
        .strip_prefix(&format!("{HEADER}\n"))
        .unwrap()
        .to_string();
    assert_eq!(old.lines().count(), 4, "{text}");
    write_private(Path::new(&state), &old);
    // A pass with nothing to change upgrades it, records kept.
    let (code, out, err) = agent_within(&["--once", "--config", &config, "--state-file", &state]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        format!("{HEADER}\n{old}")
    );
    write_private(Path::new(&state), &old);
    let (code, out, err) = agent_within(&["restore", "--state-file", &state]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 restored, 0 gone, 0 failed"), "{out}");
    assert_eq!((lab.tx(0), lab.tx(1)), ((true, true), (true, true)));
}

/// What a path holds, to tell that a refused file was left as it was.
fn snapshot(path: &Path) -> (Option<Vec<u8>>, i64, i64, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let content = meta.is_file().then(|| std::fs::read(path).unwrap());
    (content, meta.mtime(), meta.mtime_nsec(), meta.mode())
}

#[test]
fn a_state_file_that_is_not_the_agents_is_refused_and_left_as_it_is() {
    let lab = Lab::with_pods("jf", 1);
    let s = Scratch::new("jforeign");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    // A valid journal, which only the checks of the file itself refuse.
    let journal = format!("{HEADER}\n{}\n", record(1, "x", 2, "host", true));
    let dir = s.path("state");
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("target.jsonl");
    write_private(&target, &journal);
    let cases: Vec<(&str, std::path::PathBuf, &str)> = {
        let other = dir.join("other.conf");
        write_private(&other, "# a neighbour's file\nkey = value\n");
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = dir.join("fifo.jsonl");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let loose = dir.join("loose.jsonl");
        write_private(&loose, &journal);
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o666)).unwrap();
        let theirs = dir.join("theirs.jsonl");
        write_private(&theirs, &journal);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        vec![
            (
                "other content",
                other,
                "is not a csum-offload agent journal",
            ),
            ("a symbolic link", link, "is a symbolic link"),
            ("a FIFO", fifo, "is a FIFO, not a regular file"),
            ("mode 0666", loose, "has mode 0666"),
            ("another owner", theirs, "is owned by uid 65534"),
        ]
    };
    for (what, path, why) in &cases {
        let p = path.to_str().unwrap();
        let before = snapshot(path);
        let target_before = snapshot(&target);
        let runs: [Vec<&str>; 3] = [
            vec!["--once", "--config", &config, "--state-file", p],
            vec!["restore", "--state-file", p],
            // The daemon too: it must refuse, not wait.
            vec!["--config", &config, "--state-file", p, "--resync", "0"],
        ];
        for args in &runs {
            let (code, out, err) = agent_within(args);
            assert_eq!(code, 2, "{what}, {args:?}: {out}{err}");
            assert!(
                err.contains(p) && err.contains(why) && err.contains("left as it is"),
                "{what}, {args:?}: {err}"
            );
            assert_eq!(snapshot(path), before, "{what}: left as it was");
            assert_eq!(snapshot(&target), target_before, "{what}: its target too");
        }
        for beside in ["lock", "presence"] {
            assert!(
                !path.with_extension(beside).exists(),
                "{what}: nothing is made beside it ({beside})"
            );
        }
    }
    assert_eq!(lab.tx(0), (true, true), "nothing was changed");
    // Negative control: the same content, ours, is accepted.
    let ours = dir.join("ours.jsonl");
    write_private(&ours, &journal);
    let (code, out, err) = agent_within(&[
        "--once",
        "--config",
        &config,
        "--state-file",
        ours.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lab.tx(0), (false, false));
}

#[test]
fn a_fifo_at_the_lock_or_presence_path_is_refused_without_waiting() {
    let lab = Lab::with_pods("jl", 1);
    let s = Scratch::new("jfifo");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    let state_path = Path::new(&state);
    std::fs::create_dir_all(state_path.parent().unwrap()).unwrap();
    let mkfifo =
        |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let lock = state_path.with_extension("lock");
    mkfifo(&lock);
    for args in [
        vec!["--once", "--config", &config, "--state-file", &state],
        vec!["restore", "--state-file", &state],
    ] {
        let (code, out, err) = agent_within(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!(
                "{}: is a FIFO, not a regular file",
                lock.display()
            )),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_file(&lock).unwrap();
    let presence = state_path.with_extension("presence");
    mkfifo(&presence);
    let (code, out, err) =
        agent_within(&["--config", &config, "--state-file", &state, "--resync", "0"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{}: is a FIFO, not a regular file",
            presence.display()
        )),
        "{err}"
    );
    assert_eq!(lab.tx(0), (true, true));
}
