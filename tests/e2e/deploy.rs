//! `vt deploy` against a running fleet (controller + sim hosts tracking a
//! bare origin): the diff, the commit, the push, the followed rollout and a
//! receipt whose release matches `vt releases`; no change → no commit; a
//! branch behind its remote is refused; an image tag pinned to its digest
//! from a real registry, pushed to a `file://` remote through git; `--timeout`
//! exit code.

use crate::support::fleet::{Controller, FleetDir};
use crate::support::process::Proc;
use crate::support::repo::{origin_and_clone, Repo, APP_FILE, ENV_FILE};
use crate::support::status::num;
use crate::support::{wait_until, Sandbox};
use std::time::Duration;
use vt_host::image::testing::{build_image, push, Registry};
use vt_host::image::ImageConfig;

#[test]
fn deploy_commits_pushes_follows_and_prints_a_receipt() {
    let sb = Sandbox::new();
    let (bare, work) = origin_and_clone(&sb);
    let fleet = FleetDir::init(&sb, "fleet", &bare.display().to_string());
    // A prefix of this test's own: the edge puts its addresses on `lo`.
    fleet.set("endpoint_prefix", serde_json::json!("fd76:7400:d1::/64"));
    let ctl = fleet.start();
    let _hosts: Vec<_> = ["h1", "h2"]
        .iter()
        .map(|h| ctl.start_host(&sb, &fleet, h, "200ms"))
        .collect();
    let mut edge = start_edge(&sb, &fleet, &ctl);
    wait_until("release 1 runs", Duration::from_secs(20), || {
        let r = ctl.api().get("/v1/releases?app=web");
        (r.as_array()?.len() == 1).then_some(())
    });

    // Nothing to deploy yet: exit 0, no commit.
    let head = work.head();
    let none = ctl.cli_in(work.path(), &["deploy", "web"]);
    assert_eq!(none.code, 0, "{none}");
    assert!(none.stdout.contains("no changes"), "{none}");
    assert_eq!(work.head(), head, "no empty commit");

    // `vt diff` against the fleet shows the change and exits 1.
    work.replace(ENV_FILE, "instances: 2", "instances: 3");
    work.append(
        APP_FILE,
        "endpoints:\n- name: http\n  port: 80\n  target: main\n",
    );
    let diff = ctl.cli_in(work.path(), &["diff"]);
    assert_eq!(diff.code, 1, "{diff}");
    assert!(diff.stdout.contains("against fleet"), "{diff}");
    assert!(diff.stdout.contains("~ instances: 2 → 3"), "{diff}");

    // Deploy: receipt with release 2, and `vt releases` agrees.
    let out = ctl.cli_in(
        work.path(),
        &["deploy", "web", "--env", "prod", "-o", "json"],
    );
    assert_eq!(out.code, 0, "{out}");
    let receipt = out.json();
    assert_eq!(receipt["outcome"], "rolled_out", "{receipt}");
    let commit = receipt["commit"].as_str().expect("commit").to_string();
    assert_eq!(work.head(), commit, "the receipt names the new HEAD");
    assert_eq!(
        work.git(&["rev-parse", "origin/main"]),
        commit,
        "pushed to the tracked branch"
    );
    let w = &receipt["workloads"][0];
    assert_eq!(w["name"], "acme/shop/web/prod");
    assert_eq!(num(w, "release"), 2);
    assert_eq!(w["instances"].as_array().map(Vec::len), Some(3), "{w}");
    assert_eq!(w["rollback"], "vt rollback web --env prod --to 1");
    assert_eq!(w["endpoints"][0], "http [fd76:7400:d1::1]:80", "{w}");
    wait_until("the edge listens", Duration::from_secs(10), || {
        let e = ctl.json(&["endpoints", "describe", "web", "http"]);
        (e.to_string().contains("fd76:7400:d1::1")
            && e["edges"].as_array().is_some_and(|a| !a.is_empty()))
        .then_some(())
    });
    let releases = ctl.json(&["releases", "web"]);
    let latest = releases
        .as_array()
        .and_then(|r| r.last())
        .expect("releases");
    assert_eq!(num(latest, "number"), 2);
    assert_eq!(latest["commit"]["sha"], commit.as_str());
    let status = latest["status"].as_str().unwrap_or_default();
    assert!(status.starts_with("current, 3 serving"), "{latest}");
    assert_eq!(releases[0]["status"], "superseded", "{releases}");
    let message = work.git(&["log", "-1", "--format=%s"]);
    assert!(
        message.contains("acme/shop/web/prod release 2"),
        "{message}"
    );

    // Text receipt of a no-wait deploy names the commit.
    work.replace(ENV_FILE, "instances: 3", "instances: 2");
    let text = ctl.cli_in(work.path(), &["deploy", "--no-wait"]);
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout.contains("receipt"), "{text}");
    assert!(
        text.stderr.contains("~ instances: 3 → 2"),
        "the diff is shown: {text}"
    );

    // Behind the remote: refused, nothing pushed.
    let other = Repo::clone_from(&sb, &bare, "other");
    other.write("README.md", "# desired state\n");
    other.commit("readme");
    other.push();
    work.replace(ENV_FILE, "instances: 2", "instances: 4");
    let behind = ctl.cli_in(work.path(), &["deploy", "web"]);
    assert_eq!(behind.code, 5, "{behind}");
    assert!(
        behind.stderr.contains("behind origin/main") && behind.stderr.contains("readme"),
        "{behind}"
    );
    work.git(&["stash"]);
    work.git(&["pull", "-q", "--rebase"]);
    work.git(&["stash", "pop"]);

    // A timeout shorter than the rollout: exit 6, the push happened.
    let timed = ctl.cli_in(work.path(), &["deploy", "web", "--timeout", "1ms"]);
    assert_eq!(timed.code, 6, "{timed}");
    assert!(timed.stderr.contains("not rolled out after 1ms"), "{timed}");
    assert_eq!(work.git(&["rev-parse", "origin/main"]), work.head());

    // A referenced secret that does not exist: refused before any commit.
    let head = work.head();
    work.append(
        APP_FILE,
        "secrets:\n- name: db-password\n  path: /run/secrets/db\n",
    );
    let missing = ctl.cli_in(work.path(), &["deploy", "web"]);
    assert_eq!(missing.code, 3, "{missing}");
    assert!(missing.stderr.contains("E_MISSING_SECRET"), "{missing}");
    assert_eq!(work.head(), head, "nothing committed");

    // A release that cannot be placed halts at its progress deadline: exit 7,
    // and the receipt says why and what still serves.
    work.git(&["checkout", "--", "."]);
    work.append(
        APP_FILE,
        "resources:\n  cpu: \"64\"\nrollout:\n  progress_deadline: 2s\n",
    );
    let failed = ctl.cli_in(work.path(), &["deploy", "web", "--timeout", "60s"]);
    assert_eq!(failed.code, 7, "{failed}");
    assert!(failed.stdout.contains("receipt failed"), "{failed}");
    assert!(failed.stdout.contains("halted"), "{failed}");
    assert!(failed.stdout.contains("still serving: ins_"), "{failed}");
    // SIGTERM: the edge takes its addresses off `lo`.
    edge.terminate(Duration::from_secs(10));
}

/// `vt edge run --assign-to lo` in this network namespace.
fn start_edge(sb: &Sandbox, fleet: &FleetDir, ctl: &Controller) -> Proc {
    let token = fleet.join_token("edge", "10m");
    let quic = ctl.quic.to_string();
    let dir = sb.path().join("edge").display().to_string();
    sb.env().spawn_vt(
        "edge",
        sb.path(),
        &[
            "edge",
            "run",
            "--controller",
            &quic,
            "--token",
            &token,
            "--name",
            "e1",
            "--state-dir",
            &dir,
            "--assign-to",
            "lo",
        ],
    )
}

#[test]
fn deploy_pins_an_image_tag_to_its_digest() {
    let sb = Sandbox::new();
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(e) => panic!("docker-registry is needed (just setup): {e}"),
    };
    let layer = sb.path().join("layer");
    std::fs::create_dir_all(layer.join("etc")).expect("mkdir");
    std::fs::write(layer.join("etc/hello"), "v2\n").expect("write");
    let layout = sb.path().join("layout");
    build_image(&layout, "2", &[layer.as_path()], &ImageConfig::default()).expect("build");
    let reference = registry.reference("web:2");
    tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(push(&layout, "2", &reference))
        .expect("push");

    let (bare, work) = origin_and_clone(&sb);
    // A URL remote: fetch and push go through the `git` command (as for
    // https:// and ssh:// remotes).
    work.git(&[
        "remote",
        "set-url",
        "origin",
        &format!("file://{}", bare.display()),
    ]);
    let fleet = FleetDir::init(&sb, "fleet", &bare.display().to_string());
    let ctl = fleet.start();
    let _host = ctl.start_host(&sb, &fleet, "h1", "200ms");
    let out = ctl.cli_in(
        work.path(),
        &[
            "deploy", "web", "--env", "prod", "--image", &reference, "-o", "json",
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    let env_file = work.read(ENV_FILE);
    let pinned = env_file
        .lines()
        .find_map(|l| l.strip_prefix("image: "))
        .unwrap_or_else(|| panic!("no image pinned in {ENV_FILE}:\n{env_file}"));
    assert!(pinned.contains("/web@sha256:"), "{pinned}");
    assert_eq!(out.json()["workloads"][0]["image"], pinned);
    assert!(work.git(&["show", "--stat", "HEAD"]).contains(ENV_FILE));
    assert_eq!(
        sb.env().git(&bare, &["rev-parse", "main"]),
        work.head(),
        "pushed through git"
    );
}
