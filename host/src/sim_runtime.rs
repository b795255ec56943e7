//! A runtime that runs nothing: instances "boot" after a delay and then pass
//! their health check. It lets the controller, the protocol and the CLI be
//! exercised end to end on machines without qemu, until the microVM runtime
//! is used (`vt host run --runtime sim`).

use crate::Runtime;
use std::collections::BTreeMap;
use vt_plan::{InstanceId, Millis, Phase};
use vt_wire::messages::{Assignment, Desire, InstanceReport};

#[derive(Debug, Clone)]
struct SimInstance {
    phase: Phase,
    /// When the next transition happens.
    until: Millis,
}

/// Simulated instances with fixed boot and stop times.
#[derive(Debug, Clone)]
pub struct SimRuntime {
    boot: Millis,
    stop: Millis,
    instances: BTreeMap<InstanceId, SimInstance>,
}

impl SimRuntime {
    /// Instances become healthy `boot` ms after starting and stop `stop` ms after being told.
    pub fn new(boot: Millis, stop: Millis) -> Self {
        SimRuntime {
            boot,
            stop,
            instances: BTreeMap::new(),
        }
    }

    fn stop(&mut self, id: &str, now: Millis) {
        if let Some(inst) = self.instances.get_mut(id) {
            if inst.phase.is_live() {
                inst.phase = Phase::Stopping;
                inst.until = now + self.stop;
            }
        }
    }
}

impl Runtime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn apply(&mut self, assignments: &[Assignment], now: Millis) {
        for a in assignments {
            match a.desire {
                Desire::Run => {
                    self.instances.entry(a.id.clone()).or_insert(SimInstance {
                        phase: Phase::Starting,
                        until: now + self.boot,
                    });
                }
                Desire::Stop => self.stop(&a.id, now),
            }
        }
        let unlisted: Vec<InstanceId> = self
            .instances
            .keys()
            .filter(|id| !assignments.iter().any(|a| &a.id == *id))
            .cloned()
            .collect();
        for id in unlisted {
            self.stop(&id, now);
        }
    }

    fn shutdown(&mut self) {
        // The agent is stopping: every instance stops at the next poll.
        for inst in self.instances.values_mut() {
            if inst.phase.is_live() {
                inst.phase = Phase::Stopping;
                inst.until = 0;
            }
        }
    }

    fn poll(&mut self, now: Millis) -> bool {
        let mut changed = false;
        for inst in self.instances.values_mut() {
            let next = match inst.phase {
                Phase::Starting if now >= inst.until => Phase::Healthy,
                Phase::Stopping if now >= inst.until => Phase::Stopped,
                _ => continue,
            };
            inst.phase = next;
            changed = true;
        }
        changed
    }

    fn report(&mut self) -> Vec<InstanceReport> {
        let out = self
            .instances
            .iter()
            .map(|(id, inst)| InstanceReport {
                id: id.clone(),
                phase: inst.phase,
                detail: None,
                restarts: 0,
                address: None,
                image: None,
            })
            .collect();
        self.instances
            .retain(|_, inst| inst.phase != Phase::Stopped);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::testing::assignment;

    #[test]
    fn instances_boot_then_stop_and_are_forgotten() {
        let mut rt = SimRuntime::new(100, 50);
        rt.apply(&[assignment("i1", Desire::Run)], 0);
        assert!(!rt.poll(50));
        assert!(rt.poll(100));
        assert_eq!(rt.report()[0].phase, Phase::Healthy);
        rt.apply(&[], 200);
        assert_eq!(rt.report()[0].phase, Phase::Stopping);
        assert!(rt.poll(250));
        assert_eq!(rt.report()[0].phase, Phase::Stopped);
        assert!(rt.report().is_empty());
    }

    #[test]
    fn a_shutdown_stops_every_instance_at_the_next_poll() {
        let mut rt = SimRuntime::new(100, 5_000);
        rt.apply(&[assignment("i1", Desire::Run)], 0);
        rt.shutdown();
        assert!(rt.poll(1));
        assert_eq!(rt.report()[0].phase, Phase::Stopped);
    }
}
