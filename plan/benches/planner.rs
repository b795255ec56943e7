//! Planner benchmark: 10,000 app/envs onto 1,000 hosts.
//!
//! Three scenarios, each timed over several runs (median and min):
//!
//! - **cold**: an empty fleet (hosts only) gets every workload placed;
//! - **steady**: observed == desired, the plan has nothing to start or stop;
//! - **rolling**: every workload has a new release; the first step of each
//!   rolling update (a surge instance, or for a workload with volumes the stop
//!   of one slot's instance).
//!
//! Anchor: the Kubernetes scheduler's ~100 pods/s at 5,000 nodes (its
//! scalability target). The aim here is at least 100 times that.
//!
//! `cargo bench -p vt-fleet --bench planner`

// A benchmark measures wall time; the crate it measures reads no clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vt_plan::{
    plan, Action, Desired, Host, HostStatus, Instance, Observed, Phase, ReleaseNo, RolloutState,
    RolloutStatus, VolumePlacement, Workload, WorkloadKey,
};
use vt_repo::effective::RolloutPolicy;
use vt_repo::schema::{Strategy, Volume};
use vt_repo::{ByteSize, Cpu, EffectiveSpec};

const WORKLOADS: usize = 10_000;
const HOSTS: usize = 1_000;
/// Regions and their share of the hosts.
const REGIONS: [(&str, usize); 3] = [("eu-west", 450), ("us-east", 350), ("ap-south", 200)];
const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;
/// Runs per scenario at most, and the time budget of each scenario.
const MAX_RUNS: usize = 9;
const BUDGET: Duration = Duration::from_secs(20);
/// Kubernetes scheduler throughput target, pods per second at 5,000 nodes.
const K8S_PODS_PER_SEC: f64 = 100.0;

/// A small deterministic generator (xorshift64*), so every run plans the same fleet.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn hosts() -> Vec<Host> {
    let mut out = Vec::with_capacity(HOSTS);
    for (region, count) in REGIONS {
        for i in 0..count {
            let big = i % 4 == 0;
            out.push(Host {
                id: format!("host_{region}_{i:04}").into(),
                name: format!("{region}-{i}"),
                region: region.to_string(),
                cpu: if big { 128_000 } else { 64_000 },
                memory: if big { 512 * GI } else { 256 * GI },
                status: HostStatus::Ready,
            });
        }
    }
    out
}

/// 10,000 workloads: mostly 1 instance per region, some 2 or 3; mostly one
/// region, some two or three; 5% with a volume; sizes from 250m/256Mi to 2/4Gi.
fn workloads() -> Vec<Workload> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sizes = [(250, 256 * MI), (500, 512 * MI), (1000, GI), (2000, 4 * GI)];
    (0..WORKLOADS)
        .map(|n| {
            let instances = match rng.below(100) {
                0..=79 => 1,
                80..=94 => 2,
                _ => 3,
            };
            let first = usize::try_from(rng.below(3)).expect("small");
            let region_count = match rng.below(100) {
                0..=79 => 1,
                80..=94 => 2,
                _ => 3,
            };
            let regions = (0..region_count)
                .map(|r| REGIONS[(first + r) % REGIONS.len()].0.to_string())
                .collect();
            let (cpu, memory) = sizes[usize::try_from(rng.below(4)).expect("small")];
            let volumes = if rng.below(100) < 5 {
                vec![Volume {
                    name: "data".into(),
                    size: ByteSize(10 * GI),
                    mount: "/data".into(),
                }]
            } else {
                Vec::new()
            };
            Workload {
                key: WorkloadKey {
                    app_id: format!("app_{n:05}"),
                    env_id: format!("env_{n:05}"),
                },
                name: format!("org{}/proj/app{n}/prod", n % 50),
                release: ReleaseNo::new(1),
                spec: EffectiveSpec {
                    image: format!("registry.local/app{n}:1"),
                    command: Vec::new(),
                    args: Vec::new(),
                    env: BTreeMap::new(),
                    cpu: Cpu(cpu),
                    memory: ByteSize(memory),
                    instances,
                    regions,
                    ports: Vec::new(),
                    endpoints: Vec::new(),
                    volumes,
                    secrets: Vec::new(),
                    health: None,
                    rollout: RolloutPolicy {
                        strategy: Strategy::Rolling,
                        max_surge: 1,
                        max_unavailable: 0,
                        progress_deadline: vt_repo::Duration(300_000),
                    },
                },
            }
        })
        .collect()
}

/// Records `actions` the way the controller does, with every new instance
/// already healthy and every rollout complete: the fleet after it settled.
fn settle(observed: &mut Observed, actions: &[Action], now: u64) {
    let mut minted = observed.instances.len();
    for action in actions {
        match action {
            Action::Start {
                key,
                region,
                host,
                slot,
                ..
            } => {
                minted += 1;
                let started = action.started_instance(format!("ins_{minted:08}").into(), now);
                observed.instances.extend(started.map(|i| Instance {
                    phase: Phase::Healthy,
                    ..i
                }));
                if let Some(slot) = slot {
                    observed.volumes.push(VolumePlacement {
                        key: key.clone(),
                        region: region.clone(),
                        slot: *slot,
                        host: host.clone(),
                    });
                }
            }
            Action::RolloutStarted { key, release } => observed.rollouts.push(RolloutState {
                key: key.clone(),
                release: *release,
                started: now,
                last_progress: now,
                healthy: 0,
                status: RolloutStatus::Completed,
            }),
            _ => {}
        }
    }
}

/// What one plan asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    starts: usize,
    stops: usize,
    other: usize,
}

fn count(actions: &[Action]) -> Counts {
    let mut c = Counts::default();
    for a in actions {
        match a {
            Action::Start { .. } => c.starts += 1,
            Action::Stop { .. } => c.stops += 1,
            _ => c.other += 1,
        }
    }
    c
}

/// Times `plan` over several runs; returns (median, min) and the last result.
fn time(desired: &Desired, observed: &Observed, now: u64) -> (Duration, Duration, Vec<Action>) {
    let mut runs = Vec::new();
    let started = Instant::now();
    let mut last = Vec::new();
    while runs.len() < MAX_RUNS && (runs.len() < 3 || started.elapsed() < BUDGET) {
        let t = Instant::now();
        last = plan(desired, observed, now);
        runs.push(t.elapsed());
    }
    runs.sort();
    (runs[runs.len() / 2], runs[0], last)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, median: Duration, min: Duration, counts: &Counts) {
    println!(
        "{name:<8} median {:>10}  min {:>10}  ({} starts, {} stops, {} other actions)",
        ms(median),
        ms(min),
        counts.starts,
        counts.stops,
        counts.other
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let hosts = hosts();
    let mut desired = Desired {
        workloads: workloads(),
    };
    let wanted: usize = desired
        .workloads
        .iter()
        .map(|w| w.spec.instances as usize * w.spec.regions.len())
        .sum();
    println!(
        "planner: {} workloads ({wanted} instances) onto {} hosts in {} regions, median/min of up to {MAX_RUNS} runs",
        desired.workloads.len(),
        hosts.len(),
        REGIONS.len()
    );

    // Cold: nothing runs yet.
    let mut observed = Observed {
        hosts,
        ..Observed::default()
    };
    let now = 1_000;
    let (median, min, actions) = time(&desired, &observed, now);
    let cold = count(&actions);
    assert_eq!(cold.starts, wanted, "every instance is placed");
    report("cold", median, min, &cold);
    let rate = cold.starts as f64 / median.as_secs_f64();
    println!(
        "         {rate:.0} placements/s (median); Kubernetes scheduler target ~{K8S_PODS_PER_SEC:.0} pods/s at 5,000 nodes: {:.0}x",
        rate / K8S_PODS_PER_SEC
    );

    // Steady: everything runs and is healthy.
    settle(&mut observed, &actions, now);
    let (median, min, actions) = time(&desired, &observed, now + 1_000);
    let steady = count(&actions);
    assert_eq!(steady, Counts::default(), "nothing to do in steady state");
    report("steady", median, min, &steady);

    // Rolling: a new release of every workload; the first step of each rollout.
    for w in &mut desired.workloads {
        w.release = w.release.next();
        w.spec.image = w.spec.image.replace(":1", ":2");
    }
    let (median, min, actions) = time(&desired, &observed, now + 2_000);
    let rolling = count(&actions);
    assert!(rolling.starts + rolling.stops >= desired.workloads.len());
    report("rolling", median, min, &rolling);
    let changes = (rolling.starts + rolling.stops) as f64 / median.as_secs_f64();
    println!("         {changes:.0} starts+stops/s (median)");
}
