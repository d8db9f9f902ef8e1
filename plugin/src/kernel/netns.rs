//! Network namespace switching for the current thread.
//!
//! The plugin only ever enters the pod netns to open sockets there, then
//! returns at once: a socket stays bound to the netns it was created in, and
//! both rtnetlink and SIOCETHTOOL act on the socket's netns. All further
//! work runs from the host netns on those sockets.

use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Opens a netns handle (a bind-mounted netns file or /proc/PID/ns/net).
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    Ok(File::open(path)?.into())
}

/// The calling thread's own netns.
pub fn current() -> io::Result<OwnedFd> {
    open(Path::new("/proc/thread-self/ns/net"))
}

/// Whether two handles refer to the same netns (same nsfs inode).
pub fn same(a: &impl AsFd, b: &impl AsFd) -> io::Result<bool> {
    let (sa, sb) = (nix::sys::stat::fstat(a)?, nix::sys::stat::fstat(b)?);
    Ok(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
}

/// Runs `f` with the calling thread inside `target`, then moves the thread
/// back to `home` (the netns it is in now, which the caller already holds
/// open), also when `f` fails.
pub fn run_in<T>(target: &impl AsFd, home: &impl AsFd, f: impl FnOnce() -> T) -> io::Result<T> {
    setns(target, CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot enter network namespace: {e}"),
        )
    })?;
    let out = f();
    if let Err(e) = setns(home, CloneFlags::CLONE_NEWNET) {
        // Continuing in the pod's netns would apply host-side changes to
        // the wrong namespace; nothing can recover that, so stop here.
        log::error!("cannot return to the original network namespace: {e}; aborting");
        std::process::abort();
    }
    Ok(out)
}
