//! Draining: when the controller stops an instance (a rollout replacing it,
//! a scale-down, its env removed), edges stop sending it new connections
//! (the routing table drops it, and the host refuses new tunnel streams to
//! it), but its established connections get a grace period. [`Drainer`]
//! decides which instances the agent keeps running a little longer: pure,
//! given the assignments, the open connection counts and the time.

use std::collections::{BTreeMap, BTreeSet};
use vt_plan::{InstanceId, Millis};
use vt_wire::messages::{Assignment, Desire};

/// The instances held back from stopping while their connections finish.
#[derive(Debug, Clone, Default)]
pub struct Drainer {
    grace: Millis,
    /// Held instance → (deadline, the assignment that ran it).
    held: BTreeMap<InstanceId, (Millis, Assignment)>,
}

impl Drainer {
    /// A drainer that waits at most `grace` ms for connections to finish.
    pub fn new(grace: Millis) -> Drainer {
        Drainer {
            grace,
            held: BTreeMap::new(),
        }
    }

    /// What to apply: the controller's `wanted` list, except that instances
    /// `applied` ran and `wanted` stops or no longer lists keep running while
    /// `open` says they have connections, until their grace period ends.
    pub fn filter(
        &mut self,
        wanted: &[Assignment],
        applied: &[Assignment],
        open: impl Fn(&str) -> u64,
        now: Millis,
    ) -> Vec<Assignment> {
        let mut out: Vec<Assignment> = Vec::with_capacity(wanted.len());
        let mut still_held = BTreeMap::new();
        for was in applied.iter().filter(|a| a.desire == Desire::Run) {
            let now_wanted = wanted.iter().find(|w| w.id == was.id);
            if now_wanted.is_some_and(|w| w.desire == Desire::Run) {
                continue;
            }
            let deadline = self.held.get(&was.id).map_or(now + self.grace, |(d, _)| *d);
            if open(&was.id) > 0 && now < deadline {
                still_held.insert(was.id.clone(), (deadline, was.clone()));
            }
        }
        for w in wanted {
            match still_held.get(&w.id) {
                Some((_, running)) => out.push(running.clone()),
                None => out.push(w.clone()),
            }
        }
        for (id, (_, running)) in &still_held {
            if !wanted.iter().any(|w| &w.id == id) {
                out.push(running.clone());
            }
        }
        self.held = still_held;
        out
    }

    /// Instances being drained: they must not get new connections.
    pub fn draining(&self) -> BTreeSet<InstanceId> {
        self.held.keys().cloned().collect()
    }

    /// Whether any instance is held (the agent then re-filters as time passes).
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::testing::assignment;

    fn desires(list: &[Assignment]) -> Vec<(InstanceId, Desire)> {
        list.iter().map(|a| (a.id.clone(), a.desire)).collect()
    }

    #[test]
    fn a_stopped_instance_with_connections_runs_until_they_end_or_grace_passes() {
        let mut d = Drainer::new(1_000);
        let applied = vec![assignment("old", Desire::Run)];
        let wanted = vec![
            assignment("old", Desire::Stop),
            assignment("new", Desire::Run),
        ];
        let out = d.filter(&wanted, &applied, |_| 2, 0);
        assert_eq!(
            desires(&out),
            [("old".into(), Desire::Run), ("new".into(), Desire::Run)]
        );
        assert_eq!(d.draining(), BTreeSet::from([InstanceId::from("old")]));
        // Still open before the deadline: still held, same deadline.
        let out2 = d.filter(&wanted, &out, |_| 1, 999);
        assert_eq!(desires(&out2)[0], ("old".into(), Desire::Run));
        // Deadline reached: the controller's word stands.
        let out3 = d.filter(&wanted, &out2, |_| 1, 1_000);
        assert_eq!(desires(&out3)[0], ("old".into(), Desire::Stop));
        assert!(!d.is_holding());
    }

    #[test]
    fn idle_instances_stop_at_once_and_unlisted_ones_are_held_too() {
        let mut d = Drainer::new(5_000);
        let applied = vec![assignment("a", Desire::Run), assignment("b", Desire::Run)];
        let out = d.filter(&[], &applied, |id| u64::from(id == "b"), 0);
        assert_eq!(desires(&out), [("b".into(), Desire::Run)]);
        let out = d.filter(&[], &out, |_| 0, 10);
        assert!(out.is_empty());
    }
}
