//! The waker's rate limits, per workspace: one start every
//! `WAKE_INTERVAL` (the requests of one burst start it once; the cache
//! may not show the start for a moment), and at most `MAX_FAILURES` wrong
//! credentials a minute (guessing a login through the waker is no faster
//! than through the dashboard); and across all workspaces at most
//! `MAX_WAKES_PER_MINUTE` starts a minute, so a flood of valid requests
//! cannot start every workspace of the cluster at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WAKE_INTERVAL: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(60);
const MAX_FAILURES: u32 = 20;
const MAX_WAKES_PER_MINUTE: u32 = 120;

/// Whether a start may go ahead.
#[derive(Debug, PartialEq)]
pub enum Wake {
    Now,
    /// Started moments ago: this request is one of the same burst.
    JustStarted,
    /// Too many workspaces started in the last minute.
    Busy,
}

#[derive(Default)]
pub struct Limits {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    last_wake: HashMap<String, Instant>,
    /// Per workspace: when its window began, and the failures in it.
    failures: HashMap<String, (Instant, u32)>,
    /// All workspaces: when the window began, and the starts in it.
    wakes: Option<(Instant, u32)>,
}

impl Limits {
    /// Whether `workspace` may be started now (and note that it is).
    pub fn may_wake(&self, workspace: &str) -> Wake {
        self.may_wake_at(workspace, Instant::now())
    }

    fn may_wake_at(&self, workspace: &str, now: Instant) -> Wake {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner
            .last_wake
            .get(workspace)
            .is_some_and(|t| now.duration_since(*t) < WAKE_INTERVAL)
        {
            return Wake::JustStarted;
        }
        let (start, count) = match inner.wakes {
            Some((start, count)) if now.duration_since(start) < WINDOW => (start, count),
            _ => (now, 0),
        };
        if count >= MAX_WAKES_PER_MINUTE {
            return Wake::Busy;
        }
        inner.wakes = Some((start, count + 1));
        inner
            .last_wake
            .retain(|_, t| now.duration_since(*t) < WAKE_INTERVAL);
        inner.last_wake.insert(workspace.to_string(), now);
        Wake::Now
    }

    /// Note a wrong credential for `workspace`; false once it had too many.
    pub fn may_fail(&self, workspace: &str) -> bool {
        self.may_fail_at(workspace, Instant::now())
    }

    fn may_fail_at(&self, workspace: &str, now: Instant) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .failures
            .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        let entry = inner
            .failures
            .entry(workspace.to_string())
            .or_insert((now, 0));
        entry.1 += 1;
        entry.1 <= MAX_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_is_started_once_per_interval_and_all_at_a_bounded_rate() {
        let limits = Limits::default();
        let t0 = Instant::now();
        assert_eq!(limits.may_wake_at("alice", t0), Wake::Now);
        let soon = t0 + Duration::from_millis(500);
        assert_eq!(limits.may_wake_at("alice", soon), Wake::JustStarted);
        assert_eq!(limits.may_wake_at("bob", soon), Wake::Now);
        assert_eq!(limits.may_wake_at("alice", t0 + WAKE_INTERVAL), Wake::Now);

        let limits = Limits::default();
        for i in 0..MAX_WAKES_PER_MINUTE {
            assert_eq!(limits.may_wake_at(&format!("w{i}"), t0), Wake::Now);
        }
        assert_eq!(limits.may_wake_at("one-more", t0), Wake::Busy);
        assert_eq!(limits.may_wake_at("one-more", t0 + WINDOW), Wake::Now);
    }

    #[test]
    fn wrong_credentials_are_limited_per_workspace_and_minute() {
        let limits = Limits::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(limits.may_fail_at("alice", t0));
        }
        assert!(!limits.may_fail_at("alice", t0));
        assert!(
            limits.may_fail_at("bob", t0),
            "another workspace is not held up"
        );
        assert!(limits.may_fail_at("alice", t0 + WINDOW));
    }
}
