//! Upgrades never fail an exec: while two builds of the plugin replace
//! each other in the bin dir through `install --once`, back to back, a
//! runtime-like loop keeps executing the installed plugin (VERSION); every
//! exec must run one build or the other and answer. ETXTBSY ("Text file
//! busy") is what an exec gets when the new file is still open for
//! writing somewhere as it becomes the target.

mod common;

use common::{output_within, InstallDirs, BIN};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const INSTALLS: usize = 12;

/// The installed plugin, run as a runtime runs it for VERSION.
fn version(plugin: &Path) -> Result<(), String> {
    let out = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("exec: {e}"))?;
    if !out.status.success() {
        return Err(format!("exit {:?}", out.status));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("stdout: {e}"))?;
    match v["supportedVersions"].is_array() {
        true => Ok(()),
        false => Err(format!("answer {v}")),
    }
}

#[test]
fn every_exec_runs_while_two_builds_replace_each_other() {
    let dirs = InstallDirs::new("upgrade");
    fs::write(
        dirs.conf().join("10-kindnet.conflist"),
        common::kindnet_conflist().to_string(),
    )
    .unwrap();
    // Build B: the same binary with one byte appended (the ELF loader never
    // reads past its segments, so it runs), so each install really replaces
    // the file.
    let other = dirs.root.join("csum-offload-b");
    let mut bytes = fs::read(BIN).unwrap();
    let len_a = bytes.len() as u64;
    bytes.push(0);
    {
        let mut f = fs::File::create(&other).unwrap();
        f.write_all(&bytes).unwrap();
        f.set_permissions(fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let builds = [Path::new(BIN), other.as_path()];
    let install = |build: &Path| {
        let out = output_within(
            dirs.command_with(build, "install")
                .arg("--once")
                .arg("--log-level")
                .arg("warn"),
            Duration::from_secs(60),
            "install --once",
        );
        assert!(
            out.status.success(),
            "{}: {}",
            build.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    install(builds[0]);
    let plugin = dirs.bin().join("csum-offload");
    assert_eq!(fs::metadata(&plugin).unwrap().len(), len_a);

    let stop = Arc::new(AtomicBool::new(false));
    let runtime = {
        let (stop, plugin) = (stop.clone(), plugin.clone());
        thread::spawn(move || {
            let (mut runs, mut failures) = (0u32, Vec::new());
            // Bounded: the installs below end well before this many.
            while !stop.load(Ordering::Relaxed) && runs < 100_000 {
                if let Err(e) = version(&plugin) {
                    failures.push(e);
                }
                runs += 1;
            }
            (runs, failures)
        })
    };
    let mut sizes = Vec::new();
    for i in 1..=INSTALLS {
        install(builds[i % 2]);
        sizes.push(fs::metadata(&plugin).unwrap().len());
    }
    stop.store(true, Ordering::Relaxed);
    let (runs, failures) = runtime.join().unwrap();
    // Each install replaced the file: the builds alternate.
    let want: Vec<u64> = (1..=INSTALLS).map(|i| len_a + (i % 2) as u64).collect();
    assert_eq!(sizes, want, "the two builds did not replace each other");
    assert!(
        failures.is_empty(),
        "{} of {runs} execs failed during upgrades: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        runs as usize >= INSTALLS,
        "only {runs} execs ran during {INSTALLS} upgrades: the loop did not overlap them"
    );
}
