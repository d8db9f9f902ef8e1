//! Rules against real NICs, with the facts taken from tools other than the
//! plugin (`ethtool -i`, sysfs, `uname -r`) and checked against what the
//! plugin reports, so that a wrong fact fails here rather than being
//! matched by a rule built from it.
//!
//! - This machine's uplink: the plugin runs in the host netns (as on a
//!   node), the pod is a netns of the test's own with its veth's other end
//!   parked in a second one, and `apply: container` touches only the pod's
//!   end. No interface of the host is changed.
//! - A lab's veth "uplink" (driver veth, which reports a driver version
//!   and no PCI id): the non-empty version path wherever this runs, the
//!   agent's info metric, and a bad rule refused by the agent.
//! - A bad rule refused by `detect --config` and `install --once`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

const GENERIC: &str = "tx-checksum-ip-generic";

/// A bad rule, after a good one: the error must name `rules[1].kernel`.
const BAD_KERNEL: &str =
    "rules[1].kernel: \">=six\" is not a comparison with a dotted version number (e.g. \">=6.15\", \"<1.2.0\")";

/// A NIC's facts as the plugin reports them in `detect --json` and as a
/// rule matches them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    driver: String,
    driver_version: String,
    firmware_version: String,
    bus_info: String,
    pci_id: String,
}

impl Facts {
    /// From ethtool and sysfs, not from the plugin. `netns` is the named
    /// netns the NIC is in (None: this process's); the calling thread must
    /// be in it, for ethtool.
    fn independent(netns: Option<&str>, nic: &str) -> Self {
        let out = run("ethtool", &["-i", nic]);
        let field = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .unwrap_or_else(|| panic!("no {key} in ethtool -i {nic}:\n{out}"))
                .trim()
                .to_string()
        };
        let bus_info = field("bus-info");
        let (pci_address, pci_id) = pci_function(netns, nic);
        // Two sources for one fact: the PCI function sysfs finds for the
        // netdev is the one ethtool names.
        if !pci_address.is_empty() {
            assert_eq!(pci_address, bus_info, "sysfs and ethtool disagree on {nic}");
        }
        Facts {
            driver: field("driver"),
            driver_version: field("version"),
            firmware_version: field("firmware-version"),
            bus_info,
            pci_id,
        }
    }

    fn reported(nic: &Value) -> Self {
        let s = |k: &str| {
            nic[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} not a string in {nic}"))
                .to_string()
        };
        Facts {
            driver: s("driver"),
            driver_version: s("driverVersion"),
            firmware_version: s("firmwareVersion"),
            bus_info: s("busInfo"),
            pci_id: s("pciId"),
        }
    }

    /// (rule field, fact) for every optional field a rule can match on.
    fn optional(&self) -> [(&'static str, &str); 4] {
        [
            ("driverVersion", &self.driver_version),
            ("firmwareVersion", &self.firmware_version),
            ("busInfo", &self.bus_info),
            ("pciId", &self.pci_id),
        ]
    }
}

/// (PCI address, `vendor:device`) of the PCI function behind `nic`, from
/// /sys/class/net/<nic>/device (for virtio the device's parent); empty
/// when the netdev has no PCI function (veth, ifb). Read through
/// `ip netns exec`, which mounts the netns's own sysfs, when `netns` is set.
fn pci_function(netns: Option<&str>, nic: &str) -> (String, String) {
    const SCRIPT: &str = r#"
        d=$(readlink -e "/sys/class/net/$1/device") || exit 0
        sub() { basename "$(readlink -e "$1/subsystem")"; }
        [ "$(sub "$d")" = virtio ] && d=$(dirname "$d")
        [ "$(sub "$d")" = pci ] || exit 0
        echo "$(basename "$d") $(sed s/^0x// "$d/vendor"):$(sed s/^0x// "$d/device")"
    "#;
    let out = match netns {
        Some(ns) => run("ip", &["netns", "exec", ns, "sh", "-c", SCRIPT, "sh", nic]),
        None => run("sh", &["-c", SCRIPT, "sh", nic]),
    };
    match out.split_whitespace().collect::<Vec<_>>()[..] {
        [] => (String::new(), String::new()),
        [address, id] => (address.to_string(), id.to_string()),
        _ => panic!("sysfs of {nic}: {out:?}"),
    }
}

fn uname_r() -> String {
    run("uname", &["-r"]).trim().to_string()
}

/// The one NIC `detect --json` (in this thread's netns) reports, and the
/// whole reply.
fn detected(config: Option<&Path>) -> (Value, Value) {
    let mut args = vec!["detect", "--json"];
    if let Some(c) = config {
        args.extend(["--config", c.to_str().unwrap()]);
    }
    let d: Value = serde_json::from_str(&run(BIN, &args)).unwrap();
    let nics = d["nics"].as_array().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(nics.len(), 1, "one NIC expected: {d}");
    (nics[0].clone(), d)
}

/// A rule that matches `facts` on every field that has a value, with a
/// kernel comparison on uname's numbers, turning tx off.
fn rule_on(facts: &Facts, kernel: &str) -> Value {
    let mut rule = json!({
        "driver": facts.driver,
        "kernel": format!("={}", kernel.split('-').next().unwrap()),
        "settings": {"tx": false},
    });
    for (field, fact) in facts.optional() {
        if !fact.is_empty() {
            rule[field] = json!(fact);
        }
    }
    rule
}

/// The same rule with one field that cannot match: for a field with a
/// value a wrong one, for an empty one "?*" (anything but empty), which
/// misses only if the plugin too reads it as empty.
fn misses(rule: &Value, facts: &Facts) -> Vec<(String, Value)> {
    let mut out = vec![("kernel".to_string(), json!(">=999"))];
    for (field, fact) in facts.optional() {
        let wrong = match (field, fact.is_empty()) {
            (_, true) => "?*",
            ("pciId", false) => "ffff:ffff",
            ("busInfo", false) => "0000:ff:1f.7",
            _ => "0.0.0-none",
        };
        out.push((field.to_string(), json!(wrong)));
    }
    out.into_iter()
        .map(|(field, value)| {
            let mut miss = rule.clone();
            miss[&field] = value.clone();
            (format!("{field} {value}"), miss)
        })
        .collect()
}

/// A pod netns with eth0, whose peer lives in a netns of its own.
struct Pod {
    pod: String,
    far: String,
}

impl Pod {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let base = format!("rl-{}-{n}", std::process::id());
        let p = Pod {
            pod: format!("{base}-pod"),
            far: format!("{base}-far"),
        };
        run("ip", &["netns", "add", &p.pod]);
        run("ip", &["netns", "add", &p.far]);
        run(
            "ip",
            &[
                "-n", &p.far, "link", "add", "rlh0", "type", "veth", "peer", "name", "eth0",
                "netns", &p.pod,
            ],
        );
        p
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.pod)
    }
    fn features(&self) -> FeatureTable {
        read_features(Some(Path::new(&self.path())), "eth0")
    }
    fn tx(&self) -> bool {
        self.features()
            .into_iter()
            .find(|(n, _, _)| n == GENERIC)
            .unwrap()
            .1
    }
    fn add(&self, extra: Value) -> Reply {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "rules0123"),
            ("CNI_NETNS", &self.path()),
            ("CNI_IFNAME", "eth0"),
        ];
        let mut c = conf("1.0.0", extra, Some(prev_result("1.0.0", &self.path())));
        c["apply"] = json!("container");
        exec(&env, c.to_string().as_bytes())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for ns in [&self.pod, &self.far] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

#[test]
fn rules_match_the_real_uplink_on_facts_read_by_ethtool_sysfs_and_uname() {
    // Which NIC is the uplink is the walk's business (tests/uplink.rs);
    // what that NIC is, is checked here.
    let (nic, d) = detected(None);
    let name = nic["name"].as_str().unwrap().to_string();
    let facts = Facts::independent(None, &name);
    let kernel = uname_r();
    eprintln!("the uplink {name}: {facts:?}, kernel {kernel}");
    assert_eq!(Facts::reported(&nic), facts, "detect's facts of {name}");
    assert_eq!(d["kernel"], kernel.as_str());
    // A fact this NIC does not have is reported empty (asserted above),
    // and the rule below cannot match on it: say so rather than pass.
    for (field, fact) in facts.optional() {
        if fact.is_empty() {
            eprintln!("{name} has no {field}: only its emptiness is checked here");
        }
    }

    // Matching on every fact the NIC has: the rule decides.
    let rule = rule_on(&facts, &kernel);
    let pod = Pod::new();
    assert!(pod.tx());
    let rules = json!({"rules": [rule.clone()]});
    pod.add(rules.clone()).expect_ok();
    assert!(!pod.tx(), "{rule} matched {facts:?}");
    // detect says which rule matched, and on which facts.
    let scratch = Scratch::new("rl-real");
    let entry = std::path::PathBuf::from(scratch.config(rules.clone()));
    let (matched, _) = detected(Some(&entry));
    let text = run(BIN, &["detect", "--config", entry.to_str().unwrap()]);
    assert_eq!(matched["rule"], 0, "{matched}");
    let source = matched["source"].as_str().unwrap();
    for (field, fact) in facts.optional() {
        if !fact.is_empty() {
            let shown = format!("{field} {fact:?} matches {fact:?}");
            assert!(source.contains(&shown), "{shown} not in {source}");
        }
    }
    assert!(
        source.starts_with(&format!("rules[0]: driver {:?}", facts.driver)),
        "{source}"
    );
    assert!(
        text.contains(&format!("kernel: {kernel}")) && text.contains("[rules[0]: "),
        "{text}"
    );

    // One fact off: no match, the table's entry for this driver applies.
    assert_eq!(
        nic["settings"], "(no change)",
        "this test needs a driver the table leaves alone"
    );
    for (what, miss) in misses(&rule, &facts) {
        let pod = Pod::new();
        pod.add(json!({"rules": [miss]})).expect_ok();
        assert!(pod.tx(), "{what} must not match {facts:?}");
    }
    // Order: the first rule that matches decides.
    let pod = Pod::new();
    let mut keep = rule.clone();
    keep["settings"] = json!({});
    pod.add(json!({"rules": [keep, rule.clone()]})).expect_ok();
    assert!(pod.tx(), "the first rule (change nothing) decided");
    // A bad rule is a config error naming the rule and the field; no
    // feature of the pod's interface changes.
    let pod = Pod::new();
    let before = pod.features();
    let msg = pod
        .add(json!({"rules": [rule, {"driver": facts.driver, "kernel": ">=six", "settings": {}}]}))
        .expect_error(7);
    assert!(msg.contains(BAD_KERNEL), "{msg}");
    assert_eq!(pod.features(), before);
}

/// ADD on pod `i` of `lab` (default `apply`: both ends).
fn add_on(lab: &Lab, i: usize, extra: Value) -> Reply {
    let path = lab.netns_path_of(i);
    let c = conf("1.0.0", extra, Some(prev_result("1.0.0", &path)));
    lab.cni_env("ADD", &c, &[("CNI_NETNS", &path)])
}

/// The veth uplink's facts, as ethtool reports them, after checking that
/// they are what this file relies on and that `detect` reports the same.
fn veth_uplink(lab: &Lab) -> Facts {
    let facts = Facts::independent(Some(&lab.host), "up0");
    assert_eq!(facts.driver, "veth");
    assert!(
        !facts.driver_version.is_empty(),
        "veth reports a driver version (1.0 on 6.x): {facts:?}"
    );
    assert_eq!((facts.bus_info.as_str(), facts.pci_id.as_str()), ("", ""));
    let (nic, d) = detected(None);
    assert_eq!(nic["name"], "up0", "{d}");
    assert_eq!(Facts::reported(&nic), facts);
    facts
}

#[test]
fn rules_match_a_reported_driver_version_exactly_by_glob_and_by_comparison() {
    let cases = 7;
    let lab = Lab::with_pods("rv", cases);
    lab.add_uplink();
    let facts = veth_uplink(&lab);
    let version = facts.driver_version.clone();
    let major = version.split('.').next().unwrap();
    let rule = |driver_version: String| json!({"rules": [{"driver": "veth", "driverVersion": driver_version, "settings": {"tx": false}}]});
    let next = format!("{}", major.parse::<u64>().unwrap() + 1);
    let table = [
        (version.clone(), true),
        (format!("{major}.*"), true),
        (format!("={version}"), true),
        (format!("<{next}"), true),
        (format!(">={next}"), false),
        (format!("{version}.1"), false),
        ("?*-none".to_string(), false),
    ];
    assert_eq!(table.len(), cases);
    for (i, (value, matches)) in table.into_iter().enumerate() {
        assert_eq!(lab.tx(i), (true, true));
        add_on(&lab, i, rule(value.clone())).expect_ok();
        let want = !matches;
        assert_eq!(
            lab.tx(i),
            (want, want),
            "driverVersion {value:?} against {version:?}: match {matches}"
        );
    }
}

#[test]
fn a_glob_the_syntax_does_not_cover_fails_add_with_code_7_and_changes_nothing() {
    // The old matcher took the first three and matched nothing with them
    // (a reversed range, a `\` read as itself, a POSIX class read as
    // characters), so a rule meant to fix a node silently did not.
    let cases = [
        ("[9-0]*", "the range '9-0' is reversed (write '0-9')"),
        ("1.\\", "a '\\' at the end escapes nothing"),
        (
            "[[:digit:]].*",
            "POSIX classes such as '[:digit:]' are not supported",
        ),
        ("1.[0-9", "a '[' without its ']'"),
    ];
    let lab = Lab::with_pods("rg", 1);
    lab.add_uplink();
    let facts = veth_uplink(&lab);
    let rule = |driver_version: &str| json!({"rules": [{"driver": "veth", "driverVersion": driver_version, "settings": {"tx": false}}]});
    for (value, why) in cases {
        let before = lab.features_of(0);
        let msg = add_on(&lab, 0, rule(value)).expect_error(7);
        let want = format!("rules[0].driverVersion: {value:?} is not a valid glob: {why}");
        assert!(msg.contains(&want), "{msg}\nwant {want}");
        assert_eq!(lab.features_of(0), before, "{value:?} changed nothing");
    }
    // The control: the same rule with a class the syntax has matches the
    // reported version, and applies.
    assert!(facts
        .driver_version
        .starts_with(|c: char| c.is_ascii_digit()));
    add_on(&lab, 0, rule("[0-9]*.[!x]*")).expect_ok();
    assert_eq!(lab.tx(0), (false, false), "{facts:?}");
}

#[test]
fn the_agent_labels_its_info_metric_with_the_facts_and_refuses_a_bad_rule() {
    let lab = Lab::with_pods("ra", 1);
    lab.add_uplink();
    let facts = veth_uplink(&lab);
    let dir = Scratch::new("rl-agent");
    let state = dir.path("state.jsonl");
    let textfile = dir.path("csum_offload.prom");
    let run_agent = |config: &Value| {
        let c = dir.config(config.clone());
        agent(&[
            "--once",
            "--config",
            &c,
            "--state-file",
            state.to_str().unwrap(),
            "--textfile",
            textfile.to_str().unwrap(),
        ])
    };
    let good =
        json!({"driver": "veth", "driverVersion": facts.driver_version, "settings": {"tx": false}});

    // A bad rule: exit 2 naming it, nothing changed, nothing recorded.
    let (code, out, err) = run_agent(
        &json!({"rules": [good.clone(), {"driver": "veth", "kernel": ">=six", "settings": {}}]}),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(BAD_KERNEL), "{err}");
    assert_eq!(lab.tx(0), (true, true));
    assert!(!state.exists() && !textfile.exists());

    // The good rule alone: the pair is set, and the metric carries the
    // facts it matched.
    let (code, out, err) = run_agent(&json!({"rules": [good]}));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lab.tx(0), (false, false));
    let metrics = std::fs::read_to_string(&textfile).unwrap();
    let want = format!(
        "csum_offload_uplink_info{{nic=\"up0\",driver=\"veth\",driver_version=\"{}\",firmware_version=\"{}\",settings=\"tx off\"}} 1",
        facts.driver_version, facts.firmware_version
    );
    assert!(
        metrics.lines().any(|l| l == want),
        "{want} not in:\n{metrics}"
    );
}

#[test]
fn detect_and_the_installer_refuse_a_bad_rule_and_change_nothing() {
    let good = json!({"driver": "veth", "kernel": ">=1", "settings": {"tx": false}});
    let (bad_dir, fine_dir) = (Scratch::new("rl-bad"), Scratch::new("rl-fine"));
    let bad = bad_dir.config(
        json!({"rules": [good.clone(), {"driver": "veth", "kernel": ">=six", "settings": {}}]}),
    );
    let fine = fine_dir.config(json!({"rules": [good]}));

    let (code, out, err) = operator(&["detect", "--config", &bad]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains(BAD_KERNEL), "{err}");

    let dirs = InstallDirs::new("rules");
    let primary = dirs.conf().join("10-kindnet.conflist");
    let original = serde_json::to_vec_pretty(&kindnet_conflist()).unwrap();
    std::fs::write(&primary, &original).unwrap();
    let install = |config: &str| {
        dirs.command("install")
            .arg("--once")
            .arg("--config")
            .arg(config)
            .output()
            .unwrap()
    };
    let out = install(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(BAD_KERNEL), "{err}");
    assert_eq!(std::fs::read(&primary).unwrap(), original);
    assert!(!dirs.bin().join("csum-offload").exists());
    // Control: the same install with the good rule alone writes both.
    let out = install(&fine);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conflist: Value = serde_json::from_slice(&std::fs::read(&primary).unwrap()).unwrap();
    let ours = conflist["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "csum-offload")
        .unwrap_or_else(|| panic!("no entry in {conflist}"));
    assert_eq!(ours["rules"][0]["kernel"], ">=1", "{ours}");
    assert!(dirs.bin().join("csum-offload").exists());
}
