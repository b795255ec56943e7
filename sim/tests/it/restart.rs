//! Controller restarts in the middle of a rollout, clean and crash-style:
//! the rollout completes, never with more live instances than desired plus
//! surge, and no instance ID is minted twice.

use crate::{guard_rollout, seeds, settled, sim_with_hosts};
use std::collections::BTreeSet;
use vt_plan::events::kind;
use vt_sim::{Repo, Rng};

fn rollout_with_restarts(seed: u64, crash: bool) {
    let mut sim = sim_with_hosts(seed, 3);
    let mut repo = Repo::new(&["local"]);
    repo.app("web").instances(4).rolling(1, 0).health();
    let key = repo.key("web", "prod");
    sim.commit(&repo.files());
    sim.run_until(|s| settled(s, &key, 1, 4), 30_000);

    guard_rollout(&mut sim, &key, 4, 5);
    repo.app("web").image("registry.local/web:2");
    sim.commit(&repo.files());
    // Restart three times at seed-chosen moments of the rollout.
    let mut rng = Rng::new(seed ^ 0x5eed);
    for _ in 0..3 {
        for _ in 0..rng.between(1, 6) {
            sim.step(500);
        }
        if crash {
            sim.crash_controller(500);
        } else {
            sim.restart_controller();
        }
    }
    sim.run_until(|s| settled(s, &key, 2, 4), 120_000);

    // Every instance ID placed (and recorded) names one instance.
    let placed = sim.events_of(kind::INSTANCE_PLACED);
    let ids: BTreeSet<&str> = placed
        .iter()
        .filter_map(|e| e.instance.as_deref())
        .collect();
    assert_eq!(
        ids.len(),
        placed.len(),
        "seed {seed}: an instance ID was placed twice\n{}",
        sim.summary()
    );
    // The simulator fails a run on an ID reused for another instance; here
    // no host loses anything, so each instance started exactly once.
    assert!(
        sim.started()
            .iter()
            .all(|(id, starts)| starts.len() == 1 && ids.contains(id.as_str())),
        "seed {seed}"
    );
    assert_eq!(
        sim.events_of(kind::HOST_REGISTERED).len(),
        3 * 4,
        "seed {seed}: hosts register again after each restart"
    );
}

#[test]
fn a_rollout_survives_clean_controller_restarts() {
    for seed in seeds() {
        rollout_with_restarts(seed, false);
    }
}

#[test]
fn a_rollout_survives_controller_crashes_that_lose_unflushed_changes() {
    for seed in seeds() {
        rollout_with_restarts(seed, true);
    }
}
