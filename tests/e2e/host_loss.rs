//! A host that stops reporting is marked lost after `lost_after_ms` and its
//! instances are started again on the hosts that remain.

use crate::support::cluster::{Cluster, Setup};
use crate::support::repo::WEB_PROD;
use crate::support::status::{live, num, summary, text, workload};
use crate::support::{poll, wait_until, Sandbox};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn a_lost_hosts_instances_are_rescheduled_on_the_others() {
    let sb = Sandbox::new();
    let mut c = Cluster::start(
        &sb,
        Setup {
            hosts: &["h1", "h2", "h3"],
            settings: vec![("lost_after_ms", json!(2000))],
            ..Setup::default()
        },
    );
    let w = c.web().expect("web/prod");
    let on_h3: Vec<String> = live(&w)
        .iter()
        .filter(|i| i["host"] == "h3")
        .map(|i| text(i, "id").to_string())
        .collect();
    assert!(
        !on_h3.is_empty(),
        "3 instances over 3 hosts: {}",
        summary(&w)
    );

    c.hosts[2].kill();
    let killed = Instant::now();
    let api = c.ctl.api();
    wait_until("h3 is lost", Duration::from_secs(10), || {
        let hosts = api.get("/v1/hosts");
        hosts
            .as_array()?
            .iter()
            .any(|h| h["name"] == "h3" && h["status"] == "lost")
            .then_some(())
    });
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "lost_after_ms (2 s) is in force"
    );

    // Every wanted instance healthy again, none of them on h3.
    let mut last = None;
    let w = poll(Duration::from_secs(10), || {
        let w = c.web()?;
        last = Some(summary(&w));
        let serving: Vec<_> = live(&w).into_iter().filter(|i| i["host"] != "h3").collect();
        (num(&w, "ready") == 3
            && serving.len() == 3
            && serving.iter().all(|i| i["phase"] == "healthy"))
        .then_some(w)
    })
    .unwrap_or_else(|| panic!("not rescheduled: {last:?}"));
    assert!(
        live(&w)
            .iter()
            .all(|i| i["host"] != "h3" || i["phase"] != "healthy"),
        "nothing counts as healthy on the lost host: {}",
        summary(&w)
    );

    let hosts = c.ctl.json(&["hosts"]);
    let status_of = |name: &str| {
        hosts
            .as_array()
            .and_then(|a| a.iter().find(|h| h["name"] == name))
            .map(|h| text(h, "status").to_string())
    };
    assert_eq!(status_of("h3").as_deref(), Some("lost"), "{hosts}");
    assert_eq!(status_of("h1").as_deref(), Some("ready"), "{hosts}");
    assert_eq!(status_of("h2").as_deref(), Some("ready"), "{hosts}");

    let lost = c.ctl.json(&["events", "--kind", "host.lost"]);
    let lost = lost.as_array().expect("events");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["host"], "h3");
    let h3 = hosts
        .as_array()
        .and_then(|a| a.iter().find(|h| h["name"] == "h3"))
        .expect("h3");
    let silent = num(&lost[0], "time") - num(h3, "last_seen");
    assert!(
        silent > 2000,
        "lost after {silent} ms of silence, not lost_after_ms"
    );
    let placed = c.ctl.json(&["events", "--kind", "instance.placed"]);
    let replacements: Vec<&str> = placed
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| num(e, "seq") > num(&lost[0], "seq"))
        .map(|e| text(e, "host"))
        .collect();
    assert_eq!(replacements.len(), on_h3.len(), "{placed}");
    assert!(replacements.iter().all(|h| *h != "h3"), "{placed}");
    let status = c.ctl.json(&["status"]);
    let w = workload(&status, WEB_PROD).expect("web/prod");
    assert_eq!(num(w, "ready"), 3, "{w}");
}
