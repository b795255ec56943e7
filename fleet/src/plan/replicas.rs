//! Replicas of one workload in one region: which instances to keep, which to
//! stop and what is missing, under the workload's rollout strategy.

use super::observe::Index;
use super::{Instance, Phase, Workload};
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
    /// Healthy instances of the release that fill a wanted place.
    pub healthy: u32,
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

/// Decides the replicas of `w` in `region`.
pub(super) fn plan_region<'a>(
    w: &'a Workload,
    region: &'a str,
    index: &Index<'a>,
) -> RegionPlan<'a> {
    let want = w.spec.instances;
    let stateful = !w.spec.volumes.is_empty();
    let mut plan = RegionPlan {
        region,
        stops: Vec::new(),
        anywhere: 0,
        slots: Vec::new(),
        waits: Vec::new(),
        healthy: 0,
        satisfied: false,
    };

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
            let pinned_here = i.slot.is_some_and(|s| {
                stateful
                    && s < want
                    && index.volume_host(&w.key, region, s) == Some(i.host.as_str())
            });
            // One that holds its slot's volumes waits with them (reported per slot).
            if !pinned_here {
                let reason = format!("on {}; replaced elsewhere", index.describe_host(&i.host));
                plan.stops.push((i, reason));
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
                plan.waits.push((
                    Some(slot),
                    format!(
                        "the volumes of slot {slot} live on {}: waiting for it to come back",
                        index.describe_host(id)
                    ),
                ));
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
                plan.waits.push((
                    Some(need.slot),
                    format!(
                        "the volumes of slot {} are still attached to stopping instance {}",
                        need.slot, i.id
                    ),
                ));
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
    plan.satisfied = plan.stops.is_empty()
        && plan.waits.is_empty()
        && old.is_empty()
        && extra.is_empty()
        && u32::try_from(keep.len()).is_ok_and(|n| n == want)
        && healthy == keep.len();
    plan
}
