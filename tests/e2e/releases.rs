//! Commits become numbered releases: the first one, an image change (with
//! its diff), and a commit that changes nothing deployed (no release).

use crate::support::cluster::{Cluster, Setup};
use crate::support::repo::{APP_FILE, WEB_PROD};
use crate::support::status::{live, num, settled, text, workload};
use crate::support::{wait_until, Sandbox};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn commits_make_numbered_releases_and_irrelevant_commits_none() {
    let sb = Sandbox::new();
    let c = Cluster::start(&sb, Setup::default());

    // Release 1: 3 instances over both hosts, all healthy (seen through the CLI).
    let status = c.ctl.json(&["status"]);
    assert_eq!(status["commit"]["sha"], c.first.as_str());
    let w = workload(&status, WEB_PROD).expect("web/prod in `vt status`");
    assert!(settled(w, 1), "release 1 rolled out: {w}");
    assert_eq!(num(w, "wanted"), 3);
    assert_eq!(live(w).len(), 3, "{w}");
    let hosts = Cluster::hosts_of(w);
    assert_eq!(
        hosts,
        BTreeSet::from(["h1".to_string(), "h2".to_string()]),
        "placed over both hosts"
    );

    let hosts = c.ctl.json(&["hosts"]);
    let reserved: Vec<(u64, u64)> = hosts
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (num(h, "instances"), num(h, "cpu_used")))
        .collect();
    assert_eq!(
        reserved.iter().map(|(n, _)| n).sum::<u64>(),
        3,
        "`vt hosts` counts the 3 instances: {hosts}"
    );
    assert!(
        reserved.iter().all(|(n, cpu)| *cpu == n * 250),
        "250m reserved per instance: {hosts}"
    );

    // An image change: release 2, its diff is `image`.
    c.repo
        .replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    let second = c.repo.commit("web: image 2");
    c.wait_settled(2, Duration::from_secs(15));

    // A README: accepted, no release.
    c.repo.write("README.md", "# the desired state of acme\n");
    let third = c.repo.commit("readme");
    let api = c.ctl.api();
    let status = wait_until(
        "the README commit is accepted",
        Duration::from_secs(10),
        || {
            let s = api.get("/v1/status");
            (s["commit"]["sha"] == third.as_str()).then_some(s)
        },
    );
    let w = workload(&status, WEB_PROD).expect("web/prod");
    assert_eq!(num(w, "desired_release"), 2, "no release for a README: {w}");
    let accepted = c.ctl.json(&["events", "--kind", "commit.accepted"]);
    let last = accepted
        .as_array()
        .and_then(|a| a.last())
        .expect("commit.accepted events");
    assert_eq!(last["fields"]["commit"]["sha"], third.as_str(), "{last}");
    assert!(text(last, "message").contains("0 new release(s)"), "{last}");

    // `vt releases web`: 1 and 2, with the commits git knows them by.
    let releases = c.ctl.json(&["releases", "web"]);
    let releases = releases.as_array().expect("a list of releases");
    let numbers: Vec<u64> = releases.iter().map(|r| num(r, "number")).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(
        releases[0]["commit"]["sha"],
        c.repo.head_of("HEAD~2").as_str()
    );
    assert_eq!(
        releases[1]["commit"]["sha"],
        c.repo.head_of("HEAD~1").as_str()
    );
    assert_eq!(releases[0]["commit"]["sha"], c.first.as_str());
    assert_eq!(releases[1]["commit"]["sha"], second.as_str());
    assert!(releases.iter().all(|r| r["name"] == WEB_PROD));
    assert_eq!(releases[0]["diff"], serde_json::json!([]));
    let paths: Vec<&str> = releases[1]["diff"]
        .as_array()
        .expect("a diff")
        .iter()
        .map(|d| text(d, "path"))
        .collect();
    assert_eq!(paths, ["image"]);
    assert_eq!(releases[1]["diff"][0]["old"], "registry.local/web:1");
    assert_eq!(releases[1]["diff"][0]["new"], "registry.local/web:2");
}
