//! SIGTERM and SIGINT as a file descriptor, for the long-running front
//! ends (the installer's watch, the agent's daemon): blocked and read from
//! a signalfd in their poll loop, so they stop between two steps, never in
//! the middle of one.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Blocks SIGTERM and SIGINT on the calling thread and returns a
/// non-blocking signalfd that reads them. Call it before starting threads.
pub fn stop_signals() -> Result<SignalFd, (&'static str, Errno)> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    // A shell's `&` starts its job with SIGINT ignored. That is fine: the
    // kernel never discards a blocked signal as ignored, it queues it for
    // the signalfd. Threads started later inherit the mask.
    mask.thread_block()
        .map_err(|e| ("cannot block signals", e))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| ("signalfd", e))
}

/// The name of a stop signal waiting in `signals`, if one is.
pub fn stop_requested(signals: &SignalFd) -> Option<&'static str> {
    match signals.read_signal() {
        Ok(Some(info)) => Some(
            Signal::try_from(info.ssi_signo as i32)
                .map(|s| s.as_str())
                .unwrap_or("signal"),
        ),
        _ => None,
    }
}
