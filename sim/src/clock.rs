//! Simulated time and the timeline of what happened when.

use std::fmt;
use vt_plan::Millis;

/// Where simulated time starts: a plausible Unix time in milliseconds
/// (2023-11-14), since the controller stamps events with Unix time.
pub const EPOCH: Millis = 1_700_000_000_000;

/// The simulated clock. It only moves when the simulator steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    now: Millis,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { now: EPOCH }
    }
}

impl Clock {
    /// The current time.
    pub fn now(self) -> Millis {
        self.now
    }

    /// Time since the start of the run.
    pub fn elapsed(self) -> Millis {
        self.now - EPOCH
    }

    /// Moves time forward by `dt` milliseconds.
    pub fn advance(&mut self, dt: Millis) {
        self.now = self.now.saturating_add(dt);
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When, in simulated Unix milliseconds.
    pub time: Millis,
    /// Who: `controller`, `sim`, or a host name.
    pub actor: String,
    /// What happened; for the controller, `<event kind>: <event message>`.
    pub message: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.time.saturating_sub(EPOCH);
        write!(
            f,
            "{:>4}.{:03}s {}: {}",
            t / 1000,
            t % 1000,
            self.actor,
            self.message
        )
    }
}
