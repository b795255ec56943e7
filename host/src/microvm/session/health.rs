//! When a running guest is health-checked, and what the results add up to.
//!
//! The schedule is that of a tokio `interval` with its default
//! missed-tick behaviour (burst), as the supervisor had it: from the setup,
//! a check every `min(interval, 200 ms)` (checks owed while the app was not
//! yet running follow each other at once), then, from the first verdict, a
//! check every `interval`. One check runs at a time.

use crate::microvm::health::{self, Verdict};
use std::time::{Duration, Instant};
use vt_repo::effective::HealthCheck;

/// How often to check until the first verdict.
const EAGER: Duration = Duration::from_millis(200);

/// A health check's schedule and verdict.
#[derive(Debug)]
pub(super) struct HealthSchedule {
    check: HealthCheck,
    verdict: Verdict,
    /// The time between checks once there is a verdict.
    interval: Duration,
    /// The time between checks now.
    period: Duration,
    /// When the next check is due; `None` before the setup and while a
    /// check runs.
    next: Option<Instant>,
    /// When the running check was due.
    running: Option<Instant>,
    /// Whether there was a verdict yet.
    settled: bool,
}

impl HealthSchedule {
    /// The schedule of `check`, not started.
    pub(super) fn new(check: HealthCheck) -> Self {
        let interval = health::interval(&check);
        HealthSchedule {
            check,
            verdict: Verdict::default(),
            interval,
            period: interval.min(EAGER),
            next: None,
            running: None,
            settled: false,
        }
    }

    /// Starts the schedule: the first check is due at `now`.
    pub(super) fn start(&mut self, now: Instant) {
        self.next = Some(now);
    }

    /// When the next check is due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a check is due at `now`; if so, it is now running.
    pub(super) fn begin(&mut self, now: Instant) -> bool {
        match self.next {
            Some(due) if due <= now => {
                self.running = Some(due);
                self.next = None;
                true
            }
            _ => false,
        }
    }

    /// Records the result of the running check, finished at `now`, and
    /// schedules the next one; returns whether the verdict changed.
    pub(super) fn record(&mut self, now: Instant, ok: bool) -> bool {
        let due = self.running.take().unwrap_or(now);
        let changed = self.verdict.record(&self.check, ok);
        if self.verdict.healthy.is_some() && !self.settled {
            self.settled = true;
            self.period = self.interval;
            self.next = Some(now + self.interval);
        } else {
            self.next = Some(due + self.period);
        }
        changed
    }

    /// The verdict: `None` until a threshold was reached.
    pub(super) fn healthy(&self) -> Option<bool> {
        self.verdict.healthy
    }
}
