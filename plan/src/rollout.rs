//! The rollout state machine: started, progressing, completed or halted at
//! the progress deadline, decided from the recorded [`RolloutState`] and the
//! workload's replicas now.

use super::{Action, Backoff, Millis, RolloutState, RolloutStatus, Workload};
use vt_repo::Duration;

/// Where a workload's replicas stand now, over all its regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress<'a> {
    /// Healthy instances of the release filling a wanted place.
    pub healthy: u32,
    /// Instances of the release filling a wanted place, still pending or starting.
    pub starting: u32,
    /// Wanted instances.
    pub wanted: u32,
    /// Every wanted instance is healthy and nothing else is left to do.
    pub complete: bool,
    /// The latest failure of the release's instances before they became
    /// healthy, if a place backs off.
    pub last_failure: Option<&'a Backoff>,
}

/// How the workload's instances may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Rolling out: the strategy's rules.
    Roll,
    /// Halted: no rollout progress, only repairs.
    Repair,
}

/// The rollout's verdict for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gate {
    /// Events that come before the workload's instance actions.
    pub before: Vec<Action>,
    /// Events that come after them.
    pub after: Vec<Action>,
    /// How the workload's instances may change.
    pub mode: Mode,
}

/// Advances the rollout of `w`'s release given its record (`None`: not yet
/// started) and its progress at `now`.
///
/// A halted rollout stays halted (repairs only) until its release completes
/// (`RolloutCompleted`) or more of its instances are healthy than recorded
/// (`RolloutProgressed`): it then rolls on. The controller records progress
/// without changing the status, so a `Halted` record whose last progress is
/// within the deadline is one that resumed: it rolls, and is halted again
/// (without a second event) once the deadline passes with no progress.
pub(super) fn advance(
    w: &Workload,
    state: Option<&RolloutState>,
    progress: &Progress<'_>,
    now: Millis,
) -> Gate {
    let mut gate = Gate {
        before: Vec::new(),
        after: Vec::new(),
        mode: Mode::Roll,
    };
    let key = || w.key.clone();
    let (last_progress, recorded, halted) = match state {
        None => {
            gate.before.push(Action::RolloutStarted {
                key: key(),
                release: w.release,
            });
            (now, 0, false)
        }
        Some(s) => match s.status {
            RolloutStatus::Completed => return gate,
            RolloutStatus::Halted { .. } => (s.last_progress, s.healthy, true),
            RolloutStatus::Progressing => (s.last_progress, s.healthy, false),
        },
    };
    let stalled = now.saturating_sub(last_progress);
    let deadline = w.spec.rollout.progress_deadline;
    if progress.complete {
        gate.after.push(Action::RolloutCompleted {
            key: key(),
            release: w.release,
        });
    } else if progress.healthy > recorded {
        gate.after.push(Action::RolloutProgressed {
            key: key(),
            release: w.release,
            healthy: progress.healthy,
        });
    } else if stalled > deadline.0 {
        gate.mode = Mode::Repair;
        if !halted {
            let starting = match progress.starting {
                0 => String::new(),
                n => format!(", {n} still starting"),
            };
            let failure = progress.last_failure.map_or_else(String::new, |b| {
                format!("; last failure ({} in a row): {}", b.failures, b.reason)
            });
            gate.after.push(Action::RolloutHalted {
                key: key(),
                release: w.release,
                reason: format!(
                    "no further instance of release {} became healthy for {} (progress deadline {deadline}); {} of {} healthy{starting}{failure}",
                    w.release,
                    Duration(stalled),
                    progress.healthy,
                    progress.wanted
                ),
            });
        }
    }
    gate
}

/// The rollout record of a workload after `action` at `now`, given its
/// record before (`current`): what [`RolloutState`] documents, kept in one
/// place for the controller and the preview. `RolloutStarted` makes a new
/// record; `RolloutProgressed` moves `last_progress` and `healthy` and
/// resumes a halted rollout; `RolloutCompleted` and `RolloutHalted` set the
/// status. `None` when `action` is not a rollout action or has no record to
/// update.
pub fn record_rollout(
    current: Option<&RolloutState>,
    action: &Action,
    now: Millis,
) -> Option<RolloutState> {
    match action {
        Action::RolloutStarted { key, release } => Some(RolloutState {
            key: key.clone(),
            release: *release,
            started: now,
            last_progress: now,
            healthy: 0,
            status: RolloutStatus::Progressing,
        }),
        Action::RolloutProgressed { healthy, .. } => current.map(|c| RolloutState {
            last_progress: now,
            healthy: *healthy,
            status: RolloutStatus::Progressing,
            ..c.clone()
        }),
        Action::RolloutCompleted { .. } => current.map(|c| RolloutState {
            status: RolloutStatus::Completed,
            ..c.clone()
        }),
        Action::RolloutHalted { reason, .. } => current.map(|c| RolloutState {
            status: RolloutStatus::Halted {
                reason: reason.clone(),
            },
            ..c.clone()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReleaseNo, WorkloadKey};

    #[test]
    fn records_start_progress_halt_resume_and_completion() {
        let key = WorkloadKey::default();
        let started = Action::RolloutStarted {
            key: key.clone(),
            release: ReleaseNo::new(2),
        };
        let s = record_rollout(None, &started, 10).unwrap_or_else(|| panic!("a record"));
        assert_eq!((s.started, s.last_progress, s.healthy), (10, 10, 0));
        let halted = Action::RolloutHalted {
            key: key.clone(),
            release: ReleaseNo::new(2),
            reason: "stuck".into(),
        };
        let h = record_rollout(Some(&s), &halted, 20).unwrap_or_else(|| panic!("a record"));
        assert!(matches!(h.status, RolloutStatus::Halted { .. }));
        assert_eq!(h.last_progress, 10, "a halt is not progress");
        let progressed = Action::RolloutProgressed {
            key: key.clone(),
            release: ReleaseNo::new(2),
            healthy: 1,
        };
        let p = record_rollout(Some(&h), &progressed, 30).unwrap_or_else(|| panic!("a record"));
        assert_eq!(
            (p.status.clone(), p.last_progress, p.healthy),
            (RolloutStatus::Progressing, 30, 1),
            "progress after a halt resumes the rollout"
        );
        let done = Action::RolloutCompleted {
            key,
            release: ReleaseNo::new(2),
        };
        assert_eq!(
            record_rollout(Some(&p), &done, 40).map(|c| c.status),
            Some(RolloutStatus::Completed)
        );
        assert_eq!(record_rollout(None, &done, 40), None);
    }
}
