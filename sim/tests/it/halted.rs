//! Halted rollouts: they make no progress but still repair (lost and failed
//! instances are replaced with the release they ran), they recover when the
//! release becomes healthy after all, a first deploy placed nowhere before its
//! deadline is placed once there is room, and instances still starting at the
//! deadline are named in the halt's reason, without being replaced.

use crate::{guard_rollout, healthy, live, on_hosts, seeds, settled, sim_with_hosts, GI};
use std::collections::BTreeMap;
use vt_plan::events::kind;
use vt_plan::{HostStatus, InstanceId, Phase, ReleaseNo, RolloutStatus, WorkloadKey};
use vt_sim::{Repo, Sim};

/// 4 instances of `web` release 1 on 3 hosts (rolling, surge 1, none
/// unavailable, 20s deadline, health check), then release 2 whose image never
/// boots, run until its rollout halts.
fn halted_web(seed: u64) -> (Sim, Repo, WorkloadKey) {
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

    sim.fail_image("registry.local/web:bad");
    repo.app("web").image("registry.local/web:bad");
    sim.commit(&repo.files());
    sim.run_until(|s| !s.events_of(kind::ROLLOUT_HALTED).is_empty(), 60_000);
    (sim, repo, key)
}

fn halted(sim: &Sim, key: &WorkloadKey, release: u64) -> bool {
    sim.controller()
        .rollout(key)
        .is_some_and(|r| r.release == release && matches!(r.status, RolloutStatus::Halted { .. }))
}

/// Release 1 instances of `key` running healthy on the hosts.
fn serving_release_1(sim: &Sim, key: &WorkloadKey) -> usize {
    sim.on_hosts(key)
        .iter()
        .filter(|(_, i)| i.release == 1 && i.phase == Phase::Healthy)
        .count()
}

/// The host running the most release 1 instances of `key`.
fn busiest(sim: &Sim, key: &WorkloadKey) -> String {
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for (host, i) in sim.on_hosts(key) {
        if i.release == 1 {
            *per_host.entry(host).or_default() += 1;
        }
    }
    let most = per_host.values().copied().max().unwrap_or(0);
    per_host
        .into_iter()
        .find(|(_, n)| *n == most)
        .map(|(h, _)| h.to_string())
        .expect("a host runs release 1")
}

#[test]
fn a_halted_rollout_replaces_the_instances_of_a_lost_host_with_their_release() {
    for seed in seeds() {
        let (mut sim, _repo, key) = halted_web(seed);
        let placed = sim.events_of(kind::INSTANCE_PLACED).len();
        let victim = busiest(&sim, &key);
        let lost: Vec<InstanceId> = sim
            .on_hosts(&key)
            .iter()
            .filter(|(h, i)| *h == victim && i.release == 1)
            .map(|(_, i)| i.id.clone())
            .collect();
        assert!(!lost.is_empty(), "seed {seed}");

        // Never more than the surge allows, as the controller counts them.
        sim.invariant("halted bounds", {
            let key = key.clone();
            move |s| match live(s, &key) {
                n if n <= 5 => Ok(()),
                n => Err(format!("{n} live instances, at most 5")),
            }
        });
        sim.crash(&victim);
        sim.run_until(
            |s| {
                s.controller()
                    .hosts()
                    .iter()
                    .any(|h| h.host.name == victim && h.host.status == HostStatus::Lost)
            },
            20_000,
        );
        sim.run_until(|s| serving_release_1(s, &key) == 4, 30_000);

        // Replaced with release 1, elsewhere; the lost ones no longer count.
        let after: Vec<_> = sim.events_of(kind::INSTANCE_PLACED)[placed..].to_vec();
        let release_1: Vec<_> = after
            .iter()
            .filter(|e| e.release == Some(ReleaseNo::new(1)))
            .collect();
        assert_eq!(
            release_1.len(),
            lost.len(),
            "seed {seed}\n{}",
            sim.summary()
        );
        assert!(
            release_1.iter().all(|e| e.host.as_deref() != Some(&victim)),
            "seed {seed}"
        );
        let counted: Vec<_> = sim
            .controller()
            .instances_of(&key)
            .into_iter()
            .filter(|i| lost.contains(&i.instance.id) && i.instance.phase.is_live())
            .map(|i| i.instance.id.clone())
            .collect();
        assert!(
            counted.is_empty(),
            "seed {seed}: still counted: {counted:?}"
        );
        assert_eq!(healthy(&sim, &key), 4, "seed {seed}");

        // Still halted: nothing else starts, the bad release is not retried.
        let placed = sim.events_of(kind::INSTANCE_PLACED).len();
        sim.run_for(60_000);
        assert_eq!(
            sim.events_of(kind::INSTANCE_PLACED).len(),
            placed,
            "seed {seed}\n{}",
            sim.summary()
        );
        assert!(halted(&sim, &key, 2), "seed {seed}");
        assert_eq!(serving_release_1(&sim, &key), 4, "seed {seed}");
    }
}

#[test]
fn a_halted_rollout_replaces_failed_instances_with_their_release() {
    for seed in seeds() {
        let (mut sim, _repo, key) = halted_web(seed);
        let placed = sim.events_of(kind::INSTANCE_PLACED).len();
        let victim = busiest(&sim, &key);
        let gone = sim
            .on_hosts(&key)
            .iter()
            .filter(|(h, i)| *h == victim && i.release == 1)
            .count();

        // The host reboots before it is lost: it comes back empty and its
        // instances fail ("the host no longer reports it").
        sim.crash(&victim);
        sim.step(500);
        sim.restart(&victim);
        sim.run_until(|s| serving_release_1(s, &key) == 4, 30_000);

        let after: Vec<_> = sim.events_of(kind::INSTANCE_PLACED)[placed..].to_vec();
        assert_eq!(
            after
                .iter()
                .filter(|e| e.release == Some(ReleaseNo::new(1)))
                .count(),
            gone,
            "seed {seed}\n{}",
            sim.summary()
        );
        assert!(
            sim.events_of(kind::HOST_LOST).is_empty(),
            "seed {seed}: back before it was lost"
        );
        sim.run_for(30_000);
        assert!(halted(&sim, &key, 2), "seed {seed}");
        assert_eq!(
            (serving_release_1(&sim, &key), healthy(&sim, &key)),
            (4, 4),
            "seed {seed}\n{}",
            sim.summary()
        );
    }
}

/// `web` (2 instances, rolling, surge 1, 20s deadline) at release 1, then
/// release 2 whose instances take `boot` to become healthy.
fn slow_release(seed: u64, boot: (u64, u64)) -> (Sim, WorkloadKey) {
    let mut sim = sim_with_hosts(seed, 3);
    let mut repo = Repo::new(&["local"]);
    repo.app("web")
        .instances(2)
        .rolling(1, 0)
        .progress_deadline("20s")
        .health();
    let key = repo.key("web", "prod");
    sim.commit(&repo.files());
    sim.run_until(|s| settled(s, &key, 1, 2), 30_000);
    guard_rollout(&mut sim, &key, 2, 3);

    sim.behaviour_mut().boot_ms = boot;
    repo.app("web").image("registry.local/web:2");
    sim.commit(&repo.files());
    (sim, key)
}

#[test]
fn instances_still_starting_at_the_deadline_halt_the_rollout_and_say_so() {
    for seed in seeds() {
        let (mut sim, key) = slow_release(seed, (40_000, 45_000));
        sim.run_until(|s| !s.events_of(kind::ROLLOUT_HALTED).is_empty(), 30_000);
        let halt = sim.events_of(kind::ROLLOUT_HALTED)[0].clone();
        assert_eq!(halt.release, Some(ReleaseNo::new(2)), "seed {seed}");
        assert!(
            halt.message
                .ends_with("(progress deadline 20s); 0 of 2 healthy, 1 still starting"),
            "seed {seed}: {}",
            halt.message
        );

        // Starting is not failed: the instance is waited for, not replaced.
        sim.run_for(15_000);
        let placed_2 = sim
            .events_of(kind::INSTANCE_PLACED)
            .iter()
            .filter(|e| e.release == Some(ReleaseNo::new(2)))
            .count();
        assert_eq!(placed_2, 1, "seed {seed}\n{}", sim.summary());
        let starting: Vec<_> = sim
            .controller()
            .instances_of(&key)
            .into_iter()
            .filter(|i| i.instance.release == 2)
            .map(|i| i.instance.phase)
            .collect();
        assert_eq!(starting, [Phase::Starting], "seed {seed}");
        assert_eq!(on_hosts(&sim, &key), (3, 2), "seed {seed}");
    }
}

#[test]
fn a_halted_rollout_whose_instances_become_healthy_resumes_and_completes() {
    for seed in seeds() {
        let (mut sim, key) = slow_release(seed, (25_000, 30_000));
        sim.run_until(|s| halted(s, &key, 2), 30_000);
        sim.run_until(|s| settled(s, &key, 2, 2), 120_000);

        let completed = sim.events_of(kind::ROLLOUT_COMPLETED);
        assert_eq!(
            completed.iter().map(|e| e.release).collect::<Vec<_>>(),
            [Some(ReleaseNo::new(1)), Some(ReleaseNo::new(2))],
            "seed {seed}"
        );
        let progressed = sim.events_of(kind::ROLLOUT_PROGRESSED);
        assert!(
            progressed
                .iter()
                .any(|e| e.release == Some(ReleaseNo::new(2))
                    && e.time > sim.events_of(kind::ROLLOUT_HALTED)[0].time),
            "seed {seed}: progress after the halt"
        );
        let placed_2 = sim
            .events_of(kind::INSTANCE_PLACED)
            .iter()
            .filter(|e| e.release == Some(ReleaseNo::new(2)))
            .count();
        assert_eq!(placed_2, 2, "seed {seed}: none replaced");
    }
}

#[test]
fn a_first_deploy_unplaceable_until_its_deadline_is_placed_once_there_is_room() {
    for seed in seeds() {
        eprintln!("seed = {seed}");
        let mut sim = Sim::new(seed);
        sim.add_host("small", "local", 1_000, GI);
        let mut repo = Repo::new(&["local"]);
        repo.app("big")
            .instances(2)
            .resources("500m", "2Gi")
            .progress_deadline("20s");
        let key = repo.key("big", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| halted(s, &key, 1), 30_000);
        let halt = &sim.events_of(kind::ROLLOUT_HALTED)[0];
        assert!(
            halt.message.ends_with("0 of 2 healthy"),
            "seed {seed}: {}",
            halt.message
        );
        sim.run_for(5_000);
        assert!(sim.on_hosts(&key).is_empty(), "seed {seed}");

        sim.add_host("large", "local", 4_000, 8 * GI);
        sim.run_until(|s| settled(s, &key, 1, 2), 30_000);
        assert!(
            sim.on_hosts(&key).iter().all(|(h, _)| *h == "large"),
            "seed {seed}"
        );
        assert_eq!(
            sim.events_of(kind::ROLLOUT_COMPLETED)
                .iter()
                .map(|e| e.release)
                .collect::<Vec<_>>(),
            [Some(ReleaseNo::new(1))],
            "seed {seed}"
        );
    }
}

/// The simulated hosts never restart an instance in place; this drives the
/// controller's core directly with the reports a microVM host sends for a VM
/// it restarts after a crash: still `Starting`, with a growing restart count.
#[test]
fn a_vm_restarted_in_place_is_not_replaced_and_halts_the_rollout_as_still_starting() {
    use vt_control::core::{Config, Controller};
    use vt_control::store::RedbStore;
    use vt_plan::releases::CommitInfo;
    use vt_plan::Action;
    use vt_sim::EPOCH;
    use vt_wire::messages::{HostRegistration, InstanceReport};

    let store = Box::new(RedbStore::in_memory().expect("store"));
    let mut ctl = Controller::open(store, Config::default()).expect("controller");
    let mut repo = Repo::new(&["local"]);
    repo.app("web").progress_deadline("20s").health();
    let key = repo.key("web", "prod");
    let commit = |ctl: &mut Controller, repo: &Repo, n: u64, now| {
        let files = repo
            .files()
            .into_iter()
            .map(|(p, c)| (p, c.into_bytes()))
            .collect();
        let snapshot = vt_repo::Snapshot {
            origin: format!("commit {n}"),
            commit: Some(format!("{n:040x}")),
            files,
        };
        let info = CommitInfo {
            sha: format!("{n:040x}"),
            author: "test <test@vt.invalid>".into(),
            message: format!("commit {n}"),
            time: now,
        };
        ctl.apply_commit(&info, &vt_repo::load(&snapshot), now);
    };
    let report = |id: &str, phase, restarts| InstanceReport {
        id: id.into(),
        phase,
        detail: (restarts > 0).then(|| format!("restarting (restart {restarts})")),
        restarts,
        address: None,
        image: None,
    };
    let placed = |actions: &[Action]| -> Vec<String> {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Start { .. }))
            .map(|a| format!("{a:?}"))
            .collect()
    };

    let mut now = EPOCH;
    ctl.register_host(
        &HostRegistration {
            name: "h1".into(),
            region: "local".into(),
            cpu: 4_000,
            memory: 8 * GI,
            tunnel: None,
        },
        now,
    );
    commit(&mut ctl, &repo, 1, now);
    assert_eq!(placed(&ctl.tick(now)).len(), 1);
    let first = ctl.instances_of(&key)[0].instance.id.clone();
    now += 1_000;
    ctl.report("h1", &[report(&first, Phase::Healthy, 0)], now);
    ctl.tick(now);
    assert_eq!(
        ctl.rollout(&key).map(|r| r.status.clone()),
        Some(RolloutStatus::Completed)
    );

    // Release 2's VM crashes and is restarted in place, again and again.
    repo.app("web").image("registry.local/web:2");
    commit(&mut ctl, &repo, 2, now);
    assert_eq!(placed(&ctl.tick(now)).len(), 1);
    let second = ctl
        .instances_of(&key)
        .iter()
        .find(|i| i.instance.release == 2)
        .map(|i| i.instance.id.clone())
        .expect("release 2 placed");
    let mut halt = None;
    for restarts in 0..30 {
        now += 1_000;
        let reports = [
            report(&first, Phase::Healthy, 0),
            report(&second, Phase::Starting, restarts),
        ];
        ctl.report("h1", &reports, now);
        let actions = ctl.tick(now);
        assert!(
            placed(&actions).is_empty(),
            "restart {restarts}: {actions:?}"
        );
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Stop { .. })),
            "restart {restarts}: {actions:?}"
        );
        halt = halt.or_else(|| {
            actions.iter().find_map(|a| match a {
                Action::RolloutHalted { reason, .. } => Some(reason.clone()),
                _ => None,
            })
        });
    }
    let events = ctl.flush().expect("flush");
    let crashed = events
        .iter()
        .filter(|e| e.kind == kind::INSTANCE_CRASHED)
        .count();
    assert_eq!(crashed, 29, "one event per restart");
    let halt = halt.expect("halted at the deadline");
    assert!(
        halt.contains("(progress deadline 20s); 0 of 1 healthy, 1 still starting; last failure (20 in a row): restarting (restart 20)"),
        "{halt}"
    );
    let live: Vec<_> = ctl
        .instances_of(&key)
        .iter()
        .filter(|i| i.instance.phase.is_live())
        .map(|i| (i.instance.id.clone(), i.instance.phase, i.restarts))
        .collect();
    assert_eq!(
        live,
        [(first, Phase::Healthy, 0), (second, Phase::Starting, 29)]
    );
}
