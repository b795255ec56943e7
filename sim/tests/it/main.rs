//! Scenario tests of the controller's core, driven by the simulator, by
//! concern. Every test runs over several seeds and prints each one; set
//! `VT_SIM_SEED` to replay a single seed.

mod backoff;
mod chaos;
mod determinism;
mod halted;
mod health;
mod host_loss;
mod placement;
mod releases;
mod restart;
mod rollout;
mod unknown;

use vt_plan::{Phase, RolloutStatus, WorkloadKey};
use vt_sim::Sim;

/// The seeds every scenario runs with.
const SEEDS: [u64; 8] = [1, 2, 3, 42, 1337, 0xdead_beef, 7_777_777, u64::MAX];

/// A gibibyte.
pub const GI: u64 = 1 << 30;

/// The seeds to run: `VT_SIM_SEED` alone when set, else [`SEEDS`].
pub fn seeds() -> Vec<u64> {
    match std::env::var("VT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("VT_SIM_SEED is a u64")],
        Err(_) => SEEDS.to_vec(),
    }
}

/// A simulation with `n` hosts `h1..hn` of 4 cpu and 8Gi in region `local`;
/// prints the seed.
pub fn sim_with_hosts(seed: u64, n: usize) -> Sim {
    eprintln!("seed = {seed}");
    let mut sim = Sim::new(seed);
    for i in 1..=n {
        sim.add_host(&format!("h{i}"), "local", 4_000, 8 * GI);
    }
    sim
}

/// Instances of `key` the controller counts as live (pending, starting, healthy, unhealthy).
pub fn live(sim: &Sim, key: &WorkloadKey) -> usize {
    let instances = sim.controller().instances();
    instances
        .iter()
        .filter(|i| &i.instance.key == key && i.instance.phase.is_live())
        .count()
}

/// Instances of `key` the controller knows as healthy.
pub fn healthy(sim: &Sim, key: &WorkloadKey) -> usize {
    let instances = sim.controller().instances();
    instances
        .iter()
        .filter(|i| &i.instance.key == key && i.instance.phase == Phase::Healthy)
        .count()
}

/// Instances of `key` the hosts run (not stopping), and those that are healthy.
pub fn on_hosts(sim: &Sim, key: &WorkloadKey) -> (usize, usize) {
    let all = sim.on_hosts(key);
    let running = all.iter().filter(|(_, i)| i.is_running()).count();
    let healthy = all
        .iter()
        .filter(|(_, i)| i.phase == Phase::Healthy)
        .count();
    (running, healthy)
}

/// Exactly `n` instances of `key`, all of `release` and healthy, both as the
/// controller knows them and on the hosts, nothing else left, and the
/// rollout of `release` completed.
pub fn settled(sim: &Sim, key: &WorkloadKey, release: u64, n: usize) -> bool {
    let instances = sim.controller().instances();
    let ctl: Vec<_> = instances
        .iter()
        .filter(|i| &i.instance.key == key && i.instance.phase.holds_resources())
        .collect();
    let hosts = sim.on_hosts(key);
    let completed = sim
        .controller()
        .rollout(key)
        .is_some_and(|r| r.release == release && r.status == RolloutStatus::Completed);
    completed
        && ctl.len() == n
        && ctl
            .iter()
            .all(|i| i.instance.release == release && i.instance.phase == Phase::Healthy)
        && hosts.len() == n
        && hosts
            .iter()
            .all(|(_, i)| i.release == release && i.phase == Phase::Healthy)
}

/// Checks, after every step, that `key` keeps at least `min_healthy` healthy
/// and at most `max_live` live instances, as the controller counts them and
/// on the hosts.
pub fn guard_rollout(sim: &mut Sim, key: &WorkloadKey, min_healthy: usize, max_live: usize) {
    let key = key.clone();
    sim.invariant("rollout bounds", move |s| {
        let (ctl_live, ctl_healthy) = (live(s, &key), healthy(s, &key));
        let (host_running, host_healthy) = on_hosts(s, &key);
        if ctl_live > max_live || host_running > max_live {
            return Err(format!("{ctl_live} live (controller), {host_running} running (hosts); at most {max_live}"));
        }
        if ctl_healthy < min_healthy || host_healthy < min_healthy {
            return Err(format!("{ctl_healthy} healthy (controller), {host_healthy} (hosts); at least {min_healthy}"));
        }
        Ok(())
    });
}
