//! Instances the controller does not know: a host that reports one is told
//! to stop it, by leaving it out of its assignments.

use crate::{seeds, settled, sim_with_hosts};
use vt_plan::events::kind;
use vt_sim::Repo;

#[test]
fn an_unknown_instance_is_told_to_stop() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 2);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(2);
        let key = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &key, 1, 2), 30_000);

        let stray = "ins_999999";
        sim.inject_instance("h1", stray);
        sim.step(500);
        let unknown = sim.events_of(kind::INSTANCE_UNKNOWN);
        assert_eq!(unknown.len(), 1, "seed {seed}");
        assert_eq!(
            (unknown[0].instance.as_deref(), unknown[0].host.as_deref()),
            (Some(stray), Some("h1")),
            "seed {seed}"
        );
        assert!(
            sim.controller()
                .assignments("h1")
                .iter()
                .all(|a| a.id != stray),
            "seed {seed}"
        );
        assert!(
            sim.controller()
                .instances()
                .iter()
                .all(|i| i.instance.id != stray),
            "seed {seed}: not adopted"
        );

        sim.run_until(
            |s| s.host("h1").is_some_and(|h| h.instance(stray).is_none()),
            10_000,
        );
        sim.run_for(5_000);
        assert!(
            settled(&sim, &key, 1, 2),
            "seed {seed}: the workload is untouched\n{}",
            sim.summary()
        );
        assert!(
            sim.controller()
                .instances()
                .iter()
                .all(|i| i.instance.id != stray),
            "seed {seed}"
        );
    }
}
