//! The controller killed with SIGKILL in the middle of a rolling update and
//! started again on the same state directory finishes the rollout from its
//! records: no instance twice, no surge beyond the limit, same releases.

use crate::rollout::SURGE_1_UNAVAILABLE_1;
use crate::support::cluster::{Cluster, Setup};
use crate::support::repo::{APP_FILE, WEB_PROD};
use crate::support::status::{healthy, instances, live, num, settled, summary, text, workload};
use crate::support::Sandbox;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Checks one sample: at most wanted + surge live, each ID once, and an ID
/// always naming the same release on the same host.
fn check(w: &Value, seen: &mut BTreeMap<String, (u64, String)>, restarted: bool) {
    let live = live(w).len() as u64;
    assert!(
        live <= num(w, "wanted") + 1,
        "{live} live instances (restarted: {restarted}): {}",
        summary(w)
    );
    let mut ids = BTreeSet::new();
    for i in instances(w) {
        let id = text(i, "id").to_string();
        assert!(ids.insert(id.clone()), "{id} listed twice: {}", summary(w));
        let what = (num(i, "release"), text(i, "host").to_string());
        let before = seen.entry(id.clone()).or_insert_with(|| what.clone());
        assert_eq!(
            *before,
            what,
            "{id} changed identity (restarted: {restarted}): {}",
            summary(w)
        );
    }
}

#[test]
fn a_controller_killed_mid_rollout_resumes_it_without_duplicates() {
    let sb = Sandbox::new();
    let mut c = Cluster::start(
        &sb,
        Setup {
            instances: 4,
            rollout: SURGE_1_UNAVAILABLE_1,
            sim_boot: "1s",
            ..Setup::default()
        },
    );
    c.repo
        .replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    c.repo.commit("web: image 2");

    let mut seen = BTreeMap::new();
    let api = c.ctl.api();
    let start = Instant::now();
    // Sample until release 2 has a healthy instance while release 1 still has live ones.
    let releases = loop {
        let status = api.get("/v1/status");
        let w = workload(&status, WEB_PROD).expect("web/prod");
        check(w, &mut seen, false);
        let of = |r: u64| live(w).iter().filter(|i| num(i, "release") == r).count();
        let healthy_2 = healthy(w).iter().filter(|i| num(i, "release") == 2).count();
        // Deep enough that the rollout has progressed, and not finished.
        if num(w, "desired_release") == 2 && healthy_2 > 0 && of(1) > 0 {
            break api.get("/v1/releases?app=web");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the rollout did not get half-way: {}",
            summary(w)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(releases.as_array().map(Vec::len), Some(2), "{releases}");

    // kill -9, then the same state directory on the same addresses.
    c.ctl.proc.kill();
    let (quic, http) = (c.ctl.quic, c.ctl.http);
    c.ctl = c.fleet.start_at(Some(quic), Some(http));

    let restarted = Instant::now();
    let mut samples = 0;
    loop {
        if let Some(status) = api.try_status() {
            let w = workload(&status, WEB_PROD).expect("web/prod after the restart");
            check(w, &mut seen, true);
            samples += 1;
            if settled(w, 2) {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(30),
                "the rollout did not finish after the restart: {}",
                summary(w)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples > 0);
    eprintln!(
        "rollout finished {:?} after the restart ({samples} samples)",
        restarted.elapsed()
    );

    // Releases are exactly those from before the crash (their status moved on).
    let without_status = |v: serde_json::Value| {
        let mut v = v;
        for r in v.as_array_mut().into_iter().flatten() {
            r.as_object_mut().map(|o| o.remove("status"));
        }
        v
    };
    assert_eq!(
        without_status(c.ctl.json(&["releases", "web"])),
        without_status(releases)
    );
    let created = c.ctl.json(&["events", "--kind", "release.created"]);
    assert_eq!(created.as_array().map(Vec::len), Some(2), "{created}");
    // No host runs an instance the controller does not know (one it started
    // before the crash and forgot, then started again under another ID).
    let unknown = c.ctl.json(&["events", "--kind", "instance.unknown"]);
    assert_eq!(unknown, serde_json::json!([]), "{unknown}");
    let status = c.ctl.json(&["status"]);
    let w = workload(&status, WEB_PROD).expect("web/prod");
    assert!(settled(w, 2), "{w}");
    let hosts = c.ctl.json(&["hosts"]);
    assert!(
        hosts
            .as_array()
            .expect("hosts")
            .iter()
            .all(|h| h["status"] == "ready"),
        "both hosts came back: {hosts}"
    );
}
