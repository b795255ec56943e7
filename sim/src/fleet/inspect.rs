//! Looking at a run: the hosts' truth, the controller's events, the
//! timeline, and a summary for failure messages.

use super::Sim;
use crate::clock::{Entry, EPOCH};
use crate::host::{SimHost, SimInstance, Start};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use vt_plan::events::Event;
use vt_plan::{InstanceId, WorkloadKey};

impl Sim {
    /// A host.
    pub fn host(&self, name: &str) -> Option<&SimHost> {
        self.hosts.get(name)
    }

    /// Every host, by name.
    pub fn hosts(&self) -> impl Iterator<Item = &SimHost> {
        self.hosts.values()
    }

    /// Instances of `key` that the hosts actually have, with their host.
    pub fn on_hosts(&self, key: &WorkloadKey) -> Vec<(&str, &SimInstance)> {
        self.hosts
            .values()
            .flat_map(|h| h.instances().map(move |i| (h.name.as_str(), i)))
            .filter(|(_, i)| i.key.as_ref() == Some(key))
            .collect()
    }

    /// Every controller event recorded so far, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The recorded events of one kind.
    pub fn events_of(&self, kind: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.kind == kind).collect()
    }

    /// What happened, when: the simulator's actions, the hosts' and every
    /// flushed controller event.
    pub fn timeline(&self) -> &[Entry] {
        &self.timeline
    }

    /// Every start of every instance ID, oldest first. An ID is started
    /// again when its host lost it before the controller learnt of it.
    pub fn started(&self) -> &BTreeMap<InstanceId, Vec<Start>> {
        &self.started
    }

    /// The time, the hosts and their instances, the controller's instances
    /// and the end of the timeline, for failure messages.
    pub fn summary(&self) -> String {
        let mut s = format!("seed = {}, t = {}ms\nhosts:\n", self.seed, self.elapsed());
        for h in self.hosts.values() {
            let state = match (h.up, h.partitioned) {
                (false, _) => "down",
                (true, true) => "partitioned",
                (true, false) => "up",
            };
            let (cpu, mem) = h.used();
            let _ = writeln!(
                s,
                "  {} ({}, {state}) uses {cpu}/{}m cpu, {mem}/{} bytes",
                h.name, h.region, h.cpu, h.memory
            );
            for i in h.instances() {
                let _ = writeln!(s, "    {} release {} {:?}", i.id, i.release, i.phase);
            }
        }
        s += "controller:\n";
        for h in self.controller.hosts() {
            let _ = writeln!(
                s,
                "  host {} {:?} last seen {}ms",
                h.host.name,
                h.host.status,
                h.last_seen.saturating_sub(EPOCH)
            );
        }
        for i in self.controller.instances() {
            let inst = &i.instance;
            let _ = writeln!(
                s,
                "  {} {} release {} on {} {:?}",
                inst.id, i.name, inst.release, inst.host, inst.phase
            );
        }
        s += "timeline (last 40):\n";
        for e in &self.timeline[self.timeline.len().saturating_sub(40)..] {
            let _ = writeln!(s, "  {e}");
        }
        s
    }
}

/// An invariant: no host holds more cpu or memory than it offers.
pub fn no_overcommit(sim: &Sim) -> Result<(), String> {
    for h in sim.hosts() {
        let (cpu, memory) = h.used();
        if cpu > u64::from(h.cpu) || memory > h.memory {
            return Err(format!(
                "host {} holds {cpu}m cpu and {memory} bytes of {}m and {}",
                h.name, h.cpu, h.memory
            ));
        }
    }
    Ok(())
}
