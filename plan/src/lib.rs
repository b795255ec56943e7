//! `vt-plan`: the pure core of vt. The planner (this module: scheduling and
//! rollouts as functions of desired state, observed state and time), and the
//! controller's decisions that need no IO: release numbering
//! ([`releases`]), events and their retention ([`events`]), endpoint
//! addresses ([`addresses`]), what a change would do ([`preview`]) and when a
//! failing place may try again ([`backoff`]). The crate depends on nothing
//! that does IO and reads no clock (`clippy.toml` bans it, `tests/deps.rs`
//! checks the dependency list).
//!
//!
//! [`plan`] takes what should run ([`Desired`]), what the controller knows of the
//! fleet ([`Observed`]) and the current time, and returns the [`Action`]s that
//! bring the fleet closer to the desired state. It does no IO and reads no
//! clock: the controller, the simulator and `vt diff` all call it the same way.
//! It is level-triggered and idempotent: once the controller has recorded the
//! actions (a `Start` as a [`Phase::Pending`] instance, a `Stop` as
//! [`Phase::Stopping`], the rollout events in [`RolloutState`]), planning again
//! at the same time yields no further `Start` or `Stop`.
//!
//! Rules, per workload and region:
//!
//! - **Replicas.** `spec.instances` instances of the workload's release run in
//!   each of `spec.regions`. Missing ones are placed by the scheduler; extra ones
//!   (scale down, a region dropped, a workload removed) are stopped. `Failed` and
//!   `Stopped` instances are ignored: they hold nothing and are replaced.
//! - **Scheduling.** Only `Ready` hosts of the region, with enough free cpu and
//!   memory (capacity minus every instance that holds resources, including the
//!   ones placed earlier in the same call): never overcommit. Among those, the
//!   host with the fewest replicas of the release, then one without a recent
//!   failure of the workload (an instance `Failed` there in the last 5
//!   minutes: a host that fails every boot would otherwise look emptiest),
//!   then the most free memory, then the smallest host id. Every `Start` says
//!   why its host was chosen (and which hosts it avoided for their failures);
//!   every failure says why nothing fits.
//! - **Lost hosts.** Instances on a `Lost` (or unknown) host count as gone.
//!   Stateless ones are stopped and replaced elsewhere. A workload with volumes
//!   keeps its instances in numbered *slots*; each slot's volumes live on one
//!   host ([`VolumePlacement`]) and pin the slot's instance there, so a slot
//!   whose volumes are on a lost host waits for it ([`Action::Waiting`]).
//! - **Health.** An instance is available only in [`Phase::Healthy`]. Hosts report
//!   `Healthy` once the health check passes, or, for a spec without a health
//!   check, once the guest's entrypoint runs; the planner does not distinguish.
//! - **Rollouts.** When the release changes, `Immediate` stops every old
//!   instance and starts every new one at once. `Rolling` keeps the live
//!   instances at most `instances + max_surge` and the healthy ones (of any
//!   release) at least `instances - max_unavailable`, stopping old instances as
//!   new ones become healthy. A slot's volumes attach to one instance at a time,
//!   so a workload with volumes is replaced slot by slot, stop before start,
//!   with at least one slot allowed down (`max(max_unavailable, 1)`).
//! - **Backoff.** A place (volume slot, or a stateless workload's region)
//!   whose instances of the release failed before becoming healthy has a
//!   [`Backoff`] record; its starts wait until [`backoff::retry_at`] (1 s
//!   doubling to 5 minutes, with jitter), reported as
//!   [`Action::BackingOff`], in rollouts and repairs alike.
//! - **Progress deadline.** A rollout in which no further instance of the new
//!   release became healthy for `progress_deadline` halts (the reason counts
//!   the instances still starting, and the last failure of a place that
//!   backs off). A halted workload makes no rollout
//!   progress: no instance of the release starts beyond those it has, no old
//!   instance stops for the rollout; old instances keep serving. It still
//!   repairs: instances on lost hosts are stopped; lost instances of the
//!   release are replaced by it, and older instances, lost or failed, are
//!   started again with their release, as many as the rolling update's
//!   availability floor needs beside the release's healthy instances (within
//!   the surge). Failed instances of the release are not retried while an
//!   older release serves; where none does (a first deploy, an immediate
//!   rollout), the release keeps filling its places, a place whose instance
//!   failed waiting for its backoff (5 minutes without a backoff record). With volumes, an empty slot gets the release of
//!   its last instance again if that one failed or was lost. A halted rollout
//!   whose release completes, or that makes progress again (more healthy
//!   instances than recorded), completes or rolls on.

pub mod addresses;
pub mod backoff;
pub mod events;
pub mod ids;
mod observe;
pub mod preview;
pub mod releases;
mod replicas;
mod rollout;
mod schedule;
#[cfg(any(test, feature = "testing"))]
pub mod test_support;
#[cfg(test)]
mod tests;

pub use ids::{HostId, InstanceId, ReleaseNo, VolumeId};
use observe::Index;
use replicas::{RegionPlan, Revive};
pub use rollout::record_rollout;
use schedule::{Ledger, Placement, Request};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use vt_repo::EffectiveSpec;

/// Milliseconds since an epoch the caller chooses (the controller uses Unix time).
pub type Millis = u64;

/// Identifies a workload, one env of one app, by stable IDs.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadKey {
    /// App ID (`app_…`).
    pub app_id: String,
    /// Env ID (`env_…`).
    pub env_id: String,
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app_id, self.env_id)
    }
}

/// One (app, env) at its latest release: what should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Stable identity.
    pub key: WorkloadKey,
    /// Human name used in reasons, e.g. `acme/shop/web/prod`.
    pub name: String,
    /// Release number of `spec`; releases of one key only grow.
    pub release: ReleaseNo,
    /// What to run.
    pub spec: EffectiveSpec,
}

/// Everything that should run. A key listed twice counts once (the first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Workloads, in any order.
    pub workloads: Vec<Workload>,
}

/// Whether a host can take instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    /// Heartbeating: instances may be placed on it.
    Ready,
    /// Missed its heartbeats: its instances count as gone.
    Lost,
}

/// A host of the fleet, with its capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Stable ID; instances and volumes name their host by it.
    pub id: HostId,
    /// Human name used in reasons.
    pub name: String,
    /// Region the host is in.
    pub region: String,
    /// Cpu it offers to instances, in millicores.
    pub cpu: u32,
    /// Memory it offers to instances, in bytes.
    pub memory: u64,
    /// Ready or lost.
    pub status: HostStatus,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Assigned to a host, not yet reported by it.
    Pending,
    /// Booting, or not yet past its health check.
    Starting,
    /// Passing its health check (or running, without one): available.
    Healthy,
    /// Running but failing its health check.
    Unhealthy,
    /// Told to stop; still holds its resources and volumes.
    Stopping,
    /// Stopped; holds nothing.
    Stopped,
    /// Crashed or could not start; holds nothing, gets replaced.
    Failed,
}

impl Phase {
    /// Whether the instance runs or is about to: it counts as a replica.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Phase::Pending | Phase::Starting | Phase::Healthy | Phase::Unhealthy
        )
    }

    /// Whether the instance holds cpu, memory and volumes on its host.
    pub fn holds_resources(self) -> bool {
        self.is_live() || self == Phase::Stopping
    }
}

/// An instance the controller knows of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Stable ID, minted by the controller when it applies a `Start`.
    pub id: InstanceId,
    /// Workload it belongs to.
    pub key: WorkloadKey,
    /// Release it runs.
    pub release: ReleaseNo,
    /// Host ID it is assigned to.
    pub host: HostId,
    /// Region it was placed in.
    pub region: String,
    /// Cpu it holds, in millicores.
    pub cpu: u32,
    /// Memory it holds, in bytes.
    pub memory: u64,
    /// Last known phase.
    pub phase: Phase,
    /// When it entered `phase`.
    pub since: Millis,
    /// For a workload with volumes: the slot whose volumes it mounts.
    pub slot: Option<u32>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum RolloutStatus {
    /// Replacing instances.
    Progressing,
    /// Every wanted instance runs the release and is healthy.
    Completed,
    /// Gave up at the progress deadline: only repairs until the release
    /// progresses again (a `Halted` record whose `last_progress` is within
    /// the deadline rolls on) or a newer release arrives.
    Halted {
        /// Why, as reported by [`Action::RolloutHalted`].
        reason: String,
    },
}

/// The controller's record of one release's rollout, kept from the rollout
/// actions: `RolloutStarted` creates it (`started` = `last_progress` = now,
/// `healthy` = 0, `Progressing`), `RolloutProgressed` sets `last_progress` = now
/// and `healthy`, `RolloutCompleted` and `RolloutHalted` set `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// Workload rolled out.
    pub key: WorkloadKey,
    /// Release rolled out.
    pub release: ReleaseNo,
    /// When it started.
    pub started: Millis,
    /// When an instance of the release last became healthy (or the start).
    pub last_progress: Millis,
    /// Healthy instances of the release at `last_progress`.
    pub healthy: u32,
    /// Progressing, completed or halted.
    pub status: RolloutStatus,
}

/// Where the volumes of one slot of a workload live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlacement {
    /// Workload the volumes belong to.
    pub key: WorkloadKey,
    /// Region of the slot.
    pub region: String,
    /// Slot number, `0..instances`.
    pub slot: u32,
    /// Host ID that holds the volumes.
    pub host: HostId,
}

/// A place whose instances of one release keep failing before they become
/// healthy: one volume slot, or one region of a stateless workload. The
/// controller keeps it from the hosts' reports (a failure adds to it, a
/// healthy instance of the place removes it); the planner holds the place's
/// starts until [`backoff::retry_at`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Workload.
    pub key: WorkloadKey,
    /// Release whose instances fail; a record of an older release is ignored.
    pub release: ReleaseNo,
    /// Region of the place.
    pub region: String,
    /// Volume slot; `None` for a stateless workload's region.
    pub slot: Option<u32>,
    /// Failures in a row, in-place restarts by the host included.
    pub failures: u32,
    /// Retry rounds that failed: instances the controller started after the
    /// previous failure and that failed (the delay's exponent); instances of
    /// one round failing together count once.
    pub rounds: u32,
    /// When the last instance of the place failed.
    pub last_failure: Millis,
    /// The host's reason for the last failure.
    pub reason: String,
}

/// What the controller knows of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Registered hosts.
    pub hosts: Vec<Host>,
    /// Known instances, in any phase.
    pub instances: Vec<Instance>,
    /// Rollout records (only the one of each workload's current release matters).
    pub rollouts: Vec<RolloutState>,
    /// Volume locations; the controller records one when it applies a `Start`
    /// with a slot that has none (the host creates the volumes there). A slot
    /// missing here is located by the instance with the greatest ID that used
    /// it, so instance IDs must be minted in increasing order (ULIDs are).
    pub volumes: Vec<VolumePlacement>,
    /// Places backing off after failures.
    #[serde(default)]
    pub backoffs: Vec<Backoff>,
}

/// A decision of the planner. `reason`s are for people; the fields are for the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start an instance of `release` on `host` (the controller mints its ID
    /// and records it as `Pending`). With a `slot`, the instance mounts that
    /// slot's volumes, created on `host` if they do not exist yet.
    Start {
        /// Workload.
        key: WorkloadKey,
        /// Release to run.
        release: ReleaseNo,
        /// Region of the host.
        region: String,
        /// Host ID.
        host: HostId,
        /// Volume slot, for a workload with volumes.
        slot: Option<u32>,
        /// Cpu to reserve, in millicores.
        cpu: u32,
        /// Memory to reserve, in bytes.
        memory: u64,
        /// Why this host.
        reason: String,
    },
    /// Stop an instance (the controller records it as `Stopping`).
    Stop {
        /// Instance ID.
        instance: InstanceId,
        /// Workload it belongs to.
        key: WorkloadKey,
        /// Why it goes.
        reason: String,
    },
    /// `count` instances of a region could not be placed; retried on every plan.
    Unplaceable {
        /// Workload.
        key: WorkloadKey,
        /// Release that could not be placed.
        release: ReleaseNo,
        /// Region.
        region: String,
        /// How many instances did not fit.
        count: u32,
        /// Why nothing fits.
        reason: String,
    },
    /// A wanted instance waits for something outside the planner's hands
    /// (a lost host holding its volumes, a stopping instance to free room).
    Waiting {
        /// Workload.
        key: WorkloadKey,
        /// Region.
        region: String,
        /// Volume slot waited on, if any.
        slot: Option<u32>,
        /// What it waits for.
        reason: String,
    },
    /// A place's instances of `release` keep failing before they become
    /// healthy: its next start waits until `retry_at`.
    BackingOff {
        /// Workload.
        key: WorkloadKey,
        /// Release that fails.
        release: ReleaseNo,
        /// Region.
        region: String,
        /// Volume slot, for a workload with volumes.
        slot: Option<u32>,
        /// Instances that would start, held back.
        count: u32,
        /// Failures in a row.
        failures: u32,
        /// When the place may start again.
        retry_at: Millis,
        /// The last failure.
        reason: String,
    },
    /// A rollout of `release` begins; record a [`RolloutState`].
    RolloutStarted {
        /// Workload.
        key: WorkloadKey,
        /// Release.
        release: ReleaseNo,
    },
    /// More instances of `release` are healthy than recorded; record the progress.
    RolloutProgressed {
        /// Workload.
        key: WorkloadKey,
        /// Release.
        release: ReleaseNo,
        /// Healthy instances of the release now.
        healthy: u32,
    },
    /// Every wanted instance of `release` is healthy and no other instance runs.
    RolloutCompleted {
        /// Workload.
        key: WorkloadKey,
        /// Release.
        release: ReleaseNo,
    },
    /// The progress deadline passed; the workload only repairs until its
    /// release progresses again or a newer release arrives.
    RolloutHalted {
        /// Workload.
        key: WorkloadKey,
        /// Release.
        release: ReleaseNo,
        /// What was missing.
        reason: String,
    },
}

impl Action {
    /// Whether the action starts or stops an instance (the others only inform).
    pub fn changes_instances(&self) -> bool {
        matches!(self, Action::Start { .. } | Action::Stop { .. })
    }

    /// The instance a `Start` creates once the controller has minted its
    /// `id`: `Pending` since `now`. `None` for every other action.
    pub fn started_instance(&self, id: InstanceId, now: Millis) -> Option<Instance> {
        let Action::Start {
            key,
            release,
            region,
            host,
            slot,
            cpu,
            memory,
            ..
        } = self
        else {
            return None;
        };
        Some(Instance {
            id,
            key: key.clone(),
            release: *release,
            host: host.clone(),
            region: region.clone(),
            cpu: *cpu,
            memory: *memory,
            phase: Phase::Pending,
            since: now,
            slot: *slot,
        })
    }
}

/// The actions that take the fleet from `observed` towards `desired` at time `now`.
///
/// Deterministic: the output depends on the inputs only, not on the order of
/// their lists (given unique IDs; of duplicates, the first counts).
/// Actions come grouped by workload (in key order), after stops of instances
/// whose workload is no longer desired: `RolloutStarted`, then stops, starts,
/// `Unplaceable`, `BackingOff` and `Waiting`, then the rollout's progress,
/// completion or halt.
pub fn plan(desired: &Desired, observed: &Observed, now: Millis) -> Vec<Action> {
    let index = Index::new(observed);
    let mut ledger = Ledger::new(&index, observed, now);
    let mut workloads: BTreeMap<&WorkloadKey, &Workload> = BTreeMap::new();
    for w in &desired.workloads {
        workloads.entry(&w.key).or_insert(w);
    }

    let mut out = Vec::new();
    for inst in index.live_orphans(|key| workloads.contains_key(key)) {
        ledger.stop(&index, inst);
        out.push(Action::Stop {
            instance: inst.id.clone(),
            key: inst.key.clone(),
            reason: format!("workload {} is no longer desired", inst.key),
        });
    }

    // Pass 1 decides every stop before pass 2 places anything, so a capacity
    // wait can tell "room is being freed" from "no room".
    let mut groups = Vec::new();
    for w in workloads.values() {
        let state = index.rollout(&w.key, w.release);
        let regions: BTreeSet<&str> = w.spec.regions.iter().map(String::as_str).collect();
        let mut dropped = index.live_outside(&w.key, &regions);
        let mut plans: Vec<RegionPlan> = regions
            .iter()
            .map(|region| replicas::plan_region(w, region, &index))
            .collect();
        let progress = rollout::Progress {
            healthy: plans.iter().fold(0, |n, p| n.saturating_add(p.healthy)),
            starting: plans.iter().fold(0, |n, p| n.saturating_add(p.starting)),
            wanted: w.spec.instances.saturating_mul(len_u32(regions.len())),
            complete: dropped.is_empty() && plans.iter().all(|p| p.satisfied),
            last_failure: index.last_failure(&w.key, w.release),
        };
        let gate = rollout::advance(w, state, &progress, now);
        if gate.mode == rollout::Mode::Repair {
            // Halted: only what is lost goes, even from dropped regions.
            dropped.retain(|inst| !index.reachable(inst));
            plans = regions
                .iter()
                .map(|region| replicas::repair_region(w, region, &index, now))
                .collect();
        }
        for p in &mut plans {
            replicas::hold_failing(w, p, &index, now);
        }
        let mut stops = Vec::new();
        let dropped = dropped.into_iter().map(|inst| {
            let reason = format!("{} no longer runs in region {}", w.name, inst.region);
            (inst, reason)
        });
        let planned = plans.iter().flat_map(|p| p.stops.iter().cloned());
        for (inst, reason) in dropped.chain(planned) {
            ledger.stop(&index, inst);
            stops.push(Action::Stop {
                instance: inst.id.clone(),
                key: w.key.clone(),
                reason,
            });
        }
        groups.push((*w, gate, stops, plans));
    }

    // Pass 2 places what each region still needs, in workload order.
    for (w, gate, stops, plans) in groups {
        out.extend(gate.before);
        out.extend(stops);
        for p in &plans {
            place_region(w, p, &index, &mut ledger, &mut out);
        }
        out.extend(gate.after);
    }
    out
}

/// Places what one region of a workload still needs and reports what waits.
fn place_region<'a>(
    w: &'a Workload,
    p: &RegionPlan<'a>,
    index: &Index<'a>,
    ledger: &mut Ledger<'a>,
    out: &mut Vec<Action>,
) {
    let request = |slot| Request {
        key: &w.key,
        name: &w.name,
        release: w.release,
        region: p.region,
        cpu: w.spec.cpu.0,
        memory: w.spec.memory.0,
        slot,
    };
    let start = |req: &Request, host: HostId, reason: String| Action::Start {
        key: w.key.clone(),
        release: req.release,
        region: p.region.to_string(),
        host,
        slot: req.slot,
        cpu: req.cpu,
        memory: req.memory,
        reason,
    };
    let mut waits = Vec::new();
    let mut failed = None;
    for placed in 0..p.anywhere {
        let req = request(None);
        match ledger.place(index, &req, None) {
            Placement::Placed { host, reason } => out.push(start(&req, host, reason)),
            Placement::Wait(reason) => {
                let waiting = p.anywhere - placed;
                let reason = match waiting {
                    1 => reason,
                    n => format!("{n} instances: {reason}"),
                };
                waits.push((None, reason));
                break;
            }
            Placement::Unplaceable(reason) => {
                failed = Some((p.anywhere - placed, reason));
                break;
            }
        }
    }
    let mut unplaceable: Vec<(ReleaseNo, u32, String)> = failed
        .into_iter()
        .map(|(count, reason)| (w.release, count, reason))
        .collect();
    for need in &p.slots {
        let req = request(Some(need.slot));
        match ledger.place(index, &req, need.host) {
            Placement::Placed { host, reason } => out.push(start(&req, host, reason)),
            Placement::Wait(reason) => waits.push((Some(need.slot), reason)),
            Placement::Unplaceable(reason) => unplaceable.push((w.release, 1, reason)),
        }
    }
    // Older releases started again by a halted rollout, sized as they were.
    let revive = |old: &Revive| Request {
        release: old.release,
        cpu: old.cpu,
        memory: old.memory,
        ..request(old.slot)
    };
    let loose = p.revive.iter().filter(|r| r.slot.is_none());
    let total = loose.clone().count();
    for (placed, old) in loose.enumerate() {
        let req = revive(old);
        match ledger.place(index, &req, None) {
            Placement::Placed { host, reason } => out.push(start(&req, host, reason)),
            Placement::Wait(reason) => {
                let reason = match total - placed {
                    1 => reason,
                    n => format!("{n} instances: {reason}"),
                };
                waits.push((None, reason));
                break;
            }
            Placement::Unplaceable(reason) => {
                unplaceable.push((old.release, len_u32(total - placed), reason));
                break;
            }
        }
    }
    for old in p.revive.iter().filter(|r| r.slot.is_some()) {
        let req = revive(old);
        match ledger.place(index, &req, old.host) {
            Placement::Placed { host, reason } => out.push(start(&req, host, reason)),
            Placement::Wait(reason) => waits.push((old.slot, reason)),
            Placement::Unplaceable(reason) => unplaceable.push((old.release, 1, reason)),
        }
    }
    out.extend(
        unplaceable
            .into_iter()
            .map(|(release, count, reason)| Action::Unplaceable {
                key: w.key.clone(),
                release,
                region: p.region.to_string(),
                count,
                reason,
            }),
    );
    out.extend(p.held.iter().map(|&(b, count)| Action::BackingOff {
        key: w.key.clone(),
        release: b.release,
        region: p.region.to_string(),
        slot: b.slot,
        count,
        failures: b.failures,
        retry_at: backoff::retry_at(b),
        reason: b.reason.clone(),
    }));
    out.extend(
        p.waits
            .iter()
            .cloned()
            .chain(waits)
            .map(|(slot, reason)| Action::Waiting {
                key: w.key.clone(),
                region: p.region.to_string(),
                slot,
                reason,
            }),
    );
}

/// A count as `u32`, saturating (region and slot counts are small).
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
