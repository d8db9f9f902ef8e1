//! `detection: "probe"` and `"both"` on real netns, on the topology of
//! `common::wire` (the node's uplink cabled to a peer through brokennic,
//! a bridge, or nothing): the agent probes from a throwaway pod, keeps the
//! verdict, and the lab's pod is fixed only on the broken path; the
//! plugin's ADD and `detect` read the same verdict.
//!
//! The uplink `up0` is a veth, a driver the table does not list, so under
//! `detection: "table"` nothing would change: every pod fixed here is
//! fixed by the verdict. Each case has a control that differs in one
//! thing and comes out the other way.

mod common;

use common::wire::{Cable, Net, SOURCE, TARGET};
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// The entry under `detection`, with the lab's target and source and the
/// verdict file in `s`; `extra` fields added.
fn entry(detection: &str, s: &Scratch, extra: Value) -> Value {
    let mut v = json!({
        "detection": detection,
        "probe": {
            "target": TARGET,
            "source": SOURCE,
            "interval": 10,
            "verdictFile": s.path("run/verdict.json"),
        },
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// `agent --once` with `config`, its state and textfile in `s`; (code,
/// stdout, stderr, textfile).
fn once(s: &Scratch, config: &str) -> (i32, String, String, String) {
    let textfile = s.path("metrics.prom");
    let out = output_within(
        Command::new(BIN)
            .args(["agent", "--once", "--config", config])
            .args(["--state-file", &s.state()])
            .arg("--textfile")
            .arg(&textfile)
            .env_remove("CNI_COMMAND"),
        Duration::from_secs(40),
        "agent --once",
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&textfile).unwrap_or_default(),
    )
}

fn verdict_in(s: &Scratch) -> Value {
    let text = std::fs::read_to_string(s.path("run/verdict.json")).expect("the verdict file");
    serde_json::from_str(&text).unwrap()
}

fn tx_on_again(net: &Net) {
    run(
        "ip",
        &[
            "netns",
            "exec",
            &net.lab.pod,
            "ethtool",
            "-K",
            POD_IF,
            "tx",
            "on",
        ],
    );
    run("ethtool", &["-K", &net.lab.host_if, "tx", "on"]);
    assert_eq!(net.lab.tx(0), (true, true));
}

fn csprobe_links() -> usize {
    run("ip", &["-o", "link", "show"])
        .lines()
        .filter(|l| l.contains(": csprobe"))
        .count()
}

#[test]
fn probe_mode_fixes_pods_on_the_broken_path_and_add_and_detect_read_the_verdict() {
    let mut net = Net::new("apb", Cable::BrokenNic);
    net.listen();
    let s = Scratch::new("apb");
    let config = s.config(entry("probe", &s, json!({})));

    // Before any probe: no verdict, nothing would change.
    let (code, out, err) = operator(&["detect", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("probe: none yet ("), "{out}");
    assert!(
        out.ends_with("settings applied to pod veths: (no change)\n"),
        "{out}"
    );

    let (code, out, err, metrics) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("probe {TARGET} from throwaway pod {SOURCE}")),
        "{out}"
    );
    assert!(out.contains(": broken ("), "{out}");
    assert!(
        out.contains("probe try 2 offload on: 0/32768 bytes acknowledged"),
        "{out}"
    );
    assert!(out.contains("1 changed"), "{out}");
    assert_eq!(net.lab.tx(0), (false, false), "fixed by the verdict");
    let v = verdict_in(&s);
    assert_eq!(v["verdict"], "broken");
    assert_eq!(v["target"], TARGET);
    assert_eq!(v["attempts"].as_array().unwrap().len(), 4);
    assert_metrics(
        &metrics,
        &[
            "csum_offload_probe_verdict{verdict=\"broken\"} 1\n",
            "csum_offload_probe_verdict{verdict=\"none\"} 0\n",
            "csum_offload_probe_fallback 0\n",
            "csum_offload_probes_total 1\n",
            "csum_offload_decision_info{settings=\"tx off\"} 1\n",
        ],
    );
    assert!(
        !metrics.contains("csum_offload_probe_timestamp_seconds 0\n"),
        "{metrics}"
    );
    assert_eq!(csprobe_links(), 0, "the throwaway pod is gone");

    // detect reads the same file.
    let (code, out, err) = operator(&["detect", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("probe: broken, "), "{out}");
    assert!(
        out.contains(&format!(
            "(target {TARGET}; detection \"probe\": decides)\ntable would give: (no change)\n"
        )),
        "{out}"
    );
    assert!(
        out.ends_with("settings applied to pod veths: tx off\n"),
        "{out}"
    );

    // The plugin's ADD reads it too, and never probes. Control first: the
    // same ADD with no verdict on file changes nothing.
    let verdict_file = s.path("run/verdict.json");
    let kept = std::fs::read(&verdict_file).unwrap();
    std::fs::remove_file(&verdict_file).unwrap();
    tx_on_again(&net);
    let conf = common::conf(
        "1.0.0",
        entry("probe", &s, json!({})),
        Some(prev_result("1.0.0", &net.lab.netns_path())),
    );
    let t0 = Instant::now();
    net.lab.cni("ADD", &conf).expect_ok();
    assert!(t0.elapsed() < Duration::from_secs(2), "ADD never probes");
    assert_eq!(net.lab.tx(0), (true, true), "no verdict: no change");
    std::fs::write(&verdict_file, &kept).unwrap();
    net.lab.cni("ADD", &conf).expect_ok();
    assert_eq!(net.lab.tx(0), (false, false), "a broken verdict: fixed");
    assert_eq!(csprobe_links(), 0);
    // A verdict for another target does not count.
    tx_on_again(&net);
    let mut other = entry("probe", &s, json!({}));
    other["probe"]["target"] = json!("10.241.1.2:5009");
    let conf = common::conf(
        "1.0.0",
        other,
        Some(prev_result("1.0.0", &net.lab.netns_path())),
    );
    net.lab.cni("ADD", &conf).expect_ok();
    assert_eq!(net.lab.tx(0), (true, true), "another target's verdict");
    drop(net);

    // Control: the same pod and agent on a clean path: ok, untouched.
    let mut net = Net::new("apb", Cable::Bridge);
    net.listen();
    let s = Scratch::new("apb");
    let config = s.config(entry("probe", &s, json!({})));
    let (code, out, err, metrics) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");
    assert!(out.contains("0 changed"), "{out}");
    assert_eq!(net.lab.tx(0), (true, true), "a clean path: untouched");
    assert_eq!(verdict_in(&s)["verdict"], "ok");
    assert!(
        metrics.contains("csum_offload_probe_verdict{verdict=\"ok\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("csum_offload_probe_fallback 0\n"),
        "{metrics}"
    );
}

#[test]
fn an_unreachable_target_changes_nothing_and_says_so() {
    // A clean path with nobody listening: refused both ways.
    let net = Net::new("apu", Cable::Bridge);
    let s = Scratch::new("apu");
    let config = s.config(entry("probe", &s, json!({})));
    let (code, out, err, metrics) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": unreachable ("), "{out}");
    let fallback = out
        .lines()
        .find(|l| l.starts_with("probe verdict unreachable, "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        fallback.ends_with(" s ago: changing nothing (detection \"probe\" acts only on broken)"),
        "{out}"
    );
    assert_eq!(net.lab.tx(0), (true, true), "unreachable: untouched");
    assert_metrics(
        &metrics,
        &[
            "csum_offload_probe_verdict{verdict=\"unreachable\"} 1\n",
            "csum_offload_probe_fallback 1\n",
            "csum_offload_decision_info{settings=\"(no change)\"} 1\n",
        ],
    );
    // Even where the table would fix: under "probe" it is not consulted.
    let config = s.config(entry(
        "probe",
        &s,
        json!({"drivers": {"veth": {"tx": false}}}),
    ));
    let (code, out, err, _) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("table would give: tx off"), "{out}");
    assert_eq!(net.lab.tx(0), (true, true), "the table is not consulted");
    // Control: the same node under "both" with that table is fixed (the
    // table decides; an unreachable verdict is no disagreement).
    let config = s.config(entry(
        "both",
        &s,
        json!({"drivers": {"veth": {"tx": false}}}),
    ));
    let (code, out, err, metrics) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        net.lab.tx(0),
        (false, false),
        "control: the agent can fix here"
    );
    assert!(
        metrics.contains("csum_offload_probe_disagreement 0\n"),
        "{metrics}"
    );
}

#[test]
fn both_mode_lets_the_table_decide_and_reports_disagreement() {
    // A broken path the table leaves alone (veth is not listed).
    let mut net = Net::new("apd", Cable::BrokenNic);
    net.listen();
    let s = Scratch::new("apd");
    let config = s.config(entry("both", &s, json!({})));
    let (code, out, err, metrics) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": broken ("), "{out}");
    assert!(
        out.contains(
            "probe disagrees with the table: the probe finds the path broken, but the table leaves TX checksum on for up0 (veth)"
        ),
        "{out}"
    );
    assert_eq!(net.lab.tx(0), (true, true), "the table decides: untouched");
    assert!(
        metrics.contains("csum_offload_probe_disagreement 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("csum_offload_probe_fallback 0\n"),
        "{metrics}"
    );
    let (_, shown, _) = operator(&["detect", "--config", &config]);
    assert!(
        shown.contains("(target 10.241.1.2:5001; detection \"both\": reported; the table decides)\nprobe disagrees: "),
        "{shown}"
    );
    // Control: the table lists the NIC; they agree, and the pod is fixed.
    let config = s.config(entry(
        "both",
        &s,
        json!({"drivers": {"veth": {"tx": false}}}),
    ));
    let (code, out, err, metrics) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("disagrees"), "{out}");
    assert_eq!(net.lab.tx(0), (false, false));
    assert!(
        metrics.contains("csum_offload_probe_disagreement 0\n"),
        "{metrics}"
    );
    drop(net);

    // A listed NIC on a healthy path.
    let mut net = Net::new("apd", Cable::Bridge);
    net.listen();
    let s = Scratch::new("apd");
    let config = s.config(entry(
        "both",
        &s,
        json!({"drivers": {"veth": {"tx": false}}}),
    ));
    let (code, out, err, metrics) = once(&s, &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "the table turns TX checksum off for up0 (veth), but the probe finds the path healthy"
        ),
        "{out}"
    );
    assert_eq!(net.lab.tx(0), (false, false), "the table still decides");
    assert!(
        metrics.contains("csum_offload_probe_disagreement 1\n"),
        "{metrics}"
    );
}

#[test]
fn the_daemon_probes_at_start_and_again_every_interval() {
    let mut net = Net::new("aps", Cable::BrokenNic);
    net.listen();
    let s = Scratch::new("aps");
    let config = s.config(entry("probe", &s, json!({})));
    let textfile = s.path("metrics.prom");
    let mut cmd = daemon_command(&s, &config, &textfile);
    let daemon = Daemon::spawn(&mut cmd, s.path("agent.log"));
    daemon.wait_log(": broken (");
    wait_until("the pod fixed", Duration::from_secs(10), || {
        net.lab.tx(0) == (false, false)
    });
    let first = verdict_in(&s)["at"].as_u64().unwrap();
    // interval 10: a second probe within 25 s, with a later time.
    wait_until("a second probe", Duration::from_secs(25), || {
        std::fs::read_to_string(&textfile)
            .is_ok_and(|t| t.contains("csum_offload_probes_total 2\n"))
    });
    assert!(verdict_in(&s)["at"].as_u64().unwrap() > first);
    let log = daemon.log();
    assert_eq!(log.matches(": broken (").count(), 2, "{log}");
    assert!(
        log.contains("probe try 1 offload off: 32768/32768"),
        "{log}"
    );
    assert!(daemon.terminate().success());
    assert!(s.path("run/verdict.json").exists());
}

#[test]
fn bad_probe_fields_are_code_7_for_the_plugin_and_exit_2_for_the_commands() {
    let s = Scratch::new("apx");
    let cases = [
        (
            json!({"detection": "probe"}),
            "detection \"probe\" needs probe.target and probe.source",
        ),
        (
            json!({"detection": "both", "probe": {"target": "10.0.0.1:80", "source": "10.244.0.9", "interval": 5}}),
            "probe.interval must be a whole number of seconds from 10 to 86400, got 5",
        ),
        (
            json!({"probe": {"target": "10.0.0.1:80", "source": "10.244.0.9"}}),
            "probe is set but detection is \"table\"",
        ),
    ];
    for (bad, want) in cases {
        let conf = common::conf("1.0.0", bad.clone(), None);
        let msg = exec(&[("CNI_COMMAND", "ADD")], conf.to_string().as_bytes()).expect_error(7);
        assert!(msg.contains(want), "{bad}: {msg}");
        let config = s.config(bad.clone());
        for args in [
            vec![
                "agent",
                "--once",
                "--config",
                &config,
                "--state-file",
                &s.state(),
            ],
            vec!["detect", "--config", &config],
        ] {
            let (code, out, err) = operator(&args);
            assert_eq!(code, 2, "{args:?}: {out}{err}");
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
    // Control: the same fields, valid, pass the config check and the
    // ADD goes on to the environment (code 4: no CNI_CONTAINERID here).
    let good =
        json!({"detection": "both", "probe": {"target": "10.0.0.1:80", "source": "10.244.0.9"}});
    let conf = common::conf("1.0.0", good, None);
    exec(&[("CNI_COMMAND", "ADD")], conf.to_string().as_bytes()).expect_error(4);
}

/// The entry with per-node paths: `node` probes from the lab's SOURCE to
/// its TARGET; "node-far" has a path of its own (its source is not this
/// node's); there is no default source, so a node not listed (or an
/// agent not told its name) does not probe.
fn per_node_entry(s: &Scratch, node: &str) -> Value {
    json!({
        "detection": "probe",
        "probe": {
            "target": "10.241.1.2:5009",
            "nodes": {
                node: {"source": SOURCE, "target": TARGET},
                "node-far": {"source": "10.241.9.77"},
            },
            "interval": 10,
            "verdictFile": s.path("run/verdict.json"),
        },
    })
}

#[test]
fn per_node_paths_probe_on_the_named_node_only_and_add_takes_its_verdict() {
    let mut net = Net::new("apn", Cable::BrokenNic);
    net.listen();
    let s = Scratch::new("apn");
    let config = s.config(per_node_entry(&s, "node-a"));
    let once_as = |node: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["agent", "--once", "--config", &config])
            .args(["--state-file", &s.state()])
            .arg("--textfile")
            .arg(s.path("metrics.prom"))
            .env_remove("CNI_COMMAND")
            .env_remove("NODE_NAME");
        if let Some(n) = node {
            cmd.env("NODE_NAME", n);
        }
        let out = output_within(&mut cmd, Duration::from_secs(40), "agent --once");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            std::fs::read_to_string(s.path("metrics.prom")).unwrap_or_default(),
        )
    };

    // A node without a source of its own (and no default): no probe, no
    // change, said once at warn, the verdict metric "none".
    let (code, out, err, metrics) = once_as(Some("node-z"));
    assert_eq!(code, 0, "{out}{err}");
    let why = "node \"node-z\" has no probe source (no probe.nodes.node-z.source and no default probe.source)";
    assert!(
        out.contains(&format!(
            "not probing: {why}; changing nothing on this node\n"
        )),
        "{out}"
    );
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("not probing: "))
        .collect();
    assert!(warned.len() == 1 && warned[0].contains(" WARN "), "{err}");
    assert!(
        out.contains(&format!(
            "probe: none ({why}: this node does not probe) (target (none); detection \"probe\": decides)"
        )),
        "{out}"
    );
    assert!(!s.path("run/verdict.json").exists(), "no probe ran");
    assert_eq!(net.lab.tx(0), (true, true), "no path: untouched");
    assert_metrics(
        &metrics,
        &[
            "csum_offload_probe_verdict{verdict=\"none\"} 1\n",
            "csum_offload_probes_total 0\n",
            "csum_offload_probe_fallback 1\n",
        ],
    );
    // An agent not told its name: the defaults, which have no source.
    let (code, out, err, _) = once_as(None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("not probing: this node's name is not known (--node-name or NODE_NAME) and probe has no default source"),
        "{out}"
    );
    assert_eq!(net.lab.tx(0), (true, true));

    // node-a: its own source and target, the broken path: fixed.
    let (code, out, err, metrics) = once_as(Some("node-a"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("probe {TARGET} from throwaway pod {SOURCE}")),
        "{out}"
    );
    assert!(out.contains(": broken ("), "{out}");
    assert_eq!(net.lab.tx(0), (false, false), "fixed by node-a's verdict");
    assert!(
        metrics.contains("csum_offload_probe_verdict{verdict=\"broken\"} 1\n"),
        "{metrics}"
    );
    let v = verdict_in(&s);
    assert_eq!(
        (&v["node"], &v["source"], &v["target"]),
        (&json!("node-a"), &json!(SOURCE), &json!(TARGET))
    );
    // detect on node-b reads node-a's record as not its own.
    let (code, out, err) = operator(&["detect", "--config", &config, "--node-name", "node-far"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("probe: none (the last, broken, was for another path, 10.241.1.2:5001 from 10.241.9.7 on node node-a)"),
        "{out}"
    );

    // ADD does not know its node: it takes the path of the node the
    // record names from its own config, and fixes.
    tx_on_again(&net);
    let add = |entry: Value| {
        let conf = common::conf(
            "1.0.0",
            entry,
            Some(prev_result("1.0.0", &net.lab.netns_path())),
        );
        net.lab.cni("ADD", &conf).expect_ok();
    };
    add(per_node_entry(&s, "node-a"));
    assert_eq!(net.lab.tx(0), (false, false), "ADD takes node-a's verdict");
    // Controls, each one thing different: node-a's target changed, its
    // source changed, node-a no longer listed (the defaults have no
    // source): the record counts for nothing, and nothing changes.
    let mut changed_target = per_node_entry(&s, "node-a");
    changed_target["probe"]["nodes"]["node-a"]["target"] = json!("10.241.1.2:5002");
    let mut changed_source = per_node_entry(&s, "node-a");
    changed_source["probe"]["nodes"]["node-a"]["source"] = json!("10.241.9.8");
    let renamed = per_node_entry(&s, "node-b");
    for (what, entry) in [
        ("another target", changed_target),
        ("another source", changed_source),
        ("node-a unlisted", renamed),
    ] {
        tx_on_again(&net);
        add(entry);
        assert_eq!(net.lab.tx(0), (true, true), "{what}: no change");
    }
}

#[test]
fn the_daemon_probes_again_when_the_uplink_changes() {
    // The target is an address of the peer's that only the default route
    // reaches: first via up0 through brokennic, then via up1, a clean
    // cable straight to the peer.
    let mut net = Net::new("apu1", Cable::BrokenNic);
    net.listen();
    let peer = net.peer.clone();
    ip_batch(
        Some(&peer),
        &[
            "addr add 10.241.8.2/32 dev lo".into(),
            "link add eth1 type veth peer name up1 netns ".to_string() + &net.lab.host,
            "addr add 10.241.3.2/24 dev eth1".into(),
            "link set eth1 up".into(),
        ],
    );
    ip_batch(
        None,
        &[
            "addr add 10.241.3.1/24 dev up1".into(),
            "link set up1 up".into(),
        ],
    );
    let s = Scratch::new("apu1");
    let mut entry = entry("probe", &s, json!({}));
    entry["probe"]["target"] = json!("10.241.8.2:5001");
    // Far longer than the test: a second probe can come only from the
    // uplink's change.
    entry["probe"]["interval"] = json!(3600);
    let config = s.config(entry);
    let textfile = s.path("metrics.prom");
    let mut cmd = daemon_command(&s, &config, &textfile);
    let daemon = Daemon::spawn(&mut cmd, s.path("agent.log"));
    daemon.wait_log(": broken (");
    let probes = |n: u32| {
        std::fs::read_to_string(&textfile)
            .is_ok_and(|t| t.contains(&format!("csum_offload_probes_total {n}\n")))
    };
    wait_until("the first probe's metrics", Duration::from_secs(10), || {
        probes(1)
    });
    let first = verdict_in(&s);
    assert_eq!(first["verdict"], "broken");
    // Control: with the uplink as it is, no second probe (3 s; a probe
    // on the broken path alone takes about that long).
    std::thread::sleep(Duration::from_secs(3));
    assert!(probes(1), "no uplink change, no probe");
    assert_eq!(verdict_in(&s), first);

    // The default route moves to up1 (and the peer answers the pods
    // that way too).
    let moved = Instant::now();
    run(
        "ip",
        &[
            "route",
            "replace",
            "default",
            "via",
            "10.241.3.2",
            "dev",
            "up1",
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &peer,
            "route",
            "replace",
            "10.241.9.0/24",
            "via",
            "10.241.3.1",
        ],
    );
    wait_until(
        "a probe after the uplink change",
        Duration::from_secs(20),
        || probes(2),
    );
    let elapsed = moved.elapsed();
    let second = verdict_in(&s);
    assert_eq!(second["verdict"], "ok", "the new uplink's path is clean");
    assert!(
        second["at"].as_u64().unwrap() > first["at"].as_u64().unwrap(),
        "{first} {second}"
    );
    let log = daemon.log();
    assert_eq!(log.matches(": broken (").count(), 1, "{log}");
    assert_eq!(log.matches(": ok (").count(), 1, "{log}");
    assert!(std::fs::read_to_string(&textfile)
        .unwrap()
        .contains("csum_offload_probe_verdict{verdict=\"ok\"} 1\n"));
    eprintln!("re-probed {elapsed:?} after the default route moved to up1");
    assert!(daemon.terminate().success());
}

#[test]
fn a_daemon_without_a_path_says_so_once_and_not_at_every_interval() {
    let net = Net::new("apz", Cable::BrokenNic);
    let s = Scratch::new("apz");
    let config = s.config(per_node_entry(&s, "node-a"));
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "--config", &config, "--state-file", &s.state()])
        .args(["--resync", "0", "--node-name", "node-z"])
        .env_remove("CNI_COMMAND")
        .env_remove("NODE_NAME");
    let daemon = Daemon::spawn(&mut cmd, s.path("agent.log"));
    daemon.wait_log("not probing: node \"node-z\" has no probe source");
    // interval 10: the probe's turn comes again at 10 s; still one line.
    std::thread::sleep(Duration::from_secs(12));
    let log = daemon.log();
    assert_eq!(log.matches("not probing: ").count(), 1, "{log}");
    assert!(!log.contains("probe verdict none"), "{log}");
    assert!(!s.path("run/verdict.json").exists());
    assert_eq!(net.lab.tx(0), (true, true));
    assert!(daemon.terminate().success());
}

/// Every line of `want` is in the scraped `metrics`.
fn assert_metrics(metrics: &str, want: &[&str]) {
    for line in want {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
}

/// The agent daemon on `config`, events only (no resync), its metrics in
/// `textfile`, with no node name from the environment.
fn daemon_command(s: &Scratch, config: &str, textfile: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "--config", config, "--state-file", &s.state()])
        .args(["--resync", "0"])
        .arg("--textfile")
        .arg(textfile)
        .env_remove("CNI_COMMAND")
        .env_remove("NODE_NAME");
    cmd
}
