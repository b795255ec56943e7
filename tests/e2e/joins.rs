//! Joining the fleet from the attacker's side: a join token works once, a
//! name that is enrolled cannot be taken over with another token, a token
//! bound to a name fits that name only and carries the controller's address;
//! a revoked host is cut off at once and refused from then on, and a removed
//! name can join again while its old certificate stays refused.

use crate::support::api::Api;
use crate::support::fleet::{host, Controller, FleetDir};
use crate::support::process::Proc;
use crate::support::repo::Repo;
use crate::support::{wait_until, Sandbox};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether `name` is registered and ready.
fn ready(api: &Api, name: &str) -> bool {
    api.get("/v1/hosts").as_array().is_some_and(|hosts| {
        hosts
            .iter()
            .any(|h| h["name"] == name && h["status"] == "ready")
    })
}

/// Waits until `name` is registered and ready.
fn wait_ready(api: &Api, name: &str) {
    wait_until(&format!("{name} is ready"), Duration::from_secs(15), || {
        ready(api, name).then_some(())
    });
}

/// Runs a host that must fail to join; returns what it printed.
fn refused(mut proc: Proc, dir: &Path) -> String {
    let status = proc.wait(Duration::from_secs(20));
    assert!(
        !status.success(),
        "the join was accepted:\n{}",
        proc.output()
    );
    assert!(!dir.join("node.pem").exists(), "no certificate was saved");
    proc.stderr()
}

/// The messages of the events of `kind`.
fn events(api: &Api, kind: &str) -> Vec<String> {
    api.get(&format!("/v1/events?kind={kind}"))
        .as_array()
        .map(|all| {
            all.iter()
                .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `vt host run` (sim) named `name` with the join token `token`, its state in `dir`.
fn run_host(sb: &Sandbox, ctl: &Controller, token: &str, name: &str, dir: &Path) -> Proc {
    host(sb.env(), ctl.quic, Some(token), name, dir, "200ms")
}

fn start(sb: &Sandbox) -> (FleetDir, Controller) {
    let repo = Repo::init(sb, "repo");
    let fleet = FleetDir::init(sb, "fleet", &repo.path().display().to_string());
    fleet.set("lost_after_ms", json!(1500));
    let ctl = fleet.start();
    (fleet, ctl)
}

#[test]
fn a_join_token_works_once_and_an_enrolled_name_cannot_be_taken_over() {
    let sb = Sandbox::new();
    let (fleet, ctl) = start(&sb);
    let api = ctl.api();
    let token = fleet.join_token("host", "10m");
    let _h1 = run_host(&sb, &ctl, &token, "h1", &sb.path().join("h1"));
    wait_ready(&api, "h1");

    // The same token again, for another name: refused, it was used.
    let dir = sb.path().join("h2");
    let stderr = refused(run_host(&sb, &ctl, &token, "h2", &dir), &dir);
    assert!(
        stderr.contains("this join token was used already (by host h1)"),
        "{stderr}"
    );

    // A fresh token for the enrolled name (a leaked token taking over h1):
    // refused, and the token is not used up by the refusal.
    let fresh = fleet.join_token("host", "10m");
    let dir = sb.path().join("h1-again");
    let stderr = refused(run_host(&sb, &ctl, &fresh, "h1", &dir), &dir);
    assert!(
        stderr.contains("host h1 is enrolled already") && stderr.contains("vt hosts remove h1"),
        "{stderr}"
    );
    let _h3 = run_host(&sb, &ctl, &fresh, "h3", &sb.path().join("h3"));
    wait_ready(&api, "h3");
    let refusals = events(&api, "node.refused");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert_eq!(events(&api, "node.enrolled").len(), 2);

    // A token bound to a name, carrying the controller's address: the host
    // needs nothing else, and another name cannot use it.
    let quic = ctl.quic.to_string();
    let minted = fleet
        .vt(&[
            "fleet",
            "token",
            "create",
            "--role",
            "host",
            "--name",
            "h4",
            "--controller",
            &quic,
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(
        (&minted["name"], &minted["controller"]),
        (&json!("h4"), &json!(quic))
    );
    let bound = minted["token"].as_str().expect("a token").to_string();
    let dir = sb.path().join("h5");
    let stderr = refused(run_host(&sb, &ctl, &bound, "h5", &dir), &dir);
    assert!(
        stderr.contains("the join token is for a node named h4, not h5"),
        "{stderr}"
    );
    let h4_dir = sb.path().join("h4").display().to_string();
    let _h4 = sb.env().spawn_vt(
        "h4",
        Path::new("/"),
        &[
            "host",
            "run",
            "--token",
            &bound,
            "--state-dir",
            &h4_dir,
            "--cpu",
            "1",
            "--memory",
            "1Gi",
            "--runtime",
            "sim",
        ],
    );
    wait_ready(&api, "h4");
}

#[test]
fn a_revoked_host_is_cut_off_and_a_removed_name_can_join_again() {
    let sb = Sandbox::new();
    let (fleet, ctl) = start(&sb);
    let api = ctl.api();
    let token = fleet.join_token("host", "10m");
    let h1 = run_host(&sb, &ctl, &token, "h1", &sb.path().join("h1"));
    wait_ready(&api, "h1");

    let revoked_at = Instant::now();
    let answer = ctl.json(&["hosts", "revoke", "h1"]);
    assert_eq!(
        answer,
        json!({"role": "host", "name": "h1", "done": "revoked", "session_ended": true})
    );
    // Cut off at once: the agent's session ends with the reason.
    wait_until("the agent's session ends", Duration::from_secs(1), || {
        h1.stderr().contains("host h1 was revoked").then_some(())
    });
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    // Refused from then on: it reconnects and is turned away, so it is lost.
    wait_until("h1 is lost", Duration::from_secs(10), || {
        (!ready(&api, "h1")).then_some(())
    });
    wait_until(
        "its reconnections are refused",
        Duration::from_secs(10),
        || {
            let refusals = h1
                .stderr()
                .matches("closed by peer: host h1 was revoked")
                .count();
            (refusals >= 3).then_some(())
        },
    );
    assert_eq!(events(&api, "node.revoked").len(), 1);
    let nodes = api.get("/v1/nodes");
    assert!(nodes[0]["revoked"].is_u64(), "{nodes}");

    // Removed: the name can join again with a new token and a new
    // certificate; the old one stays refused.
    let answer = ctl.json(&["hosts", "remove", "h1"]);
    assert_eq!(answer["done"], "removed", "{answer}");
    let fresh = fleet.join_token("host", "10m");
    let _again = run_host(&sb, &ctl, &fresh, "h1", &sb.path().join("h1-new"));
    wait_ready(&api, "h1");
    let log_len = h1.stderr().len();
    wait_until(
        "the old certificate is refused",
        Duration::from_secs(10),
        || {
            h1.stderr()[log_len..]
                .contains("no longer knows")
                .then_some(())
        },
    );

    // Unknown names: a clear error, nothing changes.
    for args in [["hosts", "revoke", "nope"], ["edges", "remove", "nope"]] {
        let out = ctl.cli(&args);
        assert_ne!(out.code, 0, "{out}");
        let error: Value = out.json();
        assert_eq!(error["code"], "E_NOT_FOUND", "{out}");
    }
}

/// The SHA-256 (hex) of the certificate in `pem_file`.
fn fingerprint(pem_file: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let der = rustls::pki_types::CertificateDer::from_pem_file(pem_file).expect("a certificate");
    hex::encode(sha2::Sha256::digest(der.as_ref()))
}

#[test]
fn a_certificate_near_expiry_is_renewed_over_the_session_without_a_restart() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    // Fifteen seconds: renewed with five left, every ten seconds.
    fleet.set("node_cert_validity_ms", json!(15_000));
    let ctl = fleet.start();
    let api = ctl.api();
    let token = fleet.join_token("host", "10m");
    let dir = sb.path().join("h1");
    let h1 = run_host(&sb, &ctl, &token, "h1", &dir);
    wait_ready(&api, "h1");
    let enrolled = Instant::now();
    let first = fingerprint(&dir.join("node.pem"));
    let recorded = |api: &Api| {
        api.get("/v1/nodes")[0]["fingerprint"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(recorded(&api).as_deref(), Some(first.as_str()));

    wait_until("a node.renewed event", Duration::from_secs(15), || {
        (!events(&api, "node.renewed").is_empty()).then_some(())
    });
    let renewed = wait_until(
        "the host saved its new certificate",
        Duration::from_secs(5),
        || {
            let now = fingerprint(&dir.join("node.pem"));
            (now != first && recorded(&api).as_deref() == Some(now.as_str())).then_some(now)
        },
    );
    assert_ne!(renewed, first);
    assert!(
        h1.stderr().contains("renewed the certificate"),
        "{}",
        h1.output()
    );

    // Past the first certificate's expiry, a new session (the controller
    // restarted) is made with the renewed one: the same agent, no restart.
    std::thread::sleep(Duration::from_secs(16).saturating_sub(enrolled.elapsed()));
    let registered = events(&api, "host.registered").len();
    let (quic, http) = (ctl.quic, ctl.http);
    drop(ctl);
    let ctl = fleet.start_at(Some(quic), Some(http));
    let api = ctl.api();
    wait_until("h1 registers again", Duration::from_secs(15), || {
        (events(&api, "host.registered").len() > registered).then_some(())
    });
    let log = ctl.proc.stderr();
    assert!(!log.contains("refused"), "{log}");
}
