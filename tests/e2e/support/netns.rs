//! A small network for edge tests, made of namespaces this test creates:
//!
//! ```text
//!   root ns (controller, host agent, microVMs)
//!     │ veth  fdXX:1::1 / 10.N.1.1        fdXX:1::2 / 10.N.1.2
//!     └──────────────────────────────── edge ns (vt edge run; endpoint addresses on lo)
//!                                           │ veth  fdXX:2::1 / 10.N.2.1   fdXX:2::2 / 10.N.2.2
//!                                           └─────────────────────────── client ns
//! ```
//!
//! The client reaches endpoint addresses through the edge only; nothing is
//! forwarded anywhere. Dropped with the test: namespaces (and their veths)
//! are deleted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

/// The namespaces and their addresses.
pub struct Net {
    /// Edge namespace name.
    pub edge: String,
    /// Client namespace name.
    pub client: String,
    /// The root side of the root↔edge link (controller and host tunnels listen here).
    pub root_v6: Ipv6Addr,
    /// The client's address.
    pub client_v6: Ipv6Addr,
    /// The endpoint prefix to give the fleet (routed to the edge).
    pub endpoint_prefix: String,
    /// The IPv4 pool to give the fleet (routed to the edge).
    pub ipv4_pool: String,
    veth: String,
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    sh("ip", args);
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `PROGRAM ARGS` inside namespace `ns`.
pub fn exec(ns: &str, program: &str, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    sh("ip", &all)
}

impl Net {
    /// Creates the namespaces, links and addresses.
    pub fn new() -> Net {
        let n = std::process::id() % 200 + 20;
        // Not `vt…`: hosts treat `vt*` links as instance TAPs (and firewall them so).
        let tag = format!("ve{n}");
        let (edge, client) = (format!("{tag}e"), format!("{tag}c"));
        // Leftovers of an earlier run with the same number.
        for ns in [&edge, &client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{tag}r")])
            .output();
        let v6 = |net: u16, host: u16| Ipv6Addr::new(0xfd7e, n as u16, net, 0, 0, 0, 0, host);
        let v4 = |net: u8, host: u8| Ipv4Addr::new(10, n as u8, net, host);
        let net = Net {
            root_v6: v6(1, 1),
            client_v6: v6(2, 2),
            endpoint_prefix: format!("{}/64", v6(0xe, 0)),
            ipv4_pool: format!("{}/29", v4(9, 0)),
            veth: format!("{tag}r"),
            edge,
            client,
        };
        for ns in [&net.edge, &net.client] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // root ↔ edge
        let (re, er) = (format!("{tag}r"), format!("{tag}er"));
        ip(&["link", "add", &re, "type", "veth", "peer", "name", &er]);
        ip(&["link", "set", &er, "netns", &net.edge]);
        let link = |ns: Option<&str>, dev: &str, a6: Ipv6Addr, a4: Ipv4Addr| {
            let mut pre: Vec<&str> = Vec::new();
            if let Some(ns) = ns {
                pre.extend(["-n", ns]);
            }
            let with = |rest: &[&str]| {
                let mut all = pre.clone();
                all.extend_from_slice(rest);
                ip(&all);
            };
            with(&["addr", "add", &format!("{a6}/64"), "dev", dev, "nodad"]);
            with(&["addr", "add", &format!("{a4}/24"), "dev", dev]);
            with(&["link", "set", dev, "up"]);
        };
        link(None, &re, v6(1, 1), v4(1, 1));
        link(Some(&net.edge), &er, v6(1, 2), v4(1, 2));
        // edge ↔ client
        let (ec, ce) = (format!("{tag}ec"), format!("{tag}ce"));
        ip(&[
            "-n", &net.edge, "link", "add", &ec, "type", "veth", "peer", "name", &ce,
        ]);
        ip(&["-n", &net.edge, "link", "set", &ce, "netns", &net.client]);
        link(Some(&net.edge), &ec, v6(2, 1), v4(2, 1));
        link(Some(&net.client), &ce, v6(2, 2), v4(2, 2));
        ip(&[
            "-n",
            &net.client,
            "-6",
            "route",
            "add",
            "default",
            "via",
            &v6(2, 1).to_string(),
        ]);
        ip(&[
            "-n",
            &net.client,
            "-4",
            "route",
            "add",
            "default",
            "via",
            &v4(2, 1).to_string(),
        ]);
        net
    }

    /// Runs `f` on a thread inside namespace `ns` (its sockets live there).
    pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(format!("/var/run/netns/{ns}"))
                        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&file),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|e| panic!("enter netns {ns}: {e}"));
                    f()
                })
                .join()
                .expect("the namespace thread panicked")
        })
    }

    /// Drops the edge's UDP packets to `port` (its tunnel to the host), or lets them pass again.
    pub fn block_tunnel(&self, port: u16, blocked: bool) {
        if blocked {
            let port = port.to_string();
            exec(&self.edge, "nft", &["add", "table", "inet", "vtblock"]);
            exec(
                &self.edge,
                "nft",
                &[
                    "add",
                    "chain",
                    "inet",
                    "vtblock",
                    "out",
                    "{ type filter hook output priority 0; }",
                ],
            );
            exec(
                &self.edge,
                "nft",
                &[
                    "add", "rule", "inet", "vtblock", "out", "udp", "dport", &port, "drop",
                ],
            );
        } else {
            exec(&self.edge, "nft", &["delete", "table", "inet", "vtblock"]);
        }
    }

    /// Addresses on the edge's `lo`.
    pub fn edge_addresses(&self) -> Vec<IpAddr> {
        exec(&self.edge, "ip", &["-o", "addr", "show", "dev", "lo"])
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.edge, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}
