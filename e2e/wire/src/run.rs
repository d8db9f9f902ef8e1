//! What every tool here shares: bounded run time and frame count, a clean
//! stop on SIGINT/SIGTERM, and a tiny argument reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM end the loop at the next poll (within 100 ms).
pub fn install_stop_signals() {
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// The hard upper bound for --seconds: a day, as long as the local
/// cluster's cable (e2e/k8s) may run; every loop still ends by itself.
pub const MAX_SECONDS: u64 = 86_400;

/// Why a loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Signal,
    Deadline,
    MaxFrames,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Signal => "signal",
            Stop::Deadline => "time limit",
            Stop::MaxFrames => "frame limit",
        })
    }
}

pub struct Limits {
    deadline: Instant,
    max_frames: u64,
}

impl Limits {
    pub fn new(seconds: u64, max_frames: u64) -> Self {
        Self {
            deadline: Instant::now() + Duration::from_secs(seconds.min(MAX_SECONDS)),
            max_frames,
        }
    }

    /// Some(reason) once the loop must end.
    pub fn reached(&self, frames: u64) -> Option<Stop> {
        if STOP.load(Ordering::SeqCst) {
            Some(Stop::Signal)
        } else if Instant::now() >= self.deadline {
            Some(Stop::Deadline)
        } else if frames >= self.max_frames {
            Some(Stop::MaxFrames)
        } else {
            None
        }
    }
}

/// `--name value` arguments; every tool here takes only those.
pub struct Args(Vec<(String, String)>);

impl Args {
    pub fn parse(usage: &str) -> Result<Self, String> {
        let mut raw = std::env::args().skip(1);
        let mut pairs = Vec::new();
        while let Some(name) = raw.next() {
            if name == "-h" || name == "--help" {
                println!("{usage}");
                std::process::exit(0);
            }
            if !name.starts_with("--") {
                return Err(format!("unexpected argument {name:?}\n{usage}"));
            }
            let value = raw
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{usage}"))?;
            pairs.push((name[2..].to_string(), value));
        }
        Ok(Self(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} must be a number, got {v:?}")),
        }
    }

    /// Fails on names the tool does not know.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            Some((n, _)) => Err(format!("unknown option --{n}")),
            None => Ok(()),
        }
    }
}
