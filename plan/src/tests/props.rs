//! Properties over random fleets: planning is idempotent, never overcommits a
//! host, and converges to exactly the desired instances without breaking a
//! rolling update's availability floor.

use super::*;
use proptest::prelude::{
    any, prop, prop_assert, prop_assert_eq, proptest, ProptestConfig, Strategy as Gen,
};
use std::collections::{BTreeMap, BTreeSet};
use vt_repo::schema::Strategy;

const NOW: Millis = 1_000_000;
const REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// Raw numbers a scenario is built from (shrinks well).
type HostSeed = (usize, u32, u64, bool);
type WorkloadSeed = (u32, usize, u32, u64, bool, bool, u32, u32, u64);
type InstanceSeed = (usize, u64, usize, u8, Option<u32>);
type RolloutSeed = (usize, u64, u8, u64, u32);
type VolumeSeed = (usize, usize, u32, usize);

#[derive(Debug, Clone)]
struct Seeds {
    hosts: Vec<HostSeed>,
    workloads: Vec<WorkloadSeed>,
    instances: Vec<InstanceSeed>,
    rollouts: Vec<RolloutSeed>,
    volumes: Vec<VolumeSeed>,
}

fn seeds() -> impl Gen<Value = Seeds> {
    (
        prop::collection::vec(
            (0..2usize, 1..=8u32, 1..=16u64, prop::bool::weighted(0.2)),
            1..6,
        ),
        prop::collection::vec(
            (
                0..=3u32,
                1..=7usize,
                1..=4u32,
                1..=4u64,
                any::<bool>(),
                any::<bool>(),
                0..=2u32,
                0..=2u32,
                1..=3u64,
            ),
            1..4,
        ),
        prop::collection::vec(
            (
                0..5usize,
                1..=3u64,
                0..7usize,
                0..7u8,
                prop::option::of(0..4u32),
            ),
            0..14,
        ),
        prop::collection::vec((0..4usize, 1..=3u64, 0..3u8, 0..600_000u64, 0..4u32), 0..4),
        prop::collection::vec((0..4usize, 0..2usize, 0..4u32, 0..7usize), 0..4),
    )
        .prop_map(|(hosts, workloads, instances, rollouts, volumes)| Seeds {
            hosts,
            workloads,
            instances,
            rollouts,
            volumes,
        })
}

/// Builds a scenario. `roomy`: every host Ready and huge, every desired
/// region with hosts, no halted or stale rollout: one that must converge.
fn build(s: &Seeds, roomy: bool) -> (Desired, Observed) {
    let mut hosts: Vec<Host> = s
        .hosts
        .iter()
        .enumerate()
        .map(|(n, &(region, cpu, mem, lost))| {
            let mut h = host(&format!("h{n}"), REGIONS[region], cpu * 500, mem * 256 * MI);
            if lost && !roomy {
                h.status = HostStatus::Lost;
            }
            if roomy {
                h.cpu = 1_000_000;
                h.memory = 1 << 40;
            }
            h
        })
        .collect();
    if roomy {
        for region in &REGIONS[..2] {
            if !hosts.iter().any(|h| h.region == *region) {
                hosts.push(host(&format!("h-{region}"), region, 1_000_000, 1 << 40));
            }
        }
    }
    let workloads: Vec<Workload> = s
        .workloads
        .iter()
        .enumerate()
        .map(
            |(n, &(instances, mask, cpu, mem, volumes, immediate, surge, unav, release))| {
                let mask = if roomy { mask % 3 + 1 } else { mask };
                let regions: Vec<&str> = (0..3)
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| REGIONS[b])
                    .collect();
                let mut spec = spec(instances, &regions);
                spec.cpu = Cpu(cpu * 100);
                spec.memory = ByteSize(mem * 128 * MI);
                if volumes {
                    spec = with_volume(spec);
                }
                if immediate {
                    spec.rollout.strategy = Strategy::Immediate;
                }
                spec.rollout.max_surge = if surge + unav == 0 { 1 } else { surge };
                spec.rollout.max_unavailable = unav;
                workload(&format!("w{n}"), release, spec)
            },
        )
        .collect();
    let app = |k: usize| match workloads.get(k) {
        Some(w) => w.key.clone(),
        None => key(&format!("orphan{k}")),
    };
    let instances = s
        .instances
        .iter()
        .enumerate()
        .map(|(n, &(k, release, h, phase, slot))| {
            let phase = [
                Phase::Pending,
                Phase::Starting,
                Phase::Healthy,
                Phase::Unhealthy,
                Phase::Stopping,
                Phase::Stopped,
                Phase::Failed,
            ][usize::from(phase)];
            let h = if roomy { h % hosts.len() } else { h };
            let (host, region) = match hosts.get(h) {
                Some(h) => (h.id.clone(), h.region.clone()),
                None => (format!("unknown{h}").into(), "eu".to_string()),
            };
            let (cpu, memory) = workloads
                .get(k)
                .map_or((250, 256 * MI), |w| (w.spec.cpu.0, w.spec.memory.0));
            Instance {
                id: format!("i{n:02}").into(),
                key: app(k),
                release: ReleaseNo::new(release),
                host,
                region,
                cpu,
                memory,
                phase,
                since: n as u64 * 10,
                slot,
            }
        })
        .collect();
    let rollouts = s
        .rollouts
        .iter()
        .map(|&(k, release, status, ago, healthy)| {
            let status = match status {
                _ if roomy => RolloutStatus::Progressing,
                0 => RolloutStatus::Progressing,
                1 => RolloutStatus::Completed,
                _ => RolloutStatus::Halted {
                    reason: "stuck".into(),
                },
            };
            let last_progress = if roomy { NOW } else { NOW - ago };
            RolloutState {
                key: app(k),
                release: ReleaseNo::new(release),
                started: last_progress,
                last_progress,
                healthy,
                status,
            }
        })
        .collect();
    let volumes = s
        .volumes
        .iter()
        .filter_map(|&(k, region, slot, h)| {
            let host = hosts.get(h)?;
            Some(VolumePlacement {
                key: app(k),
                region: if roomy {
                    host.region.clone()
                } else {
                    REGIONS[region].into()
                },
                slot,
                host: host.id.clone(),
            })
        })
        .collect();
    let observed = Observed {
        hosts,
        instances,
        rollouts,
        volumes,
        backoffs: Vec::new(),
    };
    (Desired { workloads }, observed)
}

/// Drops instances until no Ready host holds more than it has.
fn fit(mut o: Observed) -> Observed {
    let mut used: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let hosts = o.hosts.clone();
    o.instances.retain(|i| {
        let Some(h) = hosts
            .iter()
            .find(|h| h.id == i.host && h.status == HostStatus::Ready)
        else {
            return true;
        };
        if !i.phase.holds_resources() {
            return true;
        }
        let u = used.entry(h.id.to_string()).or_default();
        let fits = u.0 + u64::from(i.cpu) <= u64::from(h.cpu) && u.1 + i.memory <= h.memory;
        if fits {
            u.0 += u64::from(i.cpu);
            u.1 += i.memory;
        }
        fits
    });
    o
}

fn overcommitted(o: &Observed) -> Vec<String> {
    o.hosts
        .iter()
        .filter(|h| h.status == HostStatus::Ready)
        .filter_map(|h| {
            let held = o
                .instances
                .iter()
                .filter(|i| i.host == h.id && i.phase.holds_resources());
            let (cpu, mem) = held.fold((0u64, 0u64), |(c, m), i| {
                (c + u64::from(i.cpu), m + i.memory)
            });
            (cpu > u64::from(h.cpu) || mem > h.memory)
                .then(|| format!("{}: {cpu}m/{}m, {mem}/{}", h.id, h.cpu, h.memory))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn planning_again_after_applying_changes_nothing(s in seeds()) {
        let (desired, observed) = build(&s, false);
        let mut sim = Sim::new(observed, NOW);
        for _ in 0..6 {
            let first = sim.plan(&desired);
            sim.apply(&first);
            let again = sim.plan(&desired);
            let changes: Vec<_> = again.iter().filter(|a| a.changes_instances()).collect();
            prop_assert!(changes.is_empty(), "first: {first:#?}\nagain: {changes:#?}");
            prop_assert_eq!(plan(&desired, &sim.observed, sim.now), again, "deterministic");
            sim.settle();
            sim.now += 1000;
        }
    }

    #[test]
    fn a_halted_rollout_only_stops_what_is_lost(s in seeds()) {
        let (desired, mut observed) = build(&s, false);
        // Every workload halted long ago, at a progress it cannot exceed.
        observed.rollouts = desired
            .workloads
            .iter()
            .map(|w| RolloutState {
                key: w.key.clone(),
                release: w.release,
                started: 0,
                last_progress: 0,
                healthy: w.spec.instances * w.spec.regions.len() as u32,
                status: RolloutStatus::Halted { reason: "stuck".into() },
            })
            .collect();
        let mut sim = Sim::new(observed, NOW);
        for _ in 0..4 {
            let actions = sim.plan(&desired);
            for a in &actions {
                let Action::Stop { instance, key, .. } = a else { continue };
                let Some(w) = desired.workloads.iter().find(|w| &w.key == key) else { continue };
                let rolls_on = actions.iter().any(|a| matches!(a, Action::RolloutCompleted { key, .. } if key == &w.key));
                let i = sim.observed.instances.iter().find(|i| &i.id == instance);
                let reachable = i.is_some_and(|i| {
                    sim.observed.hosts.iter().any(|h| h.id == i.host && h.status == HostStatus::Ready)
                });
                prop_assert!(rolls_on || !reachable, "{} halted, yet stops {instance}: {actions:#?}", w.name);
            }
            let events = actions.iter().any(|a| matches!(a, Action::RolloutHalted { .. } | Action::RolloutProgressed { .. }));
            prop_assert!(!events, "{actions:#?}");
            sim.apply(&actions);
            let again = sim.plan(&desired);
            prop_assert!(!again.iter().any(Action::changes_instances), "not idempotent: {again:#?}");
            sim.settle();
            sim.now += 1000;
        }
    }

    #[test]
    fn never_overcommits_a_host(s in seeds()) {
        let (desired, observed) = build(&s, false);
        let mut sim = Sim::new(fit(observed), NOW);
        for _ in 0..6 {
            let actions = sim.plan(&desired);
            for a in &actions {
                if let Action::Start { host, region, .. } = a {
                    let h = sim.observed.hosts.iter().find(|h| &h.id == host);
                    prop_assert!(h.is_some_and(|h| h.status == HostStatus::Ready && &h.region == region), "{a:?}");
                }
            }
            sim.apply(&actions);
            prop_assert_eq!(overcommitted(&sim.observed), Vec::<String>::new(), "{:#?}", actions);
            sim.settle();
            sim.now += 1000;
        }
    }

    #[test]
    fn converges_without_breaking_availability(s in seeds()) {
        let (desired, observed) = build(&s, true);
        let mut sim = Sim::new(observed, NOW);
        let mut settled = false;
        for _ in 0..40 {
            let actions = sim.plan(&desired);
            let before = sim.clone();
            sim.apply(&actions);
            let again = sim.plan(&desired);
            prop_assert!(!again.iter().any(Action::changes_instances), "not idempotent: {again:#?}");
            for w in &desired.workloads {
                let policy = &w.spec.rollout;
                if policy.strategy == Strategy::Immediate {
                    continue;
                }
                let allowance = if w.spec.volumes.is_empty() { policy.max_unavailable } else { policy.max_unavailable.max(1) };
                let floor = w.spec.instances.saturating_sub(allowance) as usize;
                for region in &w.spec.regions {
                    let (was, is) = (before.healthy(&w.key, region), sim.healthy(&w.key, region));
                    prop_assert!(is >= was.min(floor), "{} in {region}: {was} -> {is} healthy, floor {floor}\n{actions:#?}", w.name);
                }
            }
            let moved = sim.settle();
            sim.now += 1000;
            if !moved && !actions.iter().any(Action::changes_instances) {
                settled = true;
                break;
            }
        }
        prop_assert!(settled, "no convergence in 40 steps");
        let last = sim.plan(&desired);
        prop_assert!(last.iter().all(|a| matches!(a, Action::RolloutCompleted { .. })), "{last:#?}");
        sim.apply(&last);
        let live: Vec<&Instance> = sim.observed.instances.iter().filter(|i| i.phase.is_live()).collect();
        for w in &desired.workloads {
            for region in &w.spec.regions {
                let mine: Vec<&&Instance> = live.iter().filter(|i| i.key == w.key && &i.region == region).collect();
                prop_assert_eq!(mine.len(), w.spec.instances as usize, "{} in {}", w.name, region);
                prop_assert!(mine.iter().all(|i| i.release == w.release && i.phase == Phase::Healthy));
                if !w.spec.volumes.is_empty() {
                    let slots: BTreeSet<Option<u32>> = mine.iter().map(|i| i.slot).collect();
                    prop_assert_eq!(slots, (0..w.spec.instances).map(Some).collect::<BTreeSet<_>>());
                }
            }
            let state = sim.observed.rollouts.iter().find(|r| r.key == w.key && r.release == w.release);
            prop_assert_eq!(state.map(|r| &r.status), Some(&RolloutStatus::Completed));
        }
        let wanted: u32 = desired.workloads.iter().map(|w| w.spec.instances * w.spec.regions.len() as u32).sum();
        prop_assert_eq!(live.len(), wanted as usize, "nothing else runs");
    }
}
