//! Backoff of places whose instances keep failing before they become
//! healthy: when the next instance may start, decided from the recorded
//! [`Backoff`] and `now`.
//!
//! A *place* is one volume slot of a workload with volumes, or one region of
//! a stateless workload (its instances are interchangeable). Each retry round
//! doubles the delay, from [`FIRST_DELAY`] up to [`MAX_DELAY`], plus up to a
//! tenth of jitter drawn from the place's identity and failure count: the
//! same inputs always give the same time (the planner stays deterministic),
//! but places that fail together do not retry in lockstep.

use super::{Backoff, Millis, WorkloadKey};
use std::fmt;
use vt_repo::Duration;

/// Delay after the first failure.
pub const FIRST_DELAY: Millis = 1_000;
/// Longest delay between two tries.
pub const MAX_DELAY: Millis = 5 * 60 * 1_000;

/// The delay before retry round `rounds + 1`, jitter included.
pub fn delay(b: &Backoff) -> Millis {
    let doublings = b.rounds.saturating_sub(1).min(20);
    let base = FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
    base.saturating_add(jitter(b, base / 10))
}

/// When the place may start an instance again.
pub fn retry_at(b: &Backoff) -> Millis {
    b.last_failure.saturating_add(delay(b))
}

/// Whether the place must still wait at `now`.
pub fn holds(b: &Backoff, now: Millis) -> bool {
    b.rounds > 0 && now < retry_at(b)
}

/// A deterministic draw in `0..=span` from the place and its failure count
/// (FNV-1a: stable across builds, unlike the standard library's hasher).
fn jitter(b: &Backoff, span: Millis) -> Millis {
    if span == 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let slot = b.slot.map_or(u64::MAX, u64::from);
    let parts = [
        b.key.app_id.as_bytes(),
        b.key.env_id.as_bytes(),
        b.region.as_bytes(),
        &slot.to_le_bytes(),
        &b.failures.to_le_bytes(),
    ];
    for byte in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % span.saturating_add(1)
}

/// The place a backoff record belongs to, for lookups.
pub(super) fn place_of(b: &Backoff) -> (&WorkloadKey, &str, Option<u32>) {
    (&b.key, b.region.as_str(), b.slot)
}

/// "3 failures in a row; next try in 4s: pulling …: not found", as of `now`.
pub struct Summary<'a> {
    /// The record.
    pub backoff: &'a Backoff,
    /// The time to count from.
    pub now: Millis,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.backoff;
        let times = match b.failures {
            1 => "failed once".to_string(),
            n => format!("failed {n} times in a row"),
        };
        let place = b.slot.map_or_else(
            || format!("region {}", b.region),
            |s| format!("slot {s} in region {}", b.region),
        );
        let next = if b.rounds == 0 {
            "restarted in place by its host".to_string()
        } else {
            match retry_at(b).checked_sub(self.now) {
                Some(wait) if wait > 0 => format!("next try in {}", Duration(round_up(wait))),
                _ => "retrying now".to_string(),
            }
        };
        write!(
            f,
            "{place}: release {} {times} before becoming healthy; {next}: {}",
            b.release, b.reason
        )
    }
}

/// Whole seconds, rounded up, for people.
fn round_up(ms: Millis) -> Millis {
    ms.div_ceil(1_000).saturating_mul(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReleaseNo;

    fn record(rounds: u32, failures: u32) -> Backoff {
        Backoff {
            key: WorkloadKey {
                app_id: "app_1".into(),
                env_id: "env_1".into(),
            },
            release: ReleaseNo::new(2),
            region: "r1".into(),
            slot: None,
            failures,
            rounds,
            last_failure: 10_000,
            reason: "pulling x: not found".into(),
        }
    }

    #[test]
    fn the_delay_doubles_up_to_five_minutes_with_a_tenth_of_jitter() {
        let mut last = 0;
        for rounds in 1..=30 {
            let d = delay(&record(rounds, rounds));
            let base = (FIRST_DELAY << (rounds - 1).min(20)).min(MAX_DELAY);
            assert!(
                (base..=base + base / 10).contains(&d),
                "round {rounds}: {d}"
            );
            assert!(d >= last || base == MAX_DELAY);
            last = d;
        }
        assert!(delay(&record(u32::MAX, u32::MAX)) <= MAX_DELAY + MAX_DELAY / 10);
    }

    #[test]
    fn it_holds_until_the_retry_time_and_not_without_a_round() {
        let b = record(3, 3);
        let at = retry_at(&b);
        assert!((14_000..=14_400).contains(&at), "{at}");
        assert!(holds(&b, at - 1));
        assert!(!holds(&b, at));
        assert!(!holds(&record(0, 4), 10_001));
    }

    #[test]
    fn the_jitter_is_deterministic_and_varies_by_place() {
        let a = record(5, 5);
        assert_eq!(delay(&a), delay(&a.clone()));
        let spread: std::collections::BTreeSet<Millis> = (0..20)
            .map(|n| {
                let mut b = record(5, 5);
                b.region = format!("r{n}");
                delay(&b)
            })
            .collect();
        assert!(spread.len() > 5, "{spread:?}");
    }

    #[test]
    fn the_summary_says_how_often_when_and_why() {
        let b = record(6, 6);
        let text = Summary {
            backoff: &b,
            now: 10_000,
        }
        .to_string();
        assert!(
            text.starts_with("region r1: release 2 failed 6 times in a row before becoming healthy; next try in 3"),
            "{text}"
        );
        assert!(text.ends_with(": pulling x: not found"), "{text}");
    }
}
