//! Network namespace handles and the calling thread's move into one.
//!
//! The plugin only ever enters the pod netns to open sockets there, then
//! returns at once: a socket stays bound to the netns it was created in, and
//! both rtnetlink and SIOCETHTOOL act on the socket's netns. All further
//! work runs from the host netns on those sockets.

use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// ioctl(2) on an nsfs fd: which kind of namespace it is (linux/nsfs.h,
/// _IO(0xb7, 0x3); Linux 4.11).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Opens a network namespace handle: a bind-mounted netns file
/// (`/run/netns/...`) or `/proc/PID/ns/net`. Anything else is refused with
/// a clear error before it can block or act: a FIFO, a device or a
/// directory is never opened, and a file that is not on nsfs, or a
/// namespace of another kind, is "not a network namespace".
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    // stat never opens: a FIFO here would block a plain open(2).
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_netns(if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        }));
    }
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let fs = nix::sys::statfs::fstatfs(&file)?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(not_netns("not a namespace file"));
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the CLONE_NEW* flag.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind < 0 {
        let e = io::Error::last_os_error();
        // Kernels before 4.11 have no NS_GET_NSTYPE: an nsfs file is all
        // that can be told, and setns(CLONE_NEWNET) refuses the other kinds.
        if e.raw_os_error() != Some(libc::ENOTTY) {
            return Err(e);
        }
    } else if kind != libc::CLONE_NEWNET {
        return Err(not_netns(namespace_kind(kind)));
    }
    Ok(file.into())
}

fn not_netns(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a network namespace ({what})"),
    )
}

fn namespace_kind(flag: i32) -> &'static str {
    match flag {
        libc::CLONE_NEWNS => "a mount namespace",
        libc::CLONE_NEWUTS => "a UTS namespace",
        libc::CLONE_NEWIPC => "an IPC namespace",
        libc::CLONE_NEWUSER => "a user namespace",
        libc::CLONE_NEWPID => "a PID namespace",
        libc::CLONE_NEWCGROUP => "a cgroup namespace",
        _ => "another kind of namespace",
    }
}

/// The calling thread's own netns.
pub fn current() -> io::Result<OwnedFd> {
    open(Path::new("/proc/thread-self/ns/net"))
}

/// A network namespace found on the node, with the file it was found by.
pub struct Found {
    pub path: PathBuf,
    pub fd: OwnedFd,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_namespaces_open() {
        assert!(current().is_ok());
        let msg = |p: &str| open(Path::new(p)).unwrap_err().to_string();
        assert_eq!(
            msg("/proc/self/ns/mnt"),
            "not a network namespace (a mount namespace)"
        );
        let dir = crate::unit_dirs::fresh("netns", "kinds");
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(
            msg(file.to_str().unwrap()),
            "not a network namespace (not a namespace file)"
        );
        assert_eq!(
            msg(dir.to_str().unwrap()),
            "not a network namespace (a directory)"
        );
        assert_eq!(
            msg("/dev/null"),
            "not a network namespace (not a regular file)"
        );
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            msg(fifo.to_str().unwrap()),
            "not a network namespace (not a regular file)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
