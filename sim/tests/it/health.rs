//! Health: an instance failing its health check is reported unhealthy and
//! leaves the routing table.

use crate::{seeds, settled, sim_with_hosts};
use vt_plan::Phase;
use vt_sim::Repo;

#[test]
fn an_unhealthy_instance_leaves_the_routes() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 2);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(3).health().endpoint(443);
        let key = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &key, 1, 3), 30_000);
        let backends = |s: &vt_sim::Sim| {
            s.controller()
                .routes()
                .first()
                .map_or(0, |r| r.backends.len())
        };
        assert_eq!(backends(&sim), 3, "seed {seed}");

        let sick = sim.on_hosts(&key)[0].1.id.clone();
        sim.set_unhealthy(&sick);
        sim.step(500);
        sim.step(500);
        let phase = sim
            .controller()
            .instances()
            .into_iter()
            .find(|i| i.instance.id == sick)
            .map(|i| (i.instance.phase, i.detail));
        assert_eq!(
            phase,
            Some((
                Phase::Unhealthy,
                Some("health check failing (simulated)".into())
            )),
            "seed {seed}"
        );
        let routes = sim.controller().routes();
        assert_eq!(routes[0].port, 443, "seed {seed}");
        assert_eq!(routes[0].backends.len(), 2, "seed {seed}");
        assert!(
            routes[0].backends.iter().all(|b| b.instance != sick),
            "seed {seed}"
        );
    }
}
