//! Backing off when another writer keeps taking our entry out.
//!
//! A primary CNI that restarts rewrites its file once or twice; we put the
//! entry back at once. A writer that does it over and over (another
//! installer that owns the file, a config management loop) would make us
//! rewrite the file many times a second; after `limit` writes within
//! `window` we wait between writes, doubling the wait up to `max`, and say
//! so in the log.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    limit: usize,
    min: Duration,
    max: Duration,
    writes: VecDeque<Instant>,
    backoff: Duration,
    not_before: Option<Instant>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(
            Duration::from_secs(10),
            5,
            Duration::from_secs(2),
            Duration::from_secs(16),
        )
    }
}

impl Throttle {
    pub fn new(window: Duration, limit: usize, min: Duration, max: Duration) -> Self {
        Self {
            window,
            limit,
            min,
            max,
            writes: VecDeque::new(),
            backoff: Duration::ZERO,
            not_before: None,
        }
    }

    /// The earliest time the next write may happen (None: now).
    pub fn not_before(&self, now: Instant) -> Option<Instant> {
        self.not_before.filter(|t| *t > now)
    }

    /// Records a write; returns a warning when it starts or widens a
    /// back-off. Once backing off, every further write widens it, until
    /// `settled` sees the entry stay in place for a whole window.
    pub fn record(&mut self, now: Instant) -> Option<String> {
        self.writes.push_back(now);
        while self
            .writes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.writes.pop_front();
        }
        if self.backoff.is_zero() && self.writes.len() <= self.limit {
            return None;
        }
        self.backoff = if self.backoff.is_zero() {
            self.min
        } else {
            (self.backoff * 2).min(self.max)
        };
        self.not_before = Some(now + self.backoff);
        Some(format!(
            "another writer keeps removing or changing the csum-offload entry ({} rewrites in {}s); \
             is a second installer or config manager editing this file? re-adding at most every {}s",
            self.writes.len(),
            self.window.as_secs(),
            self.backoff.as_secs()
        ))
    }

    /// Called when the entry was found in place: after a whole window
    /// without a write, the fight is over.
    pub fn settled(&mut self, now: Instant) {
        if self
            .writes
            .back()
            .is_some_and(|last| now.duration_since(*last) >= self.window)
        {
            self.writes.clear();
            self.backoff = Duration::ZERO;
            self.not_before = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_or_two_is_not_throttled() {
        let mut t = Throttle::default();
        let start = Instant::now();
        for i in 0..5 {
            assert!(t.record(start + Duration::from_millis(100 * i)).is_none());
        }
        assert!(t.not_before(start + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn a_fight_backs_off_doubling_up_to_the_max() {
        let mut t = Throttle::default();
        let start = Instant::now();
        let mut now = start;
        for _ in 0..5 {
            assert!(t.record(now).is_none());
            now += Duration::from_millis(50);
        }
        let mut waits = Vec::new();
        for _ in 0..6 {
            let warning = t.record(now).expect("throttled");
            assert!(warning.contains("another writer"), "{warning}");
            let next = t.not_before(now).unwrap();
            waits.push(next.duration_since(now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn calm_resets_the_back_off() {
        let mut t = Throttle::default();
        let mut now = Instant::now();
        for _ in 0..7 {
            t.record(now);
            now += Duration::from_millis(10);
        }
        now += Duration::from_secs(5);
        t.settled(now);
        assert!(t.record(now).is_some(), "not calm for a window yet");
        now += Duration::from_secs(11);
        t.settled(now);
        assert!(t.not_before(now).is_none());
        assert!(t.record(now).is_none());
        assert!(t.not_before(now).is_none());
    }
}
