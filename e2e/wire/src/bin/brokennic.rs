//! brokennic: a NIC that ignores the checksum-offload request. It moves
//! frames verbatim between two interfaces through AF_PACKET sockets: what
//! a pod handed down with CHECKSUM_PARTIAL leaves with its partial
//! checksum, exactly like the txgbe path in the field. ICMP (always
//! checksummed in software) gets through; offloaded TCP does not.

use csum_offload_wire::frame;
use csum_offload_wire::packet::{poll_readable, PacketSocket, MAX_FRAME};
use csum_offload_wire::run::{install_stop_signals, Args, Limits};
use csum_offload_wire::stats::Counts;
use std::process::ExitCode;

const USAGE: &str =
    "usage: brokennic --a IF --b IF [--seconds N (60, at most 86400)] [--max-frames N (100000)]
                 [--ready-file FILE] [--summary FILE] [--stats FILE]
Forwards every frame received on IF a out of IF b and vice versa, byte for byte,
without completing partial checksums, until SIGINT/SIGTERM or a limit.
--stats FILE: the summary's counts so far, replaced about once a second.";

/// One direction of the forwarder, with what went through it.
struct Direction {
    name: &'static str,
    counts: Counts,
    forwarded: u64,
    send_errors: u64,
    last_error: Option<String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brokennic: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args = Args::parse(USAGE)?;
    args.only(&[
        "a",
        "b",
        "seconds",
        "max-frames",
        "ready-file",
        "summary",
        "stats",
    ])?;
    let (a_name, b_name) = (args.required("a")?, args.required("b")?);
    let limits = Limits::new(
        args.number("seconds", 60)?,
        args.number("max-frames", 100_000)?,
    );
    install_stop_signals();
    // Frames a port sends (including the ones forwarded here) are not
    // picked up again: that would loop them.
    let a = PacketSocket::open(a_name, true).map_err(|e| format!("{a_name}: {e}"))?;
    let b = PacketSocket::open(b_name, true).map_err(|e| format!("{b_name}: {e}"))?;
    if let Some(ready) = args.get("ready-file") {
        std::fs::write(ready, "forwarding\n").map_err(|e| format!("{ready}: {e}"))?;
    }
    let mut a_to_b = Direction::new("a_to_b", b.mtu);
    let mut b_to_a = Direction::new("b_to_a", a.mtu);
    let mut buf = vec![0u8; MAX_FRAME];
    // A long-running cable (the local cluster's) is read while it runs:
    // the counts so far, through a temp file and a rename so a reader
    // never sees half of them.
    let stats = args.get("stats");
    let mut stats_written = std::time::Instant::now();
    let stop = loop {
        if let Some(why) = limits.reached(a_to_b.counts.frames + b_to_a.counts.frames) {
            break why;
        }
        if let Some(path) = stats {
            if stats_written.elapsed() >= std::time::Duration::from_secs(1) {
                let text = format!("{}\n{}\n", a_to_b.report(), b_to_a.report());
                let tmp = format!("{path}.tmp");
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|e| format!("{path}: {e}"))?;
                stats_written = std::time::Instant::now();
            }
        }
        let ready = poll_readable(&[a.raw_fd(), b.raw_fd()], 100).map_err(|e| e.to_string())?;
        if ready[0] {
            a_to_b.pump(&a, &b, &mut buf)?;
        }
        if ready[1] {
            b_to_a.pump(&b, &a, &mut buf)?;
        }
    };
    let summary = format!(
        "a={a_name} b={b_name}\nstopped_by={}\n{}\n{}\n",
        stop.to_string().replace(' ', "_"),
        a_to_b.report(),
        b_to_a.report()
    );
    print!("{summary}");
    if let Some(path) = args.get("summary") {
        std::fs::write(path, &summary).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

impl Direction {
    /// `mtu`: of the port this direction sends out of.
    fn new(name: &'static str, mtu: u32) -> Self {
        Self {
            name,
            counts: Counts::with_mtu(mtu.into()),
            forwarded: 0,
            send_errors: 0,
            last_error: None,
        }
    }

    /// Forwards what is queued on `from` (at most a batch, so the other
    /// direction gets its turn).
    fn pump(
        &mut self,
        from: &PacketSocket,
        to: &PacketSocket,
        buf: &mut [u8],
    ) -> Result<(), String> {
        for _ in 0..256 {
            let Some(rx) = from
                .recv(buf)
                .map_err(|e| format!("{}: {e}", from.ifname))?
            else {
                return Ok(());
            };
            if rx.outgoing || rx.len < rx.wire_len {
                continue;
            }
            let data = &buf[..rx.len];
            self.counts
                .add(&frame::parse(data), rx.wire_len, rx.csum_not_ready, None);
            // Verbatim: a frame larger than the MTU (a GSO packet) fails
            // here as it would on a NIC without TSO, and is counted.
            match to.send(data) {
                Ok(()) => self.forwarded += 1,
                Err(e) => {
                    self.send_errors += 1;
                    self.last_error = Some(e.to_string());
                }
            }
        }
        Ok(())
    }

    fn report(&self) -> String {
        format!(
            "{}: forwarded={} send_errors={} {}{}",
            self.name,
            self.forwarded,
            self.send_errors,
            self.counts,
            self.last_error
                .as_ref()
                .map(|e| format!(" (last send error: {e})"))
                .unwrap_or_default()
        )
    }
}
