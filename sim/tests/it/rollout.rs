//! Rollouts: a rolling update keeps its bounds and completes; an immediate
//! one replaces everything at once; a release whose instances all fail halts
//! at its progress deadline with the old instances still serving.

use crate::{guard_rollout, healthy, on_hosts, seeds, settled, sim_with_hosts};
use vt_plan::events::kind;
use vt_plan::{Phase, ReleaseNo, RolloutStatus};
use vt_sim::Repo;

#[test]
fn rolling_update_keeps_surge_and_availability_bounds() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 3);
        let mut repo = Repo::new(&["local"]);
        repo.app("web")
            .instances(4)
            .rolling(1, 0)
            .health()
            .endpoint(80);
        let key = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &key, 1, 4), 30_000);

        guard_rollout(&mut sim, &key, 4, 5);
        repo.app("web").image("registry.local/web:2");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &key, 2, 4), 120_000);

        let completed = sim.events_of(kind::ROLLOUT_COMPLETED);
        assert_eq!(
            completed.iter().map(|e| e.release).collect::<Vec<_>>(),
            [Some(ReleaseNo::new(1)), Some(ReleaseNo::new(2))],
            "seed {seed}"
        );
        let routes = sim.controller().routes();
        assert_eq!(routes.len(), 1, "seed {seed}");
        assert_eq!(
            routes[0].backends.len(),
            4,
            "seed {seed}: every new instance serves"
        );
    }
}

#[test]
fn immediate_update_replaces_every_instance_at_once() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 3);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(4).immediate();
        let key = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &key, 1, 4), 30_000);

        repo.app("web").image("registry.local/web:2");
        sim.commit(&repo.files());
        sim.step(500);
        let stopping: Vec<_> = sim
            .events_of(kind::INSTANCE_STOPPING)
            .into_iter()
            .filter(|e| e.release == Some(ReleaseNo::new(1)))
            .collect();
        let placed: Vec<_> = sim
            .events_of(kind::INSTANCE_PLACED)
            .into_iter()
            .filter(|e| e.release == Some(ReleaseNo::new(2)))
            .collect();
        assert_eq!(
            (stopping.len(), placed.len()),
            (4, 4),
            "seed {seed}: all four replaced in one tick\n{}",
            sim.summary()
        );
        assert!(
            stopping.iter().chain(&placed).all(|e| e.time == sim.now()),
            "seed {seed}"
        );
        sim.run_until(|s| settled(s, &key, 2, 4), 60_000);
    }
}

#[test]
fn a_release_that_never_becomes_healthy_halts_at_the_deadline() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 3);
        let mut repo = Repo::new(&["local"]);
        repo.app("web")
            .instances(4)
            .rolling(1, 0)
            .progress_deadline("20s")
            .health();
        let key = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &key, 1, 4), 30_000);

        guard_rollout(&mut sim, &key, 4, 5);
        sim.fail_image("registry.local/web:bad");
        repo.app("web").image("registry.local/web:bad");
        sim.commit(&repo.files());
        let committed = sim.now();
        sim.run_until(|s| !s.events_of(kind::ROLLOUT_HALTED).is_empty(), 60_000);

        let halted = sim.events_of(kind::ROLLOUT_HALTED);
        assert_eq!(halted[0].release, Some(ReleaseNo::new(2)), "seed {seed}");
        assert!(
            halted[0].time - committed > 20_000,
            "seed {seed}: halted only after the deadline"
        );
        assert!(
            halted[0].message.contains("progress deadline 20s"),
            "seed {seed}: {}",
            halted[0].message
        );
        assert!(
            !sim.events_of(kind::INSTANCE_PHASE)
                .iter()
                .any(|e| e.release == Some(ReleaseNo::new(2)) && e.message.ends_with("→ healthy")),
            "seed {seed}"
        );

        // Frozen: the old instances keep serving, nothing else is started.
        let placed = sim.events_of(kind::INSTANCE_PLACED).len();
        sim.run_for(60_000);
        assert_eq!(
            sim.events_of(kind::INSTANCE_PLACED).len(),
            placed,
            "seed {seed}: nothing placed after the halt"
        );
        let status = sim
            .controller()
            .rollout(&key)
            .map(|r| (r.release, r.status.clone()));
        assert!(
            matches!(status, Some((r, RolloutStatus::Halted { .. })) if r == 2),
            "seed {seed}: {status:?}"
        );
        assert_eq!(
            (healthy(&sim, &key), on_hosts(&sim, &key)),
            (4, (4, 4)),
            "seed {seed}\n{}",
            sim.summary()
        );
        assert!(
            sim.on_hosts(&key)
                .iter()
                .all(|(_, i)| i.release == 1 && i.phase == Phase::Healthy),
            "seed {seed}"
        );
    }
}
