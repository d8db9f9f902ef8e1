//! One ordinary TCP client transfer, bounded in time: connect, write N
//! bytes, wait until the peer's kernel has acknowledged all of them
//! (SIOCOUTQ, the bytes not yet acknowledged, reaches 0), close. Nothing is
//! read and nothing but a client's segments is sent, so any TCP listener
//! serves as the far end.
//!
//! The socket is created in the calling thread's netns (the caller enters
//! the netns to probe from first).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// The bytes written, a pattern (not zeros, so nothing on the path can
/// treat the payload as padding).
const CHUNK: usize = 16 * 1024;
/// How often the send queue is looked at while waiting for the ACKs.
const ACK_POLL: Duration = Duration::from_millis(2);

/// Where a transfer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Send,
    Ack,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Send => "send",
            Stage::Ack => "wait for ack",
        }
    }
}

/// What one transfer did.
#[derive(Debug)]
pub struct Transfer {
    /// Bytes handed to the kernel.
    pub written: u64,
    /// Bytes the peer acknowledged.
    pub acked: u64,
    /// Why it did not finish, if it did not.
    pub failure: Option<(Stage, io::Error)>,
}

/// Sends `bytes` to `target` and waits for their acknowledgement until
/// `deadline`.
///
/// The socket lingers 0 s from right after connect until every byte is
/// acknowledged: a failed transfer (or the process killed in the middle)
/// ends with a reset instead of an orphan that keeps retransmitting for
/// minutes, and keeps the netns alive that long. Once everything is
/// acknowledged, it closes normally (FIN).
pub fn transfer(target: SocketAddr, bytes: u64, deadline: Instant) -> Transfer {
    let mut out = Transfer {
        written: 0,
        acked: 0,
        failure: None,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        out.failure = Some((Stage::Connect, timed_out()));
        return out;
    }
    let mut stream = match TcpStream::connect_timeout(&target, left) {
        Ok(s) => s,
        Err(e) => {
            out.failure = Some((Stage::Connect, e));
            return out;
        }
    };
    if let Err(e) = set_linger(&stream, true).and_then(|_| stream.set_nonblocking(true)) {
        out.failure = Some((Stage::Connect, e));
        return out;
    }
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    while out.written < bytes {
        let n = (bytes - out.written).min(CHUNK as u64) as usize;
        match stream.write(&chunk[..n]) {
            Ok(0) => {
                out.failure = Some((Stage::Send, io::ErrorKind::WriteZero.into()));
                break;
            }
            Ok(w) => out.written += w as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = wait_writable(&stream, deadline) {
                    out.failure = Some((Stage::Send, e));
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.failure = Some((Stage::Send, e));
                break;
            }
        }
    }
    // Bounded by the deadline: one look every ACK_POLL.
    loop {
        let queued = match unacknowledged(&stream) {
            Ok(q) => q,
            Err(e) => {
                out.failure.get_or_insert((Stage::Ack, e));
                break;
            }
        };
        out.acked = out.written.saturating_sub(queued);
        if out.failure.is_some() {
            break;
        }
        if let Ok(Some(e)) = stream.take_error() {
            out.failure = Some((Stage::Ack, e));
            break;
        }
        if queued == 0 {
            break;
        }
        if Instant::now() >= deadline {
            out.failure = Some((Stage::Ack, timed_out()));
            break;
        }
        std::thread::sleep(ACK_POLL);
    }
    if out.failure.is_none() {
        // Everything arrived: an orderly close.
        let _ = set_linger(&stream, false);
    }
    out
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
}

fn set_linger(stream: &TcpStream, abort: bool) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: i32::from(abort),
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &linger)
        .map_err(io::Error::from)
}

/// Waits (until `deadline`) for room in the send buffer.
fn wait_writable(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) => Err(timed_out()),
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// SIOCOUTQ: bytes in the send queue the peer has not acknowledged.
fn unacknowledged(stream: &TcpStream) -> io::Result<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int to the pointer given.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(queued).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Loopback only: a listener that never reads still acknowledges what
    /// fits its receive buffer; a closed port is refused at connect.
    #[test]
    fn loopback_listener_acknowledges_and_a_closed_port_refuses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let t = transfer(target, 40_000, deadline);
        assert!(t.failure.is_none(), "{:?}", t.failure);
        assert_eq!((t.written, t.acked), (40_000, 40_000));
        drop(listener);
        let t = transfer(target, 10, deadline);
        let (stage, e) = t.failure.unwrap();
        assert_eq!(stage, Stage::Connect);
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let t = transfer(target, 10, Instant::now());
        assert_eq!(t.failure.unwrap().1.kind(), io::ErrorKind::TimedOut);
    }
}
