//! Exponential backoff with a cap, for the daemons' reconnect and retry
//! loops: the first delay, then each one twice the last, never more than the
//! cap; [`Backoff::reset`] after a success starts over.
//!
//! Not the planner's per-place backoff (`vt_plan::backoff`), which decides
//! from records and the time it is given when a failing place may start an
//! instance again.

use std::time::Duration;

/// Delays that double from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose first delay is `first` and whose delays never exceed
    /// `max` (nor fall below it when `first` is larger).
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.peek();
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    /// The delay [`Backoff::next_delay`] will give, without advancing.
    pub fn peek(&self) -> Duration {
        self.next.min(self.max)
    }

    /// Starts over from the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// The wait between a host's or an edge's sessions with the controller:
/// 100 ms after a session the controller closed, then doubling up to 3 s
/// while sessions keep failing.
#[derive(Debug)]
pub struct Reconnect {
    backoff: Backoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(3)),
        }
    }
}

impl Reconnect {
    /// Logs how the last session ended (`failed` says what a failure means
    /// for this node) and waits before the next one.
    pub async fn after<E: std::error::Error>(&mut self, ended: Result<(), E>, failed: &str) {
        match ended {
            Ok(()) => {
                tracing::info!("the controller closed the session; reconnecting");
                self.backoff.reset();
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), retry_in = ?self.backoff.peek(), "{failed}")
            }
        }
        tokio::time::sleep(self.backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new(ms(100), Duration::from_secs(3));
        let delays: Vec<u64> = (0..8)
            .map(|_| u64::try_from(b.next_delay().as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3000, 3000, 3000]);
    }

    #[test]
    fn peek_does_not_advance_and_reset_starts_over() {
        let mut b = Backoff::new(ms(200), Duration::from_secs(5));
        assert_eq!(b.peek(), ms(200));
        assert_eq!(b.peek(), ms(200));
        assert_eq!(b.next_delay(), ms(200));
        assert_eq!(b.peek(), ms(400));
        b.next_delay();
        b.next_delay();
        assert_eq!(b.peek(), ms(1600));
        b.reset();
        assert_eq!(b.next_delay(), ms(200));
    }

    #[test]
    fn a_first_delay_above_the_cap_is_capped_and_nothing_overflows() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
    }
}
