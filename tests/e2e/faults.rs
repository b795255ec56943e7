//! Faults an operator meets: a second controller on the same state, a
//! corrupted state file, a host from another fleet, bad join tokens.

use crate::support::fleet::{host, FleetDir};
use crate::support::repo::Repo;
use crate::support::{wait_until, Sandbox};
use std::time::Duration;

#[test]
fn a_second_controller_is_refused_and_a_corrupted_state_is_left_untouched() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let mut first = fleet.start();
    let state = fleet.dir().join("state.redb");

    let mut second = fleet.spawn_run(None, None);
    let status = second.wait(Duration::from_secs(15));
    assert!(!status.success(), "a second controller started");
    let stderr = second.stderr();
    assert!(
        stderr.contains(&state.display().to_string()) && stderr.contains("in use"),
        "the error says the state is in use: {stderr}"
    );
    assert!(
        first.proc.exited().is_none(),
        "the first controller keeps running"
    );
    first.api().get("/v1/status");

    first.proc.kill();
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&state, &garbage).expect("corrupt state.redb");
    let mut corrupted = fleet.spawn_run(None, None);
    let status = corrupted.wait(Duration::from_secs(15));
    assert!(!status.success(), "a controller started on garbage");
    let stderr = corrupted.stderr();
    assert!(
        stderr.contains(&state.display().to_string()) && stderr.contains("corrupted"),
        "the error names the corrupted file: {stderr}"
    );
    assert_eq!(
        std::fs::read(&state).expect("read state.redb"),
        garbage,
        "the corrupted file is left untouched"
    );
}

#[test]
fn a_host_certified_by_another_fleet_never_joins() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    let source = repo.path().display().to_string();
    let fleet_a = FleetDir::init(&sb, "fleet-a", &source);
    let fleet_b = FleetDir::init(&sb, "fleet-b", &source);
    let a = fleet_a.start();
    let b = fleet_b.start();

    // hx enrols with fleet B and runs there.
    let hx_dir = sb.path().join("hx");
    let token_b = fleet_b.join_token("host", "10m");
    let mut hx = host(sb.env(), b.quic, Some(&token_b), "hx", &hx_dir, "300ms");
    let api_b = b.api();
    wait_until("hx joins fleet B", Duration::from_secs(15), || {
        let hosts = api_b.get("/v1/hosts");
        hosts
            .as_array()?
            .iter()
            .any(|h| h["name"] == "hx")
            .then_some(())
    });
    hx.kill();
    assert!(hx_dir.join("node.pem").exists(), "hx holds B's certificate");

    // A host of fleet A, to show A admits its own.
    let _h1 = a.start_host(&sb, &fleet_a, "h1", "300ms");
    // hx, with B's certificate, pointed at A: refused at every attempt.
    let mut hx = host(sb.env(), a.quic, None, "hx", &hx_dir, "300ms");
    let api_a = a.api();
    wait_until(
        "h1 joins A and hx has failed twice",
        Duration::from_secs(15),
        || {
            let hosts = api_a.get("/v1/hosts");
            let h1 = hosts.as_array()?.iter().any(|h| h["name"] == "h1");
            let failures = hx.stderr().matches("session failed").count();
            (h1 && failures >= 2).then_some(())
        },
    );
    assert!(hx.exited().is_none(), "hx keeps trying");
    hx.kill();

    // Even trusting A's CA (its certificate is public), hx's certificate from
    // B is refused by A's controller.
    std::fs::copy(fleet_a.dir().join("ca.pem"), hx_dir.join("ca.pem")).expect("copy ca.pem");
    let handshake_refused = || {
        a.proc
            .stderr()
            .matches("refused a connection at the TLS handshake")
            .count()
    };
    let before = handshake_refused();
    let hx = host(sb.env(), a.quic, None, "hx", &hx_dir, "300ms");
    wait_until(
        "A refuses hx's certificate at the handshake, twice",
        Duration::from_secs(15),
        || {
            let failures = hx.stderr().matches("session failed").count();
            (handshake_refused() >= before + 2 && failures >= 2).then_some(())
        },
    );
    let hosts = a.json(&["hosts"]);
    let names: Vec<&str> = hosts
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(names, ["h1"], "only A's own host is in A");
    let registered = a.json(&["events", "--kind", "host.registered"]);
    assert!(
        registered
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["host"] != "hx"),
        "{registered}"
    );
}

#[test]
fn join_tokens_of_the_wrong_role_or_expired_are_refused() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let ctl = fleet.start();

    let edge_token = fleet.join_token("edge", "10m");
    let dir = sb.path().join("h-edge");
    let mut wrong_role = host(sb.env(), ctl.quic, Some(&edge_token), "h1", &dir, "300ms");
    let status = wrong_role.wait(Duration::from_secs(15));
    assert!(!status.success(), "a host joined with an edge token");
    let stderr = wrong_role.stderr();
    assert!(
        stderr.contains("the join token is for role edge, not host"),
        "{stderr}"
    );
    assert!(!dir.join("node.pem").exists(), "no certificate was saved");

    let short = fleet.join_token("host", "1s");
    // Expiry has one-second granularity: a 1s token is expired 1 s after minting.
    std::thread::sleep(Duration::from_millis(1100));
    let dir = sb.path().join("h-late");
    let mut expired = host(sb.env(), ctl.quic, Some(&short), "h2", &dir, "300ms");
    let status = expired.wait(Duration::from_secs(15));
    assert!(!status.success(), "a host joined with an expired token");
    let stderr = expired.stderr();
    assert!(stderr.contains("the join token expired"), "{stderr}");
    assert!(!dir.join("node.pem").exists(), "no certificate was saved");

    let hosts = ctl.json(&["hosts"]);
    assert_eq!(hosts, serde_json::json!([]), "no host joined");
}
