//! Replicas of one workload in one region: which instances to keep, which to
//! stop and what is missing, under the workload's rollout strategy
//! ([`plan_region`]), or, while its rollout is halted, only the repairs
//! ([`repair_region`]).

use super::backoff;
use super::observe::Index;
use super::schedule::failed_recently;
use super::{Backoff, Instance, Millis, Phase, ReleaseNo, Workload};
use std::cmp::Reverse;
use std::collections::BTreeSet;
use vt_repo::schema::Strategy;

/// A slot of a workload with volumes that needs an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotNeed<'a> {
    /// Slot number.
    pub slot: u32,
    /// Host ID holding the slot's volumes, if they exist yet.
    pub host: Option<&'a str>,
}

/// An instance of an older release to start again, sized like the one it
/// replaces: a halted rollout's repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Revive<'a> {
    /// Release to run.
    pub release: ReleaseNo,
    /// Cpu, in millicores.
    pub cpu: u32,
    /// Memory, in bytes.
    pub memory: u64,
    /// Volume slot, for a workload with volumes.
    pub slot: Option<u32>,
    /// Host ID holding the slot's volumes.
    pub host: Option<&'a str>,
}

impl<'a> Revive<'a> {
    fn like(i: &'a Instance, host: Option<&'a str>) -> Self {
        Revive {
            release: i.release,
            cpu: i.cpu,
            memory: i.memory,
            slot: i.slot,
            host,
        }
    }
}

/// What one region of a workload needs, before anything is placed.
#[derive(Debug)]
pub(super) struct RegionPlan<'a> {
    /// Region.
    pub region: &'a str,
    /// Instances to stop, with the reason.
    pub stops: Vec<(&'a Instance, String)>,
    /// Stateless instances to start, on any host.
    pub anywhere: u32,
    /// Slots to start an instance in.
    pub slots: Vec<SlotNeed<'a>>,
    /// Slots (or the region) waiting, with what for.
    pub waits: Vec<(Option<u32>, String)>,
    /// Instances of older releases to start (only while a rollout is halted).
    pub revive: Vec<Revive<'a>>,
    /// Starts of the release held back by a failing place: the record and
    /// how many instances wait for it.
    pub held: Vec<(&'a Backoff, u32)>,
    /// Healthy instances of the release that fill a wanted place.
    pub healthy: u32,
    /// Instances of the release that fill a wanted place and are still
    /// pending or starting.
    pub starting: u32,
    /// Every wanted place is filled by a healthy instance of the release
    /// and nothing else runs or needs doing.
    pub satisfied: bool,
}

/// Which instance to keep when several could fill a place: the most available.
fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Healthy => 0,
        Phase::Starting => 1,
        Phase::Pending => 2,
        _ => 3,
    }
}

fn is_healthy(i: &Instance) -> bool {
    i.phase == Phase::Healthy
}

impl<'a> RegionPlan<'a> {
    fn new(region: &'a str) -> Self {
        RegionPlan {
            region,
            stops: Vec::new(),
            anywhere: 0,
            slots: Vec::new(),
            waits: Vec::new(),
            revive: Vec::new(),
            held: Vec::new(),
            healthy: 0,
            starting: 0,
            satisfied: false,
        }
    }
}

/// Whether `i` holds the volumes of its slot on its (unreachable) host, so
/// that it waits there with them rather than being replaced.
fn pinned_here(w: &Workload, region: &str, i: &Instance, index: &Index) -> bool {
    i.slot.is_some_and(|s| {
        !w.spec.volumes.is_empty()
            && s < w.spec.instances
            && index.volume_host(&w.key, region, s) == Some(i.host.as_str())
    })
}

fn lost_reason(i: &Instance, index: &Index) -> String {
    format!("on {}; replaced elsewhere", index.describe_host(&i.host))
}

fn volumes_lost(slot: u32, host: &str, index: &Index) -> String {
    format!(
        "the volumes of slot {slot} live on {}: waiting for it to come back",
        index.describe_host(host)
    )
}

fn still_attached(slot: u32, i: &Instance) -> String {
    format!(
        "the volumes of slot {slot} are still attached to stopping instance {}",
        i.id
    )
}

/// Holds back the starts of `w`'s release in places that back off at `now`:
/// the region's stateless starts, or each slot's.
pub(super) fn hold_failing<'a>(
    w: &'a Workload,
    plan: &mut RegionPlan<'a>,
    index: &Index<'a>,
    now: Millis,
) {
    let region = plan.region;
    let failing = |slot| {
        index
            .backoff(&w.key, region, slot, w.release)
            .filter(|b| backoff::holds(b, now))
    };
    if plan.anywhere > 0 {
        if let Some(b) = failing(None) {
            plan.held.push((b, plan.anywhere));
            plan.anywhere = 0;
        }
    }
    let mut held = Vec::new();
    plan.slots.retain(|need| match failing(Some(need.slot)) {
        Some(b) => {
            held.push((b, 1));
            false
        }
        None => true,
    });
    plan.held.extend(held);
}

/// Decides the replicas of `w` in `region`.
pub(super) fn plan_region<'a>(
    w: &'a Workload,
    region: &'a str,
    index: &Index<'a>,
) -> RegionPlan<'a> {
    let want = w.spec.instances;
    let stateful = !w.spec.volumes.is_empty();
    let mut plan = RegionPlan::new(region);

    let mut current = Vec::new();
    let mut old = Vec::new();
    let mut stopping = Vec::new();
    for &i in index
        .instances(&w.key)
        .iter()
        .filter(|i| i.region == region)
    {
        if i.phase == Phase::Stopping {
            stopping.push(i);
        } else if !i.phase.is_live() {
            // Stopped and failed instances hold nothing and are replaced.
        } else if !index.reachable(i) {
            // One that holds its slot's volumes waits with them (reported per slot).
            if !pinned_here(w, region, i, index) {
                plan.stops.push((i, lost_reason(i, index)));
            }
        } else if i.release == w.release {
            current.push(i);
        } else {
            old.push(i);
        }
    }
    current.sort_by_key(|i| (rank(i.phase), &i.id));

    // Keep the best instance for each wanted place; the rest are extra.
    let mut keep: Vec<&Instance> = Vec::new();
    let mut missing: Vec<SlotNeed> = Vec::new();
    if stateful {
        for slot in 0..want {
            let host = index.volume_host(&w.key, region, slot);
            if let Some(id) = host.filter(|id| index.ready_host(id).is_none()) {
                plan.waits.push((Some(slot), volumes_lost(slot, id, index)));
                continue;
            }
            let fills = |i: &&&Instance| i.slot == Some(slot) && host.is_none_or(|h| h == i.host);
            match current.iter().find(fills) {
                Some(i) => keep.push(i),
                None => missing.push(SlotNeed { slot, host }),
            }
        }
    } else {
        keep.extend(
            current
                .iter()
                .take(usize::try_from(want).unwrap_or(usize::MAX)),
        );
    }
    let kept: BTreeSet<&str> = keep.iter().map(|i| i.id.as_str()).collect();
    let extra: Vec<&Instance> = current
        .iter()
        .copied()
        .filter(|i| !kept.contains(i.id.as_str()))
        .collect();

    let extra_reason = |i: &Instance| match (stateful, i.slot) {
        (true, None) => format!(
            "{} keeps its instances in volume slots now; this one has none",
            w.name
        ),
        (true, Some(s)) if s < want => match index.volume_host(&w.key, region, s) {
            Some(h) if h != i.host => format!(
                "the volumes of slot {s} live on {}, not here",
                index.describe_host(h)
            ),
            _ => format!("slot {s} already has an instance"),
        },
        _ => format!(
            "scale down: {} wants {want} instance(s) in region {region}",
            w.name
        ),
    };
    let policy = &w.spec.rollout;
    let mut stopped: BTreeSet<&str> = BTreeSet::new();
    if policy.strategy == Strategy::Immediate {
        for &i in &extra {
            plan.stops.push((i, extra_reason(i)));
            stopped.insert(&i.id);
        }
        for &i in &old {
            let reason = format!(
                "immediate rollout: release {} replaces release {}",
                w.release, i.release
            );
            plan.stops.push((i, reason));
            stopped.insert(&i.id);
        }
    } else {
        // Instances that serve nothing go at once.
        for &i in extra.iter().filter(|i| !is_healthy(i)) {
            plan.stops.push((i, extra_reason(i)));
            stopped.insert(&i.id);
        }
        for &i in old.iter().filter(|i| !is_healthy(i)) {
            let reason = format!(
                "rolling update to release {}: this release {} instance is not healthy",
                w.release, i.release
            );
            plan.stops.push((i, reason));
            stopped.insert(&i.id);
        }
        // Healthy ones only down to the floor: extras first, then old
        // instances holding a missing slot's volumes, then the oldest.
        let allowance = if stateful {
            policy.max_unavailable.max(1)
        } else {
            policy.max_unavailable
        };
        let floor = want.saturating_sub(allowance);
        let healthy = keep
            .iter()
            .chain(&old)
            .chain(&extra)
            .filter(|i| is_healthy(i))
            .count();
        let budget = healthy.saturating_sub(usize::try_from(floor).unwrap_or(usize::MAX));
        let blocking = |i: &Instance| {
            missing
                .iter()
                .find(|m| i.slot == Some(m.slot) && m.host == Some(i.host.as_str()))
                .map(|m| m.slot)
        };
        let mut old_healthy: Vec<&Instance> =
            old.iter().copied().filter(|i| is_healthy(i)).collect();
        old_healthy.sort_by_key(|i| (blocking(i).is_none(), blocking(i), i.release, &i.id));
        let extra_healthy = extra
            .iter()
            .copied()
            .filter(|i| is_healthy(i))
            .map(|i| (i, extra_reason(i)));
        let old_healthy = old_healthy.into_iter().map(|i| {
            let reason = format!(
                "rolling update to release {}: {healthy} healthy, at least {floor} must stay healthy",
                w.release
            );
            (i, reason)
        });
        for (i, reason) in extra_healthy.chain(old_healthy).take(budget) {
            plan.stops.push((i, reason));
            stopped.insert(&i.id);
        }
    }

    // Start what is missing, within the surge for a rolling update.
    let remaining = |list: &[&Instance]| {
        list.iter()
            .filter(|i| !stopped.contains(i.id.as_str()))
            .count()
    };
    let live_after = keep.len() + remaining(&old) + remaining(&extra);
    let mut limit = match policy.strategy {
        Strategy::Immediate => usize::MAX,
        Strategy::Rolling => usize::try_from(want.saturating_add(policy.max_surge))
            .unwrap_or(usize::MAX)
            .saturating_sub(live_after),
    };
    if stateful {
        for need in missing {
            let on_volumes =
                |i: &&&Instance| i.slot == Some(need.slot) && need.host == Some(i.host.as_str());
            let holder = old.iter().chain(&extra).find(on_volumes);
            let detaching = holder
                .filter(|i| stopped.contains(i.id.as_str()))
                .or(stopping.iter().find(on_volumes));
            if let Some(i) = detaching {
                plan.waits
                    .push((Some(need.slot), still_attached(need.slot, i)));
            } else if holder.is_none() && limit > 0 {
                limit -= 1;
                plan.slots.push(need);
            }
        }
    } else {
        let missing = usize::try_from(want)
            .unwrap_or(usize::MAX)
            .saturating_sub(keep.len());
        plan.anywhere = u32::try_from(missing.min(limit)).unwrap_or(u32::MAX);
    }

    let healthy = keep.iter().filter(|i| is_healthy(i)).count();
    plan.healthy = u32::try_from(healthy).unwrap_or(u32::MAX);
    let starting = keep
        .iter()
        .filter(|i| matches!(i.phase, Phase::Pending | Phase::Starting))
        .count();
    plan.starting = u32::try_from(starting).unwrap_or(u32::MAX);
    plan.satisfied = plan.stops.is_empty()
        && plan.waits.is_empty()
        && old.is_empty()
        && extra.is_empty()
        && u32::try_from(keep.len()).is_ok_and(|n| n == want)
        && healthy == keep.len();
    plan
}

/// Decides the repairs of `w` in `region` while its rollout is halted: the
/// rollout makes no progress (no instance of the release starts beyond those
/// it has, no older instance stops for it), but what breaks is replaced.
///
/// - Instances on lost hosts are stopped (a slot's instance on its volumes'
///   host waits for it, as always).
/// - Without volumes, under a rolling update, when an older release still
///   runs (or just ran) in the region: lost instances of the release are
///   replaced by the release; older instances (of the release of the one
///   lost or failed last) are started while fewer run than the rollout's
///   availability floor needs beside the healthy instances of the release,
///   within the surge.
/// - Otherwise (a first deploy, an immediate rollout: nothing older to keep
///   serving) the release fills its wanted places, except that an instance
///   of it that failed less than [`RECENT_FAILURE`](super::schedule::RECENT_FAILURE)
///   ago keeps its place empty until then, unless its place has a backoff
///   record: then the backoff decides when it starts again.
/// - With volumes, each empty slot gets again the release of the slot's last
///   instance if that one failed or was lost: an older release when it was
///   older; the release itself only when nothing older is there to fall back
///   on, and not within `RECENT_FAILURE` of its failure. A slot that never
///   had an instance gets one of the release; one whose older instance was
///   stopped for the rollout stays empty.
pub(super) fn repair_region<'a>(
    w: &'a Workload,
    region: &'a str,
    index: &Index<'a>,
    now: Millis,
) -> RegionPlan<'a> {
    let want = w.spec.instances;
    let stateful = !w.spec.volumes.is_empty();
    let policy = &w.spec.rollout;
    let rolling = policy.strategy == Strategy::Rolling;
    let mut plan = RegionPlan::new(region);

    let mut current = 0u32;
    let mut healthy = 0u32;
    let mut recent_failures = 0u32;
    let mut lost_current = 0u32;
    let mut older_live = 0u32;
    let mut lost_older: Vec<&Instance> = Vec::new();
    let mut failed_older: Vec<&Instance> = Vec::new();
    let mut live_older: Vec<&Instance> = Vec::new();
    let mut stopped_older: Vec<&Instance> = Vec::new();
    // A place with a backoff record waits for its retry time (held by
    // `hold_failing`) instead of `RECENT_FAILURE`.
    let backing_off = |slot| index.backoff(&w.key, region, slot, w.release).is_some();
    let mine = index.instances(&w.key).iter().copied();
    let mine = mine.filter(|i| i.region == region);
    for i in mine.clone() {
        let ours = i.release == w.release;
        if i.phase == Phase::Failed {
            if !ours {
                failed_older.push(i);
            } else if failed_recently(i, now) && !backing_off(i.slot) {
                recent_failures += 1;
            }
        } else if !i.phase.is_live() {
            // Stopping and stopped instances are not replaced.
            if !ours {
                stopped_older.push(i);
            }
        } else if !index.reachable(i) {
            if pinned_here(w, region, i, index) {
                continue;
            }
            plan.stops.push((i, lost_reason(i, index)));
            if ours {
                lost_current += 1;
            } else {
                lost_older.push(i);
            }
        } else if ours {
            current += 1;
            healthy += u32::from(is_healthy(i));
        } else {
            older_live += 1;
            live_older.push(i);
        }
    }
    // An older release to fall back on, as long as the controller knows an
    // instance of it here (stopped ones included, so that stopping the lost
    // ones changes nothing): of the instances lost now, else of the latest
    // failure, else the newest one running, else the last one stopped.
    failed_older.sort_by_key(|i| (Reverse(i.since), &i.id));
    live_older.sort_by_key(|i| (Reverse(i.release), &i.id));
    stopped_older.sort_by(|a, b| (b.id.len(), &b.id).cmp(&(a.id.len(), &a.id)));
    let models: Vec<&Instance> = lost_older
        .iter()
        .chain(&failed_older)
        .chain(&live_older)
        .chain(&stopped_older)
        .copied()
        .collect();
    let fall_back = rolling && !models.is_empty();

    if stateful {
        for slot in 0..want {
            let host = index.volume_host(&w.key, region, slot);
            if let Some(id) = host.filter(|id| index.ready_host(id).is_none()) {
                plan.waits.push((Some(slot), volumes_lost(slot, id, index)));
                continue;
            }
            let in_slot = |i: &&Instance| i.slot == Some(slot);
            let on_volumes = |i: &&Instance| in_slot(i) && host.is_none_or(|h| h == i.host);
            let filled = mine
                .clone()
                .filter(on_volumes)
                .any(|i| i.phase.is_live() && index.reachable(i));
            if filled {
                continue;
            }
            if let Some(i) = mine
                .clone()
                .filter(on_volumes)
                .find(|i| i.phase == Phase::Stopping)
            {
                plan.waits.push((Some(slot), still_attached(slot, i)));
                continue;
            }
            // The slot's last instance: the greatest ID (minted in order).
            let last = mine
                .clone()
                .filter(in_slot)
                .max_by(|a, b| (a.id.len(), &a.id).cmp(&(b.id.len(), &b.id)));
            // Failed, or lost now: stopped ones were stopped on purpose.
            let broke = |i: &Instance| {
                i.phase == Phase::Failed || (i.phase.is_live() && !index.reachable(i))
            };
            match last {
                None => plan.slots.push(SlotNeed { slot, host }),
                Some(i) if !broke(i) => {}
                Some(i) if i.release != w.release => plan.revive.push(Revive::like(i, host)),
                Some(i)
                    if i.phase == Phase::Failed
                        && (fall_back || (failed_recently(i, now) && !backing_off(Some(slot)))) => {
                }
                Some(_) => plan.slots.push(SlotNeed { slot, host }),
            }
        }
        return plan;
    }

    let live_after = current + older_live;
    let mut limit = if rolling {
        want.saturating_add(policy.max_surge)
            .saturating_sub(live_after)
    } else {
        u32::MAX
    };
    if fall_back {
        plan.anywhere = lost_current.min(want.saturating_sub(current)).min(limit);
        limit -= plan.anywhere;
        let floor = want.saturating_sub(policy.max_unavailable);
        let older = floor
            .saturating_sub(healthy)
            .saturating_sub(older_live)
            .min(limit);
        let last = models.len().saturating_sub(1);
        for n in 0..usize::try_from(older).unwrap_or(usize::MAX) {
            plan.revive.push(Revive::like(models[n.min(last)], None));
        }
    } else {
        plan.anywhere = want
            .saturating_sub(current.saturating_add(recent_failures))
            .min(limit);
    }
    plan
}
