//! A rolling update keeps its promises while it runs: with 4 instances,
//! `max_surge: 1` and `max_unavailable: 1`, never fewer than 3 healthy and
//! never more than 5 live, sampled every ~50 ms from the API.

use crate::support::cluster::{Cluster, Setup};
use crate::support::repo::{APP_FILE, WEB_PROD};
use crate::support::status::{healthy, live, num, settled, summary, workload};
use crate::support::Sandbox;
use std::time::{Duration, Instant};

/// The rollout block of the app file in the rollout tests.
pub const SURGE_1_UNAVAILABLE_1: &str = "rollout:\n  max_surge: 1\n  max_unavailable: 1\n";

#[test]
fn a_rolling_update_keeps_3_of_4_healthy_and_at_most_5_live() {
    let sb = Sandbox::new();
    let c = Cluster::start(
        &sb,
        Setup {
            instances: 4,
            rollout: SURGE_1_UNAVAILABLE_1,
            // Slow enough boots that the rollout spans many samples.
            sim_boot: "800ms",
            ..Setup::default()
        },
    );

    c.repo
        .replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    c.repo.commit("web: image 2");
    let api = c.ctl.api();
    let start = Instant::now();
    let (mut samples, mut mid_rollout) = (0, 0);
    loop {
        let status = api.get("/v1/status");
        let w = workload(&status, WEB_PROD).expect("web/prod");
        let (healthy, live) = (healthy(w).len(), live(w).len());
        samples += 1;
        assert!(
            healthy >= 3,
            "{healthy} healthy (< 4 - max_unavailable) at {:?}: {}",
            start.elapsed(),
            summary(w)
        );
        assert!(
            live <= 5,
            "{live} live (> 4 + max_surge) at {:?}: {}",
            start.elapsed(),
            summary(w)
        );
        let releases: Vec<u64> = crate::support::status::instances(w)
            .iter()
            .map(|i| num(i, "release"))
            .collect();
        if releases.contains(&1) && releases.contains(&2) {
            mid_rollout += 1;
        }
        if settled(w, 2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the rollout did not complete in 30 s: {}",
            summary(w)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "rollout took {:?}: {samples} samples, {mid_rollout} mid-rollout",
        start.elapsed()
    );
    assert!(
        mid_rollout >= 5,
        "only {mid_rollout} of {samples} samples fell within the rollout: too few to check it"
    );

    // Done: every instance runs release 2, and the CLI says so.
    let status = c.ctl.json(&["status"]);
    let w = workload(&status, WEB_PROD).expect("web/prod");
    assert!(settled(w, 2), "{w}");
    assert_eq!(w["rollout"]["status"]["status"], "completed", "{w}");
    assert!(live(w).iter().all(|i| num(i, "release") == 2), "{w}");
    let described = c.ctl.json(&["describe", "web"]);
    assert_eq!(described[0]["status"]["current_release"], 2);
    assert_eq!(described[0]["desired"]["image"], "registry.local/web:2");
    assert_eq!(described[0]["diff"], serde_json::json!([]));
}
