//! The scheduler: what each host has free, and which host an instance goes to.

use super::observe::{HostNo, Index};
use super::{Host, HostId, HostStatus, Instance, Millis, Observed, Phase, ReleaseNo, WorkloadKey};
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use vt_repo::Cpu;

/// What the instances on one host hold.
#[derive(Debug, Default, Clone)]
struct Load {
    /// Cpu held by live instances, in millicores.
    cpu: u64,
    /// Memory held by live instances, in bytes.
    memory: u64,
    /// Cpu held by stopping instances, free once they stop.
    stopping_cpu: u64,
    /// Memory held by stopping instances, free once they stop.
    stopping_memory: u64,
}

/// Live replicas of one (workload, release), per host.
type Replicas = BTreeMap<HostNo, u32>;

/// Recent failures of one workload (any release), per host.
type Failures = BTreeMap<HostNo, u32>;

/// How long a failed instance makes its host a worse choice for its workload.
pub(super) const RECENT_FAILURE: Millis = 5 * 60 * 1000;

/// Whether `i` failed within [`RECENT_FAILURE`] of `now`.
pub(super) fn failed_recently(i: &Instance, now: Millis) -> bool {
    i.phase == Phase::Failed && now.saturating_sub(i.since) <= RECENT_FAILURE
}

/// Cpu and memory, free or needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Room {
    cpu: u64,
    memory: u64,
}

impl Room {
    fn covers(self, need: Room) -> bool {
        self.cpu >= need.cpu && self.memory >= need.memory
    }

    /// "512Mi memory and 250m cpu".
    fn describe(self) -> String {
        let cpu = Cpu(u32::try_from(self.cpu).unwrap_or(u32::MAX));
        format!("{} memory and {cpu} cpu", bytes(self.memory))
    }
}

/// A host an instance fits on, while looking for the best one.
struct Candidate<'h> {
    /// Its number.
    no: HostNo,
    /// The host.
    host: &'h Host,
    /// Replicas of the release on it.
    replicas: u32,
    /// Recent failures of the workload on it.
    failures: u32,
    /// What it has free now.
    free: Room,
}

/// One instance to place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request<'a> {
    /// Workload.
    pub key: &'a WorkloadKey,
    /// Workload name, for reasons.
    pub name: &'a str,
    /// Release to run.
    pub release: ReleaseNo,
    /// Region to place in.
    pub region: &'a str,
    /// Cpu needed, in millicores.
    pub cpu: u32,
    /// Memory needed, in bytes.
    pub memory: u64,
    /// Volume slot, for a workload with volumes.
    pub slot: Option<u32>,
}

impl Request<'_> {
    fn need(&self) -> Room {
        Room {
            cpu: u64::from(self.cpu),
            memory: self.memory,
        }
    }
}

/// The outcome of placing one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Placement {
    /// Reserved on this host ID.
    Placed {
        /// Host ID.
        host: HostId,
        /// Why this host.
        reason: String,
    },
    /// Fits once stopping instances free their resources.
    Wait(String),
    /// Fits nowhere now.
    Unplaceable(String),
}

/// Resources held on every host, updated as the planner stops and places
/// instances within one call so that it never overcommits. Instances on hosts
/// the [`Index`] does not know are left out: nothing is placed there.
#[derive(Debug)]
pub(super) struct Ledger<'a> {
    /// Per [`HostNo`].
    loads: Vec<Load>,
    /// Live replicas per (workload, release), per host.
    replicas: HashMap<(&'a WorkloadKey, ReleaseNo), Replicas>,
    /// Recent failures per workload, per host (only workloads that have some).
    failures: HashMap<&'a WorkloadKey, Failures>,
}

impl<'a> Ledger<'a> {
    /// The resources held by the observed instances, and the recent
    /// failures (as of `now`) of each workload on each host.
    pub(super) fn new(index: &Index<'a>, observed: &'a Observed, now: Millis) -> Self {
        let mut loads = vec![Load::default(); index.host_count()];
        let mut replicas: HashMap<_, Replicas> = HashMap::new();
        let mut failures: HashMap<_, Failures> = HashMap::new();
        for i in &observed.instances {
            if !i.phase.holds_resources() {
                if failed_recently(i, now) {
                    if let Some(n) = index.host_no(&i.host) {
                        *failures.entry(&i.key).or_default().entry(n).or_default() += 1;
                    }
                }
                continue;
            }
            let Some(n) = index.host_no(&i.host) else {
                continue;
            };
            let load = &mut loads[n];
            if i.phase.is_live() {
                load.cpu = load.cpu.saturating_add(u64::from(i.cpu));
                load.memory = load.memory.saturating_add(i.memory);
                *replicas
                    .entry((&i.key, i.release))
                    .or_default()
                    .entry(n)
                    .or_default() += 1;
            } else {
                load.stopping_cpu = load.stopping_cpu.saturating_add(u64::from(i.cpu));
                load.stopping_memory = load.stopping_memory.saturating_add(i.memory);
            }
        }
        Ledger {
            loads,
            replicas,
            failures,
        }
    }

    /// Records that a live instance is being stopped: it keeps its resources
    /// until it has stopped, but no longer counts as a replica.
    pub(super) fn stop(&mut self, index: &Index<'a>, i: &'a Instance) {
        if !i.phase.is_live() {
            return;
        }
        let Some(n) = index.host_no(&i.host) else {
            return;
        };
        let load = &mut self.loads[n];
        load.cpu = load.cpu.saturating_sub(u64::from(i.cpu));
        load.memory = load.memory.saturating_sub(i.memory);
        load.stopping_cpu = load.stopping_cpu.saturating_add(u64::from(i.cpu));
        load.stopping_memory = load.stopping_memory.saturating_add(i.memory);
        let count = self
            .replicas
            .get_mut(&(&i.key, i.release))
            .and_then(|r| r.get_mut(&n));
        if let Some(count) = count {
            *count = count.saturating_sub(1);
        }
    }

    /// Free now, and free once the stopping instances have stopped.
    fn room(&self, n: HostNo, h: &Host) -> (Room, Room) {
        let l = &self.loads[n];
        let later = Room {
            cpu: u64::from(h.cpu).saturating_sub(l.cpu),
            memory: h.memory.saturating_sub(l.memory),
        };
        let now = Room {
            cpu: later.cpu.saturating_sub(l.stopping_cpu),
            memory: later.memory.saturating_sub(l.stopping_memory),
        };
        (now, later)
    }

    fn reserve(&mut self, n: HostNo, req: &Request<'a>) {
        let load = &mut self.loads[n];
        load.cpu = load.cpu.saturating_add(u64::from(req.cpu));
        load.memory = load.memory.saturating_add(req.memory);
        *self
            .replicas
            .entry((req.key, req.release))
            .or_default()
            .entry(n)
            .or_default() += 1;
    }

    /// Places one instance: on `pinned` (the host holding its slot's
    /// volumes) if given, else on the best `Ready` host of the region.
    pub(super) fn place(
        &mut self,
        index: &Index<'a>,
        req: &Request<'a>,
        pinned: Option<&str>,
    ) -> Placement {
        match pinned {
            Some(id) => self.place_pinned(index, req, id),
            None => self.place_best(index, req),
        }
    }

    fn place_pinned(&mut self, index: &Index<'a>, req: &Request<'a>, id: &str) -> Placement {
        let slot = req
            .slot
            .map_or_else(String::new, |s| format!(" of slot {s}"));
        let Some((n, h)) = index.ready_host_no(id) else {
            return Placement::Wait(format!(
                "the volumes{slot} live on {}: waiting for it to come back",
                index.describe_host(id)
            ));
        };
        if h.region != req.region {
            return Placement::Unplaceable(format!(
                "host {} holds the volumes{slot} but is in region {}, not {}",
                h.name, h.region, req.region
            ));
        }
        let (now, later) = self.room(n, h);
        let need = req.need();
        if now.covers(need) {
            self.reserve(n, req);
            Placement::Placed {
                host: h.id.clone(),
                reason: format!(
                    "host {} holds the volumes{slot}; {} free",
                    h.name,
                    now.describe()
                ),
            }
        } else if later.covers(need) {
            Placement::Wait(format!(
                "host {} holds the volumes{slot} and has room for {} once its stopping instances stop",
                h.name,
                need.describe()
            ))
        } else {
            Placement::Unplaceable(format!(
                "host {} holds the volumes{slot} but has only {} free; {} needed",
                h.name,
                now.describe(),
                need.describe()
            ))
        }
    }

    fn place_best(&mut self, index: &Index<'a>, req: &Request<'a>) -> Placement {
        let region = req.region;
        let hosts = index.hosts_in(region);
        if hosts.len() == 0 {
            return Placement::Unplaceable(format!("no host in region {region}"));
        }
        let ready = hosts.filter(|(_, h)| h.status == HostStatus::Ready);
        if ready.clone().next().is_none() {
            let lost: Vec<&str> = index
                .hosts_in(region)
                .map(|(_, h)| h.name.as_str())
                .collect();
            return Placement::Unplaceable(format!(
                "no Ready host in region {region} (lost: {})",
                lost.join(", ")
            ));
        }
        let need = req.need();
        // The host with the fewest replicas of the release, then without a
        // recent failure of the workload, then the most free memory; hosts
        // come in ID order and only a strictly better one replaces the best
        // so far, so ties go to the smallest ID.
        let counts = self.replicas.get(&(req.key, req.release));
        let failures = if self.failures.is_empty() {
            None
        } else {
            self.failures.get(req.key)
        };
        let failures_on = |n: HostNo| failures.and_then(|f| f.get(&n)).copied().unwrap_or(0);
        let mut best: Option<Candidate> = None;
        for (n, h) in ready.clone() {
            let (free, _) = self.room(n, h);
            if !free.covers(need) {
                continue;
            }
            let replicas = counts.and_then(|c| c.get(&n)).copied().unwrap_or(0);
            let failed = failures_on(n);
            let rank = (replicas, failed > 0, Reverse(free.memory));
            if best
                .as_ref()
                .is_none_or(|b| rank < (b.replicas, b.failures > 0, Reverse(b.free.memory)))
            {
                best = Some(Candidate {
                    no: n,
                    host: h,
                    replicas,
                    failures: failed,
                    free,
                });
            }
        }
        if let Some(Candidate {
            no: n,
            host: h,
            replicas,
            failures: chosen_failures,
            free,
        }) = best
        {
            // Hosts that lost to this one only for their recent failures.
            let mut avoided = Vec::new();
            if failures.is_some() && chosen_failures == 0 {
                for (m, other) in ready.clone() {
                    let failed = failures_on(m);
                    let tied = counts.and_then(|c| c.get(&m)).copied().unwrap_or(0) == replicas;
                    if failed > 0 && tied && self.room(m, other).0.covers(need) {
                        let s = if failed == 1 { "" } else { "s" };
                        avoided.push(format!("{}: {failed} recent failure{s}", other.name));
                    }
                }
            }
            self.reserve(n, req);
            let volumes = req.slot.map_or_else(String::new, |s| {
                format!("; the volumes of slot {s} are created there")
            });
            let avoiding = if avoided.is_empty() {
                String::new()
            } else {
                format!("; avoiding {}", avoided.join(", "))
            };
            return Placement::Placed {
                host: h.id.clone(),
                reason: format!(
                    "host {}: {} free; fewest replicas of {} release {} ({replicas}){volumes}{avoiding}",
                    h.name,
                    free.describe(),
                    req.name,
                    req.release
                ),
            };
        }
        if let Some((_, h)) = ready.clone().find(|&(n, h)| self.room(n, h).1.covers(need)) {
            return Placement::Wait(format!(
                "no host in region {region} has {} free until stopping instances stop (host {} will)",
                need.describe(),
                h.name
            ));
        }
        let roomiest = ready.max_by_key(|&(n, h)| {
            let (free, _) = self.room(n, h);
            (free.memory, free.cpu, Reverse(&h.id))
        });
        let best = roomiest.map_or_else(String::new, |(n, h)| {
            format!(
                " (best: host {} has {} free)",
                h.name,
                self.room(n, h).0.describe()
            )
        });
        Placement::Unplaceable(format!(
            "no host in region {region} with {} free{best}",
            need.describe()
        ))
    }
}

/// A byte count for people: `512Mi`, `1.5Gi`, `100`.
fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n < size {
            continue;
        }
        if n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
        let tenths = (u128::from(n) * 10 + u128::from(size / 2)) / u128::from(size);
        return format!("{}.{}{unit}", tenths / 10, tenths % 10);
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(512 << 20), "512Mi");
        assert_eq!(bytes(3 << 29), "1.5Gi");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes((1 << 40) + 1), "1.0Ti");
    }
}
