//! Chaos: random host crashes, partitions, hosts failing every boot,
//! controller restarts and crashes, flaky boots and new releases; once the
//! faults heal, every workload converges to its latest release; no host is
//! ever overcommitted and no instance ID is reused for another instance.

use crate::{seeds, settled, GI};
use vt_sim::{no_overcommit, Repo, Rng, Sim, SimConfig};

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];
const APPS: [(&str, usize); 3] = [("web", 3), ("api", 2), ("db", 2)];

#[test]
fn the_fleet_converges_after_random_faults() {
    for seed in seeds() {
        eprintln!("seed = {seed}");
        let mut config = SimConfig::default();
        config.behaviour.fail_probability = 0.1;
        let mut sim = Sim::with_config(seed, config);
        for h in HOSTS {
            sim.add_host(h, "local", 2_000, 4 * GI);
        }
        sim.invariant("no overcommit", no_overcommit);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(3).rolling(1, 0).health();
        repo.app("api").instances(2).immediate();
        repo.app("db").instances(2).volume("data", "1Gi");
        sim.commit(&repo.files());

        let mut rng = Rng::new(seed);
        let (mut down, mut cut): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for round in 0..25 {
            let pick = HOSTS[usize::try_from(rng.between(0, 3)).unwrap_or(0)];
            let healthy = !down.contains(&pick) && !cut.contains(&pick);
            let failing: Vec<&str> = HOSTS
                .iter()
                .copied()
                .filter(|h| sim.host(h).is_some_and(|h| h.fail_all))
                .collect();
            match rng.between(0, 9) {
                0 if healthy => {
                    sim.crash(pick);
                    down.push(pick);
                }
                1 => down.pop().into_iter().for_each(|h| sim.restart(h)),
                2 if healthy => {
                    sim.partition(pick);
                    cut.push(pick);
                }
                3 => cut.pop().into_iter().for_each(|h| sim.heal(h)),
                4 => sim.crash_controller(500),
                5 => sim.restart_controller(),
                6 => sim.fail_host(pick, !failing.contains(&pick)),
                7..=9 => {
                    let (app, _) = APPS[usize::try_from(rng.between(0, 2)).unwrap_or(0)];
                    repo.app(app)
                        .image(&format!("registry.local/{app}:{round}"));
                    sim.commit(&repo.files());
                }
                _ => {}
            }
            sim.run_for(rng.between(500, 8_000));
        }
        down.into_iter().for_each(|h| sim.restart(h));
        cut.into_iter().for_each(|h| sim.heal(h));
        HOSTS.iter().for_each(|h| sim.fail_host(h, false));
        sim.behaviour_mut().fail_probability = 0.0;

        let latest = sim.controller().latest_releases();
        let want: Vec<_> = APPS
            .iter()
            .map(|(app, n)| {
                let key = repo.key(app, "prod");
                let release = latest
                    .iter()
                    .find(|(r, _)| r.key == key)
                    .map_or(0, |(r, _)| r.number.get());
                (key, release, *n)
            })
            .collect();
        sim.run_until(
            move |s: &Sim| {
                want.iter()
                    .all(|(key, release, n)| settled(s, key, *release, *n))
            },
            120_000,
        );
    }
}
