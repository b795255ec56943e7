//! A commit that does not validate is rejected with its errors, the fleet
//! keeps serving the previous release, and the next good commit is taken.

use crate::support::cluster::{Cluster, Setup};
use crate::support::repo::{ENV_FILE, WEB_PROD};
use crate::support::status::{num, settled, text, workload};
use crate::support::{wait_until, Sandbox};
use std::time::Duration;

#[test]
fn an_invalid_commit_is_rejected_and_the_previous_release_keeps_serving() {
    let sb = Sandbox::new();
    let c = Cluster::start(&sb, Setup::default());

    // `imag` on line 3 of the env file (after `id` and `instances`).
    c.repo.append(ENV_FILE, "imag: registry.local/web:2\n");
    let bad = c.repo.commit("typo");
    let api = c.ctl.api();
    wait_until("the commit is rejected", Duration::from_secs(10), || {
        let events = api.get("/v1/events?kind=commit.rejected");
        events
            .as_array()?
            .iter()
            .any(|e| e["fields"]["commit"]["sha"] == bad.as_str())
            .then_some(())
    });

    let events = c.ctl.json(&["events", "--kind", "commit.rejected"]);
    let events = events.as_array().expect("a list of events");
    assert_eq!(events.len(), 1, "{events:?}");
    let rejected = &events[0];
    assert_eq!(rejected["fields"]["commit"]["sha"], bad.as_str());
    let error = &rejected["fields"]["errors"][0];
    assert_eq!(error["code"], "E_UNKNOWN_FIELD", "{rejected}");
    assert_eq!(error["file"], ENV_FILE, "{rejected}");
    assert_eq!(num(error, "line"), 3, "{rejected}");
    assert_eq!(error["path"], "imag", "{rejected}");
    let message = text(rejected, "message");
    assert!(
        message.contains(&format!("{ENV_FILE}:3:")) && message.contains("imag"),
        "the event's message names the file, line and field: {message}"
    );

    // The previous release still serves, every instance healthy.
    let status = c.ctl.json(&["status"]);
    assert_eq!(status["commit"]["sha"], c.first.as_str(), "{status}");
    assert_eq!(status["last_seen"], bad.as_str(), "{status}");
    let w = workload(&status, WEB_PROD).expect("web/prod");
    assert!(settled(w, 1), "release 1 still serving: {w}");
    assert_eq!(num(w, "ready"), 3);

    // Fixing it is accepted, as release 2.
    c.repo.replace(
        ENV_FILE,
        "imag: registry.local/web:2",
        "image: registry.local/web:2",
    );
    let fixed = c.repo.commit("fix the typo");
    let w = c.wait_settled(2, Duration::from_secs(15));
    assert_eq!(num(&w, "ready"), 3);
    let status = c.ctl.json(&["status"]);
    assert_eq!(status["commit"]["sha"], fixed.as_str());
    assert_eq!(status["last_seen"], fixed.as_str());
    let releases = c.ctl.json(&["releases", "web"]);
    assert_eq!(releases[1]["commit"]["sha"], fixed.as_str());
    assert_eq!(releases[1]["diff"][0]["path"], "image");
}
