//! The machinery of the two long-running front ends, the installer's watch
//! loop and the agent's daemon, so that each keeps only its own decisions:
//!
//! - `Timers`: named deadlines, one per kind of work (a pass, a resync, a
//!   reload), instead of an `Option<Instant>` each;
//! - `wait`: one poll over the stop signals and the front end's own
//!   descriptors (inotify, netlink), until the next deadline (`pause`:
//!   the signals alone, for a retry);
//! - `KeepLast`: a config read again keeps the last valid one when the new
//!   text is invalid, and says each refusal once.
//!
//! The "last one out" lock both use is `kernel::presence`.

use crate::kernel::signals::stop_requested;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Named deadlines.
#[derive(Debug)]
pub struct Timers<K> {
    at: BTreeMap<K, Instant>,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Self {
            at: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// `name` is due at `at`, whenever it was due before.
    pub fn set(&mut self, name: K, at: Instant) {
        self.at.insert(name, at);
    }

    /// `name` is due at `at`, or not at all.
    pub fn put(&mut self, name: K, at: Option<Instant>) {
        match at {
            Some(at) => self.set(name, at),
            None => self.cancel(name),
        }
    }

    /// `name` is due at `at` at the latest: an earlier deadline stays.
    pub fn by(&mut self, name: K, at: Instant) {
        let due = self.at.entry(name).or_insert(at);
        *due = (*due).min(at);
    }

    /// `name` is due at `at` unless it is due already (at any time).
    pub fn unless_set(&mut self, name: K, at: Instant) {
        self.at.entry(name).or_insert(at);
    }

    pub fn cancel(&mut self, name: K) {
        self.at.remove(&name);
    }

    /// Whether `name` is due at `now`; if so it is no longer set.
    pub fn take(&mut self, name: K, now: Instant) -> bool {
        let due = self.at.get(&name).is_some_and(|t| *t <= now);
        if due {
            self.at.remove(&name);
        }
        due
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.at.values().min().copied()
    }
}

/// What ended a `wait`.
#[derive(Debug)]
pub struct Woken {
    /// A stop signal's name, when one came.
    pub stop: Option<&'static str>,
    ready: Vec<bool>,
}

impl Woken {
    /// Whether the `i`th of the descriptors given to `wait` is readable.
    pub fn ready(&self, i: usize) -> bool {
        self.ready.get(i).copied().unwrap_or(false)
    }
}

/// Waits until a stop signal, one of `fds` is readable, or `until` (None:
/// no deadline). EINTR is a wake-up with nothing ready.
pub fn wait(
    signals: &SignalFd,
    fds: &[BorrowedFd<'_>],
    until: Option<Instant>,
) -> Result<Woken, Errno> {
    let timeout = match until {
        Some(t) => PollTimeout::try_from(t.saturating_duration_since(Instant::now()))
            .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    let mut polled = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    polled.extend(fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
    match poll(&mut polled, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => {
            return Ok(Woken {
                stop: None,
                ready: vec![false; fds.len()],
            })
        }
        Err(e) => return Err(e),
    }
    let readable = |p: &PollFd| p.any().unwrap_or(false);
    let stop = match readable(&polled[0]) {
        true => stop_requested(signals),
        false => None,
    };
    Ok(Woken {
        stop,
        ready: polled[1..].iter().map(readable).collect(),
    })
}

/// Waits up to `wait` for a stop signal alone; its name if one came. The
/// pause of a loop that retries something (a lock, a join) while it must
/// still stop at once.
pub fn pause(signals: &SignalFd, wait: Duration) -> Option<&'static str> {
    self::wait(signals, &[], Some(Instant::now() + wait))
        .ok()
        .and_then(|woken| woken.stop)
}

/// The config in force, and the refusal last said.
#[derive(Debug)]
pub struct KeepLast<T> {
    pub value: T,
    refused: Option<String>,
}

/// What offering a config read again did.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Valid and different: now in force.
    Changed,
    /// Valid and the same as the one in force.
    Same,
    /// Invalid, for a reason not said before: say it (the last valid one
    /// stays in force).
    Refused(String),
    /// Invalid for the reason said last time: nothing to say again.
    StillRefused,
}

impl<T: PartialEq> KeepLast<T> {
    pub fn new(value: T) -> Self {
        Self {
            value,
            refused: None,
        }
    }

    pub fn offer<E: Display>(&mut self, read: Result<T, E>) -> Offer {
        match read {
            Ok(new) => {
                self.refused = None;
                if new == self.value {
                    return Offer::Same;
                }
                self.value = new;
                Offer::Changed
            }
            Err(e) => {
                let why = e.to_string();
                if self.refused.as_deref() == Some(why.as_str()) {
                    return Offer::StillRefused;
                }
                self.refused = Some(why.clone());
                Offer::Refused(why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum T {
        Pass,
        Resync,
    }

    #[test]
    fn timers_keep_one_deadline_per_name() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.set(T::Resync, t0 + 10 * s);
        timers.by(T::Pass, t0 + 5 * s);
        timers.by(T::Pass, t0 + 7 * s);
        assert_eq!(timers.next(), Some(t0 + 5 * s), "by keeps the earlier");
        timers.unless_set(T::Pass, t0 + s);
        assert_eq!(timers.next(), Some(t0 + 5 * s), "unless_set keeps any");
        assert!(!timers.take(T::Pass, t0 + 4 * s));
        assert!(timers.take(T::Pass, t0 + 5 * s));
        assert!(!timers.take(T::Pass, t0 + 9 * s), "taken");
        assert_eq!(timers.next(), Some(t0 + 10 * s));
        timers.set(T::Resync, t0 + 20 * s);
        assert_eq!(timers.next(), Some(t0 + 20 * s), "set replaces");
        timers.cancel(T::Resync);
        assert_eq!(timers.next(), None);
        timers.put(T::Pass, Some(t0 + 3 * s));
        assert_eq!(timers.next(), Some(t0 + 3 * s));
        timers.put(T::Pass, None);
        assert_eq!(timers.next(), None, "put None cancels");
    }

    #[test]
    fn keep_last_refuses_an_invalid_config_once_and_keeps_the_valid_one() {
        let mut config = KeepLast::new(1);
        assert_eq!(config.offer::<String>(Ok(1)), Offer::Same);
        assert_eq!(
            config.offer(Err("bad field")),
            Offer::Refused("bad field".into())
        );
        assert_eq!(config.offer(Err("bad field")), Offer::StillRefused);
        assert_eq!(config.value, 1, "the last valid one stays");
        assert_eq!(
            config.offer(Err("other")),
            Offer::Refused("other".into()),
            "a new reason is said"
        );
        assert_eq!(config.offer::<String>(Ok(2)), Offer::Changed);
        assert_eq!(config.value, 2);
        // Fixed, then broken the same way again: said again.
        assert_eq!(config.offer(Err("other")), Offer::Refused("other".into()));
    }
}
