//! Bad input, table-driven: every malformed environment variable, config
//! field and prevResult shape must give the exact CNI error code as a JSON
//! error object on stdout, a non-zero exit, and leave the pod's veth pair
//! exactly as it was.
//!
//! Each test builds its own lab: a "host" netns and a "pod" netns (named
//! `bi-<pid>-<n>-host` / `-0`, deleted on drop) joined by a veth pair. The
//! test thread moves into the host netns, so the plugin binary it spawns
//! runs there exactly as under a runtime; the real host is never touched.
//! Every case starts from TX checksum on, and every config asks for the
//! txgbe policy (TX checksum off), so a plugin that went ahead despite the
//! bad input would visibly change the features.

mod common;

use common::{exec, Lab, Reply};
use serde_json::{json, Value};

/// The lab's host end (tag "bi"), named in cases that are static data.
const HOST_IF: &str = "bih0";
const POD_IF: &str = common::POD_IF;

fn tx_generic(ethtool_k: &str) -> &str {
    ethtool_k
        .lines()
        .find_map(|l| l.trim().strip_prefix("tx-checksum-ip-generic: "))
        .unwrap_or("?")
}

/// A fresh lab whose veth ends both start with TX checksum on.
fn lab() -> Lab {
    let lab = Lab::new("bi");
    assert_eq!(lab.host_if, HOST_IF);
    let (pod_k, host_k) = lab.ethtool_k();
    for k in [&pod_k, &host_k] {
        assert_eq!(tx_generic(k), "on", "a fresh veth has TX checksum on:\n{k}");
    }
    lab
}

/// How a case changes the good invocation.
enum Edit {
    /// Set (Some) or remove (None) an environment variable.
    Env(&'static str, Option<&'static str>),
    /// Replace stdin with these bytes.
    Stdin(&'static [u8]),
    /// Set (Some) or remove (None) a top-level config field.
    Field(&'static str, Option<Value>),
    /// Replace the whole config.
    Config(Value),
}

struct Case {
    name: &'static str,
    command: &'static str,
    edits: Vec<Edit>,
    code: u64,
    /// A piece of the message, so the case fails for the reason it names.
    msg: &'static str,
}

fn case(name: &'static str, code: u64, msg: &'static str, edits: Vec<Edit>) -> Case {
    Case {
        name,
        command: "ADD",
        edits,
        code,
        msg,
    }
}

fn prev_result(netns: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": HOST_IF, "mac": "aa:bb:cc:dd:ee:01"},
            {"name": POD_IF, "mac": "aa:bb:cc:dd:ee:02", "sandbox": netns}
        ],
        "ips": [{"address": "10.251.0.2/24", "gateway": "10.251.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.251.0.1"}]
    })
}

fn good_config(netns: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "bad-input",
        "type": "csum-offload",
        "hostDriver": "txgbe",
        "prevResult": prev_result(netns)
    })
}

/// Runs every case against one lab, checking each as it goes.
fn run_cases(cases: Vec<Case>) {
    let lab = lab();
    let before = lab.ethtool_k();
    let mut failures = Vec::new();
    for case in &cases {
        let mut env = lab.env(case.command);
        let mut config = good_config(&lab.netns_path());
        let mut stdin = None;
        for edit in &case.edits {
            match edit {
                Edit::Env(key, value) => {
                    env.retain(|(k, _)| k != key);
                    if let Some(v) = value {
                        env.push((key.to_string(), v.to_string()));
                    }
                }
                Edit::Stdin(bytes) => stdin = Some(bytes.to_vec()),
                Edit::Field(key, value) => {
                    let obj = config.as_object_mut().unwrap();
                    match value {
                        Some(v) => obj.insert(key.to_string(), v.clone()),
                        None => obj.remove(*key),
                    };
                }
                Edit::Config(v) => config = v.clone(),
            }
        }
        let stdin = stdin.unwrap_or_else(|| config.to_string().into_bytes());
        let reply = exec(&env, &stdin);
        if let Err(why) = judge(case, &reply) {
            failures.push(format!(
                "{} ({}): {why}\n  stdout: {}\n  stderr: {}",
                case.name,
                case.command,
                reply.stdout,
                reply.stderr.trim()
            ));
        }
        let after = lab.ethtool_k();
        assert_eq!(
            before, after,
            "case {:?} changed the veth features",
            case.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn judge(case: &Case, reply: &Reply) -> Result<(), String> {
    match reply.code {
        Some(0) => return Err("exit code 0".into()),
        None => return Err("killed by a signal".into()),
        Some(_) => {}
    }
    let v: Value = serde_json::from_str(&reply.stdout)
        .map_err(|e| format!("stdout is not one JSON value: {e}"))?;
    if v["code"] != case.code {
        return Err(format!("code {} instead of {}", v["code"], case.code));
    }
    let msg = v["msg"].as_str().ok_or("no msg string")?;
    if !msg.contains(case.msg) {
        return Err(format!("msg {msg:?} does not contain {:?}", case.msg));
    }
    if !v["cniVersion"].is_string() {
        return Err("no cniVersion in the error object".into());
    }
    Ok(())
}

/// The control: the lab and the good invocation work, and the good ADD
/// does change the features (so "unchanged" in the other tests means
/// something).
#[test]
fn control_good_add_changes_both_ends() {
    let lab = lab();
    let config = good_config(&lab.netns_path());
    let reply = exec(&lab.env("ADD"), config.to_string().as_bytes());
    assert_eq!(reply.code, Some(0), "stderr: {}", reply.stderr);
    let out: Value = serde_json::from_str(&reply.stdout).unwrap();
    assert_eq!(out, config["prevResult"]);
    let (pod, host) = lab.ethtool_k();
    assert_eq!(tx_generic(&pod), "off");
    assert_eq!(tx_generic(&host), "off");
}

#[test]
fn malformed_environment() {
    use Edit::Env;
    let nonexistent = "/run/netns/bi-no-such-netns";
    run_cases(vec![
        case(
            "empty CNI_COMMAND",
            4,
            "unknown CNI_COMMAND",
            vec![Env("CNI_COMMAND", Some(""))],
        ),
        case(
            "lower-case command",
            4,
            "unknown CNI_COMMAND",
            vec![Env("CNI_COMMAND", Some("add"))],
        ),
        case(
            "unknown command",
            4,
            "unknown CNI_COMMAND",
            vec![Env("CNI_COMMAND", Some("ATTACH"))],
        ),
        case(
            "no CNI_CONTAINERID",
            4,
            "CNI_CONTAINERID is required",
            vec![Env("CNI_CONTAINERID", None)],
        ),
        case(
            "empty CNI_CONTAINERID",
            4,
            "CNI_CONTAINERID is required",
            vec![Env("CNI_CONTAINERID", Some(""))],
        ),
        case(
            "CNI_CONTAINERID starts with '-'",
            4,
            "CNI_CONTAINERID",
            vec![Env("CNI_CONTAINERID", Some("-abc"))],
        ),
        case(
            "CNI_CONTAINERID with a space",
            4,
            "CNI_CONTAINERID",
            vec![Env("CNI_CONTAINERID", Some("ab c"))],
        ),
        case(
            "CNI_CONTAINERID with a slash",
            4,
            "CNI_CONTAINERID",
            vec![Env("CNI_CONTAINERID", Some("ab/../c"))],
        ),
        case(
            "no CNI_NETNS",
            4,
            "CNI_NETNS is required",
            vec![Env("CNI_NETNS", None)],
        ),
        case(
            "empty CNI_NETNS",
            4,
            "CNI_NETNS is required",
            vec![Env("CNI_NETNS", Some(""))],
        ),
        case(
            "relative CNI_NETNS",
            4,
            "absolute path",
            vec![Env("CNI_NETNS", Some("run/netns/x"))],
        ),
        case(
            "CNI_NETNS does not exist",
            4,
            "bi-no-such-netns",
            vec![Env("CNI_NETNS", Some(nonexistent))],
        ),
        case(
            "CNI_NETNS is a regular file",
            4,
            "/etc/hostname",
            vec![Env("CNI_NETNS", Some("/etc/hostname"))],
        ),
        case(
            "CNI_NETNS is a directory",
            4,
            "/run/netns",
            vec![Env("CNI_NETNS", Some("/run/netns"))],
        ),
        case(
            "CNI_NETNS is the plugin's own netns",
            4,
            "plugin's own network namespace",
            vec![Env("CNI_NETNS", Some("/proc/self/ns/net"))],
        ),
        case(
            "CNI_NETNS is a mount namespace",
            4,
            "/proc/self/ns/mnt",
            vec![Env("CNI_NETNS", Some("/proc/self/ns/mnt"))],
        ),
        case(
            "no CNI_IFNAME",
            4,
            "CNI_IFNAME is required",
            vec![Env("CNI_IFNAME", None)],
        ),
        case(
            "CNI_IFNAME too long",
            4,
            "1 to 15 bytes",
            vec![Env("CNI_IFNAME", Some("eth0-far-too-long"))],
        ),
        case(
            "CNI_IFNAME with a slash",
            4,
            "CNI_IFNAME",
            vec![Env("CNI_IFNAME", Some("eth/0"))],
        ),
        case(
            "CNI_IFNAME '..'",
            4,
            "CNI_IFNAME",
            vec![Env("CNI_IFNAME", Some(".."))],
        ),
        case(
            "CNI_IFNAME not in the pod",
            4,
            "does not exist",
            vec![Env("CNI_IFNAME", Some("eth9"))],
        ),
        case(
            "CNI_IFNAME is the host end's name",
            4,
            "does not exist",
            vec![Env("CNI_IFNAME", Some(HOST_IF))],
        ),
        case(
            "failurePolicy ignore does not hide a wrong netns",
            4,
            "bi-no-such-netns",
            vec![
                Env("CNI_NETNS", Some(nonexistent)),
                Edit::Field("failurePolicy", Some(json!("ignore"))),
            ],
        ),
    ]);
}

#[test]
fn malformed_config() {
    use Edit::{Config, Field, Stdin};
    run_cases(vec![
        case("empty stdin", 6, "stdin is empty", vec![Stdin(b"")]),
        case(
            "whitespace stdin",
            6,
            "stdin is empty",
            vec![Stdin(b" \n\t ")],
        ),
        case(
            "not JSON",
            6,
            "cannot decode",
            vec![Stdin(b"hostDriver: txgbe")],
        ),
        case(
            "truncated JSON",
            6,
            "cannot decode",
            vec![Stdin(br#"{"cniVersion":"1.0.0","name":"#)],
        ),
        case("a JSON array", 6, "cannot decode", vec![Stdin(b"[]")]),
        case(
            "a JSON string",
            6,
            "cannot decode",
            vec![Stdin(br#""cniVersion""#)],
        ),
        case(
            "invalid UTF-8",
            6,
            "cannot decode",
            vec![Stdin(b"{\"cniVersion\":\"1.0.0\",\"name\":\"\xff\xfe\"}")],
        ),
        case("NUL bytes", 6, "cannot decode", vec![Stdin(b"\0\0\0\0")]),
        case(
            "trailing garbage",
            6,
            "cannot decode",
            vec![Stdin(br#"{"cniVersion":"1.0.0"} {"#)],
        ),
        case(
            "no cniVersion",
            1,
            "no cniVersion",
            vec![Field("cniVersion", None)],
        ),
        case(
            "cniVersion 0.2.0",
            1,
            "not supported",
            vec![Field("cniVersion", Some(json!("0.2.0")))],
        ),
        case(
            "cniVersion from the future",
            1,
            "not supported",
            vec![Field("cniVersion", Some(json!("9.9.9")))],
        ),
        case(
            "cniVersion not x.y.z",
            1,
            "not supported",
            vec![Field("cniVersion", Some(json!("1.0")))],
        ),
        case(
            "cniVersion a number",
            6,
            "cniVersion must be a string",
            vec![Field("cniVersion", Some(json!(1.0)))],
        ),
        case(
            "cniVersion null",
            6,
            "cniVersion must be a string",
            vec![Field("cniVersion", Some(Value::Null))],
        ),
        case(
            "misspelt field",
            7,
            "unknown field \"hostDriverr\"",
            vec![Field("hostDriverr", Some(json!("txgbe")))],
        ),
        case(
            "hostDriver a number",
            7,
            "hostDriver must be a string",
            vec![Field("hostDriver", Some(json!(5)))],
        ),
        case(
            "hostDriver empty",
            7,
            "hostDriver must not be empty",
            vec![Field("hostDriver", Some(json!("")))],
        ),
        case(
            "hostInterface too long",
            7,
            "1 to 15 bytes",
            vec![Field("hostInterface", Some(json!("uplink-name-too-long")))],
        ),
        case(
            "hostInterface with a slash",
            7,
            "hostInterface",
            vec![Field("hostInterface", Some(json!("../eth0")))],
        ),
        case(
            "drivers not an object",
            7,
            "drivers must be an object",
            vec![Field("drivers", Some(json!(["txgbe"])))],
        ),
        case(
            "driver setting not a boolean",
            7,
            "drivers.txgbe.tx must be true or false",
            vec![Field("drivers", Some(json!({"txgbe": {"tx": "off"}})))],
        ),
        case(
            "unknown offload feature",
            7,
            "unknown offload feature \"txcsum\"",
            vec![Field("drivers", Some(json!({"txgbe": {"txcsum": false}})))],
        ),
        case(
            "contradicting settings",
            7,
            "contradict",
            vec![Field(
                "drivers",
                Some(json!({"txgbe": {"tx": false, "tx-checksum-ip-generic": true}})),
            )],
        ),
        case(
            "default not an object",
            7,
            "default must be an object",
            vec![Field("default", Some(json!(false)))],
        ),
        case(
            "apply unknown",
            7,
            "apply must be",
            vec![Field("apply", Some(json!("pod")))],
        ),
        case(
            "apply a boolean",
            7,
            "apply must be a string",
            vec![Field("apply", Some(json!(true)))],
        ),
        case(
            "failurePolicy unknown",
            7,
            "failurePolicy must be",
            vec![Field("failurePolicy", Some(json!("warn")))],
        ),
        case(
            "logFile relative",
            7,
            "logFile must be an absolute path",
            vec![Field("logFile", Some(json!("csum.log")))],
        ),
        case(
            "logLevel unknown",
            7,
            "logLevel must be one of",
            vec![Field("logLevel", Some(json!("verbose")))],
        ),
        case(
            "CHECK needs 0.4.0 or later",
            1,
            "does not allow CHECK",
            vec![
                Config(
                    json!({"cniVersion": "0.3.1", "name": "n", "type": "csum-offload", "hostDriver": "txgbe", "prevResult": {"cniVersion": "0.3.1"}}),
                ),
                Edit::Env("CNI_COMMAND", Some("CHECK")),
            ],
        ),
    ]);
}

#[test]
fn malformed_prev_result() {
    use Edit::{Field, Stdin};
    // Nested deeper than serde_json's limit (128): an error, not a stack
    // overflow.
    let deep: &'static str = Box::leak(
        format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"csum-offload","hostDriver":"txgbe","prevResult":{{"cniVersion":"1.0.0","x":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_boxed_str(),
    );
    run_cases(vec![
        case(
            "no prevResult",
            7,
            "requires prevResult",
            vec![Field("prevResult", None)],
        ),
        case(
            "prevResult null",
            7,
            "requires prevResult",
            vec![Field("prevResult", Some(Value::Null))],
        ),
        case(
            "prevResult an array",
            7,
            "prevResult must be an object",
            vec![Field("prevResult", Some(json!([{"cniVersion": "1.0.0"}])))],
        ),
        case(
            "prevResult a string",
            7,
            "prevResult must be an object",
            vec![Field("prevResult", Some(json!("{}")))],
        ),
        case(
            "prevResult a number",
            7,
            "prevResult must be an object",
            vec![Field("prevResult", Some(json!(0)))],
        ),
        case(
            "prevResult a boolean",
            7,
            "prevResult must be an object",
            vec![Field("prevResult", Some(json!(true)))],
        ),
        case(
            "prevResult of an unsupported version",
            1,
            "prevResult cniVersion \"0.2.0\"",
            vec![Field(
                "prevResult",
                Some(json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.251.0.2/24"}})),
            )],
        ),
        case(
            "prevResult nested past the parser's limit",
            7,
            "recursion limit",
            vec![Stdin(deep.as_bytes())],
        ),
        case(
            "prevResult version not x.y.z",
            1,
            "prevResult cniVersion",
            vec![Field(
                "prevResult",
                Some(json!({"cniVersion": "banana", "ips": []})),
            )],
        ),
    ]);
}

/// DEL must not fail on a plugin setting (that would stop the runtime's DEL
/// of the whole chain), but input it cannot read at all is still an error.
#[test]
fn malformed_del() {
    use Edit::{Env, Field, Stdin};
    let del = |name, code, msg, edits| Case {
        name,
        command: "DEL",
        edits,
        code,
        msg,
    };
    run_cases(vec![
        del(
            "DEL with empty stdin",
            6,
            "stdin is empty",
            vec![Stdin(b"")],
        ),
        del(
            "DEL with non-JSON",
            6,
            "cannot decode",
            vec![Stdin(b"not json")],
        ),
        del(
            "DEL with an unsupported version",
            1,
            "not supported",
            vec![Field("cniVersion", Some(json!("0.1.0")))],
        ),
        del(
            "DEL without CNI_CONTAINERID",
            4,
            "CNI_CONTAINERID is required",
            vec![Env("CNI_CONTAINERID", None)],
        ),
        del(
            "DEL without CNI_IFNAME",
            4,
            "CNI_IFNAME is required",
            vec![Env("CNI_IFNAME", None)],
        ),
        del(
            "DEL with a relative CNI_NETNS",
            4,
            "absolute path",
            vec![Env("CNI_NETNS", Some("netns"))],
        ),
    ]);
}

/// Input no runtime should send, and that must neither hang the plugin
/// (common::exec fails a run that takes longer than common::HANG) nor
/// change the pair: values that are not UTF-8, files that are not network
/// namespaces but could block an open, and inputs large enough that work
/// not bounded by their size would take minutes.
#[test]
fn hostile_input_is_refused_quickly_and_changes_nothing() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let lab = lab();
    let before = lab.ethtool_k();
    let dir = std::env::temp_dir().join(format!("bi-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("netns-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.to_str().unwrap().to_string();
    let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
    let good = good_config(&lab.netns_path()).to_string().into_bytes();
    let mut huge_key = good_config(&lab.netns_path());
    huge_key["drivers"] = json!({"txgbe": {"x".repeat(3 << 20): false}});
    let huge_key = huge_key.to_string().into_bytes();
    let mut huge_prev = good_config(&lab.netns_path());
    huge_prev["prevResult"] = json!("p".repeat(3 << 20));
    let huge_prev = huge_prev.to_string().into_bytes();
    let mut huge_version = good_config(&lab.netns_path());
    huge_version["cniVersion"] = json!("9".repeat(3 << 20));
    let huge_version = huge_version.to_string().into_bytes();
    let long_value = OsString::from("r".repeat(100_000));
    let mut huge_stdin = good.clone();
    huge_stdin.resize(64 << 20, b' ');
    // (what, variable to replace, its value, stdin, code, piece of msg)
    type Hostile<'a> = (
        &'static str,
        &'static str,
        OsString,
        &'a [u8],
        u64,
        &'static str,
    );
    let cases: Vec<Hostile> = vec![
        (
            "CNI_COMMAND not UTF-8",
            "CNI_COMMAND",
            bytes(b"AD\xffD"),
            &good,
            4,
            "CNI_COMMAND is not valid UTF-8",
        ),
        (
            "CNI_NETNS not UTF-8",
            "CNI_NETNS",
            bytes(b"/run/netns/\xff"),
            &good,
            4,
            "CNI_NETNS is not valid UTF-8",
        ),
        (
            "CNI_IFNAME not UTF-8",
            "CNI_IFNAME",
            bytes(b"eth\xff"),
            &good,
            4,
            "CNI_IFNAME is not valid UTF-8",
        ),
        (
            "CNI_CONTAINERID not UTF-8",
            "CNI_CONTAINERID",
            bytes(b"c\xff"),
            &good,
            4,
            "CNI_CONTAINERID is not valid UTF-8",
        ),
        (
            "CNI_NETNS is a FIFO",
            "CNI_NETNS",
            OsString::from(&fifo),
            &good,
            4,
            "not a network namespace",
        ),
        (
            "CNI_NETNS is a device",
            "CNI_NETNS",
            OsString::from("/dev/zero"),
            &good,
            4,
            "not a network namespace",
        ),
        (
            "a 3 MiB feature name",
            "CNI_PATH",
            OsString::from("/usr/lib/cni"),
            &huge_key,
            7,
            "unknown offload feature",
        ),
        (
            "64 MiB of stdin",
            "CNI_PATH",
            OsString::from("/usr/lib/cni"),
            &huge_stdin,
            6,
            "larger than 4 MiB",
        ),
        (
            "a 3 MiB prevResult string",
            "CNI_PATH",
            OsString::from("/usr/lib/cni"),
            &huge_prev,
            7,
            "prevResult must be an object",
        ),
        (
            "a 3 MiB cniVersion",
            "CNI_PATH",
            OsString::from("/usr/lib/cni"),
            &huge_version,
            1,
            "is not supported",
        ),
        (
            "a 100 kB relative CNI_NETNS",
            "CNI_NETNS",
            long_value.clone(),
            &good,
            4,
            "absolute path",
        ),
        (
            "a 100 kB CNI_COMMAND",
            "CNI_COMMAND",
            long_value,
            &good,
            4,
            "unknown CNI_COMMAND",
        ),
    ];
    let mut failures = Vec::new();
    for (what, key, value, stdin, code, msg) in cases {
        let mut env: Vec<(OsString, OsString)> = lab
            .env("ADD")
            .into_iter()
            .filter(|(k, _)| k != key)
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        env.push((key.into(), value));
        let reply = exec(&env, stdin);
        let case = Case {
            name: what,
            command: "ADD",
            edits: Vec::new(),
            code,
            msg,
        };
        if let Err(why) = judge(&case, &reply) {
            failures.push(format!("{what}: {why}\n  stdout: {:.300}", reply.stdout));
        }
        if reply.stdout.len() > 4096 {
            failures.push(format!(
                "{what}: a {}-byte reply repeats the input",
                reply.stdout.len()
            ));
        }
        assert_eq!(lab.ethtool_k(), before, "{what} changed the veth features");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
