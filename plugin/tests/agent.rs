//! The node agent run as the real binary in a lab: the lab's host netns
//! stands for a node, its pods' veth pairs for containers of any runtime.
//! The Docker suite (e2e/docker) runs it against a real Docker engine; these
//! cases cover what needs no engine: scope, the uplink, the lock, metrics,
//! a node without a default route.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

const GENERIC: &str = "tx-checksum-ip-generic";

#[test]
fn once_fixes_every_pair_records_it_and_restore_puts_it_back() {
    let lab = Lab::with_pods("ag", 3);
    let s = Scratch::new("once");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    let (code, out, err) = agent(&["--once", "--dry-run", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches(": would change ").count(), 3, "{out}");
    assert!(
        (0..3).all(|i| lab.tx(i) == (true, true)),
        "a dry run changes nothing"
    );
    let (code, out, err) = agent(&["--once", "--config", &config, "--state-file", &state]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with(
            "3 container veth pairs: 3 changed, 0 would change, 0 already set, 0 failed\n"
        ),
        "{out}"
    );
    assert!((0..3).all(|i| lab.tx(i) == (false, false)));
    let (_, out, _) = agent(&["--once", "--config", &config, "--state-file", &state]);
    assert!(
        out.contains("0 changed, 0 would change, 3 already set"),
        "{out}"
    );
    let (code, out, err) = agent(&["restore", "--state-file", &state]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("6 restored, 0 gone, 0 failed, 0 unreadable; 0 records left"),
        "{out}"
    );
    assert!((0..3).all(|i| lab.tx(i) == (true, true)));
}

#[test]
fn scope_limits_the_pairs_and_the_uplink_is_never_touched() {
    let lab = Lab::with_pods("as", 3);
    // The uplink is a veth whose peer is in another netns, as on a kind
    // node: it looks like a container's veth but must never be touched.
    lab.add_uplink();
    run("ip", &["link", "add", "br-as", "type", "bridge"]);
    run(
        "ip",
        &["link", "set", &lab.host_if_of(2), "master", "br-as"],
    );
    let uplink_tx = || {
        read_features(None, "up0")
            .into_iter()
            .find(|(n, _, _)| n == GENERIC)
            .unwrap()
            .1
    };
    let s = Scratch::new("scope");
    for policy in [
        json!({"drivers": {"veth": {"tx": false}}}),
        json!({"hostDriver": "txgbe"}),
    ] {
        let config = s.config(policy.clone());
        let (code, out, err) = agent(&[
            "--once",
            "--config",
            &config,
            "--state-file",
            &s.state(),
            "--ifname",
            "as*",
            "--exclude-ifname",
            "ash1",
        ]);
        assert_eq!(code, 0, "{policy}: {out}{err}");
        assert_eq!(
            (lab.tx(0), lab.tx(1), lab.tx(2)),
            ((false, false), (true, true), (false, false)),
            "{policy}"
        );
        assert!(uplink_tx(), "{policy}: the uplink up0 keeps its offload");
        agent(&["restore", "--state-file", &s.state()]);
    }
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let (code, out, _) = agent(&[
        "--once",
        "--config",
        &config,
        "--state-file",
        &s.state(),
        "--bridge",
        "br-as",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("1 container veth pairs: 1 changed"), "{out}");
    assert_eq!((lab.tx(0), lab.tx(2)), ((true, true), (false, false)));
}

#[test]
fn ifname_globs_take_question_marks_and_classes_and_a_bad_one_changes_nothing() {
    // Host ends gqh0, gqh1, gqh2. The agent once understood only `*`, so
    // `gqh?` or `gqh[0-1]` excluded nothing and it changed every pair.
    let lab = Lab::with_pods("gq", 3);
    let s = Scratch::new("globs");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    let once = |scope: &[&str]| {
        let mut args = vec!["--once", "--config", &config, "--state-file", &state];
        args.extend(scope);
        agent(&args)
    };
    let changed = || {
        (0..3)
            .map(|i| lab.tx(i) == (false, false))
            .collect::<Vec<_>>()
    };
    for (scope, want) in [
        (&["--exclude-ifname", "gqh[0-1]"][..], [false, false, true]),
        (&["--exclude-ifname", "gqh?"][..], [false, false, false]),
        (
            &["--ifname", "gqh?", "--exclude-ifname", "gqh[!1]"][..],
            [false, true, false],
        ),
        // Negative control: a class that matches none of them.
        (&["--exclude-ifname", "gqh[5-9]"][..], [true, true, true]),
    ] {
        let (code, out, err) = once(scope);
        assert_eq!(code, 0, "{scope:?}: {out}{err}");
        assert_eq!(changed(), want, "{scope:?}: {out}");
        let (code, out, err) = agent(&["restore", "--state-file", &state]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(changed(), [false; 3]);
    }
    // A pattern the syntax does not cover: exit 2 with the reason, before
    // anything is changed or recorded (a state file of its own, which the
    // runs above did not make).
    let fresh = Scratch::new("globs-bad");
    let state = fresh.state();
    let once = |scope: &[&str]| {
        let mut args = vec!["--once", "--config", &config, "--state-file", &state];
        args.extend(scope);
        agent(&args)
    };
    for (flag, pattern, why) in [
        ("--exclude-ifname", "gqh[0-1", "a '[' without its ']'"),
        (
            "--exclude-ifname",
            "gqh[1-0]",
            "the range '1-0' is reversed",
        ),
        ("--ifname", "gqh\\", "a '\\' at the end escapes nothing"),
        ("--ifname", "[[:alnum:]]*", "POSIX classes"),
    ] {
        let (code, out, err) = once(&[flag, pattern]);
        assert_eq!(code, 2, "{flag} {pattern}: {out}{err}");
        assert!(
            err.contains(&format!("{flag} {pattern:?}: {why}")),
            "{flag} {pattern}: {err}"
        );
        assert_eq!(out, "");
        assert_eq!(changed(), [false; 3], "{flag} {pattern}");
        assert!(!std::path::Path::new(&state).exists(), "nothing recorded");
    }
}

#[test]
fn resync_out_of_range_is_refused_without_a_panic_and_a_day_is_taken() {
    let lab = Lab::with_pods("rz", 1);
    let s = Scratch::new("resync");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let state = s.state();
    // u64::MAX once started the daemon, which panicked at its first
    // `now + resync`; the others are not numbers of seconds it takes.
    for bad in ["18446744073709551615", "86401", "-1", "5m", ""] {
        let mut cmd = Command::new(BIN);
        cmd.arg("agent")
            .args(["--config", &config, "--state-file", &state])
            .args(["--resync", bad])
            .env_remove("CNI_COMMAND");
        let out = output_within(
            &mut cmd,
            std::time::Duration::from_secs(20),
            "agent --resync",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--resync {bad:?}: {err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "csum-offload: --resync must be a whole number of seconds from 0 (events only) to 86400, got {bad:?}"
            )
        );
        assert_eq!(lab.tx(0), (true, true), "--resync {bad:?} changed nothing");
    }
    // The control: the largest value is taken, and the daemon runs.
    let daemon = start(
        &[
            "--config",
            &config,
            "--state-file",
            &state,
            "--resync",
            "86400",
        ],
        s.0.join("agent.log"),
    );
    daemon.wait_log("full pass every 86400 s");
    daemon.wait_log("changed container eth0");
    assert_eq!(lab.tx(0), (false, false));
    assert_eq!(stop(daemon), 0);
}

#[test]
fn a_node_without_a_default_route_changes_nothing() {
    let lab = Lab::with_pods("ad", 1);
    let s = Scratch::new("nodefault");
    let (code, out, err) = agent(&[
        "--once",
        "--config",
        &s.config(json!({})),
        "--state-file",
        &s.state(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("host NIC detection failed: the host has no default route")
            && out.contains("changing nothing"),
        "{out}"
    );
    assert_eq!(lab.tx(0), (true, true));
    let (code, _, err) = agent(&[
        "--once",
        "--config",
        &s.config(json!({"detectionFailure": "fail"})),
        "--state-file",
        &s.state(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("detectionFailure \"fail\""), "{err}");
    assert_eq!(lab.tx(0), (true, true));
}

/// `csum-offload agent ARGS` as a daemon, its stderr in `log`.
fn start(args: &[&str], log: PathBuf) -> Daemon {
    let mut cmd = Command::new(BIN);
    cmd.arg("agent").args(args).env_remove("CNI_COMMAND");
    Daemon::spawn(&mut cmd, log)
}

/// SIGTERM; the exit code.
fn stop(daemon: Daemon) -> i32 {
    daemon.terminate().code().unwrap_or(-1)
}

fn get(address: &str) -> String {
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_daemon_fixes_new_pairs_repairs_drift_counts_and_holds_the_lock() {
    let lab = Lab::with_pods("am", 1);
    let s = Scratch::new("daemon");
    let textfile = s.0.join("csum_offload.prom");
    let daemon = start(
        &[
            "--config",
            &s.config(json!({"hostDriver": "txgbe"})),
            "--state-file",
            &s.state(),
            "--metrics-address",
            "127.0.0.1:0",
            "--textfile",
            textfile.to_str().unwrap(),
            "--resync",
            "0",
        ],
        s.0.join("agent.log"),
    );
    let log = daemon.wait_log("metrics on http://");
    let address = log
        .split("metrics on http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    daemon.wait_log("changed container eth0");
    assert_eq!(lab.tx(0), (false, false), "a pair there at start");
    // A new pair, made the way runtimes make them: both ends in the host,
    // then one moved into the container's netns.
    let pod = NamedNetns::add(format!("{}-new", lab.pod));
    let pod = &pod.0;
    run(
        "ip",
        &[
            "link", "add", "amnew", "type", "veth", "peer", "name", "amtmp",
        ],
    );
    run("ip", &["link", "set", "amtmp", "netns", pod]);
    daemon.wait_log("amnew / amtmp");
    let new_tx = read_features(
        Some(std::path::Path::new(&format!("/run/netns/{pod}"))),
        "amtmp",
    )
    .into_iter()
    .find(|(n, _, _)| n == GENERIC)
    .unwrap()
    .1;
    assert!(!new_tx);
    // Drift inside a container's netns, which the host netns gets no
    // event for but the agent's all-netns socket does.
    run(
        "ip",
        &[
            "netns", "exec", &lab.pod, "ethtool", "-K", "eth0", "tx", "on",
        ],
    );
    daemon.wait_log("(drift repaired)");
    assert_eq!(lab.tx(0), (false, false));
    // Restore refuses while an agent runs.
    let (code, _, err) = agent(&["restore", "--state-file", &s.state()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("another csum-offload agent is running") && err.contains("stop it first"),
        "{err}"
    );
    let metrics = get(&address);
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    for line in [
        "csum_offload_uplink_info{nic=\"\",driver=\"txgbe\",driver_version=\"\",firmware_version=\"\",settings=\"tx off\"} 1",
        "csum_offload_drift_repaired_total 1",
        "csum_offload_interfaces_changed_total 5",
        "csum_offload_detection_ok 1",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    let text = std::fs::read_to_string(&textfile).unwrap();
    assert!(
        text.contains("csum_offload_drift_repaired_total 1"),
        "{text}"
    );
    assert_eq!(stop(daemon), 0);
}

#[test]
fn the_daemon_follows_its_config_file_and_keeps_the_last_valid_one() {
    let lab = Lab::with_pods("ac", 1);
    let s = Scratch::new("reload");
    let config = s.config(json!({"hostDriver": "i40e"}));
    let daemon = start(
        &[
            "--config",
            &config,
            "--state-file",
            &s.state(),
            "--resync",
            "0",
        ],
        s.0.join("agent.log"),
    );
    daemon.wait_log("watching container veth pairs");
    assert_eq!(lab.tx(0), (true, true), "i40e: nothing to change");
    // An invalid config is refused, the last valid one kept.
    let write = |v: &str| {
        let tmp = s.0.join("config.tmp");
        std::fs::write(&tmp, v).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    write(r#"{"hostDriver": "txgbe", "apply": "pod"}"#);
    daemon.wait_log("keeping the previous config");
    assert_eq!(lab.tx(0), (true, true));
    // As kubelet updates a ConfigMap volume: the file is replaced.
    write(r#"{"hostDriver": "txgbe"}"#);
    daemon.wait_log("changed; applying it");
    daemon.wait_log("changed container eth0");
    assert_eq!(lab.tx(0), (false, false));
    assert_eq!(stop(daemon), 0);
}

#[test]
fn a_second_daemon_waits_for_the_first_and_takes_over() {
    // A DaemonSet's surge update: the new pod's agent starts while the old
    // one runs, and must neither act beside it nor crash-loop.
    let lab = Lab::with_pods("aw", 1);
    let s = Scratch::new("takeover");
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let args = [
        "--config",
        &config,
        "--state-file",
        &s.state(),
        "--resync",
        "0",
        // The end of a full pass is logged at debug.
        "--log-level",
        "debug",
    ];
    let first = start(&args, s.0.join("first.log"));
    first.wait_log("changed container eth0");
    let second = start(&args, s.0.join("second.log"));
    second.wait_log("waiting for it to stop");
    // --once does not wait: it says who holds the lock.
    let (code, _, err) = agent(&["--once", "--config", &config, "--state-file", &s.state()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("another csum-offload agent is running"),
        "{err}"
    );
    // Drift while the first runs is the first's to repair; then it stops
    // and the second takes over with a full pass of its own.
    assert_eq!(stop(first), 0);
    second.wait_log("taking over");
    // Drift made before the takeover pass ends is found by that pass as a
    // change, not as drift of a pair this agent had seen conform.
    second.wait_log("full pass: ");
    run(
        "ip",
        &[
            "netns", "exec", &lab.pod, "ethtool", "-K", "eth0", "tx", "on",
        ],
    );
    second.wait_log("(drift repaired)");
    assert_eq!(lab.tx(0), (false, false));
    assert_eq!(stop(second), 0);
    // A waiting daemon stops on SIGTERM too.
    let holder = start(&args, s.0.join("holder.log"));
    holder.wait_log("watching container veth pairs");
    let waiter = start(&args, s.0.join("waiter.log"));
    waiter.wait_log("waiting for it to stop");
    let waiter_log = waiter.log.clone();
    assert_eq!(stop(waiter), 0);
    let text = std::fs::read_to_string(waiter_log).unwrap();
    assert!(text.contains("received while waiting"), "{text}");
    assert_eq!(stop(holder), 0);
}
