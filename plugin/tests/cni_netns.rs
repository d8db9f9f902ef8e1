//! The built binary run as a runtime runs it, against real netns and veth
//! pairs (root). Each test lives in its own private lab (see common/mod.rs).

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::OpenOptionsExt;

const TX_FEATURES: &[&str] = &["tx-checksum-ip-generic", "tx-checksum-sctp"];

/// An ADD/CHECK config of `version` with a prevResult of the same version,
/// plus `extra` fields.
fn chained(version: &str, extra: Value) -> Value {
    conf(version, extra, Some(prev_result(version, "/x")))
}

fn add_conf(extra: Value) -> Value {
    chained("1.0.0", extra)
}

fn txgbe() -> Value {
    json!({"hostDriver": "txgbe"})
}

#[test]
fn add_turns_tx_checksum_off_on_both_ends_for_every_version() {
    for version in VERSIONS {
        let lab = Lab::new("cso");
        let (c, h) = lab.ethtool_k();
        assert_eq!(
            ethtool_value(&c, "tx-checksum-ip-generic"),
            "on",
            "veth starts with offload on"
        );
        assert_eq!(ethtool_value(&h, "tx-checksum-ip-generic"), "on");

        let prev = prev_result(version, &lab.netns_path());
        let reply = lab.cni("ADD", &conf(version, txgbe(), Some(prev.clone())));
        reply.expect_ok();
        // prevResult unchanged: same JSON value, and byte for byte what the
        // runtime sent (serde_json::to_string of `prev`, as embedded).
        assert_eq!(reply.json(), prev, "{version}");
        assert_eq!(reply.stdout, prev.to_string(), "{version}");

        for side_host in [false, true] {
            for f in TX_FEATURES {
                assert!(
                    !lab.active(side_host, f),
                    "{version}: {f} still on (host side: {side_host})"
                );
            }
        }
        let (c, h) = lab.ethtool_k();
        for out in [&c, &h] {
            assert_eq!(ethtool_value(out, "tx-checksumming"), "off", "{version}");
            assert_eq!(ethtool_value(out, "tx-checksum-ip-generic"), "off");
            assert_eq!(ethtool_value(out, "tx-checksum-ipv4"), "off [fixed]");
        }
        // Everything not in the policy (rx checksum, GSO) is untouched.
        assert_eq!(ethtool_value(&c, "rx-checksumming"), "on");
        assert_eq!(ethtool_value(&c, "generic-segmentation-offload"), "on");
    }
}

#[test]
fn i40e_and_unknown_drivers_change_nothing() {
    for driver in ["i40e", "mlx5_core"] {
        let lab = Lab::new("cso");
        let before = lab.features();
        let prev = prev_result("1.0.0", &lab.netns_path());
        let reply = lab.cni(
            "ADD",
            &conf("1.0.0", json!({"hostDriver": driver}), Some(prev.clone())),
        );
        assert_eq!(reply.expect_ok().json(), prev);
        assert_eq!(lab.features(), before, "{driver}");
        assert_eq!(
            ethtool_value(&lab.ethtool_k().0, "tx-checksum-ip-generic"),
            "on"
        );
    }
}

#[test]
fn detected_uplink_driver_selects_the_policy() {
    // The lab's default route goes through macvlan mv0 on veth up0: the
    // walk must reach up0 and read its driver ("veth") from the kernel.
    let lab = Lab::new("cso");
    lab.add_uplink();
    let detect = run(BIN, &["detect", "--json"]);
    let d: Value = serde_json::from_str(&detect).unwrap();
    assert_eq!(d["start"], json!(["mv0 (macvlan)"]));
    assert_eq!(d["chain"], json!(["mv0 (macvlan) -> up0 (veth)"]));
    assert_eq!(d["nics"][0]["name"], "up0");
    assert_eq!(d["nics"][0]["driver"], "veth");

    let prev = prev_result("1.1.0", &lab.netns_path());
    let c = conf(
        "1.1.0",
        json!({"drivers": {"veth": {"tx": false}}}),
        Some(prev.clone()),
    );
    assert_eq!(lab.cni("ADD", &c).expect_ok().json(), prev);
    assert!(!lab.active(false, "tx-checksum-ip-generic"));
    assert!(!lab.active(true, "tx-checksum-ip-generic"));
    lab.cni("CHECK", &c).expect_ok();
    lab.cni("STATUS", &conf("1.1.0", json!({}), None))
        .expect_ok();
}

#[test]
fn host_interface_overrides_the_default_route() {
    let lab = Lab::new("cso");
    lab.add_uplink();
    let c = add_conf(json!({"hostInterface": "up0", "drivers": {"veth": {"tx": false}}}));
    lab.cni("ADD", &c).expect_ok();
    assert!(!lab.active(false, "tx-checksum-ip-generic"));
    // A named interface that is not there: the plugin cannot know what the
    // node needs, so it changes nothing unless told to fail.
    let lab = Lab::new("cso");
    let before = lab.features();
    let r = lab.cni("ADD", &add_conf(json!({"hostInterface": "nope0"})));
    r.expect_ok();
    assert!(
        r.stderr.contains("hostInterface \"nope0\" does not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.features(), before);
    let c = add_conf(json!({"hostInterface": "nope0", "detectionFailure": "fail"}));
    let msg = lab.cni("ADD", &c).expect_error(102);
    assert!(
        msg.contains("hostInterface \"nope0\" does not exist"),
        "{msg}"
    );
}

#[test]
fn no_default_route_changes_nothing_and_keeps_pods_and_the_node_going() {
    // The lab's host netns has no default route, as on a node with policy
    // routing or a VRF: detection cannot tell which NIC pods leave by.
    let lab = Lab::new("cso");
    let before = lab.features();
    for verb in ["ADD", "CHECK"] {
        let prev = prev_result("1.1.0", &lab.netns_path());
        let r = lab.cni(verb, &conf("1.1.0", json!({}), Some(prev.clone())));
        r.expect_ok();
        if verb == "ADD" {
            assert_eq!(r.json(), prev, "prevResult passed through");
        }
        assert!(
            r.stderr.contains("WARN")
                && r.stderr.contains("no default route")
                && r.stderr.contains("changing nothing"),
            "{verb}: the log says why: {}",
            r.stderr
        );
        assert_eq!(lab.features(), before, "{verb} changed nothing");
    }
    // STATUS stays ready: an error would take the node NotReady.
    lab.cni("STATUS", &conf("1.1.0", json!({}), None))
        .expect_ok();
    // Failing closed is an explicit choice, and then ADD and STATUS say so.
    let fail = json!({"detectionFailure": "fail"});
    let msg = lab.cni("ADD", &add_conf(fail.clone())).expect_error(102);
    assert!(
        msg.contains("no default route") && msg.contains("hostDriver"),
        "{msg}"
    );
    let msg = lab
        .cni("STATUS", &conf("1.1.0", fail.clone(), None))
        .expect_error(50);
    assert!(msg.contains("no default route"), "{msg}");
    // failurePolicy is about settings that did not stick, not detection.
    let mut both = fail;
    both["failurePolicy"] = json!("ignore");
    lab.cni("ADD", &add_conf(both)).expect_error(102);
    assert_eq!(lab.features(), before);
}

#[test]
fn check_passes_then_names_the_feature_that_drifted() {
    let lab = Lab::new("cso");
    let c = chained("0.4.0", txgbe());
    lab.cni("ADD", &c).expect_ok();
    let ok = lab.cni("CHECK", &c);
    ok.expect_ok();
    assert_eq!(ok.stdout, "", "CHECK prints nothing on success");

    run("ethtool", &["-K", &lab.host_if, "tx", "on"]);
    let msg = lab.cni("CHECK", &c).expect_error(101);
    assert!(
        msg.contains(&format!(
            "host {}: tx-checksum-ip-generic is on although off was requested",
            lab.host_if
        )),
        "{msg}"
    );
    assert!(
        !msg.contains("container"),
        "container end did not drift: {msg}"
    );

    // Re-ADD (what a runtime's retry does) repairs it.
    lab.cni("ADD", &c).expect_ok();
    lab.cni("CHECK", &c).expect_ok();
    run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.pod,
            "ethtool",
            "-K",
            "eth0",
            "tx-checksum-sctp",
            "on",
        ],
    );
    let msg = lab.cni("CHECK", &c).expect_error(101);
    assert!(
        msg.contains("container eth0: tx-checksum-sctp is on"),
        "{msg}"
    );
}

#[test]
fn del_succeeds_when_there_is_nothing_left() {
    let lab = Lab::new("cso");
    let c = chained("1.0.0", txgbe());
    lab.cni("ADD", &c).expect_ok();
    let del = lab.cni("DEL", &c);
    del.expect_ok();
    assert_eq!(del.stdout, "");
    run("ip", &["netns", "del", &lab.pod]);
    lab.cni("DEL", &c).expect_ok();
    lab.cni_env("DEL", &c, &[("CNI_NETNS", "")]).expect_ok();
    lab.cni_env("DEL", &c, &[("CNI_NETNS", "/run/netns/never-existed")])
        .expect_ok();
    // A config the plugin would reject still lets the chain's DEL go on,
    // so the plugins before it can release their IPs.
    lab.cni("DEL", &conf("1.0.0", json!({"apply": "sideways"}), None))
        .expect_ok();
    // Unreadable input is still an error on DEL.
    lab.cni("DEL", &conf("0.2.0", json!({}), None))
        .expect_error(1);
}

#[test]
fn bad_input_changes_nothing() {
    let lab = Lab::new("cso");
    let before = lab.features();
    let good = chained("1.0.0", txgbe());
    // Undecodable stdin: 6.
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    let path = lab.netns_path();
    let mut with_ns = env.to_vec();
    with_ns.push(("CNI_NETNS", &path));
    exec(&with_ns, b"{not json").expect_error(6);
    exec(&with_ns, b"").expect_error(6);
    // Bad environment: 4.
    lab.cni_env("ADD", &good, &[("CNI_NETNS", "")])
        .expect_error(4);
    lab.cni_env("ADD", &good, &[("CNI_NETNS", "/run/netns/never-existed")])
        .expect_error(4);
    lab.cni_env("ADD", &good, &[("CNI_IFNAME", "eth9")])
        .expect_error(4);
    let own = lab
        .cni_env("ADD", &good, &[("CNI_NETNS", "/proc/self/ns/net")])
        .expect_error(4);
    assert!(own.contains("plugin's own network namespace"), "{own}");
    lab.cni_env("ADD", &good, &[("CNI_CONTAINERID", "")])
        .expect_error(4);
    lab.cni_env("FROB", &good, &[]).expect_error(4);
    // Unsupported version: 1, also for the reply's own cniVersion.
    let r = lab.cni(
        "ADD",
        &conf("0.2.0", txgbe(), Some(prev_result("1.0.0", "/x"))),
    );
    assert!(r
        .expect_error(1)
        .contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
    assert_eq!(r.json()["cniVersion"], "1.1.0");
    // Invalid config: 7, and the error speaks the config's version.
    let r = lab.cni(
        "ADD",
        &chained("0.4.0", json!({"drivers": {"txgbe": {"tx-csum": false}}})),
    );
    assert!(r
        .expect_error(7)
        .contains("unknown offload feature \"tx-csum\""));
    assert_eq!(r.json()["cniVersion"], "0.4.0");
    // Missing prevResult on ADD: 7.
    let msg = lab
        .cni("ADD", &conf("1.0.0", txgbe(), None))
        .expect_error(7);
    assert!(msg.contains("requires prevResult"), "{msg}");
    assert_eq!(lab.features(), before, "nothing changed by any bad call");
}

#[test]
fn version_status_gc_and_verb_gating() {
    let lab = Lab::new("cso");
    let v = exec(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.1.0"}"#);
    assert_eq!(
        v.expect_ok().json(),
        json!({"cniVersion": "1.1.0", "supportedVersions": VERSIONS})
    );
    // CHECK needs 0.4.0, STATUS and GC need 1.1.0 (error code 1 otherwise).
    let c = chained("0.3.1", txgbe());
    assert!(lab.cni("CHECK", &c).expect_error(1).contains("CHECK"));
    for verb in ["STATUS", "GC"] {
        let msg = lab.cni(verb, &conf("1.0.0", txgbe(), None)).expect_error(1);
        assert!(msg.contains(verb) && msg.contains("1.1.0"), "{msg}");
        let ok = lab.cni(
            verb,
            &conf(
                "1.1.0",
                json!({"hostDriver": "txgbe", "cni.dev/valid-attachments": []}),
                None,
            ),
        );
        assert_eq!(ok.expect_ok().stdout, "");
    }
}

#[test]
fn apply_selects_the_end_of_the_pair() {
    let lab = Lab::new("cso");
    let c = add_conf(json!({"hostDriver": "txgbe", "apply": "container"}));
    lab.cni("ADD", &c).expect_ok();
    assert!(!lab.active(false, "tx-checksum-ip-generic"));
    assert!(
        lab.active(true, "tx-checksum-ip-generic"),
        "host end must stay untouched"
    );
    let lab = Lab::new("cso");
    let c = add_conf(json!({"hostDriver": "txgbe", "apply": "host"}));
    lab.cni("ADD", &c).expect_ok();
    assert!(
        lab.active(false, "tx-checksum-ip-generic"),
        "container end must stay untouched"
    );
    assert!(!lab.active(true, "tx-checksum-ip-generic"));
}

#[test]
fn fixed_features_fail_or_are_ignored_per_policy() {
    let lab = Lab::new("cso");
    // veth has tx-checksum-ipv4 fixed off: asking for it on cannot work.
    let drivers = json!({"hostDriver": "x", "drivers": {"x": {"tx-checksum-ipv4": true}}});
    let msg = lab.cni("ADD", &add_conf(drivers.clone())).expect_error(100);
    assert!(
        msg.contains("tx-checksum-ipv4 is fixed off on this device, wanted on"),
        "{msg}"
    );
    let mut ignore = drivers;
    ignore["failurePolicy"] = json!("ignore");
    let prev = prev_result("1.0.0", "/x");
    let r = lab.cni("ADD", &conf("1.0.0", ignore, Some(prev.clone())));
    assert_eq!(r.expect_ok().json(), prev);
    assert!(
        r.stderr.contains("failurePolicy ignore"),
        "the log says why: {}",
        r.stderr
    );
}

#[test]
fn kernel_consequences_are_not_problems_but_contradictions_are() {
    // TSO cannot stay on without TX checksum: asking for both fails clearly.
    let lab = Lab::new("cso");
    let c = add_conf(json!({"hostDriver": "x", "drivers": {"x": {"tx": false, "tso": true}}}));
    let msg = lab.cni("ADD", &c).expect_error(100);
    assert!(
        msg.contains("tx-tcp-segmentation is off although on was requested"),
        "{msg}"
    );
}

#[test]
fn non_veth_interfaces_are_passed_through() {
    let lab = Lab::new("cso");
    lab.make_eth0_a_macvlan();
    let prev = prev_result("1.0.0", "/x");
    let r = lab.cni("ADD", &conf("1.0.0", txgbe(), Some(prev.clone())));
    assert_eq!(r.expect_ok().json(), prev);
    assert!(r.stderr.contains("is not a veth"), "{}", r.stderr);
}

#[test]
fn prev_result_in_another_version_is_converted() {
    let lab = Lab::new("cso");
    let r = lab.cni(
        "ADD",
        &conf("0.4.0", txgbe(), Some(prev_result("1.0.0", "/x"))),
    );
    let out = r.expect_ok().json();
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["ips"][0]["version"], "4");
    assert_eq!(
        out["x-vendor-extension"],
        json!({"keep": [1, 2.5, null, true]})
    );
}

#[test]
fn log_file_receives_diagnostics_and_stdout_only_the_result() {
    let lab = Lab::new("cso");
    let logs = LogDir::new("cso");
    let log = logs.path("cni.log");
    let prev = prev_result("1.0.0", "/x");
    let c = conf(
        "1.0.0",
        json!({"hostDriver": "txgbe", "logFile": log, "logLevel": "debug"}),
        Some(prev.clone()),
    );
    let r = lab.cni("ADD", &c);
    assert_eq!(r.expect_ok().json(), prev);
    assert_eq!(r.stderr, "", "with a log file nothing goes to stderr");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("ADD ctr-01234567 eth0")
            && text.contains("changed: [tx-checksum-ip-generic off"),
        "{text}"
    );
}

#[test]
fn bridge_uplink_is_walked_through_its_ports() {
    // The bridge itself is the device whose driver counts ("bridge").
    let lab = Lab::new("cso");
    lab.add_bridge_uplink();
    run(
        "ip",
        &[
            "route",
            "add",
            "default",
            "via",
            "10.232.0.1",
            "dev",
            "br-up",
        ],
    );
    let d: Value = serde_json::from_str(&run(BIN, &["detect", "--json"])).unwrap();
    assert_eq!(d["start"], json!(["br-up (bridge)"]));
    assert_eq!(d["nics"][0]["driver"], "bridge");
    let c = add_conf(json!({"drivers": {"bridge": {"tx": false}}}));
    lab.cni("ADD", &c).expect_ok();
    assert!(!lab.active(true, "tx-checksum-ip-generic"));
}

#[test]
fn non_veth_can_be_required_to_fail() {
    let lab = Lab::new("cso");
    lab.make_eth0_a_macvlan();
    let c = add_conf(json!({"hostDriver": "txgbe", "nonVeth": "fail"}));
    let msg = lab.cni("ADD", &c).expect_error(100);
    assert!(msg.contains("eth0 (macvlan) is not a veth"), "{msg}");
}

#[test]
fn an_alias_asked_on_whose_features_are_all_fixed_fails_like_ethtool() {
    // veth has large-receive-offload fixed off: `ethtool -K veth lro on` fails too.
    let lab = Lab::new("cso");
    let c = add_conf(json!({"hostDriver": "x", "drivers": {"x": {"lro": true}}}));
    let msg = lab.cni("ADD", &c).expect_error(100);
    assert!(
        msg.contains("lro: every feature it covers is fixed off on this device"),
        "{msg}"
    );
}

#[test]
fn a_missing_interface_is_an_error_whatever_the_policy() {
    for driver in ["txgbe", "i40e"] {
        let lab = Lab::new("cso");
        let c = add_conf(json!({"hostDriver": driver}));
        let msg = lab
            .cni_env(
                "ADD",
                &c,
                &[("CNI_IFNAME", "eth9"), ("CNI_NETNS", &lab.netns_path())],
            )
            .expect_error(4);
        assert!(
            msg.contains("CNI_IFNAME eth9 does not exist"),
            "{driver}: {msg}"
        );
    }
}

#[test]
fn gc_does_not_fail_on_plugin_settings_and_errors_reach_stderr() {
    let lab = Lab::new("cso");
    let gc = lab.cni(
        "GC",
        &conf(
            "1.1.0",
            json!({"apply": "sideways", "cni.dev/valid-attachments": []}),
            None,
        ),
    );
    gc.expect_ok();
    assert!(
        gc.stderr.contains("ignoring invalid config on GC"),
        "{}",
        gc.stderr
    );
    // An error raised before any config is read is still logged.
    let r = lab.cni("FROB", &conf("1.1.0", json!({}), None));
    r.expect_error(4);
    assert!(r.stderr.contains("unknown CNI_COMMAND"), "{}", r.stderr);
}

#[test]
fn host_driver_beside_host_interface_says_the_interface_is_not_inspected() {
    let lab = Lab::new("cso");
    let c = add_conf(json!({"hostDriver": "txgbe", "hostInterface": "nope0"}));
    let r = lab.cni("ADD", &c);
    r.expect_ok();
    assert!(
        r.stderr
            .contains("hostInterface nope0 is not inspected: hostDriver txgbe is set"),
        "{}",
        r.stderr
    );
}

#[test]
fn ipv6_default_route_is_used_when_there_is_no_ipv4_one() {
    // The lab's private netns (and its cleanup) is all this test needs.
    let _lab = Lab::new("cso");
    run(
        "ip",
        &["link", "add", "up6", "type", "veth", "peer", "name", "up6p"],
    );
    for dev in ["up6", "up6p"] {
        run("ip", &["link", "set", dev, "up"]);
    }
    run(
        "ip",
        &["-6", "addr", "add", "fd00:233::2/64", "dev", "up6", "nodad"],
    );
    run(
        "ip",
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:233::1",
            "dev",
            "up6",
        ],
    );
    let d: Value = serde_json::from_str(&run(BIN, &["detect", "--json"])).unwrap();
    assert_eq!(d["start"], json!(["up6 (veth)"]));
    assert!(
        d["how"].as_str().unwrap().starts_with("IPv6 default route"),
        "{d}"
    );
    assert_eq!(d["nics"][0]["driver"], "veth");
}

#[test]
fn multipath_uplinks_merge_their_settings_and_off_wins() {
    // A multipath default route over mv0 (macvlan on veth up0) and br-up
    // (a bridge with only a veth port): two NICs, drivers "veth" and
    // "bridge", whose policies disagree on TX checksum.
    let lab = Lab::new("cso");
    lab.add_uplink();
    lab.add_bridge_uplink();
    run("ip", &["route", "del", "default"]);
    run(
        "ip",
        &[
            "route",
            "add",
            "default",
            "nexthop",
            "via",
            "10.231.0.1",
            "dev",
            "mv0",
            "nexthop",
            "via",
            "10.232.0.1",
            "dev",
            "br-up",
        ],
    );
    let drivers = json!({"drivers": {"veth": {"tx": false}, "bridge": {"tx": true, "gro": true}}});
    let entry = std::env::temp_dir().join(format!("{}.json", lab.pod));
    std::fs::write(&entry, drivers.to_string()).unwrap();
    let d: Value = serde_json::from_str(&run(
        BIN,
        &["detect", "--json", "--config", entry.to_str().unwrap()],
    ))
    .unwrap();
    let _ = std::fs::remove_file(&entry);
    assert_eq!(
        d["start"],
        json!(["mv0 (macvlan)", "br-up (bridge)"]),
        "{d}"
    );
    let drivers_found: Vec<&str> = d["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["driver"].as_str().unwrap())
        .collect();
    assert_eq!(drivers_found, ["veth", "bridge"]);
    // "tx on" from the bridge NIC is overridden by "tx off" from the veth
    // NIC, and its "gro on" dropped: with TX checksum off, GRO on the host
    // end would merge the pod's segments into partial-checksum packets.
    assert_eq!(d["settings"], "tx off");

    let c = add_conf(drivers);
    lab.cni("ADD", &c).expect_ok();
    for host_side in [false, true] {
        assert!(!lab.active(host_side, "tx-checksum-ip-generic"));
        assert!(!lab.active(host_side, "rx-gro"));
    }
}

#[test]
fn every_wanted_bit_is_sent_so_the_policy_sticks() {
    // TX checksum already off on the host end: TSO is off only as a
    // consequence, "off [requested on]", and would come back with TX.
    let lab = Lab::new("cso");
    run("ethtool", &["-K", &lab.host_if, "tx", "off"]);
    let k = run("ethtool", &["-k", &lab.host_if]);
    assert_eq!(
        ethtool_value(&k, "tx-tcp-segmentation"),
        "off [requested on]"
    );
    let c = add_conf(json!({"hostDriver": "x", "drivers": {"x": {"tx": false, "tso": false}}}));
    lab.cni("ADD", &c).expect_ok();
    let k = run("ethtool", &["-k", &lab.host_if]);
    assert_eq!(
        ethtool_value(&k, "tx-tcp-segmentation"),
        "off",
        "requested off too"
    );
    // Someone turns TX back on: TSO stays off, as the policy asked.
    run("ethtool", &["-K", &lab.host_if, "tx", "on"]);
    let k = run("ethtool", &["-k", &lab.host_if]);
    assert_eq!(ethtool_value(&k, "tx-checksum-ip-generic"), "on");
    assert_eq!(ethtool_value(&k, "tx-tcp-segmentation"), "off");
}

#[test]
fn an_end_that_cannot_be_reached_means_no_end_is_changed() {
    // The host end moved to a third netns: the pod's peer is not in the
    // netns the plugin runs in, so `apply: both` cannot be done whole.
    let lab = Lab::new("cso");
    let elsewhere = format!("{}-far", lab.pod);
    run("ip", &["netns", "add", &elsewhere]);
    run("ip", &["link", "set", &lab.host_if, "netns", &elsewhere]);
    let container_now = || read_features(Some(std::path::Path::new(&lab.netns_path())), POD_IF);
    let container_before = container_now();
    let msg = lab.cni("ADD", &add_conf(txgbe())).expect_error(100);
    assert!(
        msg.contains("host end: the peer of eth0 is in another netns"),
        "{msg}"
    );
    assert_eq!(
        container_now(),
        container_before,
        "the pod end was left alone"
    );
    let mut ignore = txgbe();
    ignore["failurePolicy"] = json!("ignore");
    lab.cni("ADD", &add_conf(ignore)).expect_ok();
    assert_eq!(container_now(), container_before);
    // CHECK reports the unreachable end as not applied, not as drift.
    lab.cni("CHECK", &add_conf(txgbe())).expect_error(100);
    // The container end alone is still a whole job.
    let mut container = txgbe();
    container["apply"] = json!("container");
    lab.cni("ADD", &add_conf(container)).expect_ok();
    assert_ne!(container_now(), container_before);
}

#[test]
fn the_log_file_is_confined_created_private_and_bounded() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new("cso");
    let logs = LogDir::new("cso");
    let prev = prev_result("1.0.0", "/x");
    let add = |extra: Value| lab.cni("ADD", &conf("1.0.0", extra, Some(prev.clone())));
    // Created 0600, whatever the runtime's umask.
    let log = logs.path("cni.log");
    add(json!({"hostDriver": "txgbe", "logFile": log})).expect_ok();
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    // Outside /var/log: a config error, nothing written.
    for outside in [
        "/etc/cron.d/csum-offload",
        "/proc/sys/kernel/core_pattern",
        "/var/log/../../etc/x",
    ] {
        let msg = add(json!({"hostDriver": "txgbe", "logFile": outside})).expect_error(7);
        assert!(msg.contains("logFile must"), "{outside}: {msg}");
    }
    // A link on the way (the file, or a directory) is never followed, and
    // no directory is created: the call still works, logging to stderr.
    let target = logs.path("target");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, logs.path("link.log")).unwrap();
    std::os::unix::fs::symlink(&logs.0, logs.path("dirlink")).unwrap();
    nix::unistd::mkfifo(
        &logs.path("fifo.log"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    for (name, why) in [
        ("link.log", "Too many levels of symbolic links"),
        ("dirlink/x.log", "Not a directory"),
        ("fifo.log", "No such device or address"),
        ("missing/x.log", "No such file or directory"),
    ] {
        let r = add(json!({"hostDriver": "txgbe", "logFile": logs.path(name)}));
        r.expect_ok();
        assert!(
            r.stderr.contains("cannot open log file") && r.stderr.contains(why),
            "{name}: {}",
            r.stderr
        );
    }
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"",
        "the link's target untouched"
    );
    assert!(!logs.path("missing").exists(), "no directory created");
    // A FIFO someone reads is opened, and refused as not a regular file.
    let fifo = logs.path("fifo.log");
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo)
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut f, &mut buf);
            buf
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = add(json!({"hostDriver": "txgbe", "logFile": fifo}));
    r.expect_ok();
    assert!(
        r.stderr.contains("is a FIFO, not a regular file"),
        "{}",
        r.stderr
    );
    assert!(
        reader.join().unwrap().is_empty(),
        "nothing written into the FIFO"
    );
    // A value with a newline cannot forge a line.
    let forged = "txgbe\n2026-01-01T00:00:00.000Z INFO  forged";
    add(json!({"hostDriver": forged, "logFile": log})).expect_ok();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000Z INFO  forged")),
        "{text}"
    );
    assert!(text.contains("txgbe\\n2026-01-01"), "{text}");
    // Full: rotated to .1, and the new file starts small.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    add(json!({"hostDriver": "txgbe", "logFile": log})).expect_ok();
    let rotated = logs.path("cni.log.1");
    assert!(std::fs::metadata(&rotated).unwrap().len() >= 8 << 20);
    assert!(std::fs::metadata(&log).unwrap().len() < 4096);
}

/// What identifies a file and its content: a foreign file must keep all of it.
fn fingerprint(path: &std::path::Path) -> (u64, u64, Vec<u8>) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mut head = std::fs::read(path).unwrap();
    head.truncate(4096);
    (meta.ino(), meta.len(), head)
}

#[test]
fn the_log_file_appends_to_and_rotates_only_a_file_it_wrote() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new("cso");
    let logs = LogDir::new("cso");
    let prev = prev_result("1.0.0", "/x");
    let add = |log: &std::path::Path| {
        let r = lab.cni(
            "ADD",
            &conf(
                "1.0.0",
                json!({"hostDriver": "txgbe", "logFile": log}),
                Some(prev.clone()),
            ),
        );
        r.expect_ok();
        r
    };
    let refused = "not a file csum-offload wrote";
    // Another daemon's log (syslog's format): not appended to.
    let syslog = logs.path("syslog");
    std::fs::write(&syslog, "Dec  2 07:53:53 node kernel: Linux version 6.18\n").unwrap();
    let before = fingerprint(&syslog);
    let r = add(&syslog);
    assert!(
        r.stderr.contains("cannot open log file")
            && r.stderr.contains("(its first line is not a csum-offload log line); csum-offload appends only to its own log; choose a new path"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("changed: ["),
        "the lines went to stderr: {}",
        r.stderr
    );
    assert_eq!(fingerprint(&syslog), before);
    // Full, with a .1 beside it: neither renamed nor written.
    let big = logs.path("big.log");
    std::fs::write(&big, "2026-12-02 07:53:53 other[1]: started\n").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let big1 = logs.path("big.log.1");
    std::fs::write(&big1, "older lines of another daemon\n").unwrap();
    let (before, before1) = (fingerprint(&big), fingerprint(&big1));
    assert!(add(&big).stderr.contains(refused));
    assert_eq!((fingerprint(&big), fingerprint(&big1)), (before, before1));
    // Empty: ours only if private to root (an operator's copytruncate).
    let wide = logs.path("wide.log");
    std::fs::write(&wide, "").unwrap();
    std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o644)).unwrap();
    let theirs = logs.path("theirs.log");
    std::fs::write(&theirs, "").unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    for (path, why) in [
        (&wide, "owned by uid 0 with mode 0644"),
        (&theirs, "owned by uid 65534 with mode 0600"),
    ] {
        let before = fingerprint(path);
        let r = add(path);
        assert!(
            r.stderr.contains(refused) && r.stderr.contains(why),
            "{}",
            r.stderr
        );
        assert_eq!(fingerprint(path), before, "{}", path.display());
    }
    // Negative control: empty, root's, 0600 is appended to.
    let truncated = logs.path("truncated.log");
    std::fs::write(&truncated, "").unwrap();
    std::fs::set_permissions(&truncated, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(add(&truncated).stderr, "");
    assert!(std::fs::read_to_string(&truncated)
        .unwrap()
        .contains("changed: ["));
    // Our own log, full, with a foreign .1: .1 is not replaced, the log is
    // not grown, and the lines go to stderr after one notice.
    let own = logs.path("own.log");
    assert_eq!(add(&own).stderr, "");
    let first = std::fs::read_to_string(&own).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&own)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let own1 = logs.path("own.log.1");
    std::fs::write(&own1, "not ours\n").unwrap();
    let (before, before1) = (fingerprint(&own), fingerprint(&own1));
    let r = add(&own);
    assert_eq!(
        r.stderr.matches("is full (8388608 bytes) and ").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("own.log.1 is not a file csum-offload wrote"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("changed: ["), "{}", r.stderr);
    assert_eq!(
        (fingerprint(&own), fingerprint(&own1)),
        (before.clone(), before1)
    );
    // A .1 that is a link or a directory is not replaced either.
    std::fs::remove_file(&own1).unwrap();
    std::os::unix::fs::symlink(&syslog, &own1).unwrap();
    assert!(add(&own)
        .stderr
        .contains("own.log.1 is not a file csum-offload wrote (it is a symbolic link)"));
    assert_eq!(fingerprint(&own), before);
    assert!(std::fs::symlink_metadata(&own1)
        .unwrap()
        .file_type()
        .is_symlink());
    // Negative control: with csum-offload's own .1, it rotates onto it.
    std::fs::remove_file(&own1).unwrap();
    std::fs::copy(&own, &own1).unwrap();
    assert_eq!(add(&own).stderr, "");
    assert!(std::fs::read_to_string(&own1).unwrap().starts_with(&first));
    assert_eq!(std::fs::metadata(&own1).unwrap().len(), 8 << 20);
    let fresh = std::fs::read_to_string(&own).unwrap();
    assert!(
        fresh.len() < 4096 && fresh.contains("changed: ["),
        "{fresh}"
    );
    assert_eq!(
        std::fs::metadata(&own).unwrap().permissions().mode() & 0o7777,
        0o600
    );
}

/// The IPv6 default route leaves through a vxlan bound to a bridge (driver
/// "bridge"); the IPv4 one through the macvlan uplink (driver "veth").
fn dual_stack_with_a_vxlan_uplink(lab: &Lab) {
    lab.add_uplink();
    run("ip", &["link", "add", "br-u6", "type", "bridge"]);
    run("ip", &["addr", "add", "10.233.0.2/24", "dev", "br-u6"]);
    run("ip", &["link", "set", "br-u6", "up"]);
    run(
        "ip",
        &[
            "link",
            "add",
            "vx6",
            "type",
            "vxlan",
            "id",
            "61",
            "dev",
            "br-u6",
            "local",
            "10.233.0.2",
            "dstport",
            "4789",
        ],
    );
    run("ip", &["link", "set", "vx6", "up"]);
    run(
        "ip",
        &["-6", "addr", "add", "fd00:236::2/64", "dev", "vx6", "nodad"],
    );
    run(
        "ip",
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:236::1",
            "dev",
            "vx6",
        ],
    );
}

#[test]
fn every_default_route_of_both_families_counts() {
    let lab = Lab::new("cso");
    dual_stack_with_a_vxlan_uplink(&lab);
    let d: Value = serde_json::from_str(&run(BIN, &["detect", "--json"])).unwrap();
    assert_eq!(d["start"], json!(["mv0 (macvlan)", "vx6 (vxlan)"]), "{d}");
    assert_eq!(
        d["chain"],
        json!([
            "mv0 (macvlan) -> up0 (veth)",
            "vx6 (vxlan) -> br-u6 (bridge)"
        ])
    );
    let how = d["how"].as_str().unwrap();
    assert!(
        how.starts_with("IPv4 default route") && how.contains("IPv6 default route"),
        "{how}"
    );
    // Only the IPv6 uplink's NIC needs the fix: its pods' IPv6 traffic
    // must get it although the IPv4 default route says nothing.
    let c = add_conf(json!({"drivers": {"bridge": {"tx": false}}}));
    lab.cni("ADD", &c).expect_ok();
    assert!(!lab.active(false, "tx-checksum-ip-generic"));
    assert!(!lab.active(true, "tx-checksum-ip-generic"));
}

#[test]
fn default_routes_in_other_tables_and_through_nexthop_objects_count() {
    let lab = Lab::new("cso");
    lab.add_uplink();
    // Policy routing: no default route in main, one in table 100.
    run("ip", &["route", "del", "default"]);
    run(
        "ip",
        &[
            "route",
            "add",
            "default",
            "via",
            "10.231.0.1",
            "dev",
            "mv0",
            "table",
            "100",
        ],
    );
    run(
        "ip",
        &["rule", "add", "from", "10.230.0.0/16", "lookup", "100"],
    );
    let d: Value = serde_json::from_str(&run(BIN, &["detect", "--json"])).unwrap();
    assert_eq!(d["nics"][0]["name"], "up0", "{d}");
    assert!(d["how"].as_str().unwrap().contains("table 100"), "{d}");
    let c = add_conf(json!({"drivers": {"veth": {"tx": false}}}));
    lab.cni("ADD", &c).expect_ok();
    assert!(!lab.active(false, "tx-checksum-ip-generic"));

    // A default route through a nexthop group: every member's device.
    let lab = Lab::new("cso");
    lab.add_uplink();
    lab.add_bridge_uplink();
    run("ip", &["route", "del", "default"]);
    run(
        "ip",
        &[
            "nexthop",
            "add",
            "id",
            "11",
            "via",
            "10.231.0.1",
            "dev",
            "mv0",
        ],
    );
    run(
        "ip",
        &[
            "nexthop",
            "add",
            "id",
            "12",
            "via",
            "10.232.0.1",
            "dev",
            "br-up",
        ],
    );
    run("ip", &["nexthop", "add", "id", "13", "group", "11/12"]);
    run("ip", &["route", "add", "default", "nhid", "13"]);
    let d: Value = serde_json::from_str(&run(BIN, &["detect", "--json"])).unwrap();
    assert_eq!(
        d["start"],
        json!(["mv0 (macvlan)", "br-up (bridge)"]),
        "{d}"
    );
}
