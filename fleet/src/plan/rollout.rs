//! The rollout state machine: started, progressing, completed or halted at
//! the progress deadline, decided from the recorded [`RolloutState`] and the
//! workload's replicas now.

use super::{Action, Millis, RolloutState, RolloutStatus, Workload};
use vt_repo::Duration;

/// Where a workload's replicas stand now, over all its regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    /// Healthy instances of the release filling a wanted place.
    pub healthy: u32,
    /// Wanted instances.
    pub wanted: u32,
    /// Every wanted instance is healthy and nothing else is left to do.
    pub complete: bool,
}

/// The rollout's verdict for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gate {
    /// Events that come before the workload's instance actions.
    pub before: Vec<Action>,
    /// Events that come after them.
    pub after: Vec<Action>,
    /// Whether the workload's instances may change.
    pub proceed: bool,
}

/// Advances the rollout of `w`'s release given its record (`None`: not yet
/// started) and its progress at `now`.
pub(super) fn advance(
    w: &Workload,
    state: Option<&RolloutState>,
    progress: &Progress,
    now: Millis,
) -> Gate {
    let mut gate = Gate {
        before: Vec::new(),
        after: Vec::new(),
        proceed: true,
    };
    let key = || w.key.clone();
    let (last_progress, recorded) = match state {
        None => {
            gate.before.push(Action::RolloutStarted {
                key: key(),
                release: w.release,
            });
            (now, 0)
        }
        Some(s) => match s.status {
            RolloutStatus::Completed => return gate,
            RolloutStatus::Halted { .. } => {
                gate.proceed = false;
                return gate;
            }
            RolloutStatus::Progressing => (s.last_progress, s.healthy),
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
        gate.proceed = false;
        gate.after.push(Action::RolloutHalted {
            key: key(),
            release: w.release,
            reason: format!(
                "no further instance of release {} became healthy for {} (progress deadline {deadline}); {} of {} healthy",
                w.release,
                Duration(stalled),
                progress.healthy,
                progress.wanted
            ),
        });
    }
    gate
}
