//! Lookups over [`Observed`]: hosts by ID, instances by workload, volume
//! locations and rollout records, each in a deterministic order.

use super::{Host, HostStatus, Instance, Observed, RolloutState, WorkloadKey};
use std::collections::{BTreeMap, BTreeSet};

/// Volume slots are keyed by workload, region and slot number.
type SlotKey<'a> = (&'a WorkloadKey, &'a str, u32);

/// Indexes over one [`Observed`]. Where an input lists something twice
/// (a host ID, a slot's volumes, a rollout), the first entry wins.
pub(super) struct Index<'a> {
    hosts: BTreeMap<&'a str, &'a Host>,
    instances: BTreeMap<&'a WorkloadKey, Vec<&'a Instance>>,
    volumes: BTreeMap<SlotKey<'a>, &'a str>,
    rollouts: BTreeMap<(&'a WorkloadKey, u64), &'a RolloutState>,
}

impl<'a> Index<'a> {
    pub(super) fn new(observed: &'a Observed) -> Self {
        let mut hosts = BTreeMap::new();
        for h in &observed.hosts {
            hosts.entry(h.id.as_str()).or_insert(h);
        }
        let mut instances: BTreeMap<_, Vec<&Instance>> = BTreeMap::new();
        for i in &observed.instances {
            instances.entry(&i.key).or_default().push(i);
        }
        for list in instances.values_mut() {
            list.sort_by(|a, b| (&a.id, a.since).cmp(&(&b.id, b.since)));
        }
        let mut volumes = BTreeMap::new();
        for v in &observed.volumes {
            volumes
                .entry((&v.key, v.region.as_str(), v.slot))
                .or_insert(v.host.as_str());
        }
        // A slot with no recorded placement lives where its latest instance
        // was: the greatest ID, as IDs are minted in increasing order (a
        // longer ID counts as greater, for counters that outgrow their padding).
        let mut latest: BTreeMap<SlotKey, &Instance> = BTreeMap::new();
        for i in &observed.instances {
            let Some(slot) = i.slot else { continue };
            let entry = latest.entry((&i.key, i.region.as_str(), slot)).or_insert(i);
            if (i.id.len(), &i.id) > (entry.id.len(), &entry.id) {
                *entry = i;
            }
        }
        for (slot, i) in latest {
            volumes.entry(slot).or_insert(i.host.as_str());
        }
        let mut rollouts = BTreeMap::new();
        for r in &observed.rollouts {
            rollouts.entry((&r.key, r.release)).or_insert(r);
        }
        Index {
            hosts,
            instances,
            volumes,
            rollouts,
        }
    }

    /// The host with this ID, if it is `Ready`.
    pub(super) fn ready_host(&self, id: &str) -> Option<&'a Host> {
        self.hosts
            .get(id)
            .copied()
            .filter(|h| h.status == HostStatus::Ready)
    }

    /// Whether the instance's host is known and `Ready`.
    pub(super) fn reachable(&self, inst: &Instance) -> bool {
        self.ready_host(&inst.host).is_some()
    }

    /// A host for people: "host web-1", "lost host web-1", "unknown host h9".
    pub(super) fn describe_host(&self, id: &str) -> String {
        match self.hosts.get(id) {
            Some(h) if h.status == HostStatus::Ready => format!("host {}", h.name),
            Some(h) => format!("lost host {}", h.name),
            None => format!("unknown host {id}"),
        }
    }

    /// Every host of a region, in ID order.
    pub(super) fn hosts_in<'s>(&'s self, region: &'s str) -> impl Iterator<Item = &'a Host> + 's {
        self.hosts
            .values()
            .copied()
            .filter(move |h| h.region == region)
    }

    /// The instances of a workload, in ID order.
    pub(super) fn instances(&self, key: &WorkloadKey) -> &[&'a Instance] {
        self.instances.get(key).map_or(&[], Vec::as_slice)
    }

    /// Live instances of workloads that are not desired, in ID order.
    pub(super) fn live_orphans(&self, desired: impl Fn(&WorkloadKey) -> bool) -> Vec<&'a Instance> {
        let mut orphans: Vec<&Instance> = self
            .instances
            .iter()
            .filter(|(key, _)| !desired(key))
            .flat_map(|(_, list)| list.iter().copied())
            .filter(|i| i.phase.is_live())
            .collect();
        orphans.sort_by(|a, b| a.id.cmp(&b.id));
        orphans
    }

    /// Live instances of a workload in regions it no longer runs in, in ID order.
    pub(super) fn live_outside(
        &self,
        key: &WorkloadKey,
        regions: &BTreeSet<&str>,
    ) -> Vec<&'a Instance> {
        self.instances(key)
            .iter()
            .copied()
            .filter(|i| i.phase.is_live() && !regions.contains(i.region.as_str()))
            .collect()
    }

    /// The host ID that holds the volumes of a slot, if they exist.
    pub(super) fn volume_host(
        &self,
        key: &'a WorkloadKey,
        region: &'a str,
        slot: u32,
    ) -> Option<&'a str> {
        self.volumes.get(&(key, region, slot)).copied()
    }

    /// The rollout record of a release.
    pub(super) fn rollout(&self, key: &'a WorkloadKey, release: u64) -> Option<&'a RolloutState> {
        self.rollouts.get(&(key, release)).copied()
    }
}
