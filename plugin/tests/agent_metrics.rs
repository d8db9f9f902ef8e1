//! The agent's metrics as node_exporter and Prometheus meet them, run as
//! the real binary in a lab (its host netns stands for the node; all
//! traffic is on that netns' loopback): the textfile in a directory other
//! collectors share, where a link or FIFO may be planted, and the endpoint
//! under large, split and keep-alive requests, idle connections and a
//! flood.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long any one answer may take before the test calls it a failure:
/// a correctness bound (Prometheus gives up at 10 s), not a benchmark.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

/// `agent --once` writing `textfile`, under umask 077 (the file must still
/// be 0644: node_exporter reads it as another user); its output.
fn once_writing(s: &Scratch, textfile: &Path) -> std::process::Output {
    let config = s.config(json!({"hostDriver": "txgbe"}));
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "umask 077 && exec \"$0\" \"$@\"",
        BIN,
        "agent",
        "--once",
    ])
    .args(["--config", &config, "--state-file", &s.state()])
    .args(["--textfile", textfile.to_str().unwrap()])
    .env_remove("CNI_COMMAND");
    // A FIFO opened for writing blocks until a reader comes: a hang here
    // is what the test is about, so it is bounded.
    output_within(&mut cmd, Duration::from_secs(10), "agent --once --textfile")
}

fn is_metrics_file(path: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(meta.file_type().is_file(), "{path:?} is a regular file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{path:?}");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("\ncsum_offload_detection_ok 1\n"), "{text}");
}

#[test]
fn the_textfile_replaces_links_and_fifos_and_never_writes_through_them() {
    // The lab's host netns is where the agent runs, with one pod.
    let _lab = Lab::with_pods("mt", 1);
    let s = Scratch::new("textfile");
    let dir = s.path("collector");
    std::fs::create_dir(&dir).unwrap();
    let textfile = dir.join("csum_offload.prom");
    let victim = s.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    // Other collectors' files, and one shaped like our temp files but for
    // another target: never touched.
    let others = [
        ("node.prom", "node_thing 1\n"),
        (".node.prom.77.0123456789abcdef.tmp", "half\n"),
        ("csum_offload.prom.bak", "mine? no\n"),
    ];
    for (name, text) in others {
        std::fs::write(dir.join(name), text).unwrap();
    }
    // A crashed agent's temp file is ours and goes; a link of that shape is
    // not ours and stays, pointing where it pointed.
    let leftover = dir.join(".csum_offload.prom.999999.00112233445566ff.tmp");
    std::fs::write(&leftover, "crashed\n").unwrap();
    let planted_leftover = dir.join(".csum_offload.prom.999998.00112233445566ff.tmp");
    std::os::unix::fs::symlink(&victim, &planted_leftover).unwrap();
    // The temp name the agent used to use, predictable: a link to the
    // victim, then a FIFO.
    let old_tmp = dir.join("csum_offload.prom.tmp");
    std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
    // First a link at the target itself.
    std::os::unix::fs::symlink(&victim, &textfile).unwrap();
    let out = once_writing(&s, &textfile);
    assert!(out.status.success(), "{out:?}");
    is_metrics_file(&textfile);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!leftover.exists(), "our crashed temp file is removed");
    assert!(std::fs::symlink_metadata(&planted_leftover)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(&old_tmp)
        .unwrap()
        .file_type()
        .is_symlink());
    // Then a FIFO at the target, and one at the old temp name.
    std::fs::remove_file(&textfile).unwrap();
    std::fs::remove_file(&old_tmp).unwrap();
    for fifo in [&textfile, &old_tmp] {
        nix::unistd::mkfifo(
            fifo.as_path(),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
    }
    let out = once_writing(&s, &textfile);
    assert!(out.status.success(), "{out:?}");
    is_metrics_file(&textfile);
    assert!(std::fs::symlink_metadata(&old_tmp)
        .unwrap()
        .file_type()
        .is_fifo());
    for (name, text) in others {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), text);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    // Nothing of ours is left beside it but the textfile.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".csum_offload.prom.999998.00112233445566ff.tmp",
            ".node.prom.77.0123456789abcdef.tmp",
            "csum_offload.prom",
            "csum_offload.prom.bak",
            "csum_offload.prom.tmp",
            "node.prom",
        ]
    );
}

/// The agent daemon with `--metrics-address 127.0.0.1:0` in `lab`; it and
/// the address it serves on.
fn serving(s: &Scratch) -> (Daemon, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("agent")
        .args(["--config", &s.config(json!({"hostDriver": "txgbe"}))])
        .args(["--state-file", &s.state(), "--resync", "0"])
        .args(["--metrics-address", "127.0.0.1:0"])
        .env_remove("CNI_COMMAND");
    let daemon = Daemon::spawn(&mut cmd, s.path("agent.log"));
    let log = daemon.wait_log("metrics on http://");
    let address = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    daemon.wait_log("changed container eth0");
    (daemon, address)
}

fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(ANSWER_BOUND)).unwrap();
    stream.set_write_timeout(Some(ANSWER_BOUND)).unwrap();
    stream
}

/// One response read off `stream` by its Content-Length: (head, body).
fn response(stream: &mut TcpStream, head_only: bool) -> (String, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => bytes.push(byte[0]),
            other => panic!("{other:?} after {:?}", String::from_utf8_lossy(&bytes)),
        }
    }
    let head = String::from_utf8(bytes).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("no Content-Length in {head}"))
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; if head_only { 0 } else { length }];
    stream.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// A scrape on a fresh connection, within `ANSWER_BOUND`: the body.
fn scrape(address: &str) -> String {
    let started = Instant::now();
    let mut stream = connect(address);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, body) = response(&mut stream, false);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        started.elapsed() < ANSWER_BOUND,
        "a scrape took {:?}",
        started.elapsed()
    );
    body
}

fn counter<'a>(body: &'a str, name: &str) -> &'a str {
    body.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[test]
fn the_endpoint_answers_large_split_and_keep_alive_requests_and_only_reads() {
    let _lab = Lab::with_pods("me", 1);
    let s = Scratch::new("endpoint");
    let (daemon, address) = serving(&s);
    // A bearer token and more headers: 16 KiB of head. The connection is
    // read to its end, so a reply sent before the whole request was read
    // (and a reset when the rest is dropped) fails here.
    let token = "t".repeat(8 * 1024);
    let padding = "p".repeat(8 * 1024);
    let mut stream = connect(&address);
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {token}\r\n\
         X-Padding: {padding}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(
        all.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{all}"
    );
    assert!(all.contains("\ncsum_offload_detection_ok 1\n"), "{all}");
    // One request in three segments, with pauses between them.
    let mut stream = connect(&address);
    for part in ["GET /met", "rics HTTP/1.1\r\nHost: ag", "ent\r\n\r\n"] {
        stream.write_all(part.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let (head, body) = response(&mut stream, false);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(body.contains("\ncsum_offload_detection_ok 1\n"), "{body}");
    // Several scrapes on that one connection (HTTP/1.1 keeps it): one after
    // the other, then two sent at once, then a HEAD.
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n")
        .unwrap();
    let (head, again) = response(&mut stream, false);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        counter(&again, "csum_offload_pair_checks_total"),
        counter(&body, "csum_offload_pair_checks_total")
    );
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    for _ in 0..2 {
        let (head, body) = response(&mut stream, false);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(body.contains("csum_offload_pairs 1\n"), "{body}");
        // The one pod's pair, fixed (txgbe: tx off) at the first pass.
        assert!(body.contains("csum_offload_pairs_conforming 1\n"), "{body}");
    }
    stream.write_all(b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
    let (head, _) = response(&mut stream, true);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n")
            && head.contains(&format!("\r\nContent-Length: {}\r\n", again.len())),
        "{head}"
    );
    // Nothing is writable: POST gets 405 and changes nothing; other paths
    // 404; a head larger than the limit 431.
    let mut stream = connect(&address);
    stream
        .write_all(
            b"POST /metrics HTTP/1.1\r\nContent-Length: 25\r\n\r\ncsum_offload_pairs 1000\r\n",
        )
        .unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    assert!(
        all.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
            && all.contains("\r\nAllow: GET, HEAD\r\n"),
        "{all}"
    );
    let mut stream = connect(&address);
    stream
        .write_all(b"GET /debug HTTP/1.1\r\n\r\nDELETE /metrics HTTP/1.1\r\n\r\n")
        .unwrap();
    assert!(response(&mut stream, false).0.starts_with("HTTP/1.1 404 "));
    assert!(response(&mut stream, false).0.starts_with("HTTP/1.1 405 "));
    let mut stream = connect(&address);
    let huge = "h".repeat(40 * 1024);
    let _ = write!(stream, "GET /metrics HTTP/1.1\r\nX-Huge: {huge}\r\n\r\n");
    assert!(response(&mut stream, false).0.starts_with("HTTP/1.1 431 "));
    let after = scrape(&address);
    for name in ["csum_offload_pairs", "csum_offload_pair_checks_total"] {
        assert_eq!(counter(&after, name), counter(&body, name));
    }
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// Threads of process `pid` (/proc/PID/status).
fn threads(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn idle_slow_and_flooding_connections_never_delay_a_scrape_or_the_stop() {
    let lab = Lab::with_pods("mf", 1);
    let s = Scratch::new("flood");
    let (daemon, address) = serving(&s);
    let pid = daemon.pid();
    let (threads_before, fds_before) = (threads(pid), open_fds(pid));
    // Idle connections, and slow ones that stop mid-request: each of them
    // used to hold the server for seconds.
    let mut held: Vec<TcpStream> = (0..20).map(|_| connect(&address)).collect();
    for stream in held.iter_mut().step_by(2) {
        stream.write_all(b"GET /metr").unwrap();
    }
    scrape(&address);
    // A flood, far more than the server keeps open, all left open.
    let target: std::net::SocketAddr = address.parse().unwrap();
    for i in 0..500 {
        if let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            if i % 3 == 0 {
                let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ");
            }
            held.push(stream);
        }
    }
    // Most connect; on a loaded machine a few may not within the second,
    // and any number far above the server's 32 still makes the flood.
    assert!(held.len() > 200, "{} connections made", held.len());
    let body = scrape(&address);
    assert!(body.contains("\ncsum_offload_detection_ok 1\n"), "{body}");
    // Bounded: no thread per connection, and only so many sockets kept.
    let (threads_now, fds_now) = (threads(pid), open_fds(pid));
    assert!(
        threads_now <= threads_before && threads_now <= 4,
        "{threads_before} threads before, {threads_now} now"
    );
    assert!(
        fds_now <= fds_before + 40,
        "{fds_before} open files before the flood, {fds_now} now"
    );
    // The agent's own loop still acts while all that is open: drift in
    // the container is repaired.
    run(
        "ip",
        &[
            "netns", "exec", &lab.pod, "ethtool", "-K", "eth0", "tx", "on",
        ],
    );
    daemon.wait_log("(drift repaired)");
    // And it stops on SIGTERM with every connection still open.
    let started = Instant::now();
    assert_eq!(daemon.terminate().code(), Some(0));
    assert!(started.elapsed() < ANSWER_BOUND, "{:?}", started.elapsed());
    drop(held);
}
