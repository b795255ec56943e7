//! Placement: instances spread over hosts, hosts are never overcommitted,
//! and what does not fit is reported with the reason.

use crate::{healthy, on_hosts, seeds, settled, sim_with_hosts, GI};
use std::collections::BTreeMap;
use vt_plan::events::kind;
use vt_sim::{no_overcommit, qualified, Repo, Sim};

#[test]
fn instances_spread_never_overcommit_and_misfits_say_why() {
    for seed in seeds() {
        eprintln!("seed = {seed}");
        let mut sim = Sim::new(seed);
        for h in ["h1", "h2", "h3"] {
            sim.add_host(h, "local", 1_000, GI);
        }
        sim.invariant("no overcommit", no_overcommit);
        let mut repo = Repo::new(&["local", "eu"]);
        repo.app("web").instances(6).resources("300m", "256Mi");
        let web = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &web, 1, 6), 30_000);

        // Fewest replicas first: two on each host.
        let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
        for (host, _) in sim.on_hosts(&web) {
            *per_host.entry(host).or_default() += 1;
        }
        assert_eq!(
            per_host.values().copied().collect::<Vec<_>>(),
            [2, 2, 2],
            "seed {seed}: {per_host:?}"
        );

        // Too big for any host; a region without hosts; one too many for what is left
        // (each host has 400m cpu left: one more 300m instance each).
        repo.app("big").resources("250m", "4Gi");
        repo.app("far").regions(&["eu"]);
        repo.app("more").instances(4).resources("300m", "256Mi");
        sim.commit(&repo.files());
        let (big, far, more) = (
            repo.key("big", "prod"),
            repo.key("far", "prod"),
            repo.key("more", "prod"),
        );
        sim.run_until(
            |s| {
                s.on_hosts(&more)
                    .iter()
                    .filter(|(_, i)| i.is_running())
                    .count()
                    == 3
            },
            30_000,
        );
        sim.run_for(10_000);

        let unplaceable = sim.events_of(kind::INSTANCE_UNPLACEABLE);
        let about = |name: &str| -> Vec<String> {
            unplaceable
                .iter()
                .filter(|e| e.app.as_deref().is_some_and(|a| name.starts_with(a)))
                .map(|e| e.message.clone())
                .collect()
        };
        let big_msgs = about(&qualified("big", "prod"));
        assert_eq!(
            big_msgs.len(),
            1,
            "seed {seed}: one event while the reason stays the same: {big_msgs:?}"
        );
        assert!(
            big_msgs[0].contains(
                "1 instance(s) cannot be placed: no host in region local with 4Gi memory"
            ),
            "seed {seed}: {}",
            big_msgs[0]
        );
        let far_msgs = about(&qualified("far", "prod"));
        assert!(
            far_msgs.iter().any(|m| m.contains("no host in region eu")),
            "seed {seed}: {far_msgs:?}"
        );
        let more_msgs = about(&qualified("more", "prod"));
        assert!(more_msgs.iter().any(|m| m.contains("1 instance(s) cannot be placed: no host in region local with 256Mi memory and 300m cpu free")), "seed {seed}: {more_msgs:?}");

        // `describe` reads the same reasons from the last tick.
        let pending = sim.controller().pending(&big);
        assert!(
            pending.len() == 1 && pending[0].reason.contains("4Gi memory"),
            "seed {seed}: {pending:?}"
        );
        assert!(
            sim.controller()
                .pending(&far)
                .iter()
                .any(|p| p.region == "eu"),
            "seed {seed}"
        );
        assert_eq!(sim.controller().pending(&more).len(), 1, "seed {seed}");
        assert!(
            sim.on_hosts(&big).is_empty() && sim.on_hosts(&far).is_empty(),
            "seed {seed}"
        );
        assert!(
            settled(&sim, &web, 1, 6),
            "seed {seed}: web untouched\n{}",
            sim.summary()
        );
        for h in sim.hosts() {
            assert_eq!(
                h.used().0,
                900,
                "seed {seed}: host {} runs 3 instances of 300m",
                h.name
            );
        }
    }
}

#[test]
fn replacements_avoid_a_host_that_fails_every_boot() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 3);
        sim.fail_host("h2", true);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(2);
        let web = repo.key("web", "prod");
        sim.commit(&repo.files());
        // h1 and h2 get one each; h2's fails and h3 ties with it on replicas:
        // the replacement goes to h3, which has no recent failure.
        sim.run_until(
            |s| healthy(s, &web) == 2 && on_hosts(s, &web) == (2, 2),
            30_000,
        );
        sim.run_for(60_000);

        let placed = sim.events_of(kind::INSTANCE_PLACED);
        let hosts: Vec<&str> = placed.iter().filter_map(|e| e.host.as_deref()).collect();
        assert_eq!(hosts, ["h1", "h2", "h3"], "seed {seed}\n{}", sim.summary());
        assert!(
            placed[2]
                .message
                .ends_with("fewest replicas of acme/shop/web/prod release 1 (0); avoiding h2: 1 recent failure"),
            "seed {seed}: {}",
            placed[2].message
        );
        assert!(settled(&sim, &web, 1, 2), "seed {seed}");
    }
}
