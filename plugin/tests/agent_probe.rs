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
    for want in [
        "csum_offload_probe_verdict{verdict=\"broken\"} 1\n",
        "csum_offload_probe_verdict{verdict=\"none\"} 0\n",
        "csum_offload_probe_fallback 0\n",
        "csum_offload_probes_total 1\n",
        "csum_offload_decision_info{settings=\"tx off\"} 1\n",
    ] {
        assert!(metrics.contains(want), "{want}: {metrics}");
    }
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
    for want in [
        "csum_offload_probe_verdict{verdict=\"unreachable\"} 1\n",
        "csum_offload_probe_fallback 1\n",
        "csum_offload_decision_info{settings=\"(no change)\"} 1\n",
    ] {
        assert!(metrics.contains(want), "{want}: {metrics}");
    }
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
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "--config", &config, "--state-file", &s.state()])
        .args(["--resync", "0"])
        .arg("--textfile")
        .arg(&textfile)
        .env_remove("CNI_COMMAND");
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
