//! A predicted rollout timeline for `vt diff`: the simulator runs the base
//! of a change on a copy of the fleet's topology until it has converged,
//! then applies the change and records what the unchanged controller core
//! does, step by simulated step, until the change has rolled out.

use crate::fleet::{Sim, SimConfig};
use serde::Serialize;
use vt_control::core::CommitOutcome;
use vt_plan::{Millis, Phase, RolloutStatus};

/// The longest simulated time a rollout is followed.
const HORIZON_MS: Millis = 30 * 60 * 1_000;

/// A host of the simulated fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyHost {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Cpu, in millicores.
    pub cpu: u32,
    /// Memory, in bytes.
    pub memory: u64,
}

/// One line of a predicted timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moment {
    /// Milliseconds after the change is applied.
    pub at_ms: Millis,
    /// What happened (a controller event: `kind: message`).
    pub what: String,
}

/// What the simulator predicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// The seed the simulation ran with (the same seed replays it).
    pub seed: u64,
    /// Simulated boot time range of an instance, in milliseconds.
    pub boot_ms: (Millis, Millis),
    /// When every changed workload had rolled out, if it did within the horizon.
    pub converged_after_ms: Option<Millis>,
    /// What the controller did, in order.
    pub moments: Vec<Moment>,
    /// Why the prediction is partial, if it is (the base did not converge,
    /// the change was rejected).
    pub note: Option<String>,
}

/// Runs `base` then `head` (each the whole repository as (path, content)) on
/// `hosts` and returns the timeline from the moment `head` is applied.
pub fn predict(
    hosts: &[TopologyHost],
    base: &[(String, String)],
    head: &[(String, String)],
    seed: u64,
) -> Prediction {
    let config = SimConfig::default();
    let boot_ms = config.behaviour.boot_ms;
    let mut sim = Sim::with_config(seed, config);
    for h in hosts {
        sim.add_host(&h.name, &h.region, h.cpu, h.memory);
    }
    sim.step(500);
    let mut note = None;
    if !matches!(sim.commit(base), CommitOutcome::Rejected(_))
        && run_until_converged(&mut sim).is_none()
    {
        note = Some("the base state did not converge in the simulation".to_string());
    }
    let start = sim.now();
    let seen = sim.timeline().len();
    let converged_after_ms = match sim.commit(head) {
        CommitOutcome::Rejected(n) => {
            note = Some(format!(
                "the controller would reject the change ({n} problems)"
            ));
            None
        }
        _ => run_until_converged(&mut sim),
    };
    let moments = sim.timeline()[seen..]
        .iter()
        .filter(|e| e.actor == "controller")
        .map(|e| Moment {
            at_ms: e.time.saturating_sub(start),
            what: e.message.clone(),
        })
        .collect();
    Prediction {
        seed,
        boot_ms,
        converged_after_ms,
        moments,
        note,
    }
}

/// Steps until every workload's latest release has completed its rollout and
/// no other instance is live; returns how long that took.
fn run_until_converged(sim: &mut Sim) -> Option<Millis> {
    let start = sim.now();
    let step = sim.config().step_ms;
    while sim.now() - start < HORIZON_MS {
        sim.step(step);
        if converged(sim) {
            return Some(sim.now() - start);
        }
    }
    None
}

fn converged(sim: &Sim) -> bool {
    let c = sim.controller();
    let desired = c.desired();
    let rolled_out = desired.workloads.iter().all(|w| {
        c.rollout(&w.key)
            .is_some_and(|r| r.release == w.release && r.status == RolloutStatus::Completed)
    });
    rolled_out
        && c.instances().iter().all(|i| {
            !(i.instance.phase.is_live() || i.instance.phase == Phase::Stopping)
                || desired
                    .workloads
                    .iter()
                    .any(|w| w.key == i.instance.key && w.release == i.instance.release)
        })
}
