//! Least privilege on a host's instance network. The host is a network
//! namespace of the test's own (its own `inet vt` table, forwarding off
//! unless the rules turn it on); instances are stood in for by namespaces
//! wired the way the microVM runtime wires TAPs (a `vt*` link on the host
//! side, attached with the runtime's own [`attach_link`]: the gateway
//! address, a /128 route, forwarding for that link, the guest's address in
//! the `guests` set), so the real firewall rules and forwarding are tested
//! without booting VMs:
//! - instances of one org reach each other, no other org's;
//! - an instance cannot send from an address that is not its own;
//! - an instance cannot reach the host itself, while the host still reaches
//!   instances (health checks, tunnels);
//! - forwarding is on for instance links only (the uplink stays a host).

use crate::support::netns::{exec, Net};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;
use vt_host::microvm::network::{
    addressing, attach_link, detach_link, isolate, org_prefix, Addressing,
};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (run `just setup`)"))
}

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host: a namespace with an "uplink" (a veth pair's end) and the rules.
struct Host {
    ns: String,
}

impl Host {
    fn new() -> Host {
        let ns = format!("vtiso-h-{}", std::process::id() % 100_000);
        let _ = run(&["ip", "netns", "del", &ns]);
        ok(&["ip", "netns", "add", &ns]);
        ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ok(&[
            "ip", "-n", &ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1",
        ]);
        ok(&["ip", "-n", &ns, "link", "set", "up0", "up"]);
        Host { ns }
    }

    /// Runs `f` inside the host namespace (`ip`, `nft`, sysctls, sockets).
    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        Net::within(&self.ns, f)
    }

    fn sysctl(&self, key: &str) -> String {
        self.within(|| std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{key}")))
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .trim()
            .to_string()
    }

    /// Packets a named counter of the `inet vt` table has seen.
    fn counter(&self, name: &str) -> u64 {
        let text = exec(&self.ns, "nft", &["list", "counter", "inet", "vt", name]);
        let mut words = text.split_whitespace();
        words
            .find(|w| *w == "packets")
            .and_then(|_| words.next()?.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {text}"))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// A namespace with one interface, like an instance with its TAP.
struct Instance {
    ns: String,
    link: String,
    addr: Addressing,
}

impl Instance {
    fn new(host: &Host, tag: &str, org: &str, number: u64) -> Instance {
        let pid = std::process::id() % 100_000;
        let ns = format!("vtiso-{tag}-{pid}");
        let link = format!("vti{tag}{pid}");
        let addr = addressing(org, number);
        let _ = run(&["ip", "netns", "del", &ns]);
        ok(&["ip", "netns", "add", &ns]);
        ok(&[
            "ip", "-n", &host.ns, "link", "add", &link, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        ok(&["ip", "-n", &host.ns, "link", "set", &link, "up"]);
        host.within(|| attach_link(&link, &addr))
            .unwrap_or_else(|e| panic!("attach {link}: {e}"));
        let instance = Instance { ns, link, addr };
        let (guest, gateway) = (format!("{}/64", addr.guest), addr.gateway.to_string());
        instance.ip(&["link", "set", "lo", "up"]);
        instance.ip(&["link", "set", "eth0", "up"]);
        instance.ip(&["-6", "addr", "add", &guest, "dev", "eth0", "nodad"]);
        instance.ip(&[
            "-6", "route", "add", "default", "via", &gateway, "dev", "eth0",
        ]);
        instance
    }

    /// Runs `ip ARGS` in the instance's namespace.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", self.ns.as_str()];
        all.extend_from_slice(args);
        ok(&all);
    }

    fn serve(&self) -> std::process::Child {
        let dir = std::env::temp_dir().join(&self.ns);
        std::fs::create_dir_all(&dir).expect("www");
        std::fs::write(dir.join("index.html"), &self.ns).expect("index");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "[::]:9000",
                "-h",
            ])
            .arg(&dir)
            .spawn()
            .expect("busybox httpd")
    }

    fn fetch(&self, to: &Instance) -> bool {
        fetch_from(&self.ns, to)
    }

    /// A TCP connection from this instance to `to`, within a second.
    fn connects(&self, to: SocketAddr) -> bool {
        Net::within(&self.ns, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
        })
    }

    /// A UDP socket in this instance, bound to `source` (an address it has).
    fn udp(&self, source: Ipv6Addr, port: u16) -> UdpSocket {
        Net::within(&self.ns, || UdpSocket::bind((source, port)))
            .unwrap_or_else(|e| panic!("bind [{source}]:{port} in {}: {e}", self.ns))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // The veth goes with the namespace.
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// Fetches `to`'s page from namespace `ns` (an instance's or the host's).
fn fetch_from(ns: &str, to: &Instance) -> bool {
    let url = format!("http://[{}]:9000/", to.addr.guest);
    // curl: busybox-static's wget crashes on IPv6 URLs here.
    run(&["ip", "netns", "exec", ns, "curl", "-s", "-m", "3", &url])
        .status
        .success()
}

/// The sources of the datagrams `socket` receives until it is quiet for 500 ms.
fn sources(socket: &UdpSocket) -> Vec<IpAddr> {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    std::iter::from_fn(|| socket.recv_from(&mut buf).ok().map(|(_, from)| from.ip())).collect()
}

#[test]
fn instances_reach_their_own_org_only_from_their_own_address_and_not_the_host() {
    let host = Host::new();
    let a1 = Instance::new(&host, "a1", "acme", 901);
    let a2 = Instance::new(&host, "a2", "acme", 902);
    let b1 = Instance::new(&host, "b1", "umbrella", 903);
    host.within(|| isolate(&[org_prefix("acme"), org_prefix("umbrella")]))
        .expect("install the isolation rules");
    let mut servers = vec![a2.serve(), b1.serve()];
    std::thread::sleep(Duration::from_millis(300));

    // Orgs: acme reaches acme only; the host reaches every instance (health
    // checks and tunnels are connections the host opens).
    let same_org = a1.fetch(&a2);
    let other_org = a1.fetch(&b1);
    let back = b1.fetch(&a2);
    let from_host = fetch_from(&host.ns, &a2) && fetch_from(&host.ns, &b1);

    // Spoofing: a1 sends from its own address, then from another acme
    // address (the org's /48 alone would let that through).
    let spoofed = addressing("acme", 904).guest;
    let spoofed_cidr = format!("{spoofed}/128");
    a1.ip(&["-6", "addr", "add", &spoofed_cidr, "dev", "eth0", "nodad"]);
    let inbox = a2.udp(Ipv6Addr::UNSPECIFIED, 9100);
    let to_a2 = SocketAddr::new(IpAddr::V6(a2.addr.guest), 9100);
    a1.udp(a1.addr.guest, 0)
        .send_to(b"own address", to_a2)
        .expect("send");
    std::thread::sleep(Duration::from_millis(200));
    let spoofed_before = host.counter("spoofed");
    let liar = a1.udp(spoofed, 0);
    for _ in 0..3 {
        liar.send_to(b"spoofed", to_a2).expect("send");
    }
    let arrived = sources(&inbox);
    let spoofed_dropped = host.counter("spoofed") - spoofed_before;
    drop(liar);
    a1.ip(&["-6", "addr", "del", &spoofed_cidr, "dev", "eth0"]);

    // The host itself: a listener on all its addresses, reachable from the
    // host, not from instances (at their gateway or another link's).
    let listener = host
        .within(|| TcpListener::bind("[::]:0"))
        .expect("listen on the host");
    let port = listener.local_addr().expect("port").port();
    let gateway = SocketAddr::new(IpAddr::V6(a1.addr.gateway), port);
    let other_gateway = SocketAddr::new(IpAddr::V6(b1.addr.gateway), port);
    let host_reaches_itself =
        host.within(|| TcpStream::connect_timeout(&gateway, Duration::from_secs(1)).is_ok());
    let to_host_before = host.counter("to_host");
    let instance_reaches_host = [a1.connects(gateway), a1.connects(other_gateway)];
    let to_host_dropped = host.counter("to_host") - to_host_before;

    // Forwarding is on for the instance links alone.
    let per_link = host.sysctl(&format!("{}/force_forwarding", a1.link));
    let (all, uplink, uplink_ra) = (
        host.sysctl("all/forwarding"),
        host.sysctl("up0/forwarding"),
        host.sysctl("up0/accept_ra"),
    );

    // A detached link's guest loses its address.
    host.within(|| detach_link(&a1.link, &a1.addr))
        .expect("detach");
    let guests = exec(&host.ns, "nft", &["list", "set", "inet", "vt", "guests"]);
    let after_detach = a1.fetch(&a2);

    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(same_org, "acme reaches acme");
    assert!(!other_org, "acme does not reach umbrella");
    assert!(!back, "umbrella does not reach acme");
    assert!(from_host, "the host reaches its instances");

    let own = IpAddr::V6(a1.addr.guest);
    assert_eq!(
        arrived,
        vec![own],
        "only the datagram from a1's own address arrives"
    );
    assert!(
        spoofed_dropped >= 3,
        "the spoofed datagrams are counted as dropped: {spoofed_dropped}"
    );

    assert!(
        host_reaches_itself,
        "the listener is up on the gateway address"
    );
    assert_eq!(
        instance_reaches_host,
        [false, false],
        "an instance reaches the host's listener"
    );
    assert!(
        to_host_dropped >= 2,
        "the connection attempts are counted as dropped: {to_host_dropped}"
    );

    if per_link == "1" {
        assert_eq!(all, "0", "all/forwarding stays off");
        assert_eq!(uplink, "0", "the uplink is no router");
        assert_eq!(uplink_ra, "1", "the uplink takes router advertisements");
    } else {
        // Kernels before 6.17 (no force_forwarding) forward on all links.
        assert_eq!(
            uplink_ra, "2",
            "the uplink keeps taking router advertisements"
        );
    }

    assert!(!guests.contains(&a1.link), "{guests}");
    assert!(guests.contains(&a2.link), "{guests}");
    assert!(!after_detach, "a detached link's traffic is dropped");
}
