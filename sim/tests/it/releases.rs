//! Release numbering: one release per (app, env) whose effective spec a
//! commit changes; none for a commit that changes nothing; a commit that does
//! not validate is rejected and the previous state keeps running.

use crate::{seeds, settled, sim_with_hosts};
use vt_control::core::CommitOutcome;
use vt_plan::events::kind;
use vt_plan::{ReleaseNo, WorkloadKey};
use vt_sim::{qualified, Repo, Sim};

#[test]
fn changed_specs_make_numbered_releases_and_bad_commits_are_rejected() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 2);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(2).env("staging").instances(1);
        let (prod, staging) = (repo.key("web", "prod"), repo.key("web", "staging"));
        let (prod_name, staging_name) = (qualified("web", "prod"), qualified("web", "staging"));

        let first = accepted(sim.commit(&repo.files()));
        assert_eq!(
            first,
            sorted(vec![(prod_name.clone(), 1), (staging_name.clone(), 1)]),
            "seed {seed}"
        );
        sim.run_until(
            |s| settled(s, &prod, 1, 2) && settled(s, &staging, 1, 1),
            30_000,
        );

        // A new image changes both envs: release 2 of each.
        repo.app("web").image("registry.local/web:2");
        let made = accepted(sim.commit(&repo.files()));
        assert_eq!(
            made,
            sorted(vec![(prod_name.clone(), 2), (staging_name.clone(), 2)]),
            "seed {seed}"
        );
        sim.run_until(
            |s| settled(s, &prod, 2, 2) && settled(s, &staging, 2, 1),
            60_000,
        );

        // Only prod's instance count changes: release 3 of prod alone.
        repo.app("web").env("prod").instances(3);
        assert_eq!(
            sim.commit(&repo.files()),
            CommitOutcome::Accepted(vec![(prod_name.clone(), ReleaseNo::new(3))]),
            "seed {seed}"
        );
        sim.run_until(|s| settled(s, &prod, 3, 3), 60_000);

        // A new commit with the same content makes no release.
        assert_eq!(
            sim.commit(&repo.files()),
            CommitOutcome::Accepted(Vec::new()),
            "seed {seed}"
        );

        assert_eq!(numbers(&sim, &prod), [1, 2, 3], "seed {seed}");
        assert_eq!(numbers(&sim, &staging), [1, 2], "seed {seed}");
        let releases = sim.controller().releases_of(&prod).expect("releases");
        let paths =
            |n: usize| -> Vec<String> { releases[n].diff.iter().map(|d| d.path.clone()).collect() };
        assert_eq!(
            (paths(0), paths(1), paths(2)),
            (
                vec![],
                vec!["image".to_string()],
                vec!["instances".to_string()]
            ),
            "seed {seed}"
        );
        assert_eq!(sim.events_of(kind::RELEASE_CREATED).len(), 5, "seed {seed}");

        // Invalid YAML: rejected, and what runs keeps running.
        let mut bad = repo.files();
        let app_yaml = Repo::app_path("web");
        for (path, content) in &mut bad {
            if *path == app_yaml {
                *content = "image: [registry.local/web:3\n".into();
            }
        }
        let placed_before = sim.events_of(kind::INSTANCE_PLACED).len();
        let outcome = sim.commit(&bad);
        assert!(
            matches!(outcome, CommitOutcome::Rejected(n) if n > 0),
            "seed {seed}: {outcome:?}"
        );
        let rejected = sim.events_of(kind::COMMIT_REJECTED);
        assert_eq!(rejected.len(), 1, "seed {seed}");
        assert!(
            rejected[0].message.contains("keeping"),
            "seed {seed}: {}",
            rejected[0].message
        );
        sim.run_for(30_000);
        assert!(
            settled(&sim, &prod, 3, 3) && settled(&sim, &staging, 2, 1),
            "seed {seed}:\n{}",
            sim.summary()
        );
        assert_eq!(
            sim.events_of(kind::INSTANCE_PLACED).len(),
            placed_before,
            "seed {seed}: nothing was replaced"
        );
        assert_eq!(numbers(&sim, &prod), [1, 2, 3], "seed {seed}");
    }
}

/// The releases an accepted commit made, sorted.
fn accepted(outcome: CommitOutcome) -> Vec<(String, u64)> {
    match outcome {
        CommitOutcome::Accepted(made) => {
            sorted(made.into_iter().map(|(n, r)| (n, r.get())).collect())
        }
        other => panic!("commit not accepted: {other:?}"),
    }
}

fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort();
    v
}

/// The numbers of every release of `key`.
fn numbers(sim: &Sim, key: &WorkloadKey) -> Vec<u64> {
    sim.controller()
        .releases_of(key)
        .expect("releases")
        .iter()
        .map(|r| r.number.get())
        .collect()
}

#[test]
fn scaling_keeps_the_running_instances() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 2);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(2);
        let prod = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &prod, 1, 2), 30_000);
        let before: Vec<String> = live_ids(&sim, &prod);

        // Only the instance count changes: release 2, and the two running
        // instances carry on in it instead of being replaced.
        repo.app("web").env("prod").instances(3);
        sim.commit(&repo.files());
        // (The controller's view: simulated hosts keep the release they were assigned.)
        let adopted = |s: &Sim| {
            let live: Vec<_> = s
                .controller()
                .instances_of(&prod)
                .into_iter()
                .filter(|i| i.instance.phase.is_live())
                .collect();
            live.len() == 3
                && live
                    .iter()
                    .all(|i| i.instance.release == 2 && i.instance.phase == vt_plan::Phase::Healthy)
        };
        sim.run_until(adopted, 60_000);
        let after = live_ids(&sim, &prod);
        assert!(
            before.iter().all(|id| after.contains(id)),
            "seed {seed}: {before:?} kept in {after:?}"
        );
        assert!(
            sim.events_of(kind::INSTANCE_STOPPING).is_empty(),
            "seed {seed}: nothing stopped"
        );
    }
}

fn live_ids(sim: &Sim, key: &WorkloadKey) -> Vec<String> {
    sim.controller()
        .instances_of(key)
        .into_iter()
        .filter(|i| i.instance.phase.is_live())
        .map(|i| i.instance.id.to_string())
        .collect()
}
