//! Least privilege on the data path, seen from inside real microVMs: a guest
//! that sends from an address that is not its own is dropped before routing
//! (the host's `spoofed` counter counts it, the peer never answers), and a
//! guest cannot reach the host's own services (`to_host`), while its own
//! address still reaches another instance of its org.

use crate::support::fleet::{Controller, FleetDir};
use crate::support::microvm::{busybox_layer, publish, require_microvms, start_host};
use crate::support::repo::Repo;
use crate::support::{wait_until, Out, Sandbox};
use serde_json::Value;
use std::net::{Ipv6Addr, TcpListener};
use std::process::Command;
use std::time::Duration;
use vt_host::image::testing::Registry;

/// How long two microVMs may take to boot under TCG.
const BOOT: Duration = Duration::from_secs(240);

/// The packets an nftables counter of the host's `inet vt` table counted.
fn counter(name: &str) -> u64 {
    let out = Command::new("nft")
        .args(["list", "counter", "inet", "vt", name])
        .output()
        .expect("run nft");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in: {text}"))
}

/// `busybox ARGS` in instance `id`.
fn busybox(c: &Controller, id: &str, args: &[&str]) -> Out {
    let mut all = vec!["exec", "web", "--instance", id, "--", "/bin/busybox"];
    all.extend(args);
    c.cli_plain(&all)
}

/// The healthy instances: (ID, address).
fn healthy(c: &Controller) -> Vec<(String, Ipv6Addr)> {
    let status = c.json(&["status"]);
    status["workloads"][0]["instances"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|i| i["phase"] == "healthy")
                .filter_map(|i: &Value| {
                    Some((
                        i["id"].as_str()?.to_string(),
                        i["address"].as_str()?.parse().ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_guest_can_neither_spoof_its_source_address_nor_reach_the_host() {
    let _turn = require_microvms(&[]);
    let sb = Sandbox::new();
    let registry = Registry::start().expect("start docker-registry");
    let root = busybox_layer(sb.path(), "hello\n");
    let reference = publish(
        &sb,
        &registry,
        &[&root],
        "exec httpd -f -p 8080 -h /www",
        &[],
    );
    let repo = Repo::init(&sb, "repo");
    repo.add_web_app("acme", &reference);
    repo.vt(&["env", "create", "prod", "--app", "web", "--instances", "2"]);
    repo.commit("two instances");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let controller = fleet.start();
    let mut host = start_host(&sb, &fleet, &controller, &[]);
    let both = wait_until("two healthy instances", BOOT, || {
        let up = healthy(&controller);
        (up.len() == 2).then_some(up)
    });
    let ((a, a_addr), (_, b_addr)) = (both[0].clone(), both[1].clone());

    // Its own address reaches the other instance of its org.
    let b = b_addr.to_string();
    let out = busybox(&controller, &a, &["ping", "-6", "-c", "1", "-W", "5", &b]);
    assert_eq!(out.code, 0, "own address to a peer: {out}");

    // A service of the host's, on every address: the guest's gateway (the
    // host side of its TAP) does not answer it, and the drop is counted.
    let listener = TcpListener::bind("[::]:0").expect("bind a host service");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();
    let segments = a_addr.segments();
    let gateway = Ipv6Addr::new(
        segments[0],
        segments[1],
        segments[2],
        segments[3],
        0,
        0,
        0,
        1,
    );
    let to_host = counter("to_host");
    let (gateway, port) = (gateway.to_string(), port.to_string());
    let out = busybox(&controller, &a, &["nc", "-w", "3", &gateway, &port]);
    assert_ne!(out.code, 0, "the host's service answered a guest: {out}");
    assert!(
        listener.accept().is_err(),
        "the host's service got a connection"
    );
    assert!(counter("to_host") > to_host, "the drop is counted: {out}");

    // A source address that is not its own (its peer's, here): dropped
    // before routing, counted, never answered.
    let spoofed = counter("spoofed");
    let spoof = Ipv6Addr::new(
        segments[0],
        segments[1],
        segments[2],
        segments[3],
        0,
        0,
        0,
        0x99,
    );
    // (The address is usable once duplicate address detection is done.)
    let script = format!(
        "busybox ip -6 addr add {spoof}/128 dev eth0 && sleep 3 && \
         busybox ping -6 -c 3 -W 2 -I {spoof} {b}"
    );
    let out = busybox(&controller, &a, &["sh", "-c", &script]);
    assert!(
        out.stdout.contains(&format!("from {spoof}")),
        "the guest sent from the other address: {out}"
    );
    assert_ne!(out.code, 0, "a spoofed ping was answered: {out}");
    assert!(
        counter("spoofed") >= spoofed + 3,
        "the spoofed packets are counted: {out}"
    );
    // Stopped, not killed: its VMs stop with it.
    host.terminate(Duration::from_secs(40));
}
