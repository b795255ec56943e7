//! Failures that stay calm, on real microVMs: an image that is not in the
//! registry is retried on a growing delay (bounded instance records and
//! events, the failure count and next try in `vt status`) and runs once it
//! is pushed; a release whose app exits at once is restarted in place by its
//! host, and its rollout halts at the progress deadline with that failure as
//! the reason while the previous release keeps serving.
//!
//! Needs `just setup` and `just guest`, like every microVM test.

use crate::support::fleet::{Controller, FleetDir};
use crate::support::microvm::{busybox_layer, publish, require_microvms, start_host};
use crate::support::repo::Repo;
use crate::support::{wait_until, Sandbox};
use serde_json::Value;
use std::time::{Duration, Instant};
use vt_host::image::testing::{build_image, push, Registry};
use vt_host::image::ImageConfig;

const APP_FILE: &str = "orgs/acme/shop/web/app.yaml";
/// TCG boots in seconds on an idle machine; leave room for a busy one.
const BOOT: Duration = Duration::from_secs(240);
const SERVE: &str = "/bin/busybox httpd -f -p [::]:8080 -h /www";

fn workload(c: &Controller) -> Value {
    c.json(&["status"])["workloads"][0].clone()
}

fn events(c: &Controller) -> Vec<Value> {
    c.json(&["events", "--app", "web", "--limit", "1000"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Pushes an image that prints a line and exits with status 3 as `web:exits`.
fn publish_exiting(sb: &Sandbox, registry: &Registry) -> String {
    let layout = sb.path().join("layout-exits");
    let config = ImageConfig {
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo bye; exit 3".into(),
        ]),
        ..ImageConfig::default()
    };
    let root = sb.path().join("image-root");
    build_image(&layout, "exits", &[&root], &config).expect("build the image");
    let reference = registry.reference("web:exits");
    tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(push(&layout, "exits", &reference))
        .expect("push the image");
    reference
}

#[test]
fn a_missing_image_backs_off_then_runs_and_a_crashing_release_halts() {
    let _turn = require_microvms(&[]);
    let sb = Sandbox::new();
    let registry = Registry::start().expect("start docker-registry");
    let missing = registry.reference("web:1");

    let repo = Repo::init(&sb, "repo");
    repo.add_web_app("acme", &missing);
    repo.append(APP_FILE, "rollout:\n  progress_deadline: 20s\n");
    repo.vt(&["env", "create", "prod", "--app", "web", "--instances", "1"]);
    repo.commit("web, before its image is pushed");

    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let controller = fleet.start();
    let mut host = start_host(&sb, &fleet, &controller, &[]);

    // A minute of pull failures: a few records, not hundreds.
    let start = Instant::now();
    let mut most_records = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let w = workload(&controller);
        let records = w["instances"].as_array().map_or(0, Vec::len);
        most_records = most_records.max(records);
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(most_records <= 4, "{most_records} instance records");
    let w = workload(&controller);
    let backoff = &w["backoffs"][0];
    let failures = backoff["failures"].as_u64().unwrap_or(0);
    assert!((3..=12).contains(&failures), "{w:#}");
    let reason = backoff["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot pull") && reason.contains("web:1"),
        "{reason}"
    );
    let text = controller.cli_plain(&["status"]).stdout;
    assert!(
        text.contains(&format!("failed {failures} times in a row"))
            || text.contains("times in a row"),
        "{text}"
    );
    assert!(
        text.contains("next try in") || text.contains("retrying now"),
        "{text}"
    );
    let all = events(&controller);
    assert!(all.len() <= 30, "{} events: {all:#?}", all.len());
    let counted: u64 = all
        .iter()
        .filter(|e| e["kind"] == "instance.backoff")
        .map(|e| e["count"].as_u64().unwrap_or(1))
        .sum();
    assert!(
        counted >= 3,
        "failures are counted on aggregated events: {all:#?}"
    );

    // The image is pushed: the next try runs it.
    let root = busybox_layer(sb.path(), "hello after a backoff\n");
    let pushed = publish(&sb, &registry, &[&root], SERVE, &[]);
    assert_eq!(pushed, missing);
    wait_until(
        "the instance is healthy once the image exists",
        BOOT,
        || {
            let w = workload(&controller);
            (w["ready"] == 1 && w["backoffs"].is_null()).then_some(())
        },
    );

    // A release whose app exits at once: restarted in place by the host,
    // halted at the deadline with the crash as the reason; release 1 serves.
    let exits = publish_exiting(&sb, &registry);
    repo.replace(APP_FILE, &missing, &exits);
    repo.commit("an app that exits at once");
    let halted = wait_until("the rollout halts", BOOT, || {
        let w = workload(&controller);
        let status = &w["rollout"]["status"];
        (w["desired_release"] == 2 && status["status"] == "halted")
            .then(|| status["reason"].as_str().unwrap_or_default().to_string())
    });
    assert!(
        halted.contains("last failure (") && halted.contains("the app exited with code 3"),
        "{halted}"
    );
    let w = workload(&controller);
    let serving: Vec<&Value> = w["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["release"] == 1 && i["phase"] == "healthy")
        .collect();
    assert_eq!(serving.len(), 1, "{w:#}");
    let described = controller.cli_plain(&["describe", "web"]).stdout;
    assert!(
        described.contains("halted:") && described.contains("last failure"),
        "{described}"
    );
    // The agent stops its VMs when it stops (a killed one would leave them running).
    host.terminate(Duration::from_secs(40));
}
