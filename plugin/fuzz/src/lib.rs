//! What each fuzz target checks, as plain functions: the libFuzzer binaries
//! in fuzz_targets/ call them, and the tests below replay every saved input
//! (regressions/<target>/, corpus seeds in seeds/<target>/) through them on
//! stable `cargo test`, without libFuzzer.
//!
//! Beyond "does not panic", each checks the promises the plugin makes about
//! bad input: a CNI error object with a code from the right set, and for the
//! conflist editor, that an insert yields a config the runtime loads, holds
//! our entry, is idempotent, and that removal takes every entry out again.

use csum_offload::cni::{self, version, NetConf};
use csum_offload::install::edit::{self, Step};
use csum_offload::install::entry::{Entry, PLUGIN_TYPE};
use csum_offload::install::select::{self, ConfFile};
use serde_json::Value;

/// NetConf::parse on arbitrary bytes.
pub fn config_parse(data: &[u8]) {
    match NetConf::parse(data) {
        Ok(conf) => {
            assert!(
                version::SUPPORTED.contains(&conf.cni_version.as_str()),
                "accepted cniVersion {:?}",
                conf.cni_version
            );
            if let Some(prev) = &conf.prev_result {
                assert!(
                    prev.get().trim_start().starts_with('{'),
                    "prevResult {}",
                    prev.get()
                );
            }
            if let Some(path) = &conf.config.log_file {
                assert!(path.is_absolute(), "relative logFile {path:?} accepted");
            }
            // Whatever parses must parse the same way twice.
            let again = NetConf::parse(data).expect("second parse of an accepted config");
            assert_eq!(format!("{conf:?}"), format!("{again:?}"));
        }
        Err(e) => {
            assert!(
                matches!(e.code(), 1 | 6 | 7),
                "parse error with code {}: {e}",
                e.code()
            );
            check_error_object(&e.to_json(version::CURRENT), e.code());
        }
    }
}

const COMMANDS: &[&str] = &[
    "ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC", "", "add", "ADD\0",
];
/// No pod netns is ever reachable from the fuzzer: every path here either
/// does not exist, is not absolute, or is not a network namespace, so no
/// input can change an interface of the machine running the fuzzer.
const NETNS: &[&str] = &[
    "/nonexistent/csum-offload-fuzz",
    "",
    "relative/netns",
    "/dev/null",
];
const IFNAMES: &[&str] = &["eth0", "", "a/b", "eth0-far-too-long", "net1", ".."];
const CONTAINER_IDS: &[&str] = &["fuzz0123", "", "-bad", "a b", "x"];

/// cni::run with a command, environment and stdin taken from the input:
/// byte 0 picks the command, byte 1 the netns and container id, byte 2
/// the interface name; the rest is stdin.
pub fn cni_run(data: &[u8]) {
    let [c, n, i, stdin @ ..] = data else {
        return;
    };
    // A config that names a log file would make the plugin create and
    // append to that path: keep the fuzzer from writing anywhere on the
    // machine. (config_parse covers logFile validation.)
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(stdin) {
        if obj.contains_key("logFile") {
            return;
        }
    }
    let command = COMMANDS[usize::from(*c) % COMMANDS.len()];
    let netns = NETNS[usize::from(*n) % NETNS.len()];
    let container_id = CONTAINER_IDS[usize::from(*n >> 4) % CONTAINER_IDS.len()];
    let ifname = IFNAMES[usize::from(*i) % IFNAMES.len()];
    let getenv = |key: &str| {
        match key {
            "CNI_CONTAINERID" => Some(container_id),
            "CNI_NETNS" => Some(netns),
            "CNI_IFNAME" => Some(ifname),
            "CNI_PATH" => Some("/usr/lib/cni"),
            _ => None,
        }
        .map(str::to_string)
    };
    let reply = cni::run(std::ffi::OsStr::new(command), stdin, |k| {
        getenv(k).map(std::ffi::OsString::from)
    });
    match reply.exit_code {
        0 => {
            assert!(
                !matches!(command, "ADD" | "CHECK"),
                "{command} succeeded without a reachable netns: {}",
                reply.stdout
            );
            if command == "VERSION" {
                let v: Value = serde_json::from_str(&reply.stdout).expect("VERSION prints JSON");
                assert!(v["supportedVersions"].is_array());
            } else {
                assert!(
                    reply.stdout.is_empty(),
                    "{command} printed {:?}",
                    reply.stdout
                );
            }
        }
        1 => {
            let v: Value = serde_json::from_str(&reply.stdout)
                .unwrap_or_else(|e| panic!("error reply is not JSON ({e}): {:?}", reply.stdout));
            let code = v["code"].as_u64().expect("error code");
            check_error_object(&reply.stdout, code as u32);
        }
        other => panic!("exit code {other}"),
    }
}

fn check_error_object(json: &str, code: u32) {
    let v: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("error object is not JSON ({e}): {json:?}"));
    assert_eq!(v["code"].as_u64(), Some(u64::from(code)), "{json}");
    assert!(
        matches!(code, 1..=99 | 100..=102 | 999),
        "code {code} is neither the spec's nor ours"
    );
    assert!(
        v["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "no msg: {json}"
    );
    assert!(v["cniVersion"].is_string(), "no cniVersion: {json}");
}

const CONF_NAMES: &[&str] = &[
    "10-net.conflist",
    "10-net.conf",
    "10-net.json",
    "99-x.conflist",
];

/// The installer's conflist editor on one config file: byte 0 picks its
/// name, the rest is its content.
pub fn conflist_edit(data: &[u8]) {
    let [n, content @ ..] = data else {
        return;
    };
    let name = CONF_NAMES[usize::from(*n) % CONF_NAMES.len()];
    if let Ok(text) = std::str::from_utf8(content) {
        // The --config entry parser: never panics; what it accepts, the
        // plugin accepts.
        if let Ok(entry) = Entry::from_config(text) {
            entry
                .config()
                .unwrap_or_else(|e| panic!("entry accepted by from_config is invalid: {e}"));
        }
    }
    let files = vec![ConfFile::new(name, content)];
    let Some(primary) = select::select_primary(&files).primary.cloned() else {
        return;
    };
    let entry = Entry::default_entry();
    let Ok(plan) = edit::insert(&files, &primary, &entry) else {
        return;
    };
    let after = apply(&files, &plan);
    let selection = select::select_primary(&after);
    let new_primary = selection
        .primary
        .unwrap_or_else(|| panic!("no loadable config after insert: {after:?}"));
    assert!(
        edit::has_entry(&after, new_primary, &entry).unwrap_or(false),
        "the entry is not in {:?} after insert",
        String::from_utf8_lossy(&new_primary.bytes)
    );
    let again = edit::insert(&after, new_primary, &entry).expect("insert again");
    assert!(again.is_empty(), "second insert is not a no-op: {again:?}");

    let removed = apply(&after, &edit::remove_all(&after));
    for file in &removed {
        if select::check_loadable(file).is_ok() && count_ours(file) > 0 {
            panic!(
                "{} still holds an installed csum-offload entry after removal: {}",
                file.name,
                String::from_utf8_lossy(&file.bytes)
            );
        }
    }
}

fn count_ours(file: &ConfFile) -> usize {
    let Ok(v) = serde_json::from_slice::<Value>(&file.bytes) else {
        return 0;
    };
    // The installer removes only the entries it wrote (marked); one
    // written by hand stays.
    let ours = |p: &Value| {
        p.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE) && edit::is_installed(p)
    };
    match v.get("plugins").and_then(Value::as_array) {
        Some(list) => list.iter().filter(|p| ours(p)).count(),
        None => usize::from(ours(&v)),
    }
}

/// Runs a plan against an in-memory directory.
fn apply(files: &[ConfFile], plan: &[Step]) -> Vec<ConfFile> {
    let mut dir = files.to_vec();
    for step in plan {
        match step {
            Step::Write { name, bytes, .. } => {
                dir.retain(|f| &f.name != name);
                dir.push(ConfFile::new(name, bytes.clone()));
            }
            Step::Rename { from, to } => {
                let file = dir
                    .iter()
                    .position(|f| &f.name == from)
                    .map(|i| dir.remove(i))
                    .unwrap_or_else(|| panic!("plan renames {from}, which does not exist"));
                dir.retain(|f| &f.name != to);
                dir.push(ConfFile::new(to, file.bytes));
            }
            Step::Remove { name } => dir.retain(|f| &f.name != name),
        }
    }
    dir
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every saved input of a target: crashes found so far (regressions/)
    /// and the seed corpus (seeds/).
    fn replay(target: &str, check: fn(&[u8])) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut count = 0;
        for dir in ["regressions", "seeds"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let result = std::panic::catch_unwind(|| check(&data));
                assert!(result.is_ok(), "{} fails", path.display());
                count += 1;
            }
        }
        assert!(count > 0, "no saved inputs for {target}");
    }

    #[test]
    fn config_parse_inputs() {
        replay("config_parse", super::config_parse);
    }

    #[test]
    fn cni_run_inputs() {
        replay("cni_run", super::cni_run);
    }

    #[test]
    fn conflist_edit_inputs() {
        replay("conflist_edit", super::conflist_edit);
    }
}
