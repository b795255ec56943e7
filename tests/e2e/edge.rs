//! The edge end to end, across network namespaces: a client in its own
//! namespace connects to an endpoint's IPv6 (and IPv4) address on an edge in
//! another namespace; the edge tunnels each connection over QUIC to the host
//! agent, which connects to the app in a real microVM. The app serves HTTP
//! (busybox httpd), echoes (busybox nc) and runs a real HAProxy behind
//! `proxy_protocol: v2` with `accept-proxy`, which logs the client's real
//! address. Then: half-closes, a client that sends nothing, stats in
//! `vt endpoints describe`, IPv4 metering in `vt usage`, draining during a
//! rollout without dropping an established connection, the edge↔host QUIC
//! connection killed by a partition and recovered, an edge restart, and an
//! endpoint removed from the repository (listener closed, address released).
//!
//! Needs `just setup` (qemu, docker-registry, haproxy, nftables) and `just guest`.

use crate::support::fleet::{Controller, FleetDir};
use crate::support::microvm::{publish, require_microvms, start_host};
use crate::support::netns::Net;
use crate::support::process::Proc;
use crate::support::repo::Repo;
use crate::support::{poll, wait_until, Sandbox};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vt_host::image::testing::Registry;

const APP_FILE: &str = "orgs/edgeco/shop/web/app.yaml";
const ENV_FILE: &str = "orgs/edgeco/shop/web/envs/prod.yaml";
const BOOT: Duration = Duration::from_secs(240);

const HAPROXY_CFG: &str = "global\n    log stdout format raw local0 info\n    maxconn 100\n\
defaults\n    log global\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
frontend fe\n    bind [::]:8081 accept-proxy\n    log-format \"haproxy saw client %ci port %cp\"\n    \
http-request return status 200 content-type text/plain string \"hello from haproxy\"\n";

const SCRIPT: &str = "/bin/busybox httpd -f -p [::]:8080 -h /www & \
    /bin/busybox nc -ll -p 9000 -e /bin/cat & \
    /usr/sbin/haproxy -f /etc/haproxy.cfg -db & \
    echo serving $GREETING; while true; do sleep 5; done";

/// busybox, haproxy and every library haproxy links, at their real paths.
fn image_dir(root: &Path) -> PathBuf {
    let dir = root.join("image-root");
    let copy = |from: &Path| {
        let to = dir.join(from.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    copy(Path::new("/bin/busybox"));
    copy(Path::new("/usr/sbin/haproxy"));
    let ldd = std::process::Command::new("ldd")
        .arg("/usr/sbin/haproxy")
        .output()
        .expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(path) = path {
            copy(&std::fs::canonicalize(&path).expect("library"));
            if path != std::fs::canonicalize(&path).expect("library") {
                let to = dir.join(path.strip_prefix("/").expect("absolute"));
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                let _ = std::fs::copy(&path, to);
            }
        }
    }
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).expect("symlink sh");
    std::os::unix::fs::symlink("busybox", dir.join("bin/cat")).expect("symlink cat");
    std::fs::create_dir_all(dir.join("www")).expect("www");
    std::fs::write(dir.join("www/index.html"), "hello through the edge\n").expect("index");
    std::fs::create_dir_all(dir.join("etc")).expect("etc");
    std::fs::write(dir.join("etc/haproxy.cfg"), HAPROXY_CFG).expect("cfg");
    dir
}

const PORTS: &str = "ports:
- name: main
  port: 8080
";

const ENDPOINTS: &str = "ports:
  - name: main
    port: 8080
  - name: hap
    port: 8081
  - name: echo
    port: 9000
endpoints:
  - name: web
    port: 80
    target: main
    ipv4: true
  - name: hap
    port: 81
    target: hap
    proxy_protocol: v2
  - name: echo
    port: 9000
    target: echo
";

fn endpoints(c: &Controller) -> Vec<Value> {
    c.json(&["endpoints", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn endpoint(c: &Controller, name: &str) -> Value {
    c.json(&["endpoints", "describe", "web", name])
}

fn address_of(e: &Value, port: u16) -> SocketAddr {
    let ip: IpAddr = e["ipv6"]
        .as_str()
        .expect("an IPv6 address")
        .parse()
        .expect("ip");
    SocketAddr::new(ip, port)
}

/// One HTTP/1.0 GET through the edge, from the client namespace.
fn get(net: &Net, addr: SocketAddr) -> Result<String, String> {
    Net::within(&net.client, || {
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body).map_err(|e| e.to_string())?;
        if body.is_empty() {
            Err("closed without an answer".into())
        } else {
            Ok(body)
        }
    })
}

/// Sends `payload`, closes the sending half, and reads until the app closes.
fn echo_half_closed(net: &Net, addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    Net::within(&net.client, || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(payload).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("read to the end");
        back
    })
}

fn instance_ids(c: &Controller, release: u64) -> Vec<String> {
    let status = c.json(&["status"]);
    status["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["instances"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["release"] == release && i["phase"] == "healthy")
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

fn start_edge(sb: &Sandbox, net: &Net, quic: SocketAddr, token: Option<&str>) -> Proc {
    let vt = crate::support::vt_bin();
    let dir = sb.path().join("edge").display().to_string();
    let quic = quic.to_string();
    let mut cmd = sb.env().command(Path::new("ip"), sb.path());
    cmd.args(["netns", "exec", &net.edge])
        .arg(&vt)
        .args(["edge", "run", "--controller", &quic, "--name", "e1"])
        .args(["--state-dir", &dir, "--assign-to", "lo"])
        .env("VT_LOG", "info,vt_edge=debug");
    if let Some(token) = token {
        cmd.args(["--token", token]);
    }
    sb.env().spawn("edge", cmd)
}

#[test]
fn endpoints_reach_microvms_through_the_edge() {
    let _turn = require_microvms(&[("haproxy", "haproxy"), ("nft", "nftables")]);
    let sb = Sandbox::new();
    let net = Net::new();
    let registry = Registry::start().expect("start docker-registry");
    let reference = publish(
        &sb,
        &registry,
        &[&image_dir(sb.path())],
        SCRIPT,
        &["GREETING=one"],
    );

    let repo = Repo::init(&sb, "repo");
    // Its own org: instance addresses derive from the org, and other microVM
    // tests may run a host agent on this machine at the same time.
    repo.add_web_app("edgeco", &reference);
    let app = std::fs::read_to_string(repo.path().join(APP_FILE)).expect("app.yaml");
    assert!(app.contains(PORTS), "{app}");
    std::fs::write(repo.path().join(APP_FILE), app.replace(PORTS, ENDPOINTS)).expect("app.yaml");
    repo.append(APP_FILE, "resources:\n  cpu: 250m\n  memory: 128Mi\n");
    repo.vt(&["env", "create", "prod", "--app", "web", "--instances", "2"]);
    repo.commit("web with three endpoints");

    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    fleet.set("quic", json!(format!("[{}]:0", net.root_v6)));
    fleet.set("endpoint_prefix", json!(net.endpoint_prefix));
    let mut settings = fleet.settings();
    settings["ipv4_pool"] = json!(net.ipv4_pool);
    // Twenty-second certificates: the host and the edge renew theirs every
    // ~13 s while traffic flows, and tunnels carry on with the new ones.
    settings["node_cert_validity_ms"] = json!(20_000);
    std::fs::write(
        fleet.dir().join("fleet.json"),
        serde_json::to_string_pretty(&settings).expect("json"),
    )
    .expect("write fleet.json");
    let controller = fleet.start();
    let tunnel_port = std::net::UdpSocket::bind((net.root_v6, 0))
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let tunnel = SocketAddr::new(IpAddr::V6(net.root_v6), tunnel_port).to_string();
    let edge_token = fleet.join_token("edge", "10m");
    let mut edge = start_edge(&sb, &net, controller.quic, Some(&edge_token));
    let mut host = start_host(
        &sb,
        &fleet,
        &controller,
        &["--tunnel", &tunnel, "--drain-timeout", "2m"],
    );

    // Addresses are allocated at once, from the fleet's prefix and pool.
    let listed = wait_until(
        "three endpoints with addresses",
        Duration::from_secs(30),
        || {
            let list = endpoints(&controller);
            (list.len() == 3 && list.iter().all(|e| e["ipv6"].is_string())).then_some(list)
        },
    );
    let web = listed.iter().find(|e| e["endpoint"] == "web").expect("web");
    assert!(web["ipv4"]
        .as_str()
        .expect("web has IPv4")
        .starts_with(&net.ipv4_pool[..net.ipv4_pool.len() - 4]));
    let web_addr = address_of(web, 80);
    let hap_addr = address_of(
        listed.iter().find(|e| e["endpoint"] == "hap").expect("hap"),
        81,
    );
    let echo_addr = address_of(
        listed
            .iter()
            .find(|e| e["endpoint"] == "echo")
            .expect("echo"),
        9000,
    );

    wait_until("two healthy instances behind the endpoints", BOOT, || {
        let e = endpoint(&controller, "web");
        let routed = e["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["routed"] == true)
            .count();
        (routed == 2 && !e["edges"][0]["listening"].as_array()?.is_empty()).then_some(())
    });

    // IPv6 and IPv4 through the edge to the microVM.
    let page = wait_until("HTTP through the edge", Duration::from_secs(30), || {
        get(&net, web_addr).ok()
    });
    assert!(page.contains("hello through the edge"), "{page}");
    let v4: IpAddr = web["ipv4"].as_str().expect("v4").parse().expect("ip");
    let page4 = get(&net, SocketAddr::new(v4, 80)).expect("HTTP over IPv4");
    assert!(page4.contains("hello through the edge"), "{page4}");

    // PROXY protocol v2: HAProxy (accept-proxy) sees the client's real address.
    // The health check watches busybox httpd: HAProxy, started beside it,
    // may still be loading its libraries under TCG, so give it time.
    let answer = wait_until("HAProxy answers", Duration::from_secs(30), || {
        get(&net, hap_addr).ok()
    });
    assert!(answer.contains("hello from haproxy"), "{answer}");
    let client = net.client_v6.to_string();
    wait_until(
        "HAProxy logs the client's real address",
        Duration::from_secs(30),
        || {
            let logs = controller.cli_plain(&["logs", "web", "--env", "prod"]);
            logs.stdout
                .contains(&format!("haproxy saw client {client}"))
                .then_some(())
        },
    );

    // Half-close: the app reads to the end, answers, closes.
    assert_eq!(
        echo_half_closed(&net, echo_addr, b"ping through a half-closed tunnel"),
        b"ping through a half-closed tunnel"
    );
    // A client that sends nothing and leaves harms nobody.
    Net::within(&net.client, || {
        let s = TcpStream::connect_timeout(&echo_addr, Duration::from_secs(5)).expect("connect");
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
    });
    assert_eq!(echo_half_closed(&net, echo_addr, b"again"), b"again");

    // Traffic shows up per endpoint and instance.
    let described = wait_until(
        "traffic in `vt endpoints describe`",
        Duration::from_secs(10),
        || {
            let e = endpoint(&controller, "echo");
            (e["total"].as_u64()? >= 3 && e["bytes_in"].as_u64()? > 0).then_some(e)
        },
    );
    assert_eq!(described["open"], 0, "{described}");
    let text = controller
        .cli_plain(&["endpoints", "describe", "web", "echo"])
        .ok()
        .stdout;
    assert!(
        text.contains("Instances:") && text.contains("yes"),
        "{text}"
    );

    // IPv4 is metered per org.
    let usage = controller.json(&["usage"]);
    let org = &usage["orgs"][0];
    assert_eq!(
        (org["org"].as_str(), org["ipv4_addresses_now"].as_u64()),
        (Some("edgeco"), Some(1)),
        "{usage}"
    );
    assert!(org["ipv4_address_hours"].as_f64().expect("hours") > 0.0);

    // Draining: a connection established before a rollout keeps working
    // through it; new connections go to the new instances.
    let old = instance_ids(&controller, 1);
    assert_eq!(old.len(), 2);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let net_client = net.client.clone();
    let long = std::thread::spawn(move || {
        Net::within(&net_client, move || {
            let mut s =
                TcpStream::connect_timeout(&echo_addr, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut rounds = 0u32;
            loop {
                let line = format!("round {rounds}\n");
                s.write_all(line.as_bytes())
                    .expect("the long connection still writes");
                let mut back = vec![0u8; line.len()];
                s.read_exact(&mut back)
                    .expect("the long connection still echoes");
                assert_eq!(back, line.as_bytes());
                rounds += 1;
                if done_rx.recv_timeout(Duration::from_millis(500)).is_ok() {
                    return rounds;
                }
            }
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    repo.append(ENV_FILE, "env:\n  GREETING: two\n");
    repo.commit("new greeting: a rolling release");
    wait_until("release 2 healthy and routed", BOOT, || {
        let new = instance_ids(&controller, 2);
        let e = endpoint(&controller, "echo");
        let routed: Vec<&str> = e["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["routed"] == true)
            .filter_map(|i| i["instance"].as_str())
            .collect();
        (new.len() == 2 && routed.len() == 2 && routed.iter().all(|r| new.iter().any(|n| n == r)))
            .then_some(())
    });
    // A new connection lands on a new instance while the old one still drains.
    assert_eq!(echo_half_closed(&net, echo_addr, b"new"), b"new");
    let draining: Vec<Value> = endpoint(&controller, "echo")["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| old.iter().any(|o| i["instance"] == o.as_str()) && i["open"].as_u64() > Some(0))
        .cloned()
        .collect();
    assert_eq!(
        draining.len(),
        1,
        "the old instance with the long connection drains"
    );
    assert_eq!(draining[0]["routed"], false);
    done_tx.send(()).expect("stop the long connection");
    let rounds = long
        .join()
        .expect("the long connection survived the rollout");
    assert!(rounds >= 4, "{rounds} rounds");
    wait_until(
        "the drained instance stops once its connection closed",
        Duration::from_secs(60),
        || {
            let status = controller.json(&["status"]);
            let alive = status["workloads"][0]["instances"]
                .as_array()?
                .iter()
                .any(|i| old.iter().any(|o| i["id"] == o.as_str()) && i["phase"] != "stopped");
            (!alive).then_some(())
        },
    );

    // The edge↔host QUIC connection dies in a partition; once it heals, a new one carries traffic.
    net.block_tunnel(tunnel_port, true);
    std::thread::sleep(Duration::from_secs(7));
    let during = Instant::now();
    assert!(get(&net, web_addr).is_err(), "no route while partitioned");
    assert!(
        during.elapsed() < Duration::from_secs(8),
        "a partitioned connection fails, it does not hang"
    );
    net.block_tunnel(tunnel_port, false);
    let healed = Instant::now();
    wait_until(
        "traffic again after the partition",
        Duration::from_secs(15),
        || get(&net, web_addr).ok(),
    );
    println!(
        "traffic resumed {:?} after the partition healed",
        healed.elapsed()
    );

    // An edge restart: new connections succeed quickly.
    edge.kill();
    assert!(
        get(&net, web_addr).is_err(),
        "nothing listens while the edge is down"
    );
    let restarted = Instant::now();
    edge = start_edge(&sb, &net, controller.quic, None);
    wait_until(
        "traffic through the restarted edge",
        Duration::from_secs(15),
        || get(&net, web_addr).ok(),
    );
    let took = restarted.elapsed();
    println!("restarted edge serving after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // An endpoint removed from the repository: listener closed, address released.
    let text = std::fs::read_to_string(repo.path().join(APP_FILE)).expect("app.yaml");
    let without_echo = text.replace("  - name: echo\n    port: 9000\n    target: echo\n", "");
    assert_ne!(text, without_echo);
    std::fs::write(repo.path().join(APP_FILE), without_echo).expect("write");
    repo.commit("remove the echo endpoint");
    wait_until(
        "the echo address is released",
        Duration::from_secs(30),
        || (!net.edge_addresses().contains(&echo_addr.ip())).then_some(()),
    );
    assert!(
        poll(Duration::from_secs(2), || Net::within(&net.client, || {
            TcpStream::connect_timeout(&echo_addr, Duration::from_secs(1)).ok()
        }))
        .is_none()
    );
    let events = controller.cli_plain(&["events"]).ok().stdout;
    assert!(
        events.contains("endpoint echo of edgeco/shop/web/prod left the repository"),
        "{events}"
    );
    let renewed = controller
        .cli_plain(&["events", "--kind", "node.renewed"])
        .ok()
        .stdout;
    assert!(
        renewed.contains("edge e1 renewed") && renewed.contains("host h1 renewed"),
        "{renewed}"
    );

    // Revoked: its session with the controller ends at once, and it is refused from then on.
    let revoked = controller.json(&["edges", "revoke", "e1"]);
    assert_eq!(revoked["session_ended"], true, "{revoked}");
    wait_until("the edge's session ends", Duration::from_secs(2), || {
        edge.stderr().contains("edge e1 was revoked").then_some(())
    });
    drop(edge);
    // SIGTERM: the agent stops its VMs before it exits.
    host.terminate(Duration::from_secs(40));
}
