//! flock(2), the one advisory lock every writer of shared files here uses
//! (the installer's claim and temps, the agent's journal, the uplink
//! record, log rotation): released by the kernel when the process dies,
//! so a crash never leaves a node locked.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// flock(2): `LOCK_SH`, `LOCK_EX`, `LOCK_UN`, with `LOCK_NB` or not.
///
/// Raw libc on purpose: nix's one safe flock, `fcntl::Flock`, takes the
/// file and unlocks on drop, and the callers here lock files they keep
/// using under other locks (the agent's presence file is let go and asked
/// again exclusively; a log file being rotated is written on).
pub fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock(2) on a descriptor the caller owns.
    match unsafe { libc::flock(file.as_raw_fd(), op) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// An exclusive lock on `file`, waited for at most `limit`: a holder that
/// hangs must not hang every caller (a CNI ADD above all). `WouldBlock`
/// when the limit passes.
pub fn lock_exclusive_within(file: &File, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(200);
    loop {
        match flock(file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}
