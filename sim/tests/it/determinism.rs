//! Determinism: a seed reproduces a run exactly, faults and all.

use crate::{seeds, GI};
use vt_sim::{Entry, Repo, Sim, SimConfig};

/// A busy run: two apps, a rollout, flaky boots, a partition, a host crash
/// and a controller crash.
fn run(seed: u64) -> Vec<Entry> {
    let mut config = SimConfig::default();
    config.behaviour.fail_probability = 0.2;
    let mut sim = Sim::with_config(seed, config);
    for h in ["h1", "h2", "h3"] {
        sim.add_host(h, "local", 2_000, 4 * GI);
    }
    let mut repo = Repo::new(&["local"]);
    repo.app("web").instances(3).rolling(1, 1).health();
    repo.app("db").volume("data", "1Gi");
    sim.commit(&repo.files());
    sim.run_for(10_000);
    repo.app("web").image("registry.local/web:2");
    sim.commit(&repo.files());
    sim.run_for(3_000);
    sim.partition("h2");
    sim.crash("h3");
    sim.run_for(15_000);
    sim.crash_controller(500);
    sim.heal("h2");
    sim.restart("h3");
    sim.run_for(20_000);
    sim.timeline().to_vec()
}

#[test]
fn a_seed_reproduces_the_timeline() {
    for seed in seeds() {
        eprintln!("seed = {seed}");
        let (first, second) = (run(seed), run(seed));
        assert!(
            first.len() > 50,
            "seed {seed}: a busy run, {} entries",
            first.len()
        );
        assert_eq!(first, second, "seed {seed}");
        let other = run(seed.wrapping_add(1));
        assert_ne!(first, other, "seed {seed}: another seed, another run");
    }
}
