//! Instances that fail before they become healthy back off instead of
//! churning: a first deploy of an image that never boots makes a bounded
//! number of instance records and stored events in a minute, its events
//! aggregate, and it recovers once the image works; a rollout whose new
//! instances keep failing halts with the last failure as its reason while
//! the previous release keeps serving.

use crate::{seeds, settled, sim_with_hosts};
use vt_plan::events::{kind, EventFilter};
use vt_plan::ReleaseNo;
use vt_sim::Repo;

const BAD: &str = "registry.local/web:typo";

#[test]
fn a_first_deploy_that_never_boots_backs_off_and_recovers() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 3);
        sim.fail_image(BAD);
        let mut repo = Repo::new(&["local"]);
        repo.app("web").instances(2).image(BAD);
        let key = repo.key("web", "prod");
        sim.commit(&repo.files());

        // A minute of failures, checked every simulated second.
        let mut most_records = 0;
        for _ in 0..60 {
            sim.run_for(1_000);
            let records = sim.controller().instances_of(&key).len();
            most_records = most_records.max(records);
        }
        // Live places (2) plus at most 3 failed records kept per place.
        assert!(most_records <= 5, "seed {seed}: {most_records} records");
        // Doubling from 1s: at most ~7 rounds of 2 instances in a minute.
        let placed = sim.events_of(kind::INSTANCE_PLACED).len();
        assert!((4..=16).contains(&placed), "seed {seed}: {placed} placed");
        let stored = sim
            .controller()
            .store()
            .events(&EventFilter::default(), usize::MAX)
            .unwrap_or_default();
        eprintln!(
            "seed {seed}: {placed} placements, {} stored events, at most {most_records} records",
            stored.len()
        );
        assert!(stored.len() <= 30, "seed {seed}: {} events", stored.len());
        let failures = stored
            .iter()
            .filter(|e| e.kind == kind::INSTANCE_BACKOFF)
            .map(|e| e.count)
            .sum::<u32>();
        assert!(failures >= 4, "seed {seed}: {failures} failures counted");
        let backoffs = sim.controller().backoffs_of(&key, ReleaseNo::FIRST);
        let b = backoffs
            .first()
            .unwrap_or_else(|| panic!("seed {seed}: no backoff"));
        assert!(
            b.failures >= 4 && b.reason.contains("simulated failure"),
            "{b:?}"
        );

        // The image is fixed (pushed): the next try succeeds.
        sim.behaviour_mut().failing_images.remove(BAD);
        sim.run_until(|s| settled(s, &key, 1, 2), 120_000);
        assert!(
            sim.controller()
                .backoffs_of(&key, ReleaseNo::FIRST)
                .is_empty(),
            "seed {seed}: a healthy instance clears the backoff"
        );
    }
}

#[test]
fn a_rollout_that_keeps_failing_halts_with_the_last_failure() {
    for seed in seeds() {
        let mut sim = sim_with_hosts(seed, 3);
        let mut repo = Repo::new(&["local"]);
        repo.app("web")
            .instances(2)
            .rolling(1, 0)
            .progress_deadline("20s");
        let key = repo.key("web", "prod");
        sim.commit(&repo.files());
        sim.run_until(|s| settled(s, &key, 1, 2), 30_000);

        sim.fail_image(BAD);
        repo.app("web").image(BAD);
        sim.commit(&repo.files());
        sim.run_until(|s| !s.events_of(kind::ROLLOUT_HALTED).is_empty(), 60_000);
        let halted = sim.events_of(kind::ROLLOUT_HALTED);
        let reason = &halted[0].message;
        assert!(
            reason.contains("last failure (") && reason.contains("simulated failure"),
            "seed {seed}: {reason}"
        );
        // Release 1 keeps serving both places, a minute later too.
        sim.run_for(60_000);
        let serving = sim
            .on_hosts(&key)
            .iter()
            .filter(|(_, i)| i.release == 1 && i.phase == vt_plan::Phase::Healthy)
            .count();
        assert_eq!(serving, 2, "seed {seed}");
        assert!(
            sim.controller().instances_of(&key).len() <= 6,
            "seed {seed}"
        );
    }
}
