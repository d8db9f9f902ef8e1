//! wirecheck: captures every frame on one interface through an AF_PACKET
//! socket until stopped (SIGINT/SIGTERM), a time limit or a frame limit,
//! verifies the checksum of each TCP segment itself (RFC 1071 over the
//! pseudo-header), and reports per direction how many were valid, partial
//! (left for a NIC to complete) or bad.

use csum_offload_wire::frame;
use csum_offload_wire::packet::{poll_readable, PacketSocket, MAX_FRAME};
use csum_offload_wire::pcap::PcapWriter;
use csum_offload_wire::run::{install_stop_signals, Args, Limits};
use csum_offload_wire::stats::Counts;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str =
    "usage: wirecheck --ifname IF [--seconds N (30, at most 86400)] [--max-frames N (200000)]
                 [--port P] [--pcap FILE] [--summary FILE] [--ready-file FILE]
                 [--expect valid|partial] [--min-segments N (1)]
Captures on IF until SIGINT/SIGTERM or a limit and checks every TCP checksum.
'in' counts frames IF received (on a pod's host-side veth: what the pod sent),
'out' frames IF sent.
--expect valid:   every checked segment valid, at least --min-segments of them
--expect partial: at least one partial checksum and no bad one
Exit status: 0 ok, 1 expectation not met, 2 usage or socket error.";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wirecheck: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let args = Args::parse(USAGE)?;
    args.only(&[
        "ifname",
        "seconds",
        "max-frames",
        "port",
        "pcap",
        "summary",
        "ready-file",
        "expect",
        "min-segments",
    ])?;
    let ifname = args.required("ifname")?;
    let limits = Limits::new(
        args.number("seconds", 30)?,
        args.number("max-frames", 200_000)?,
    );
    let port: Option<u16> = args
        .get("port")
        .map(|p| p.parse())
        .transpose()
        .map_err(|_| "--port must be a number")?;
    let expect = args.get("expect");
    if !matches!(expect, None | Some("valid") | Some("partial")) {
        return Err("--expect must be valid or partial".into());
    }
    let min_segments: u64 = args.number("min-segments", 1)?;

    install_stop_signals();
    let socket = PacketSocket::open(ifname, false).map_err(|e| format!("{ifname}: {e}"))?;
    let mut pcap = args
        .get("pcap")
        .map(|p| {
            PcapWriter::create(Path::new(p), MAX_FRAME as u32).map_err(|e| format!("{p}: {e}"))
        })
        .transpose()?;
    if let Some(ready) = args.get("ready-file") {
        std::fs::write(ready, "capturing\n").map_err(|e| format!("{ready}: {e}"))?;
    }

    let mtu = u64::from(socket.mtu);
    let (mut inbound, mut outbound) = (Counts::with_mtu(mtu), Counts::with_mtu(mtu));
    let mut buf = vec![0u8; MAX_FRAME];
    let stop = loop {
        if let Some(why) = limits.reached(inbound.frames + outbound.frames) {
            break why;
        }
        if !poll_readable(&[socket.raw_fd()], 100).map_err(|e| e.to_string())?[0] {
            continue;
        }
        // Drain what is queued, still within the frame limit.
        for _ in 0..1024 {
            let Some(rx) = socket
                .recv(&mut buf)
                .map_err(|e| format!("{ifname}: {e}"))?
            else {
                break;
            };
            let data = &buf[..rx.len];
            if let Some(w) = pcap.as_mut() {
                w.write(data, rx.wire_len).map_err(|e| e.to_string())?;
            }
            let parsed = if rx.len < rx.wire_len {
                frame::Parsed::Truncated
            } else {
                frame::parse(data)
            };
            let counts = if rx.outgoing {
                &mut outbound
            } else {
                &mut inbound
            };
            counts.add(&parsed, rx.wire_len, rx.csum_not_ready, port);
        }
    };
    if let Some(w) = pcap {
        w.finish().map_err(|e| e.to_string())?;
    }

    let all = inbound.merged(&outbound);
    let verdict = match expect {
        Some("valid") => all.tcp >= min_segments && all.valid == all.tcp && all.truncated == 0,
        Some("partial") => {
            all.tcp >= min_segments && all.partial > 0 && all.bad == 0 && all.truncated == 0
        }
        _ => true,
    };
    let summary = format!(
        "ifname={ifname}\nstopped_by={}\nin: {inbound}\nout: {outbound}\nall: {all}\nexpect={} result={}\n",
        stop.to_string().replace(' ', "_"),
        expect.unwrap_or("none"),
        if verdict { "ok" } else { "FAILED" }
    );
    print!("{summary}");
    if let Some(path) = args.get("summary") {
        std::fs::write(path, &summary).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(verdict)
}
