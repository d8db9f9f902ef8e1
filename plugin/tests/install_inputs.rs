//! The installer against hostile and odd conf dirs, as the real binary on
//! temp dirs: no input may hang a command (FIFOs), one unreadable entry
//! never fails an install (a looping symlink, a mode-000 file under the
//! DaemonSet's dropped capabilities), the file the runtime uses is the one
//! edited or the problem is reported (invalid UTF-8, over 1 MiB, deep
//! nesting, a non-UTF-8 name, cniVersions, containerd's and CRI-O's rules),
//! a link the installer cannot follow (the pod's view, a mount namespace)
//! blocks under every runtime, and a user's symlinked primary keeps its
//! link, owner and mode.
//!
//! Every command runs in a netns of its own with `hostDriver` in its
//! config, so detection never depends on the machine's routes, and under
//! a timeout that turns a hang into a failure.

mod common;

use common::{in_empty_netns, output_within, without_caps, InstallDirs, CAP_CHOWN};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const LIMIT: Duration = Duration::from_secs(20);
const KINDNET: &str = "10-kindnet.conflist";

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn setup(tag: &str) -> (InstallDirs, PathBuf) {
    let dirs = InstallDirs::new(tag);
    fs::write(dirs.conf().join(KINDNET), kindnet_bytes()).unwrap();
    let config = dirs.root.join("config.json");
    fs::write(&config, r#"{"hostDriver": "txgbe"}"#).unwrap();
    (dirs, config)
}

fn kindnet_bytes() -> Vec<u8> {
    serde_json::to_vec(&common::kindnet_conflist()).unwrap()
}

/// `csum-offload VERB ARGS --config CONFIG` in an empty netns, bounded.
fn run_with(
    dirs: &InstallDirs,
    verb: &str,
    args: &[&str],
    config: Option<&Path>,
    tweak: impl FnOnce(&mut Command),
) -> Run {
    let mut cmd = dirs.command(verb);
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    in_empty_netns(&mut cmd);
    tweak(&mut cmd);
    let out = output_within(&mut cmd, LIMIT, &format!("{verb} {args:?}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(dirs: &InstallDirs, verb: &str, args: &[&str], config: &Path) -> Run {
    let config = (verb == "install").then_some(config);
    run_with(dirs, verb, args, config, |_| {})
}

fn entries(path: &Path) -> usize {
    let v: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap_or(Value::Null);
    v["plugins"].as_array().map_or(0, |p| {
        p.iter().filter(|p| p["type"] == "csum-offload").count()
    })
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// Backdates a file, so the installer does not take it for one being
/// written right now.
fn age(path: &Path) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

#[test]
fn a_fifo_never_blocks_a_command() {
    let (dirs, config) = setup("fifo");
    // As --config.
    let fifo_config = dirs.root.join("fifo.json");
    mkfifo(&fifo_config);
    for args in [&["--once"][..], &["--check"]] {
        let r = run(&dirs, "install", args, &fifo_config);
        assert!(
            !r.ok && r.stderr.contains("is a FIFO"),
            "{args:?}: {}",
            r.text()
        );
    }
    // In the conf dir, before the primary: which file the runtime uses is
    // not known (its read blocks there too): reported, nothing written.
    let fifo = dirs.conf().join("05-fifo.conflist");
    mkfifo(&fifo);
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(!r.ok, "{}", r.text());
    assert!(
        r.stderr.contains("05-fifo.conflist: is a FIFO"),
        "{}",
        r.text()
    );
    assert_eq!(
        fs::read(dirs.conf().join(KINDNET)).unwrap(),
        kindnet_bytes()
    );
    let r = run(&dirs, "install", &["--check"], &config);
    assert!(!r.ok && r.stderr.contains("is a FIFO"), "{}", r.text());
    assert!(run(&dirs, "uninstall", &[], &config).ok);
    // The watch loop keeps answering SIGTERM.
    let log = dirs.root.join("watch.log");
    let mut cmd = dirs.command("install");
    cmd.arg("--config").arg(&config).stdout(Stdio::null());
    cmd.stderr(fs::File::create(&log).unwrap());
    in_empty_netns(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + LIMIT;
    while !fs::read_to_string(&log).unwrap().contains("is a FIFO") {
        assert!(
            Instant::now() < deadline,
            "the watch loop never got to the FIFO"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = common::finish_within(
        {
            child.stdout.take();
            child
        },
        Duration::from_secs(10),
        "the watch loop after SIGTERM",
    );
    assert!(
        out.status.success(),
        "{}",
        fs::read_to_string(&log).unwrap()
    );

    // After the primary: the entry goes in; CRI-O, which reads every
    // file, would hang on it, containerd never reads it.
    fs::rename(&fifo, dirs.conf().join("20-fifo.conf")).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&dirs.conf().join(KINDNET)), 1);
    let r = run(&dirs, "install", &["--check"], &config);
    assert!(
        !r.ok && r.stderr.contains("CRI-O loads every config file"),
        "{}",
        r.text()
    );
    let r = run(
        &dirs,
        "install",
        &["--check", "--runtime", "containerd"],
        &config,
    );
    assert!(r.ok, "{}", r.text());
    let r = run(&dirs, "uninstall", &[], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&dirs.conf().join(KINDNET)), 0);
}

#[test]
fn one_unreadable_entry_never_fails_an_install() {
    let (dirs, config) = setup("unreadable");
    let crio = ["--runtime", "crio"];
    // Looping symlinks before and after the primary: the runtime cannot
    // read them either, so CRI-O skips them.
    symlink("01-loop.conf", dirs.conf().join("01-loop.conf")).unwrap();
    symlink("20-loop.conflist", dirs.conf().join("20-loop.conflist")).unwrap();
    let r = run(&dirs, "install", &["--once", crio[0], crio[1]], &config);
    assert!(r.ok, "{}", r.text());
    assert!(r.stderr.contains("01-loop.conf: skipped"), "{}", r.text());
    assert_eq!(entries(&dirs.conf().join(KINDNET)), 1);
    assert!(run(&dirs, "install", &["--check", crio[0], crio[1]], &config).ok);
    // Not told the runtime, the installer says containerd would fail.
    let r = run(&dirs, "install", &["--check"], &config);
    assert!(
        !r.ok
            && r.stderr
                .contains("containerd fails to load the whole conf dir"),
        "{}",
        r.text()
    );
    fs::remove_file(dirs.conf().join("01-loop.conf")).unwrap();

    // A mode-000 file after the primary, read by an installer without
    // CAP_DAC_OVERRIDE (the DaemonSet's): no matter.
    let secret = dirs.conf().join("20-secret.conflist");
    fs::write(&secret, kindnet_bytes()).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let dropped = |cmd: &mut Command| {
        common::without_dac_override(cmd);
    };
    let args = ["--check"];
    let r = run_with(&dirs, "install", &args, Some(&config), dropped);
    assert!(r.ok, "{}", r.text());
    // Before it: the runtime (root, every capability) reads it and may use
    // it; the installer cannot know: reported, nothing written.
    let first = dirs.conf().join("05-secret.conflist");
    fs::rename(&secret, &first).unwrap();
    let before = fs::read(dirs.conf().join(KINDNET)).unwrap();
    let r = run_with(&dirs, "install", &["--once"], Some(&config), dropped);
    assert!(!r.ok, "{}", r.text());
    assert!(
        r.stderr
            .contains("05-secret.conflist: csum-offload cannot read it (Permission denied"),
        "{}",
        r.text()
    );
    assert_eq!(fs::read(dirs.conf().join(KINDNET)).unwrap(), before);
    let r = run_with(&dirs, "install", &["--check"], Some(&config), dropped);
    assert!(
        !r.ok && r.stderr.contains("cannot tell which file the runtime uses"),
        "{}",
        r.text()
    );
    // Negative control: with the capability, the same file is readable,
    // and it is the runtime's file.
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&first), 1);
}

/// A conflist with these extra members at the top.
fn list_with(extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"first"{extra},"plugins":[{{"type":"bridge","bridge":"cni0"}}]}}"#
    )
}

#[test]
fn the_runtimes_file_is_edited_or_the_problem_reported() {
    let (dirs, config) = setup("go-json");
    let first = dirs.conf().join("05-first.conflist");
    // Invalid UTF-8 in a string: Go reads it (as U+FFFD), so it is the
    // runtime's file, and the entry goes there, not into the next file.
    let mut bytes = list_with(r#","x-note":"caf__""#).into_bytes();
    let at = bytes.windows(2).position(|w| w == b"__").unwrap();
    bytes[at..at + 2].copy_from_slice(b"\xe9\xff");
    fs::write(&first, &bytes).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&first), 1, "{}", r.text());
    assert_eq!(
        fs::read(dirs.conf().join(KINDNET)).unwrap(),
        kindnet_bytes()
    );
    assert!(run(&dirs, "install", &["--check"], &config).ok);
    assert!(run(&dirs, "uninstall", &[], &config).ok);
    assert_eq!(entries(&first), 0);

    // cniVersions with a version libcni does not know: it is skipped and
    // the list loads, at 1.1.0.
    fs::write(&first, list_with(r#","cniVersions":["1.1.0","9.0.0"]"#)).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&first), 1);

    // What the installer cannot judge, it reports instead of skipping.
    let padding = format!(r#","x-pad":"{}""#, "a".repeat(1 << 20));
    let deep = format!(r#","x-deep":{}{}"#, "[".repeat(200), "]".repeat(200));
    for (extra, want) in [
        (padding.as_str(), "larger than 1 MiB"),
        (deep.as_str(), "nests 201 levels deep"),
    ] {
        fs::write(&first, list_with(extra)).unwrap();
        let r = run(&dirs, "install", &["--once"], &config);
        assert!(!r.ok && r.stderr.contains(want), "{want}: {}", r.text());
        assert_eq!(
            fs::read(dirs.conf().join(KINDNET)).unwrap(),
            kindnet_bytes()
        );
        let r = run(&dirs, "install", &["--check"], &config);
        assert!(!r.ok && r.stderr.contains(want), "{want}: {}", r.text());
    }
    fs::remove_file(&first).unwrap();
    // A name that is not UTF-8: the runtime uses it; we do not edit it.
    let odd = dirs
        .conf()
        .join(std::ffi::OsStr::from_bytes(b"05-\xff.conflist"));
    fs::write(&odd, list_with("")).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(
        !r.ok && r.stderr.contains("its name is not UTF-8"),
        "{}",
        r.text()
    );
    assert_eq!(fs::read(&odd).unwrap(), list_with("").as_bytes());
    assert_eq!(
        fs::read(dirs.conf().join(KINDNET)).unwrap(),
        kindnet_bytes()
    );
}

#[test]
fn containerd_and_crio_each_get_their_rule() {
    let (dirs, config) = setup("runtimes");
    let bad = dirs.conf().join("05-bad.conflist");
    fs::write(&bad, "{\"name\": \"broken\", ").unwrap();
    age(&bad);
    let kindnet = dirs.conf().join(KINDNET);
    // containerd fails the whole load on it: nothing to edit, reported.
    let r = run(
        &dirs,
        "install",
        &["--once", "--runtime", "containerd"],
        &config,
    );
    assert!(
        !r.ok
            && r.stderr
                .contains("containerd fails to load the whole conf dir"),
        "{}",
        r.text()
    );
    assert_eq!(entries(&kindnet), 0);
    // CRI-O skips it and uses the next file.
    let r = run(&dirs, "install", &["--once", "--runtime", "crio"], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&kindnet), 1);
    assert!(run(&dirs, "install", &["--check", "--runtime", "crio"], &config).ok);
    // Not told: where CRI-O looks, and not ready, saying why.
    let r = run_with(&dirs, "install", &["--check"], Some(&config), |_| {});
    assert!(!r.ok, "{}", r.text());
    assert!(
        r.stderr
            .contains("CRI-O skips it and uses 10-kindnet.conflist"),
        "{}",
        r.text()
    );
    let r = run_with(&dirs, "install", &["--check"], Some(&config), |c| {
        c.env("CSUM_OFFLOAD_RUNTIME", "crio");
    });
    assert!(
        r.ok,
        "the environment stands in for --runtime: {}",
        r.text()
    );
    let r = run(
        &dirs,
        "install",
        &["--check", "--runtime", "docker"],
        &config,
    );
    assert!(
        !r.ok && r.stderr.contains("--runtime must be one of"),
        "{}",
        r.text()
    );
}

#[test]
fn a_symlinked_primary_keeps_its_link_owner_and_mode() {
    let (dirs, config) = setup("symlink");
    fs::remove_file(dirs.conf().join(KINDNET)).unwrap();
    let real_dir = dirs.root.join("calico");
    fs::create_dir_all(&real_dir).unwrap();
    let real = real_dir.join("calico.conflist");
    let original = kindnet_bytes();
    fs::write(&real, &original).unwrap();
    std::os::unix::fs::chown(&real, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
    let link = dirs.conf().join("10-calico.conflist");
    symlink("../calico/calico.conflist", &link).unwrap();
    let kept = |when: &str| {
        let l = fs::symlink_metadata(&link).unwrap();
        assert!(l.file_type().is_symlink(), "{when}: the link was replaced");
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../calico/calico.conflist")
        );
        let m = fs::metadata(&real).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (1234, 5678, 0o640),
            "{when}: owner, group or mode changed"
        );
        let names: Vec<_> = fs::read_dir(&real_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{when}: {names:?}");
    };
    // Without CAP_CHOWN the rewrite could not keep the owner: refused.
    let r = run_with(&dirs, "install", &["--once"], Some(&config), |c| {
        without_caps(c, &[CAP_CHOWN]);
    });
    assert!(
        !r.ok && r.stderr.contains("never changes a file's owner"),
        "{}",
        r.text()
    );
    assert_eq!(fs::read(&real).unwrap(), original);
    kept("refused");
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&real), 1);
    kept("install");
    assert!(run(&dirs, "install", &["--check"], &config).ok);
    let r = run(&dirs, "uninstall", &[], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(
        serde_json::from_slice::<Value>(&fs::read(&real).unwrap()).unwrap(),
        json!(common::kindnet_conflist())
    );
    kept("uninstall");
}

#[test]
fn a_hand_written_entry_is_left_reported_and_never_duplicated() {
    let (dirs, config) = setup("hand-written");
    fs::remove_file(dirs.conf().join(KINDNET)).unwrap();
    // Cilium writes its conflist from the operator's customConf, with a
    // csum-offload entry in it: no installer mark.
    let cilium = dirs.conf().join("05-cilium.conflist");
    let text = serde_json::to_vec_pretty(&json!({
        "cniVersion": "0.3.1", "name": "cilium",
        "plugins": [
            {"type": "cilium-cni"},
            {"type": "csum-offload", "drivers": {"ngbe": {"tx": false}}, "hostDriver": "ngbe"}
        ]
    }))
    .unwrap();
    fs::write(&cilium, &text).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(r.ok, "{}", r.text());
    assert!(r.stderr.contains("did not write"), "{}", r.text());
    assert_eq!(
        fs::read(&cilium).unwrap(),
        text,
        "not overwritten, not joined"
    );
    // Not what the ConfigMap says: reported.
    let r = run(&dirs, "install", &["--check"], &config);
    assert!(
        !r.ok && r.stderr.contains("differs from the installer's entry"),
        "{}",
        r.text()
    );
    // The same policy as the ConfigMap's: fine.
    let same = dirs.root.join("same.json");
    fs::write(
        &same,
        r#"{"drivers": {"ngbe": {"tx": false}}, "hostDriver": "ngbe"}"#,
    )
    .unwrap();
    let r = run(&dirs, "install", &["--check"], &same);
    assert!(r.ok, "{}", r.text());
    // The watch loop leaves it too, and so does its SIGTERM.
    let log = dirs.root.join("watch.log");
    let mut cmd = dirs.command("install");
    cmd.arg("--config").arg(&config).stdout(Stdio::null());
    cmd.stderr(fs::File::create(&log).unwrap());
    in_empty_netns(&mut cmd);
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + LIMIT;
    while !fs::read_to_string(&log).unwrap().contains("did not write") {
        assert!(
            Instant::now() < deadline,
            "the watch loop never looked at the file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = common::finish_within(child, Duration::from_secs(10), "the watch loop");
    assert!(out.status.success());
    assert_eq!(fs::read(&cilium).unwrap(), text);
    let r = run(&dirs, "uninstall", &[], &config);
    assert!(
        r.ok && r.stdout.contains("left the csum-offload entry"),
        "{}",
        r.text()
    );
    assert_eq!(fs::read(&cilium).unwrap(), text, "uninstall leaves it");
}

/// Runs `cmd` in a mount namespace of its own with each `(host, at)` bind
/// mounted: the DaemonSet pod's view of the node, where the conf dir is
/// `/host/etc/cni/net.d` and nothing else of the host is mounted.
fn in_pod_view(cmd: &mut Command, mounts: &[(&Path, &Path)]) {
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let mounts: Vec<(CString, CString)> = mounts.iter().map(|(h, a)| (c(h), c(a))).collect();
    let root = CString::new("/").unwrap();
    // SAFETY: unshare(2) and mount(2) only, between fork and exec, on
    // strings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            // Our mounts must not reach the test's namespace.
            let private = libc::MS_REC | libc::MS_PRIVATE;
            let none = std::ptr::null();
            if libc::mount(none, root.as_ptr(), none, private, none.cast()) != 0 {
                return fail();
            }
            for (host, at) in &mounts {
                let bind = libc::MS_BIND;
                if libc::mount(host.as_ptr(), at.as_ptr(), none, bind, none.cast()) != 0 {
                    return fail();
                }
            }
            Ok(())
        });
    }
}

/// A link the installer cannot follow (absolute, or out of the conf dir
/// with `..`) may be a good file to the host's runtime: under every
/// runtime rule it blocks the write and fails readiness, naming the link,
/// its target and the fix; it is never skipped as "dangling", which would
/// put the entry into a later file the runtime does not use.
#[test]
fn a_link_the_installer_cannot_follow_blocks_under_every_runtime() {
    let (dirs, config) = setup("pod-view");
    let runtimes: [&[&str]; 3] = [&["--runtime", "containerd"], &["--runtime", "crio"], &[]];
    let kindnet = dirs.conf().join(KINDNET);
    let before = fs::read(&kindnet).unwrap();
    // The host's view: 05-calico.conflist -> ../calico/calico.conflist,
    // a good file, the one the runtime uses.
    let real_dir = dirs.root.join("calico");
    fs::create_dir_all(&real_dir).unwrap();
    let real = real_dir.join("calico.conflist");
    fs::write(&real, kindnet_bytes()).unwrap();
    let link = dirs.conf().join("05-calico.conflist");
    symlink("../calico/calico.conflist", &link).unwrap();
    age(&real);
    // The pod's view: only the conf dir, at <root>/pod/host/net.d.
    let pod_conf = dirs.root.join("pod/host/net.d");
    let pod_calico = dirs.root.join("pod/host/calico");
    fs::create_dir_all(&pod_conf).unwrap();
    fs::create_dir_all(&pod_calico).unwrap();
    let in_pod = |args: &[&str], mounts: &[(&Path, &Path)]| {
        let mut cmd = Command::new(common::BIN);
        cmd.arg("install")
            .arg("--cni-conf-dir")
            .arg(&pod_conf)
            .arg("--cni-bin-dir")
            .arg(dirs.bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("CNI_COMMAND")
            .env_remove("CSUM_OFFLOAD_RUNTIME");
        in_empty_netns(&mut cmd);
        in_pod_view(&mut cmd, mounts);
        let out = output_within(
            &mut cmd,
            LIMIT,
            &format!("install {args:?} in the pod view"),
        );
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let host_conf = dirs.conf();
    let conf_only = [(host_conf.as_path(), pod_conf.as_path())];
    let says = |r: &Run, target: &str, mount_at: &Path| {
        let text = r.text();
        assert!(!r.ok, "{text}");
        for words in [
            format!("is a symbolic link to \"{target}\""),
            format!("mount the directory it leads to into the installer's container at {}, or replace the link", mount_at.display()),
            "cannot tell which file the runtime uses".to_string(),
        ] {
            assert!(text.contains(&words), "{words:?} in: {text}");
        }
        assert!(
            !text.contains("containerd fails"),
            "not a containerd failure: {text}"
        );
        assert!(
            !text.contains("cannot read it either"),
            "not dangling: {text}"
        );
    };
    for runtime in runtimes {
        let r = in_pod(&[&["--once"], runtime].concat(), &conf_only);
        says(&r, "../calico/calico.conflist", &pod_calico);
        assert!(r.stderr.contains("05-calico.conflist: "), "{}", r.text());
        assert_eq!(
            fs::read(&kindnet).unwrap(),
            before,
            "{runtime:?}: a later file"
        );
        assert_eq!(entries(&real), 0, "{runtime:?}");
        let r = in_pod(&[&["--check"], runtime].concat(), &conf_only);
        says(&r, "../calico/calico.conflist", &pod_calico);
    }
    // The fix the message names: the link's directory mounted too.
    let both = [conf_only[0], (real_dir.as_path(), pod_calico.as_path())];
    let r = in_pod(&["--once", "--runtime", "crio"], &both);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&real), 1, "through the link: {}", r.text());
    assert_eq!(fs::read(&kindnet).unwrap(), before);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    for runtime in runtimes {
        let r = in_pod(&[&["--check"], runtime].concat(), &both);
        assert!(r.ok, "{runtime:?}: {}", r.text());
    }
    fs::remove_file(&link).unwrap();

    // An absolute target that does not exist in this view either.
    let nowhere = format!("/csum-offload-nowhere-{}", std::process::id());
    let target = format!("{nowhere}/calico.conflist");
    symlink(&target, dirs.conf().join("05-abs.conflist")).unwrap();
    for runtime in runtimes {
        for verb in ["--once", "--check"] {
            let r = run(&dirs, "install", &[&[verb], runtime].concat(), &config);
            says(&r, &target, Path::new(&nowhere));
        }
    }
    assert_eq!(fs::read(&kindnet).unwrap(), before);
    fs::remove_file(dirs.conf().join("05-abs.conflist")).unwrap();

    // Negative control: a dangling link to a plain name stays in the conf
    // dir in every view, so the runtime cannot read it either; CRI-O
    // skips it and the entry goes into the next file.
    symlink("gone.conflist", dirs.conf().join("05-gone.conflist")).unwrap();
    let r = run(&dirs, "install", &["--once", "--runtime", "crio"], &config);
    assert!(r.ok, "{}", r.text());
    assert!(
        r.stderr.contains("05-gone.conflist: skipped"),
        "{}",
        r.text()
    );
    assert_eq!(entries(&kindnet), 1);
}

#[test]
fn directories_beside_the_runtimes_file_are_judged_as_libcni_reads_them() {
    // Found by the conf dir fuzz run (e2e/libcni/confdir_fuzz.py).
    let (dirs, config) = setup("dirs-beside");
    fs::remove_file(dirs.conf().join(KINDNET)).unwrap();
    // A .conf whose .conflist name is taken by a directory: nothing can
    // be written there, and saying so beats retrying until "files kept
    // changing".
    let conf = dirs.conf().join("10-a.conf");
    let conf_bytes = br#"{"cniVersion":"1.0.0","name":"net","type":"bridge"}"#;
    fs::write(&conf, conf_bytes).unwrap();
    fs::create_dir(dirs.conf().join("10-a.conflist")).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(
        !r.ok && r.stderr.contains("10-a.conflist: that name is a directory"),
        "{}",
        r.text()
    );
    assert_eq!(fs::read(&conf).unwrap(), conf_bytes);
    fs::remove_dir(dirs.conf().join("10-a.conflist")).unwrap();
    fs::remove_file(&conf).unwrap();

    // libcni 1.3 runs <conf dir>/<name>/*.conf after a list's own plugins:
    // the entry would not run last, so the list is left alone.
    let list = dirs.conf().join(KINDNET);
    fs::write(&list, kindnet_bytes()).unwrap();
    let name = common::kindnet_conflist()["name"]
        .as_str()
        .unwrap()
        .to_string();
    fs::create_dir(dirs.conf().join(&name)).unwrap();
    let plugin = dirs.conf().join(&name).join("90-x.conf");
    fs::write(&plugin, br#"{"type":"tuning"}"#).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(
        !r.ok && r.stderr.contains("after the list's own (tuning)"),
        "{}",
        r.text()
    );
    assert_eq!(fs::read(&list).unwrap(), kindnet_bytes());
    // A plugin file libcni cannot decode fails the whole list.
    fs::write(&plugin, b"{").unwrap();
    age(&list);
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(!r.ok && r.stderr.contains("90-x.conf"), "{}", r.text());
    assert_eq!(fs::read(&list).unwrap(), kindnet_bytes());
    // Without the plugin dir the entry goes in, last.
    fs::remove_dir_all(dirs.conf().join(&name)).unwrap();
    let r = run(&dirs, "install", &["--once"], &config);
    assert!(r.ok, "{}", r.text());
    assert_eq!(entries(&list), 1);
}
