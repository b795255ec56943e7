//! Lookups over [`Observed`]: hosts by ID, instances by workload, volume
//! locations and rollout records, each in a deterministic order.

use super::backoff::place_of;
use super::{Backoff, Host, HostStatus, Instance, Observed, ReleaseNo, RolloutState, WorkloadKey};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Volume slots are keyed by workload, region and slot number.
type SlotKey<'a> = (&'a WorkloadKey, &'a str, u32);

/// A host's position in ID order among the distinct hosts of an [`Index`]:
/// the scheduler keeps its per-host tallies in vectors by this number.
pub(super) type HostNo = usize;

/// Indexes over one [`Observed`]. Where an input lists something twice
/// (a host ID, a slot's volumes, a rollout), the first entry wins.
pub(super) struct Index<'a> {
    /// Distinct hosts in ID order; a host's position is its [`HostNo`].
    hosts: Vec<&'a Host>,
    /// Host ID to [`HostNo`].
    host_nos: HashMap<&'a str, HostNo>,
    /// Each region's hosts, in ID order.
    regions: BTreeMap<&'a str, Vec<HostNo>>,
    instances: BTreeMap<&'a WorkloadKey, Vec<&'a Instance>>,
    volumes: BTreeMap<SlotKey<'a>, &'a str>,
    rollouts: BTreeMap<(&'a WorkloadKey, ReleaseNo), &'a RolloutState>,
    backoffs: BTreeMap<(&'a WorkloadKey, &'a str, Option<u32>), &'a Backoff>,
}

impl<'a> Index<'a> {
    pub(super) fn new(observed: &'a Observed) -> Self {
        let mut by_id = BTreeMap::new();
        for h in &observed.hosts {
            by_id.entry(h.id.as_str()).or_insert(h);
        }
        let hosts: Vec<&Host> = by_id.into_values().collect();
        let host_nos = hosts
            .iter()
            .enumerate()
            .map(|(n, h)| (h.id.as_str(), n))
            .collect();
        let mut regions: BTreeMap<&str, Vec<HostNo>> = BTreeMap::new();
        for (n, h) in hosts.iter().enumerate() {
            regions.entry(h.region.as_str()).or_default().push(n);
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
        let mut backoffs = BTreeMap::new();
        for b in &observed.backoffs {
            backoffs.entry(place_of(b)).or_insert(b);
        }
        Index {
            backoffs,
            hosts,
            host_nos,
            regions,
            instances,
            volumes,
            rollouts,
        }
    }

    /// How many distinct hosts there are: [`HostNo`]s are below this.
    pub(super) fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// The number of the host with this ID, if it is known.
    pub(super) fn host_no(&self, id: &str) -> Option<HostNo> {
        self.host_nos.get(id).copied()
    }

    /// The host with this ID, if it is known.
    fn host(&self, id: &str) -> Option<&'a Host> {
        self.host_no(id).map(|n| self.hosts[n])
    }

    /// The host with this ID and its number, if it is `Ready`.
    pub(super) fn ready_host_no(&self, id: &str) -> Option<(HostNo, &'a Host)> {
        let n = self.host_no(id)?;
        let h = self.hosts[n];
        (h.status == HostStatus::Ready).then_some((n, h))
    }

    /// The host with this ID, if it is `Ready`.
    pub(super) fn ready_host(&self, id: &str) -> Option<&'a Host> {
        self.ready_host_no(id).map(|(_, h)| h)
    }

    /// Whether the instance's host is known and `Ready`.
    pub(super) fn reachable(&self, inst: &Instance) -> bool {
        self.ready_host(&inst.host).is_some()
    }

    /// A host for people: "host web-1", "lost host web-1", "unknown host h9".
    pub(super) fn describe_host(&self, id: &str) -> String {
        match self.host(id) {
            Some(h) if h.status == HostStatus::Ready => format!("host {}", h.name),
            Some(h) => format!("lost host {}", h.name),
            None => format!("unknown host {id}"),
        }
    }

    /// Every host of a region with its number, in ID order.
    pub(super) fn hosts_in<'s>(
        &'s self,
        region: &str,
    ) -> impl ExactSizeIterator<Item = (HostNo, &'a Host)> + Clone + 's {
        let nos = self.regions.get(region).map_or(&[][..], Vec::as_slice);
        nos.iter().map(|&n| (n, self.hosts[n]))
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

    /// The backoff record of a place (a slot, or `None` for a stateless
    /// region), if its instances of `release` keep failing.
    pub(super) fn backoff(
        &self,
        key: &'a WorkloadKey,
        region: &'a str,
        slot: Option<u32>,
        release: ReleaseNo,
    ) -> Option<&'a Backoff> {
        self.backoffs
            .get(&(key, region, slot))
            .copied()
            .filter(|b| b.release == release)
    }

    /// The latest failure among a release's backing-off places.
    pub(super) fn last_failure(
        &self,
        key: &'a WorkloadKey,
        release: ReleaseNo,
    ) -> Option<&'a Backoff> {
        self.backoffs
            .range((key, "", None)..)
            .take_while(|((k, _, _), _)| *k == key)
            .map(|(_, b)| *b)
            .filter(|b| b.release == release)
            .max_by_key(|b| b.last_failure)
    }

    /// The rollout record of a release.
    pub(super) fn rollout(
        &self,
        key: &'a WorkloadKey,
        release: ReleaseNo,
    ) -> Option<&'a RolloutState> {
        self.rollouts.get(&(key, release)).copied()
    }
}
